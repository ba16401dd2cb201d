"""The one exception tree of greenroom.

Every error a client can see carries a protocol ``code`` (see docs/protocol.md); the transport
turns any :class:`GreenroomError` into an error reply without knowing its subclass.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, ClassVar


class GreenroomError(Exception):
    """Base of every error greenroom raises on purpose.

    A subclass names its protocol code where it is declared, ``class NotFound(GreenroomError,
    code="not_found")``; one that names none has its base's (``internal`` at the root).
    """

    code: ClassVar[str] = "internal"

    def __init_subclass__(cls, *, code: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(GreenroomError, code="bad_request"):
    """A command is missing a field or has one of the wrong type."""


class InvalidArgument(GreenroomError, code="invalid_argument"):
    """A field has the right type but a value greenroom refuses (a bad project name, say)."""


class NotFound(GreenroomError, code="not_found"):
    """The named session or project does not exist."""


class Conflict(GreenroomError, code="conflict"):
    """The command does not fit the current state (resuming a session that is running, say)."""


class LimitReached(GreenroomError, code="limit_reached"):
    """A configured limit (sessions, queued messages, connections, ...) is reached."""


class TooLarge(GreenroomError, code="too_large"):
    """A message or frame is over its size limit."""


class DiskError(GreenroomError):
    """The disk refused what a command needed: a file where a folder should be, a folder
    where a file should be, no permission. Named by the file's name, not its host path."""

    @classmethod
    def of(cls, error: OSError) -> DiskError:
        name = PurePath(str(error.filename)).name if error.filename is not None else "a file"
        return cls(f"cannot use {name}: {error.strerror or type(error).__name__}")


class ActorError(GreenroomError):
    """An actor could not be reached or did not answer."""


class ActorDied(ActorError):
    """The actor asked stopped, crashed or was restarted before it replied."""


class AskTimeout(ActorError):
    """The actor asked did not reply within the timeout."""


class MailboxFull(ActorError, code="limit_reached"):
    """A ``tell_nowait`` found the mailbox at its bound."""


class ToolError(GreenroomError, code="invalid_argument"):
    """A tool call failed; its message is given to the model as the tool's result."""


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
