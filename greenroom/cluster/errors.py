"""The cluster's errors, shared by its database and its bus."""

from __future__ import annotations

from greenroom.protocol.errors import GreenroomError


class EngineUnavailable(GreenroomError):
    """An engine cannot be reached; the message names it and its URL without a password."""

    code = "unavailable"
