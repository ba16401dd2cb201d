"""greenroom.waits: no checkpoint when there is nothing to wait for, trio's wait otherwise.

Whether a call checkpointed is seen by making it in a cancelled scope: a checkpoint raises
Cancelled there, and nothing else does."""

from __future__ import annotations

import trio
import trio.lowlevel
import trio.testing

from greenroom.waits import after, send


async def test_after_a_set_event_goes_on_without_a_checkpoint() -> None:
    event = trio.Event()
    event.set()
    with trio.CancelScope() as scope:
        scope.cancel()
        await after(event)
    assert not scope.cancelled_caught


async def test_after_an_unset_event_waits_for_it() -> None:
    event = trio.Event()
    done: list[bool] = []

    async def waiter() -> None:
        await after(event)
        done.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert not done
        event.set()
    assert done
    with trio.CancelScope() as scope:  # and it is a checkpoint when it waits
        scope.cancel()
        await after(trio.Event())
    assert scope.cancelled_caught


async def test_send_with_room_goes_on_without_a_checkpoint_and_waits_when_full() -> None:
    sender, receiver = trio.open_memory_channel[int](1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await send(sender, 1)
    assert not scope.cancelled_caught
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, sender, 2)  # full: waits until 1 is taken
        await trio.testing.wait_all_tasks_blocked()
        assert receiver.receive_nowait() == 1
    assert receiver.receive_nowait() == 2
