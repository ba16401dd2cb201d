from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from greenroom.actors.persistence import Mirror, copy_state
from greenroom.protocol.chat import Message
from greenroom.protocol.events import (
    Event,
    EventData,
    LoadingChanged,
    MessageAdded,
    SessionCreated,
    SessionUpdated,
    StreamingUpdate,
    Summary,
)
from greenroom.protocol.state import SessionState

SUMMARY = Summary(
    session="s-1",
    project="p",
    name="n",
    status="idle",
    loading=False,
    message_count=0,
    last_activity=1.0,
    preview=None,
)


def events(*datas: EventData) -> list[Event]:
    return [Event(session="s-1", project="p", seq=i + 1, data=d) for i, d in enumerate(datas)]


def test_a_turn_streams_commits_and_ends() -> None:
    state = SessionState.from_summary(SUMMARY)
    for e in events(
        SessionCreated(summary=SUMMARY),
        MessageAdded(index=0, message=Message(role="user", content="hi")),
        LoadingChanged(loading=True),
        StreamingUpdate(offset=0, delta="Hel"),
        StreamingUpdate(offset=3, delta="lo"),
    ):
        state.apply(e)
    assert state.status == "running" and state.loading
    assert state.summary().preview == "Hello"
    assert state.partial_message() == Message(role="assistant", content="Hello", stopped=True)
    state.apply(
        Event(
            session="s-1",
            project="p",
            seq=6,
            data=MessageAdded(index=1, message=Message(role="assistant", content="Hello")),
        )
    )
    state.apply(
        Event(
            session="s-1",
            project="p",
            seq=7,
            data=LoadingChanged(loading=False, reason="completed"),
        )
    )
    assert state.streaming is None and state.status == "idle" and state.seq == 7
    assert [m.content for m in state.messages] == ["hi", "Hello"]


def test_failed_and_interrupted_turns_set_their_status() -> None:
    state = SessionState.from_summary(SUMMARY)
    state.apply(events(LoadingChanged(loading=False, reason="failed", error="auth: bad key"))[0])
    assert (state.status, state.error) == ("failed", "auth: bad key")
    state.apply(events(LoadingChanged(loading=False, reason="interrupted"))[0])
    assert state.status == "interrupted"


def test_a_summary_with_fewer_messages_clears_them() -> None:
    state = SessionState.from_summary(SUMMARY)
    state.apply(events(MessageAdded(index=0, message=Message(role="user", content="a")))[0])
    state.apply(events(SessionUpdated(summary=SUMMARY))[0])  # newChat: messageCount 0
    assert state.messages == []


@given(st.lists(st.text(max_size=20), max_size=30), st.integers(0, 10))
def test_streaming_deltas_rebuild_the_text_even_when_replayed(
    deltas: list[str], rewind: int
) -> None:
    state = SessionState.from_summary(SUMMARY)
    offset = 0
    applied: list[Event] = []
    for seq, delta in enumerate(deltas, start=1):
        applied.append(
            Event(
                session="s-1",
                project="p",
                seq=seq,
                data=StreamingUpdate(offset=offset, delta=delta),
            )
        )
        offset += len(delta)
    for e in applied:
        state.apply(e)
    # Replaying a suffix (as a resubscribing client may) changes nothing.
    for e in applied[max(0, len(applied) - rewind) :]:
        state.apply(e)
    expected = "".join(deltas)
    assert (state.streaming.text if state.streaming else "") == expected


def test_the_mirror_follows_created_and_deleted() -> None:
    from greenroom.protocol.events import SessionDeleted

    mirror = Mirror()
    for e in events(SessionCreated(summary=SUMMARY), StreamingUpdate(offset=0, delta="x")):
        mirror.apply(e)
    copy = copy_state(mirror.sessions["s-1"])
    assert copy.seq == 2 and copy.partial_message() is not None
    copy.messages.append(Message(role="user", content="private"))
    assert mirror.sessions["s-1"].messages == []  # a load is a copy
    mirror.apply(Event(session="s-1", project="p", seq=3, data=SessionDeleted()))
    assert "s-1" not in mirror.sessions
