from __future__ import annotations

import trio
import trio.testing

from greenroom.actors.bus import EventBus
from greenroom.actors.events import Event, SessionDeleted, StreamingUpdate
from greenroom.actors.mailbox import Mailbox


def event(seq: int, session: str = "s-1") -> Event:
    return Event(session=session, project="p", seq=seq, data=StreamingUpdate(offset=seq, delta="x"))


async def test_attached_actors_get_every_event_before_subscriptions() -> None:
    bus = EventBus()
    box = Mailbox[Event]("mirror", capacity=10)
    bus.attach(box.ref)
    subscription = bus.subscribe("client", capacity=10)
    await bus.publish(event(1))
    assert box.statistics().queued == 1
    assert subscription.receive_nowait().seq == 1


async def test_a_full_subscription_is_closed_and_never_stalls_the_publisher() -> None:
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


async def test_replay_gives_what_came_after_since_or_none_when_it_is_gone() -> None:
    bus = EventBus(retain=3)
    for seq in range(1, 6):
        await bus.publish(event(seq))
    assert bus.replay("s-1", 3) is not None
    assert [e.seq for e in bus.replay("s-1", 3) or ()] == [4, 5]
    assert [e.seq for e in bus.replay("s-1", 2) or ()] == [3, 4, 5]
    assert bus.replay("s-1", 1) is None  # seq 2 is no longer retained
    assert bus.replay("s-1", 5) == ()
    assert bus.replay("s-other", 0) == ()
    await bus.publish(Event(session="s-1", project="p", seq=6, data=SessionDeleted()))
    assert bus.replay("s-1", 0) == ()
