"""What crosses the wire: the subprotocols, and the frames' objects in and out.

A decoded command travels in an :class:`Incoming` (the client's ``id`` beside it); what the
server sends is a :data:`Outgoing`: a :class:`Reply`, an :class:`ErrorReply`, an event, or the
:class:`Welcome` that opens every connection (an event of no session).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final, Literal

import attrs

from greenroom.protocol.commands import Command
from greenroom.protocol.errors import GreenroomError
from greenroom.protocol.events import Event, Summary

Subprotocol = Literal["greenroom.v1.json", "greenroom.v1.msgpack"]
SUBPROTOCOL_JSON: Final = "greenroom.v1.json"
SUBPROTOCOL_MSGPACK: Final = "greenroom.v1.msgpack"
SUBPROTOCOLS: Final[tuple[Subprotocol, ...]] = (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK)

PROTOCOL_VERSION: Final = 1


def choose_subprotocol(offered: Sequence[str]) -> Subprotocol | None:
    """The subprotocol to accept: the client's first one that greenroom speaks.

    JSON when the client offers none. None when it offers only unknown ones: the server then
    refuses the handshake, since a client that asked for a subprotocol would fail the
    connection anyway when none is selected (RFC 6455, 4.1).
    """
    if not offered:
        return SUBPROTOCOL_JSON
    for name in offered:
        if name == SUBPROTOCOL_JSON:
            return SUBPROTOCOL_JSON
        if name == SUBPROTOCOL_MSGPACK:
            return SUBPROTOCOL_MSGPACK
    return None


@attrs.frozen(kw_only=True)
class Incoming:
    """A decoded command and the client's ``id``, to be echoed as ``re`` in its reply."""

    id: int | str
    command: Command[Any]


@attrs.frozen(kw_only=True)
class Reply:
    """A successful reply; ``result`` is built by the ``*_result`` functions of ``replies``."""

    re: int | str
    result: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ErrorReply:
    """A failed command, or a frame that was no command at all (``re`` None)."""

    re: int | str | None
    code: str
    message: str

    @classmethod
    def of(cls, re: int | str | None, error: GreenroomError) -> ErrorReply:
        """The reply that tells the client about ``error``."""
        return cls(re=re, code=error.code, message=error.message)


@attrs.frozen(kw_only=True)
class Welcome:
    """The first frame of every connection (an event of no session).

    ``sessions`` are the summaries of every session; ``notifications`` the ``notification``
    events kept for this client while nobody was connected; ``provider`` (greenroom's addition)
    names the model provider, so that a UI can label simulated replies as such.
    """

    name: ClassVar[str] = "welcome"
    version: str
    connection: str
    sessions: tuple[Summary, ...] = ()
    notifications: tuple[Event, ...] = ()
    server: str = "greenroom"
    protocol: int = PROTOCOL_VERSION
    provider: str | None = None


Outgoing = Reply | ErrorReply | Event | Welcome
