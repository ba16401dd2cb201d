"""The client's commands: one frozen class per ``op`` of docs/protocol.md.

A command holds only its arguments; the client's ``id`` travels beside it, in the codec's
:class:`~greenroom.protocol.codec.Incoming` envelope. Field names are the wire names (all of
them but ``maxTokens`` are single words, and that one is spelt as on the wire, so no renaming
is needed). A field with a default is optional on the wire, and ``null`` there means the
default.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

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
class ListProjects:
    op: ClassVar[str] = "listProjects"


@attrs.frozen(kw_only=True)
class CreateProject:
    op: ClassVar[str] = "createProject"
    project: str


@attrs.frozen(kw_only=True)
class DeleteProject:
    """Stop and delete the project's session, and remove its folder."""

    op: ClassVar[str] = "deleteProject"
    project: str


@attrs.frozen(kw_only=True)
class ListSessions:
    op: ClassVar[str] = "listSessions"


@attrs.frozen(kw_only=True)
class OpenSession:
    """The project's session: reused, else restored from its newest history, else new.

    ``model``, ``temperature`` and ``maxTokens`` (optional) are what this session's turns use,
    instead of the server's; given for a session that exists, they replace its own. ``preset``
    (optional) names a preset (``listPresets``) whose settings the session takes; the explicit
    fields win over it.
    """

    op: ClassVar[str] = "openSession"
    project: str
    preset: str | None = None
    model: str | None = None
    temperature: float | None = None
    maxTokens: int | None = None  # the wire's name


@attrs.frozen(kw_only=True)
class Subscribe:
    """Every event of ``session`` with seq > ``since`` (no replay when None), then live."""

    op: ClassVar[str] = "subscribe"
    session: str
    since: int | None = None


@attrs.frozen(kw_only=True)
class Unsubscribe:
    op: ClassVar[str] = "unsubscribe"
    session: str


@attrs.frozen(kw_only=True)
class SendMessage:
    """Start a turn with ``content``, or queue it behind the running one."""

    op: ClassVar[str] = "sendMessage"
    session: str
    content: str


@attrs.frozen(kw_only=True)
class StopGeneration:
    op: ClassVar[str] = "stopGeneration"
    session: str


@attrs.frozen(kw_only=True)
class CancelQueued:
    """Remove the queued text at ``index``, if ``preview`` (its summary preview, or the whole
    text) still names it: the queue may have moved since the client saw it."""

    op: ClassVar[str] = "cancelQueued"
    session: str
    index: int
    preview: str


@attrs.frozen(kw_only=True)
class ResumeSession:
    """Continue an interrupted or failed turn."""

    op: ClassVar[str] = "resumeSession"
    session: str


@attrs.frozen(kw_only=True)
class ApproveToolCall:
    """Allow or deny the tool call ``call`` the session's turn waits on; ``reason`` (optional)
    is what the model reads when it is denied."""

    op: ClassVar[str] = "approveToolCall"
    session: str
    call: str
    allow: bool
    reason: str | None = None


@attrs.frozen(kw_only=True)
class NewChat:
    """Stop, keep the old history file, start an empty chat."""

    op: ClassVar[str] = "newChat"
    session: str


@attrs.frozen(kw_only=True)
class DeleteSession:
    op: ClassVar[str] = "deleteSession"
    session: str


@attrs.frozen(kw_only=True)
class FocusProject:
    """What this client is viewing (None: nothing), so that it is not notified about it."""

    op: ClassVar[str] = "focusProject"
    project: str | None = None


@attrs.frozen(kw_only=True)
class McpConfig:
    """The project's ``.mcp.json``: absent, approved, awaiting approval, or unusable."""

    op: ClassVar[str] = "mcpConfig"
    project: str


@attrs.frozen(kw_only=True)
class TrustMcpConfig:
    """Approve the project's ``.mcp.json`` whose contents hash to ``hash`` (sha256, hex)."""

    op: ClassVar[str] = "trustMcpConfig"
    project: str
    hash: str


@attrs.frozen(kw_only=True)
class ListPresets:
    """The presets ``openSession`` accepts: the global ones, and with ``project`` its own."""

    op: ClassVar[str] = "listPresets"
    project: str | None = None


@attrs.frozen(kw_only=True)
class StopAll:
    op: ClassVar[str] = "stopAll"


@attrs.frozen(kw_only=True)
class Stats:
    op: ClassVar[str] = "stats"


@attrs.frozen(kw_only=True)
class Ping:
    op: ClassVar[str] = "ping"


Command = (
    ListProjects
    | CreateProject
    | DeleteProject
    | ListSessions
    | OpenSession
    | Subscribe
    | Unsubscribe
    | SendMessage
    | StopGeneration
    | CancelQueued
    | ResumeSession
    | ApproveToolCall
    | NewChat
    | DeleteSession
    | FocusProject
    | McpConfig
    | TrustMcpConfig
    | ListPresets
    | StopAll
    | Stats
    | Ping
)

COMMANDS: dict[str, type[Command]] = {
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


def command_to_wire(id: int | str, command: Command) -> dict[str, Any]:
    """The client-side frame object of ``command`` (optional fields left out when None)."""
    out: dict[str, Any] = {"id": id, "op": command.op}
    for field in attrs.fields(type(command)):
        value = getattr(command, field.name)
        if value is not None:
            out[field.name] = value
    return out
