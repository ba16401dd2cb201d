"""The one exception tree of greenroom.

Every error a client can see carries a protocol ``code`` (see docs/protocol.md); the transport
turns any :class:`GreenroomError` into an error reply without knowing its subclass.
"""

from __future__ import annotations

from typing import ClassVar


class GreenroomError(Exception):
    """Base of every error greenroom raises on purpose."""

    code: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(GreenroomError):
    """A command is missing a field or has one of the wrong type."""

    code = "bad_request"


class InvalidArgument(GreenroomError):
    """A field has the right type but a value greenroom refuses (a bad project name, say)."""

    code = "invalid_argument"


class NotFound(GreenroomError):
    """The named session or project does not exist."""

    code = "not_found"


class Conflict(GreenroomError):
    """The command does not fit the current state (resuming a session that is running, say)."""

    code = "conflict"


class LimitReached(GreenroomError):
    """A configured limit (sessions, queued messages, connections, ...) is reached."""

    code = "limit_reached"


class TooLarge(GreenroomError):
    """A message or frame is over its size limit."""

    code = "too_large"


class ActorError(GreenroomError):
    """An actor could not be reached or did not answer."""


class ActorDied(ActorError):
    """The actor asked stopped, crashed or was restarted before it replied."""


class AskTimeout(ActorError):
    """The actor asked did not reply within the timeout."""


class MailboxFull(ActorError):
    """A ``tell_nowait`` found the mailbox at its bound."""

    code = "limit_reached"


class ToolError(GreenroomError):
    """A tool call failed; its message is given to the model as the tool's result."""

    code = "invalid_argument"


class ProviderError(GreenroomError):
    """The model provider failed; the turn ends with reason ``failed``, it is not a crash.

    ``kind`` says which failure it was, so that a UI can explain it: ``auth``, ``quota``,
    ``rate_limit``, ``model_not_found``, ``context_length``, ``bad_request``, ``server``,
    ``network`` (the server cannot be reached), ``disconnected`` (the connection broke once the
    request was out), ``timeout``, ``bad_response`` or ``cancelled``.
    """

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
