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
    """An operation of the protocol whose execution gives back an ``R``.

    A subclass names its ``op`` (and whether it is ``idempotent``) where it is declared:
    ``class Ping(Command[None], op="ping", idempotent=True)``.
    """

    op: ClassVar[str]
    """The operation's name on the wire."""
    idempotent: ClassVar[bool] = False
    """Safe to send twice: a retry after a lost connection changes nothing more."""

    def __init_subclass__(
        cls, *, op: str | None = None, idempotent: bool | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        # attrs makes each frozen class anew, without these keywords: keep what was set.
        if op is not None:
            cls.op = op
        if idempotent is not None:
            cls.idempotent = idempotent


@attrs.frozen(kw_only=True)
class ListProjects(Command[tuple[ProjectInfo, ...]], op="listProjects", idempotent=True):
    """Every project folder, with its session if it has one."""


@attrs.frozen(kw_only=True)
class CreateProject(Command[ProjectInfo], op="createProject"):
    """The project's folder, made (no session yet); ``conflict`` if it exists."""

    project: str


@attrs.frozen(kw_only=True)
class DeleteProject(Command[None], op="deleteProject"):
    """Stop and delete the project's session, and remove its folder."""

    project: str


@attrs.frozen(kw_only=True)
class ListSessions(Command[tuple[Summary, ...]], op="listSessions", idempotent=True):
    """The summary of every session."""


@attrs.frozen(kw_only=True)
class OpenSession(Command[OpenedSession], op="openSession", idempotent=True):
    """The project's session: reused, else restored from its newest history, else new.

    ``model``, ``temperature`` and ``maxTokens`` (optional) are what this session's turns use,
    instead of the server's; given for a session that exists, they replace its own. ``preset``
    (optional) names a preset (``listPresets``) whose settings the session takes; the explicit
    fields win over it.
    """

    project: str
    preset: str | None = None
    model: str | None = None
    temperature: float | None = None
    maxTokens: int | None = None  # the wire's name


@attrs.frozen(kw_only=True)
class Subscribe(Command[Subscribed], op="subscribe", idempotent=True):
    """Every event of ``session`` with seq > ``since`` (no replay when None), then live."""

    session: str
    since: int | None = None


@attrs.frozen(kw_only=True)
class Unsubscribe(Command[None], op="unsubscribe", idempotent=True):
    session: str


@attrs.frozen(kw_only=True)
class SendMessage(Command[bool], op="sendMessage"):
    """Start a turn with ``content``, or queue it behind the running one."""

    session: str
    content: str


@attrs.frozen(kw_only=True)
class StopGeneration(Command[tuple[str, ...]], op="stopGeneration"):
    """Stop the running turn and discard the queued texts, which it gives back."""

    session: str


@attrs.frozen(kw_only=True)
class CancelQueued(Command[str], op="cancelQueued"):
    """Remove the queued text at ``index``, if ``preview`` (its summary preview, or the whole
    text) still names it: the queue may have moved since the client saw it."""

    session: str
    index: int
    preview: str


@attrs.frozen(kw_only=True)
class ResumeSession(Command[None], op="resumeSession"):
    """Continue an interrupted or failed turn."""

    session: str


@attrs.frozen(kw_only=True)
class ApproveToolCall(Command[None], op="approveToolCall"):
    """Allow or deny the tool call ``call`` the session's turn waits on; ``reason`` (optional)
    is what the model reads when it is denied."""

    session: str
    call: str
    allow: bool
    reason: str | None = None


@attrs.frozen(kw_only=True)
class NewChat(Command[None], op="newChat"):
    """Stop, keep the old history file, start an empty chat."""

    session: str


@attrs.frozen(kw_only=True)
class DeleteSession(Command[None], op="deleteSession"):
    """Stop the session and delete it; its history files stay in the project folder."""

    session: str


@attrs.frozen(kw_only=True)
class FocusProject(Command[None], op="focusProject", idempotent=True):
    """What this client is viewing (None: nothing), so that it is not notified about it."""

    project: str | None = None


@attrs.frozen(kw_only=True)
class McpConfig(Command[McpStatusLike], op="mcpConfig", idempotent=True):
    """The project's ``.mcp.json``: absent, approved, awaiting approval, or unusable."""

    project: str


@attrs.frozen(kw_only=True)
class TrustMcpConfig(Command[McpStatusLike], op="trustMcpConfig", idempotent=True):
    """Approve the project's ``.mcp.json`` whose contents hash to ``hash`` (sha256, hex)."""

    project: str
    hash: str


@attrs.frozen(kw_only=True)
class ListPresets(Command[PresetListingLike], op="listPresets", idempotent=True):
    """The presets ``openSession`` accepts: the global ones, and with ``project`` its own."""

    project: str | None = None


@attrs.frozen(kw_only=True)
class StopAll(Command[int], op="stopAll"):
    """Stop every session's running turn; gives back how many sessions were told to stop."""


@attrs.frozen(kw_only=True)
class Stats(Command[Mapping[str, Any]], op="stats", idempotent=True):
    """Counters for dashboards and benchmarks (plain values; the keys may grow)."""


@attrs.frozen(kw_only=True)
class Ping(Command[None], op="ping", idempotent=True):
    """An application-level round trip (the websocket's own ping is the libraries')."""


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
