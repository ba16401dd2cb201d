"""The supervisor's own errors, in greenroom's one exception tree."""

from __future__ import annotations

from greenroom.protocol.errors import Conflict, GreenroomError, NotFound


class SupervisorError(GreenroomError):
    """Base of the errors raised by supervisors."""


class SupervisorGaveUp(SupervisorError):
    """A child ended more often than the restart intensity allows; the supervisor stopped."""

    def __init__(self, child_id: str, reason: str) -> None:
        super().__init__(
            f"gave up after child {child_id!r} went past the restart intensity: {reason}"
        )
        self.child_id = child_id
        self.reason = reason


class ChildExists(SupervisorError, Conflict):
    """A child with this id is already supervised."""

    def __init__(self, child_id: str) -> None:
        super().__init__(f"a child with id {child_id!r} already exists")
        self.child_id = child_id


class NoSuchChild(SupervisorError, NotFound):
    """No child with this id is supervised (it never was, or it has ended)."""

    def __init__(self, child_id: str) -> None:
        super().__init__(f"no child with id {child_id!r}")
        self.child_id = child_id
