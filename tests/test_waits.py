"""greenroom.waits: no checkpoint when there is nothing to wait for, trio's wait otherwise.

Whether a call yielded to the scheduler is seen by a task started just before it: it runs
only if the caller yields."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from greenroom.waits import after, send


async def yielded(call: Callable[[], Awaitable[None]]) -> bool:
    """Whether ``call`` let another task run."""
    ran: list[bool] = []

    async def other() -> None:
        ran.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await call()
        return bool(ran)


async def test_after_a_set_event_goes_on_without_a_yield() -> None:
    event = trio.Event()
    event.set()
    assert not await yielded(lambda: after(event))
    wait = event.wait  # what trio's own does, for comparison
    assert await yielded(wait)


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


async def test_send_with_room_goes_on_without_a_yield_and_waits_when_full() -> None:
    sender, receiver = trio.open_memory_channel[int](1)
    assert not await yielded(lambda: send(sender, 1))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, sender, 2)  # full: waits until 1 is taken
        await trio.testing.wait_all_tasks_blocked()
        assert receiver.receive_nowait() == 1
    assert receiver.receive_nowait() == 2


@pytest.mark.parametrize("which", ["after", "send"])
async def test_a_cancelled_caller_is_told_at_once_and_sends_nothing(which: str) -> None:
    event = trio.Event()
    event.set()
    sender, receiver = trio.open_memory_channel[int](1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await (after(event) if which == "after" else send(sender, 1))
    assert scope.cancelled_caught
    with pytest.raises(trio.WouldBlock):
        receiver.receive_nowait()
