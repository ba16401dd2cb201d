"""The frozen snapshot a supervisor's ``statistics()`` returns."""

from __future__ import annotations

from collections.abc import Mapping

import attrs


@attrs.frozen(kw_only=True)
class SupervisorStatistics:
    """A point-in-time view of a supervisor, for status pages and tests.

    ``children`` counts the children supervised (running, starting or waiting out a backoff);
    ``running`` those whose current run has called ``started()`` and not ended. ``restarts`` is
    the total number of child restarts since the supervisor was created (a one-for-all restart
    of three children counts three), ``child_restarts`` the same per child still supervised, and
    ``given_up`` the children a dynamic supervisor removed for going past their intensity.
    """

    children: int
    running: int
    restarts: int
    child_restarts: Mapping[str, int]
    given_up: int = 0
