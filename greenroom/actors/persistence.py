"""The persistence actor and its mirror: the up-to-date copy of every session.

Every event is applied to the mirror as it arrives, so a restarted session actor is rebuilt from
it with nothing lost that was published. Events and requests share this actor's one mailbox, in
order: a ``LoadState`` asked after an event was published sees that event.
"""

from __future__ import annotations

import attrs
import trio

from greenroom.actors.events import Event, SessionCreated, SessionDeleted, Summary
from greenroom.actors.mailbox import Inbox, Reply
from greenroom.actors.state import SessionState, Streaming


@attrs.frozen(kw_only=True)
class LoadState:
    """A private copy of one session's state, or None when the mirror has no such session."""

    session: str
    reply: Reply[SessionState | None] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class ListSummaries:
    reply: Reply[tuple[Summary, ...]] = attrs.field(factory=Reply, eq=False, repr=False)


PersistenceMessage = Event | LoadState | ListSummaries


def copy_state(state: SessionState) -> SessionState:
    """A deep enough copy: messages are frozen, the lists and the streaming text are not."""
    streaming = None
    if state.streaming is not None:
        text = state.streaming.text
        streaming = Streaming(
            parts=[text] if text else [], length=len(text), tool_calls=state.streaming.tool_calls
        )
    return attrs.evolve(
        state, messages=list(state.messages), queued=list(state.queued), streaming=streaming
    )


@attrs.define(eq=False)
class Mirror:
    """Every session's state, kept by applying events. Owned by the runtime, so that it
    survives a restart of the persistence actor."""

    sessions: dict[str, SessionState] = attrs.Factory(dict)
    applied: int = 0

    def apply(self, event: Event) -> None:
        self.applied += 1
        session = event.session
        if session is None:
            return
        match event.data:
            case SessionCreated(summary=summary):
                self.sessions[session] = SessionState.from_summary(summary)
                self.sessions[session].apply(event)
            case SessionDeleted():
                self.sessions.pop(session, None)
            case _:
                state = self.sessions.get(session)
                if state is not None:
                    state.apply(event)

    def load(self, session: str) -> SessionState | None:
        state = self.sessions.get(session)
        return copy_state(state) if state is not None else None

    def summaries(self) -> tuple[Summary, ...]:
        return tuple(state.summary() for state in self.sessions.values())


@attrs.define(eq=False)
class PersistenceActor:
    """Applies events to the mirror and answers state requests."""

    mirror: Mirror

    async def run(
        self,
        inbox: Inbox[PersistenceMessage],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        async for message in inbox:
            match message:
                case Event():
                    self.mirror.apply(message)
                case LoadState(session=session, reply=reply):
                    reply.send(self.mirror.load(session))
                case ListSummaries(reply=reply):
                    reply.send(self.mirror.summaries())
