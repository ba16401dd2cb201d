"""Events: every change to a session, as frozen values published on the event bus.

An :class:`Event` is an envelope (session, project, seq) around one payload class. The payload
classes are named after the wire events of docs/protocol.md; their field names are snake_case
here and camelCase on the wire (the codec renames them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import attrs

from greenroom.protocol.chat import Message

Status = Literal["idle", "running", "stopping", "interrupted", "failed"]
EndReason = Literal["completed", "truncated", "stopped", "failed", "interrupted"]
NotificationKind = Literal["completed", "truncated", "stopped", "failed", "approval"]

PREVIEW_CHARS = 50

QUEUED_PREVIEW_CHARS = 200
"""How much of each queued text a summary on the wire carries (openSession's state, the
journal and the snapshots carry them whole): a summary goes to every client with every
change, and must stay small whatever was queued. ``cancelQueued`` names a queued text by it."""


def queued_preview(text: str) -> str:
    """A queued text as a summary on the wire shows it."""
    return text[:QUEUED_PREVIEW_CHARS]


@attrs.frozen(kw_only=True)
class PendingApproval:
    """The tool call a session's turn waits on: its id and its tool. The arguments are in
    the assistant message that holds the call (and in ``approvalRequested``), not here: a
    summary goes to every client with every change, and must stay small."""

    call: str
    tool: str


@attrs.frozen(kw_only=True)
class Summary:
    """What a session list shows of one session (the protocol's ``summary``).

    ``queued`` (the texts waiting), ``error`` (why the last turn failed) and ``waiting`` (the
    turn waits for a slot under ``max_concurrent_turns``) and ``model``, ``temperature`` and
    ``max_tokens`` (what this session asked for, None for the server's) are greenroom's
    additions to the protocol's summary, and so are ``preset`` (the preset the session was
    opened with, or None) and ``approval`` (the tool call the running turn waits on a user's
    decision for, None when it waits for none).

    ``system_prompt``, ``mcp_servers`` (None: every configured server) and ``tools`` (the
    preset's tool policy, tool name -> ``allow``/``ask``/``deny``) come with the preset. They
    are kept with the session (journal, snapshots) and shown in ``openSession``'s state, but
    left out of the summary on the wire, which goes to every client with every change and
    must stay small.
    """

    session: str
    project: str
    name: str
    status: Status
    loading: bool
    message_count: int
    last_activity: float
    preview: str | None
    queued: tuple[str, ...] = ()
    error: str | None = None
    waiting: bool = False
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    preset: str | None = None
    approval: PendingApproval | None = None
    # Kept with the session but not on the wire's summary (see above).
    system_prompt: str | None = None
    mcp_servers: tuple[str, ...] | None = None
    # A dict in a frozen class: summaries are compared, never hashed.
    tools: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class PartialToolCall:
    """A tool call as streamed so far."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@attrs.frozen(kw_only=True)
class Payload:
    """What an event says: one class per wire event, which names it where it is declared
    (``class SessionFailed(Payload, name="sessionFailed")``)."""

    name: ClassVar[str]
    """The event's name on the wire."""

    def __init_subclass__(cls, *, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # attrs makes each frozen class anew, without this keyword: keep what was set.
        if name is not None:
            cls.name = name


@attrs.frozen(kw_only=True)
class SessionCreated(Payload, name="sessionCreated"):
    """A session was created; its summary."""

    summary: Summary


@attrs.frozen(kw_only=True)
class SessionUpdated(Payload, name="sessionUpdated"):
    """A field of the session's summary changed; the whole summary."""

    summary: Summary


@attrs.frozen(kw_only=True)
class SessionDeleted(Payload, name="sessionDeleted"):
    """The session was deleted (its history files stay in the project folder)."""


@attrs.frozen(kw_only=True)
class MessageAdded(Payload, name="messageAdded"):
    """A message committed to the chat, at ``index`` (0-based)."""

    index: int
    message: Message


@attrs.frozen(kw_only=True)
class StreamingUpdate(Payload, name="streamingUpdate"):
    """New text at ``offset`` of the partial assistant message, and its tool calls so far."""

    offset: int
    delta: str
    tool_calls: tuple[PartialToolCall, ...] | None = None


@attrs.frozen(kw_only=True)
class LoadingChanged(Payload, name="loadingChanged"):
    """A turn started (``loading``) or ended, and why; ``error`` says what failed."""

    loading: bool
    reason: EndReason | None = None
    error: str | None = None


@attrs.frozen(kw_only=True)
class ApprovalRequested(Payload, name="approvalRequested"):
    """The turn waits for a user to allow or deny tool call ``call`` (``approveToolCall``);
    ``arguments`` is the JSON text the model wrote."""

    call: str
    tool: str
    arguments: str


@attrs.frozen(kw_only=True)
class SessionRestarted(Payload, name="sessionRestarted"):
    """The session's actor crashed and was restarted from its last committed state; ``restarts``
    counts the restarts so far."""

    reason: str
    restarts: int


@attrs.frozen(kw_only=True)
class SessionFailed(Payload, name="sessionFailed"):
    """The supervisor gave up on the session after too many crashes."""

    reason: str


@attrs.frozen(kw_only=True)
class Notification(Payload, name="notification"):
    """Told to clients that are not viewing the project whose turn just ended."""

    kind: NotificationKind
    title: str
    body: str
    session: str
    project: str


EventData = (
    SessionCreated
    | SessionUpdated
    | SessionDeleted
    | MessageAdded
    | StreamingUpdate
    | LoadingChanged
    | ApprovalRequested
    | SessionRestarted
    | SessionFailed
    | Notification
)

# Events every connection receives, subscribed or not (docs/protocol.md, "Events").
LIFECYCLE_EVENTS = frozenset(
    cls.name
    for cls in (
        SessionCreated,
        SessionUpdated,
        SessionDeleted,
        LoadingChanged,
        SessionRestarted,
        SessionFailed,
    )
)


@attrs.frozen(kw_only=True)
class Event:
    """One event: ``seq`` is the session's own counter (None for events of no session)."""

    session: str | None
    project: str | None
    seq: int | None
    data: EventData

    @property
    def name(self) -> str:
        return self.data.name


def merged_update(first: Event, last: Event, delta: str) -> Event:
    """The one ``streamingUpdate`` that stands for consecutive ones of a session, ``first``
    to ``last``: the offset of the first, ``delta`` (all their deltas joined), the tool calls
    and the seq of the last. The protocol lets it take their place wherever they would go (a
    connection that is behind sends it; the bus retains and replays it)."""
    start, end = first.data, last.data
    assert isinstance(start, StreamingUpdate) and isinstance(end, StreamingUpdate)
    data = StreamingUpdate(offset=start.offset, delta=delta, tool_calls=end.tool_calls)
    return attrs.evolve(last, data=data)
