"""The client's commands: one frozen class per ``op`` of docs/protocol.md.

A command holds only its arguments; the client's ``id`` travels beside it, in the codec's
:class:`~greenroom.protocol.codec.Incoming` envelope. Field names are the wire names (all of
them but ``maxTokens`` are single words, and that one is spelt as on the wire, so no renaming
is needed). A field with a default is optional on the wire, and ``null`` there means the
default.

Each class also says what executing it gives back in process (``Command[R]``: the runtime's
``execute`` returns an ``R``, which the codec's ``RESULTS`` turns into the reply) and whether
it is safe to send twice (``idempotent``: a client may retry it after a lost connection).
Adding an operation takes a class here, a result function in the codec and a route in the
runtime (or the connection, for the few that concern the connection itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import attrs

from greenroom.protocol.events import Summary
from greenroom.protocol.results import (
    McpStatusLike,
    OpenedSession,
    PresetListingLike,
    ProjectInfo,
    Subscribed,
)

R = TypeVar("R")

__all__ = [
    "COMMANDS",
    "ApproveToolCall",
    "CancelQueued",
    "Command",
    "CreateProject",
    "DeleteProject",
    "DeleteSession",
    "FocusProject",
    "ListPresets",
    "ListProjects",
    "ListSessions",
    "McpConfig",
    "NewChat",
    "OpenSession",
    "Ping",
    "ResumeSession",
    "SendMessage",
    "Stats",
    "StopAll",
    "StopGeneration",
    "Subscribe",
    "TrustMcpConfig",
    "Unsubscribe",
    "command_to_wire",
]


@attrs.frozen(kw_only=True)
class Command(Generic[R]):
    """An operation of the protocol whose execution gives back an ``R``."""

    op: ClassVar[str]
    idempotent: ClassVar[bool] = False
    """Safe to send twice: a retry after a lost connection changes nothing more."""


@attrs.frozen(kw_only=True)
class ListProjects(Command[tuple[ProjectInfo, ...]]):
    op: ClassVar[str] = "listProjects"
    idempotent: ClassVar[bool] = True


@attrs.frozen(kw_only=True)
class CreateProject(Command[ProjectInfo]):
    op: ClassVar[str] = "createProject"
    project: str


@attrs.frozen(kw_only=True)
class DeleteProject(Command[None]):
    """Stop and delete the project's session, and remove its folder."""

    op: ClassVar[str] = "deleteProject"
    project: str


@attrs.frozen(kw_only=True)
class ListSessions(Command[tuple[Summary, ...]]):
    op: ClassVar[str] = "listSessions"
    idempotent: ClassVar[bool] = True


@attrs.frozen(kw_only=True)
class OpenSession(Command[OpenedSession]):
    """The project's session: reused, else restored from its newest history, else new.

    ``model``, ``temperature`` and ``maxTokens`` (optional) are what this session's turns use,
    instead of the server's; given for a session that exists, they replace its own. ``preset``
    (optional) names a preset (``listPresets``) whose settings the session takes; the explicit
    fields win over it.
    """

    op: ClassVar[str] = "openSession"
    idempotent: ClassVar[bool] = True
    project: str
    preset: str | None = None
    model: str | None = None
    temperature: float | None = None
    maxTokens: int | None = None  # the wire's name


@attrs.frozen(kw_only=True)
class Subscribe(Command[Subscribed]):
    """Every event of ``session`` with seq > ``since`` (no replay when None), then live."""

    op: ClassVar[str] = "subscribe"
    idempotent: ClassVar[bool] = True
    session: str
    since: int | None = None


@attrs.frozen(kw_only=True)
class Unsubscribe(Command[None]):
    op: ClassVar[str] = "unsubscribe"
    idempotent: ClassVar[bool] = True
    session: str


@attrs.frozen(kw_only=True)
class SendMessage(Command[bool]):
    """Start a turn with ``content``, or queue it behind the running one."""

    op: ClassVar[str] = "sendMessage"
    session: str
    content: str


@attrs.frozen(kw_only=True)
class StopGeneration(Command[tuple[str, ...]]):
    op: ClassVar[str] = "stopGeneration"
    session: str


@attrs.frozen(kw_only=True)
class CancelQueued(Command[str]):
    """Remove the queued text at ``index``, if ``preview`` (its summary preview, or the whole
    text) still names it: the queue may have moved since the client saw it."""

    op: ClassVar[str] = "cancelQueued"
    session: str
    index: int
    preview: str


@attrs.frozen(kw_only=True)
class ResumeSession(Command[None]):
    """Continue an interrupted or failed turn."""

    op: ClassVar[str] = "resumeSession"
    session: str


@attrs.frozen(kw_only=True)
class ApproveToolCall(Command[None]):
    """Allow or deny the tool call ``call`` the session's turn waits on; ``reason`` (optional)
    is what the model reads when it is denied."""

    op: ClassVar[str] = "approveToolCall"
    session: str
    call: str
    allow: bool
    reason: str | None = None


@attrs.frozen(kw_only=True)
class NewChat(Command[None]):
    """Stop, keep the old history file, start an empty chat."""

    op: ClassVar[str] = "newChat"
    session: str


@attrs.frozen(kw_only=True)
class DeleteSession(Command[None]):
    op: ClassVar[str] = "deleteSession"
    session: str


@attrs.frozen(kw_only=True)
class FocusProject(Command[None]):
    """What this client is viewing (None: nothing), so that it is not notified about it."""

    op: ClassVar[str] = "focusProject"
    idempotent: ClassVar[bool] = True
    project: str | None = None


@attrs.frozen(kw_only=True)
class McpConfig(Command[McpStatusLike]):
    """The project's ``.mcp.json``: absent, approved, awaiting approval, or unusable."""

    op: ClassVar[str] = "mcpConfig"
    idempotent: ClassVar[bool] = True
    project: str


@attrs.frozen(kw_only=True)
class TrustMcpConfig(Command[McpStatusLike]):
    """Approve the project's ``.mcp.json`` whose contents hash to ``hash`` (sha256, hex)."""

    op: ClassVar[str] = "trustMcpConfig"
    idempotent: ClassVar[bool] = True
    project: str
    hash: str


@attrs.frozen(kw_only=True)
class ListPresets(Command[PresetListingLike]):
    """The presets ``openSession`` accepts: the global ones, and with ``project`` its own."""

    op: ClassVar[str] = "listPresets"
    idempotent: ClassVar[bool] = True
    project: str | None = None


@attrs.frozen(kw_only=True)
class StopAll(Command[int]):
    op: ClassVar[str] = "stopAll"


@attrs.frozen(kw_only=True)
class Stats(Command[Mapping[str, Any]]):
    op: ClassVar[str] = "stats"
    idempotent: ClassVar[bool] = True


@attrs.frozen(kw_only=True)
class Ping(Command[None]):
    op: ClassVar[str] = "ping"
    idempotent: ClassVar[bool] = True


COMMANDS: dict[str, type[Command[Any]]] = {
    cls.op: cls
    for cls in (
        ListProjects,
        CreateProject,
        DeleteProject,
        ListSessions,
        OpenSession,
        Subscribe,
        Unsubscribe,
        SendMessage,
        StopGeneration,
        CancelQueued,
        ResumeSession,
        ApproveToolCall,
        NewChat,
        DeleteSession,
        FocusProject,
        McpConfig,
        TrustMcpConfig,
        ListPresets,
        StopAll,
        Stats,
        Ping,
    )
}
"""Command classes by their ``op``."""


def command_to_wire(id: int | str, command: Command[Any]) -> dict[str, Any]:
    """The client-side frame object of ``command`` (optional fields left out when None)."""
    out: dict[str, Any] = {"id": id, "op": command.op}
    for field in attrs.fields(type(command)):
        value = getattr(command, field.name)
        if value is not None:
            out[field.name] = value
    return out
