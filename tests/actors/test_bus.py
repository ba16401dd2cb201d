from __future__ import annotations

import trio
import trio.testing

from greenroom.actors.bus import EventBus
from greenroom.actors.mailbox import Mailbox
from greenroom.protocol.chat import Message
from greenroom.protocol.events import (
    Event,
    LoadingChanged,
    MessageAdded,
    Notification,
    PartialToolCall,
    SessionDeleted,
    StreamingUpdate,
)


def event(seq: int, session: str = "s-1") -> Event:
    return Event(session=session, project="p", seq=seq, data=StreamingUpdate(offset=seq, delta="x"))


def delta(seq: int, offset: int, text: str) -> Event:
    data = StreamingUpdate(offset=offset, delta=text)
    return Event(session="s-1", project="p", seq=seq, data=data)


def added(seq: int) -> Event:
    message = Message(role="user", content=f"m{seq}")
    return Event(session="s-1", project="p", seq=seq, data=MessageAdded(index=seq, message=message))


async def test_attached_actors_get_every_event_before_subscriptions() -> None:
    bus = EventBus()
    box = Mailbox[Event]("mirror", capacity=10)
    bus.attach(box.ref)
    subscription = bus.subscribe("client", capacity=10)
    await bus.publish(event(1))
    assert box.statistics().queued == 1
    assert subscription.receive_nowait().seq == 1


async def test_a_full_subscription_is_closed_and_never_stalls_the_publisher(
    autojump_clock: trio.abc.Clock,
) -> None:
    bus = EventBus()
    slow = bus.subscribe("slow", capacity=2)
    fast = bus.subscribe("fast", capacity=100)
    with trio.fail_after(1):
        for seq in range(1, 6):
            await bus.publish(event(seq))
    assert slow.overflowed and slow.closed
    assert [slow.receive_nowait().seq for _ in range(2)] == [1, 2]
    assert fast.queued() == 5 and not fast.overflowed
    assert bus.statistics().overflowed == 1
    assert bus.statistics().subscriptions == 1


async def test_a_full_attached_mailbox_makes_publish_wait(autojump_clock: trio.abc.Clock) -> None:
    bus = EventBus()
    box = Mailbox[Event]("mirror", capacity=1)
    bus.attach(box.ref)
    await bus.publish(event(1))
    with trio.move_on_after(5) as scope:
        await bus.publish(event(2))
    assert scope.cancelled_caught  # backpressure, not loss


async def test_subscription_filters() -> None:
    bus = EventBus()
    only_deletes = bus.subscribe(
        "d", capacity=10, accepts=lambda e: isinstance(e.data, SessionDeleted)
    )
    await bus.publish(event(1))
    await bus.publish(Event(session="s-1", project="p", seq=2, data=SessionDeleted()))
    assert only_deletes.queued() == 1
    assert only_deletes.receive_nowait().seq == 2


async def test_an_indexed_subscription_gets_lifecycle_events_and_what_it_watches() -> None:
    bus = EventBus()
    one = bus.subscribe("one", capacity=100, indexed=True)
    two = bus.subscribe("two", capacity=100, indexed=True)
    loading = Event(session="s-2", project="p", seq=1, data=LoadingChanged(loading=True))
    bus.watch(one, "s-1")
    bus.watch(one, "s-1")  # watching twice is watching once
    bus.watch(two, "s-2")
    for published in (event(1), loading, event(2, "s-2"), event(3, "s-3")):
        await bus.publish(published)
    assert one.take() == [event(1), loading]
    assert two.take() == [loading, event(2, "s-2")]
    note = Event(
        session=None,
        project=None,
        seq=None,
        data=Notification(kind="completed", title="t", body="b", session="s-1", project="p"),
    )
    assert one.offer(note)  # offered directly (by the notifier): taken as it is
    bus.unwatch(one, "s-1")
    await bus.publish(event(4))
    assert one.take() == [note]
    two.close()  # a closed subscription leaves the index: nothing is offered to it
    await bus.publish(event(5, "s-2"))
    assert two.take() == [] and bus.statistics().subscriptions == 1


async def test_replay_gives_what_came_after_since_or_none_when_it_is_gone() -> None:
    bus = EventBus(retain=3)
    for seq in range(1, 6):
        await bus.publish(added(seq))
    assert bus.replay("s-1", 3) is not None
    assert [e.seq for e in bus.replay("s-1", 3) or ()] == [4, 5]
    assert [e.seq for e in bus.replay("s-1", 2) or ()] == [3, 4, 5]
    assert bus.replay("s-1", 1) is None  # seq 2 is no longer retained
    assert bus.replay("s-1", 5) == ()
    assert bus.replay("s-other", 0) == ()
    await bus.publish(Event(session="s-1", project="p", seq=6, data=SessionDeleted()))
    assert bus.replay("s-1", 0) == ()


async def test_consecutive_deltas_are_retained_and_replayed_as_one_merged_update() -> None:
    bus = EventBus(retain=3)
    await bus.publish(added(1))
    calls = (PartialToolCall(index=0, id="c", name="f", arguments="{"),)
    for seq, (offset, text) in enumerate([(0, "He"), (2, "ll"), (4, "o")], start=2):
        await bus.publish(delta(seq, offset, text))
    last = StreamingUpdate(offset=5, delta=" you", tool_calls=calls)
    await bus.publish(Event(session="s-1", project="p", seq=5, data=last))
    await bus.publish(delta(6, 0, "new message"))  # not contiguous: a run of its own
    await bus.publish(added(7))
    # Three entries hold all seven events: the first message, a run of four deltas, ...
    assert bus.replay("s-1", 0) is None  # ... but with retain=3 the first message is gone
    replayed = bus.replay("s-1", 1)
    assert replayed is not None
    assert [e.seq for e in replayed] == [5, 6, 7]
    assert replayed[0].data == StreamingUpdate(offset=0, delta="Hello you", tool_calls=calls)
    # From inside the run: the whole run again (rewriting what the client has changes nothing).
    inside = bus.replay("s-1", 3)
    assert inside is not None and [e.seq for e in inside] == [5, 6, 7]
    assert inside[0].data == replayed[0].data
    assert bus.latest_seq("s-1") == 7


async def test_a_lone_delta_is_replayed_as_it_was_published() -> None:
    bus = EventBus()
    first = delta(1, 0, "a")
    await bus.publish(first)
    replayed = bus.replay("s-1", 0)
    assert replayed is not None and replayed[0] is first


async def test_a_long_run_keeps_few_objects() -> None:
    bus = EventBus()
    text = [f"w{n} " for n in range(1000)]
    offset = 0
    for seq, piece in enumerate(text, start=1):
        await bus.publish(delta(seq, offset, piece))
        offset += len(piece)
    run = bus._logs["s-1"][0]
    assert len(bus._logs["s-1"]) == 1
    assert run.text.pieces < 64  # type: ignore[union-attr]
    replayed = bus.replay("s-1", 0)
    assert replayed is not None and replayed[0].data.delta == "".join(text)  # type: ignore[union-attr]


async def test_backfill_puts_older_events_before_the_retained_ones_once() -> None:
    bus = EventBus()
    for seq in (5, 6):
        bus.release_nowait(added(seq))
    assert bus.replay("s-1", 2) is None  # 3 and 4 were never seen here
    # Read back from elsewhere: overlapping what is retained, which is kept as it is.
    bus.backfill("s-1", [added(seq) for seq in range(1, 7)])
    replayed = bus.replay("s-1", 2)
    assert replayed is not None
    assert [e.seq for e in replayed] == [3, 4, 5, 6]


async def test_events_of_another_node_are_not_waited_for_and_refused_ones_are_not(
    autojump_clock: trio.abc.Clock,
) -> None:
    bus = EventBus()
    box = Mailbox[Event]("journal", capacity=10)
    bus.set_gate(box.ref)
    await bus.publish(added(1))
    bus.release_nowait(added(7), published=False)  # another node's: settles nothing
    with trio.move_on_after(0.01) as waited:
        await bus.settled()
    assert waited.cancelled_caught
    bus.discard()  # the gate refused the one published here
    with trio.fail_after(1):
        await bus.settled()
