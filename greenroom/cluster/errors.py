"""The cluster's errors, shared by its database and its bus."""

from __future__ import annotations

from greenroom.protocol.errors import GreenroomError


class EngineUnavailable(GreenroomError, code="unavailable"):
    """An engine cannot be reached; the message names it and its URL without a password."""


class Unavailable(GreenroomError, code="unavailable"):
    """The cluster cannot do it now (a node does not answer, a session is moving); the
    command may be retried."""


class RemoteError(GreenroomError):
    """An error the owner of a session replied to a forwarded command: its code, as sent."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]  # the instance carries the owner's code
