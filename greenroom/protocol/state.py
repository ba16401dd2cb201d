"""A session's state, and the one function that applies an event to it.

The session actor and the persistence mirror apply the very same events with
:meth:`SessionState.apply`, so a session restarted from the mirror is exactly the session that
crashed, up to its last published event.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from greenroom.protocol.chat import Message
from greenroom.protocol.events import (
    PREVIEW_CHARS,
    ApprovalRequested,
    Event,
    LoadingChanged,
    MessageAdded,
    PartialToolCall,
    PendingApproval,
    SessionCreated,
    SessionFailed,
    SessionUpdated,
    Status,
    StreamingUpdate,
    Summary,
)
from greenroom.protocol.text import Text

# The status a turn leaves behind, by the reason it ended (completed and stopped: idle).
_STATUS_AFTER: dict[str, Status] = {"failed": "failed", "interrupted": "interrupted"}


@attrs.define(eq=False)
class Streaming:
    """The assistant message being streamed (its text a :class:`Text`: appending is O(1))."""

    content: Text = attrs.Factory(Text)
    tool_calls: tuple[PartialToolCall, ...] | None = None

    @classmethod
    def of(cls, text: str, tool_calls: tuple[PartialToolCall, ...] | None = None) -> Streaming:
        """A partial message already streamed up to ``text``."""
        return cls(content=Text(text), tool_calls=tool_calls)

    @property
    def text(self) -> str:
        return str(self.content)

    def apply(self, update: StreamingUpdate) -> None:
        # A rewind keeps what came before the offset (never happens for an append-only
        # producer, but a merged or replayed update must still land in the right place).
        self.content.put(update.offset, update.delta)
        if update.tool_calls is not None:
            self.tool_calls = update.tool_calls

    def preview(self) -> str:
        return self.content.head(PREVIEW_CHARS)


@attrs.frozen(kw_only=True)
class SessionView:
    """A copy of a session's whole state, as ``openSession`` returns it (the protocol's
    ``state``)."""

    summary: Summary
    messages: tuple[Message, ...]
    streaming: Message | None
    seq: int


@attrs.define(eq=False)
class SessionState:
    """The mutable state of one session, owned by its actor (and mirrored by persistence)."""

    session: str
    project: str
    name: str
    status: Status = "idle"
    messages: list[Message] = attrs.Factory(list)
    streaming: Streaming | None = None
    queued: list[str] = attrs.Factory(list)
    seq: int = 0
    last_activity: float = 0.0
    error: str | None = None
    waiting: bool = False
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    preset: str | None = None
    system_prompt: str | None = None
    mcp_servers: tuple[str, ...] | None = None
    tools: Mapping[str, str] = attrs.Factory(dict)
    approval: PendingApproval | None = None

    @property
    def loading(self) -> bool:
        return self.status in ("running", "stopping")

    def summary(self) -> Summary:
        return Summary(
            session=self.session,
            project=self.project,
            name=self.name,
            status=self.status,
            loading=self.loading,
            message_count=len(self.messages),
            last_activity=self.last_activity,
            preview=self.streaming.preview() if self.streaming is not None else None,
            queued=tuple(self.queued),
            error=self.error,
            waiting=self.waiting,
            model=self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            preset=self.preset,
            system_prompt=self.system_prompt,
            mcp_servers=self.mcp_servers,
            tools=self.tools,
            approval=self.approval,
        )

    def view(self) -> SessionView:
        return SessionView(
            summary=self.summary(),
            messages=tuple(self.messages),
            streaming=self.partial_message(),
            seq=self.seq,
        )

    def partial_message(self) -> Message | None:
        """The streamed-so-far assistant message, or None when nothing is streaming."""
        if self.streaming is None:
            return None
        return Message(role="assistant", content=self.streaming.text, stopped=True)

    @classmethod
    def from_summary(cls, summary: Summary) -> SessionState:
        state = cls(session=summary.session, project=summary.project, name=summary.name)
        state._apply_summary(summary)
        return state

    def apply(self, event: Event) -> None:
        """Apply one event of this session: the only way session state changes."""
        data = event.data
        if event.seq is not None:
            self.seq = event.seq
        match data:
            case StreamingUpdate():
                if self.streaming is None:
                    self.streaming = Streaming()
                self.streaming.apply(data)
            case MessageAdded(index=index, message=message):
                del self.messages[index:]  # an index below the end replaces what follows it
                self.messages.append(message)
                if message.role == "assistant":
                    self.streaming = None
            case LoadingChanged(loading=True):
                self.status = "running"
                self.error = None
            case LoadingChanged(loading=False, reason=reason, error=error):
                self.streaming = None
                self.waiting = False
                if reason != "interrupted":
                    # An interrupted turn resumes waiting for the same call (a restart);
                    # any other end answers or drops it.
                    self.approval = None
                self.status = _STATUS_AFTER.get(reason or "completed", "idle")
                self.error = error
            case SessionCreated(summary=summary) | SessionUpdated(summary=summary):
                self._apply_summary(summary)
            case ApprovalRequested(call=call, tool=tool):
                self.approval = PendingApproval(call=call, tool=tool)
            case SessionFailed(reason=reason):
                self.status = "failed"
                self.error = reason
            case _:
                pass

    def _apply_summary(self, summary: Summary) -> None:
        self.name = summary.name
        self.status = summary.status
        self.last_activity = summary.last_activity
        self.queued = list(summary.queued)
        self.error = summary.error
        self.waiting = summary.waiting
        self.model = summary.model
        self.temperature = summary.temperature
        self.max_tokens = summary.max_tokens
        self.preset = summary.preset
        self.system_prompt = summary.system_prompt
        self.mcp_servers = summary.mcp_servers
        self.tools = summary.tools
        self.approval = summary.approval
        # The summary is authoritative on the message count: after newChat it is 0.
        del self.messages[summary.message_count :]
