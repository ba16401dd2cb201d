"""The shared pacer: nobody wakes early or more than a tick late, and one timer serves many."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from greenroom.agent.pacing import Pacer, current_pacer


async def test_sleepers_wake_at_their_time_or_within_a_tick(
    autojump_clock: trio.abc.Clock,
) -> None:
    pacer = Pacer(tick=0.01)
    rng = random.Random(7)
    start = trio.current_time()
    dues = [start + rng.uniform(0, 1) for _ in range(300)]
    woke: list[tuple[float, float]] = []

    async def sleeper(due: float) -> None:
        await pacer.sleep_until(due)
        woke.append((due, trio.current_time()))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for due in dues:
                nursery.start_soon(sleeper, due)
    assert len(woke) == 300
    assert all(due <= at <= due + 0.01 for due, at in woke)
    assert pacer.timers <= 101  # one per tick of the second, not one per sleeper


async def test_a_cancelled_timekeeper_hands_over_to_the_others(
    autojump_clock: trio.abc.Clock,
) -> None:
    pacer = Pacer(tick=1.0)
    start = trio.current_time()
    woke: list[float] = []
    keeper = trio.CancelScope()

    async def first() -> None:  # the first of the tick: it keeps the timer
        with keeper:
            await pacer.sleep_until(start + 0.2)

    async def second() -> None:
        await pacer.sleep_until(start + 0.3)
        woke.append(trio.current_time() - start)

    with trio.fail_after(10):  # a parked sleeper nobody wakes would hang here
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            keeper.cancel()
    assert keeper.cancelled_caught
    assert woke == [pytest.approx(0.3)]
    assert pacer.timers == 2


async def test_a_due_time_already_past_is_a_checkpoint_only() -> None:
    pacer = Pacer()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await pacer.sleep_until(trio.current_time() - 1)
    assert pacer.timers == 0


async def test_one_pacer_per_run() -> None:
    assert current_pacer() is current_pacer()
