"""Erlang/OTP-style supervision for trio, with jittered exponential backoff.

:class:`Supervisor` runs a fixed, ordered list of children and restarts them per
:class:`Strategy`; :class:`DynamicSupervisor` runs children added at run time (one per
session), each restarted on its own. Both stop their children in reverse start order, shielded
from the cancellation that asked them to.
"""

from __future__ import annotations

from greenroom.supervisor.backoff import Backoff
from greenroom.supervisor.child import NORMAL_EXIT
from greenroom.supervisor.dynamic import DynamicSupervisor, GiveUpHook, open_dynamic_supervisor
from greenroom.supervisor.errors import (
    ChildExists,
    NoSuchChild,
    SupervisorError,
    SupervisorGaveUp,
)
from greenroom.supervisor.intensity import Intensity
from greenroom.supervisor.spec import ChildSpec, Restart, RestartInfo, Strategy
from greenroom.supervisor.static import RestartHook, Supervisor, open_supervisor
from greenroom.supervisor.statistics import SupervisorStatistics

__all__ = [
    "NORMAL_EXIT",
    "Backoff",
    "ChildExists",
    "ChildSpec",
    "DynamicSupervisor",
    "GiveUpHook",
    "Intensity",
    "NoSuchChild",
    "Restart",
    "RestartHook",
    "RestartInfo",
    "Strategy",
    "Supervisor",
    "SupervisorError",
    "SupervisorGaveUp",
    "SupervisorStatistics",
    "open_dynamic_supervisor",
    "open_supervisor",
]
