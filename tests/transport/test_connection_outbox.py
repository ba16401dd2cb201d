"""A connection's outbox: byte bound, merging while backed up, no repeated seq."""

from __future__ import annotations

import trio
import trio.testing

from greenroom.protocol.chat import Message
from greenroom.protocol.codec import Reply
from greenroom.protocol.events import (
    Event,
    EventData,
    LoadingChanged,
    MessageAdded,
    Notification,
    PartialToolCall,
    SessionDeleted,
    StreamingUpdate,
)
from greenroom.transport.outbox import Outbox, estimate


def event(seq: int, data: EventData, session: str = "s-1") -> Event:
    return Event(session=session, project="p", seq=seq, data=data)


def delta(seq: int, offset: int, text: str, session: str = "s-1") -> Event:
    return event(seq, StreamingUpdate(offset=offset, delta=text), session)


def test_waiting_deltas_of_a_session_merge_into_one() -> None:
    outbox = Outbox(limit=1 << 20)
    calls = (PartialToolCall(index=0, id="c", name="f", arguments="{}"),)
    outbox.put_event(delta(1, 0, "Hel"))
    outbox.put_event(delta(2, 0, "other", session="s-2"))
    outbox.put_event(delta(2, 3, "lo "))
    outbox.put_event(event(3, StreamingUpdate(offset=6, delta="you", tool_calls=calls)))
    assert len(outbox) == 2 and outbox.counters.merged_deltas == 2
    first, second = outbox.take(1 << 20)
    assert first == event(3, StreamingUpdate(offset=0, delta="Hello you", tool_calls=calls))
    assert second == delta(2, 0, "other", session="s-2")


def test_below_merge_above_events_queue_as_they_are_and_merge_past_it() -> None:
    first, second = delta(1, 0, "Hel"), delta(2, 3, "lo")
    outbox = Outbox(limit=1 << 20, merge_above=estimate(first) + estimate(second))
    outbox.put_events([first, second])
    assert len(outbox) == 2 and outbox.counters.merged_deltas == 0
    outbox.put_event(delta(3, 5, " y"))  # past the mark: the writer is behind
    outbox.put_event(delta(4, 7, "ou"))
    taken = outbox.take(1 << 20)
    assert taken[0] is first  # the very event, so its shared encoding is used
    assert taken[1:] == [delta(2, 3, "lo"), delta(4, 5, " you")]
    assert outbox.counters.merged_deltas == 1


def test_a_delta_taken_by_the_writer_is_not_merged_into() -> None:
    outbox = Outbox(limit=1 << 20)
    outbox.put_event(delta(1, 0, "a"))
    assert outbox.take(1 << 20) == [delta(1, 0, "a")]
    outbox.put_event(delta(2, 1, "b"))
    assert outbox.take(1 << 20) == [delta(2, 1, "b")]
    assert outbox.counters.merged_deltas == 0


def test_deltas_do_not_merge_across_another_event_or_a_gap() -> None:
    outbox = Outbox(limit=1 << 20)
    outbox.put_event(delta(1, 0, "a"))
    message = Message(role="assistant", content="a")
    outbox.put_event(event(2, MessageAdded(index=1, message=message)))
    outbox.put_event(delta(3, 0, "b"))
    outbox.put_event(delta(4, 5, "c"))  # not contiguous: a new partial message, say
    assert len(outbox) == 4 and outbox.counters.merged_deltas == 0


def test_a_live_event_already_replayed_is_not_repeated() -> None:
    outbox = Outbox(limit=1 << 20)
    outbox.put_event(event(5, LoadingChanged(loading=True)))  # sent before the subscribe
    outbox.put(Reply(re=1, result={"seq": 7}))
    replay = [event(5, LoadingChanged(loading=True)), delta(6, 0, "a"), delta(7, 1, "b")]
    outbox.put_replay("s-1", replay)
    outbox.put_event(delta(6, 0, "a"))  # was still in the runtime subscription
    outbox.put_event(delta(7, 1, "b"))
    outbox.put_event(delta(8, 2, "c"))
    items = outbox.take(1 << 20)
    seqs = [getattr(item, "seq", None) for item in items]
    # The lifecycle event repeats with its seq; live seq 8 does not merge into the replay.
    assert seqs == [5, None, 5, 6, 7, 8]
    assert items[2:] == [*replay, delta(8, 2, "c")]


def test_events_of_no_session_and_notifications_always_pass() -> None:
    outbox = Outbox(limit=1 << 20)
    note = Event(
        session=None,
        project="p",
        seq=None,
        data=Notification(kind="completed", title="t", body="b", session="s-1", project="p"),
    )
    outbox.put_event(note)
    outbox.put_event(note)
    assert len(outbox) == 2


def test_a_deleted_session_is_forgotten() -> None:
    outbox = Outbox(limit=1 << 20)
    outbox.put_event(delta(1, 0, "a"))
    outbox.put_event(event(2, SessionDeleted()))
    outbox.put_event(delta(1, 0, "new session, same id"))
    assert len(outbox) == 3


def test_live_events_past_the_limit_overflow_replies_do_not() -> None:
    outbox = Outbox(limit=1000)
    outbox.put(Reply(re=1, result={"sessions": [{}] * 100}))  # big, asked for
    assert outbox.size > 1000 and not outbox.overflowed
    for seq in range(1, 100):
        outbox.put_event(event(seq, LoadingChanged(loading=seq % 2 == 0)))
        if outbox.overflowed:
            break
    assert outbox.overflowed and seq < 10
    outbox.close()
    assert not outbox.overflowed and len(outbox) == 0


def test_a_single_item_never_overflows() -> None:
    outbox = Outbox(limit=10)
    outbox.put_event(delta(1, 0, "x" * 100))
    assert not outbox.overflowed
    outbox.put_event(delta(2, 100, "y"))  # merged: still one item
    assert not outbox.overflowed


def test_take_stops_at_the_budget_but_takes_at_least_one() -> None:
    outbox = Outbox(limit=1 << 20)
    for seq in range(1, 11):
        outbox.put_event(event(seq, LoadingChanged(loading=True)))
    size = estimate(event(1, LoadingChanged(loading=True)))
    assert len(outbox.take(3 * size)) == 3
    assert len(outbox.take(1)) == 1
    assert len(outbox.take(1 << 20)) == 6
    assert outbox.size == 0


async def test_wait_wakes_on_put_and_on_close() -> None:
    outbox = Outbox(limit=1 << 20)
    results: list[bool] = []

    async def writer() -> None:
        results.append(await outbox.wait())
        outbox.take(1 << 20)
        results.append(await outbox.wait())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.testing.wait_all_tasks_blocked()
            outbox.put_event(delta(1, 0, "a"))
            await trio.testing.wait_all_tasks_blocked()
            outbox.close()
    assert results == [True, False]


async def test_wait_room_waits_until_the_writer_takes() -> None:
    outbox = Outbox(limit=500)
    outbox.put(Reply(re=1, result={"sessions": [{}] * 10}))
    done = trio.Event()

    async def commands() -> None:
        await outbox.wait_room()
        done.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(commands)
            await trio.testing.wait_all_tasks_blocked()
            assert not done.is_set()
            outbox.take(1 << 20)
            await done.wait()
