"""greenroom.waits: no checkpoint when there is nothing to wait for, trio's wait otherwise.

Checkpoints are seen by trio.testing's own assertions, which count them on the task."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from greenroom.waits import acquire, after, send


async def test_after_a_set_event_goes_on_without_a_checkpoint() -> None:
    event = trio.Event()
    event.set()
    with trio.testing.assert_no_checkpoints():
        await after(event)
    with trio.testing.assert_checkpoints():  # what trio's own does, for comparison
        await event.wait()


async def test_after_an_unset_event_waits_for_it() -> None:
    event = trio.Event()
    done: list[bool] = []

    async def waiter() -> None:
        with trio.testing.assert_checkpoints():
            await after(event)
        done.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert not done
        event.set()
    assert done


async def test_send_with_room_goes_on_without_a_checkpoint_and_waits_when_full() -> None:
    sender, receiver = trio.open_memory_channel[int](1)
    with trio.testing.assert_no_checkpoints():
        await send(sender, 1)

    async def second() -> None:
        with trio.testing.assert_checkpoints():
            await send(sender, 2)  # full: waits until 1 is taken

    async with trio.open_nursery() as nursery:
        nursery.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()
        assert receiver.receive_nowait() == 1
    assert receiver.receive_nowait() == 2


async def test_acquire_with_a_token_goes_on_without_a_checkpoint_and_waits_without() -> None:
    room = trio.Semaphore(1)
    with trio.testing.assert_no_checkpoints():
        await acquire(room)
    assert room.value == 0

    async def second() -> None:
        with trio.testing.assert_checkpoints():
            await acquire(room)  # none left: waits until one is released

    async with trio.open_nursery() as nursery:
        nursery.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()
        assert room.value == 0
        room.release()
    assert room.value == 0  # the second took it


@pytest.mark.parametrize("which", ["after", "send", "acquire"])
async def test_a_cancelled_caller_is_told_at_once_and_takes_or_sends_nothing(which: str) -> None:
    event = trio.Event()
    event.set()
    sender, receiver = trio.open_memory_channel[int](1)
    room = trio.Semaphore(1)
    calls = {
        "after": lambda: after(event),
        "send": lambda: send(sender, 1),
        "acquire": lambda: acquire(room),
    }
    with trio.CancelScope() as scope:
        scope.cancel()
        await calls[which]()
    assert scope.cancelled_caught
    with pytest.raises(trio.WouldBlock):
        receiver.receive_nowait()
    assert room.value == 1
