"""The vocabulary of supervision: restart types, strategies, child specs, restart info.

The names are Erlang/OTP's, so that anyone who knows OTP supervisors can read a greenroom tree.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable

import attrs


class Restart(enum.Enum):
    """When a child that has ended is started again."""

    #: Always restarted, even after a normal return: a service that must keep running.
    PERMANENT = "permanent"
    #: Restarted only when it raised: a job that may finish, but must not die.
    TRANSIENT = "transient"
    #: Never restarted.
    TEMPORARY = "temporary"

    def restarts_after(self, *, crashed: bool) -> bool:
        """Whether a child of this type is restarted after ending (``crashed``: it raised)."""
        if self is Restart.PERMANENT:
            return True
        if self is Restart.TRANSIENT:
            return crashed
        return False


class Strategy(enum.Enum):
    """Which children a static supervisor restarts when one of them ends abnormally."""

    #: Only the child that ended.
    ONE_FOR_ONE = "one_for_one"
    #: Every child: the others are stopped in reverse start order, then all start in order.
    ONE_FOR_ALL = "one_for_all"
    #: The child that ended and every child started after it (they depend on it).
    REST_FOR_ONE = "rest_for_one"


@attrs.frozen(kw_only=True)
class RestartInfo:
    """Given to a child's start function when it is a restart rather than the first start.

    ``reason`` is ``"ExceptionType: message"`` or ``"exited normally"``; ``restarts`` counts
    this child's restarts so far, this one included, so a child can tell a first start (it gets
    ``None``) from a restart and, say, resume interrupted work only once.
    """

    reason: str
    restarts: int


def _non_empty(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must not be empty")


@attrs.frozen(kw_only=True)
class ChildSpec:
    """How to start, restart and stop one child.

    ``start`` is called as ``await nursery.start(start, restart_info_or_None)``, so its
    signature is ``async def start(restart, *, task_status=trio.TASK_STATUS_IGNORED)`` and it
    calls ``task_status.started()`` once it is ready. ``stop``, when given, is a synchronous
    nudge asking the child to finish by itself; the child then gets ``shutdown`` seconds before
    it is cancelled. Without ``stop`` the child is cancelled at once.
    """

    id: str = attrs.field(validator=_non_empty)
    start: Callable[..., Awaitable[object]]
    restart: Restart = Restart.PERMANENT
    shutdown: float = attrs.field(default=5.0, validator=attrs.validators.ge(0.0))
    stop: Callable[[], None] | None = None
