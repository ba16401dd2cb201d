"""The dynamic supervisor: children added and removed at run time, intensity per child."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from greenroom.supervisor import (
    ChildExists,
    ChildSpec,
    DynamicSupervisor,
    Intensity,
    NoSuchChild,
    Restart,
    RestartInfo,
    open_dynamic_supervisor,
)
from greenroom.supervisor.child import TRACEBACK_BURST, TracebackBudget
from tests.supervisor.probe import Probe

Clock = trio.testing.MockClock


async def test_start_child_waits_until_started(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        log: list[str] = []
        a, b = Probe("a", log=log), Probe("b", log=log)
        async with open_dynamic_supervisor() as supervisor:
            assert supervisor.which_children() == []
            assert await supervisor.start_child(a.spec())
            assert a.live == 1
            assert await supervisor.start_child(b.spec())
            assert supervisor.which_children() == ["a", "b"]
            stats = supervisor.statistics()
            assert (stats.children, stats.running, stats.restarts) == (2, 2, 0)
        assert a.live == b.live == 0
        # Nudged in reverse start order, then they end together, in whatever order.
        assert log[-4:-2] == ["nudge b", "nudge a"]
        assert sorted(log[-2:]) == ["end a stopped", "end b stopped"]


async def test_duplicate_and_unknown_ids(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        a = Probe("a")
        async with open_dynamic_supervisor() as supervisor:
            await supervisor.start_child(a.spec())
            with pytest.raises(ChildExists):
                await supervisor.start_child(Probe("a").spec())
            with pytest.raises(NoSuchChild):
                await supervisor.terminate_child("nope")
            assert a.starts == 1


async def test_terminate_child_stops_it_for_good(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        a, b = Probe("a"), Probe("b")
        async with open_dynamic_supervisor() as supervisor:
            await supervisor.start_child(a.spec())
            await supervisor.start_child(b.spec())
            await supervisor.terminate_child("a")
            assert a.live == 0
            assert a.log == ["start a", "nudge a", "end a stopped"]
            assert supervisor.which_children() == ["b"]
            await trio.sleep(30)
            assert a.starts == 1
            with pytest.raises(NoSuchChild):
                await supervisor.terminate_child("a")
            # The id is free again.
            assert await supervisor.start_child(Probe("a").spec())


async def test_terminate_child_cancels_a_stubborn_child_after_its_timeout(
    autojump_clock: Clock,
) -> None:
    with trio.fail_after(60):
        stubborn = Probe("a", honours_stop=False)
        async with open_dynamic_supervisor() as supervisor:
            await supervisor.start_child(stubborn.spec(shutdown=4.0))
            asked_at = trio.current_time()
            await supervisor.terminate_child("a")
            assert stubborn.end_times == [asked_at + 4.0]
            assert stubborn.log[-1] == "end a cancelled"


async def test_a_child_past_its_intensity_is_given_up_alone(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        restarts: list[tuple[str, RestartInfo]] = []
        given_up: list[tuple[str, str]] = []

        async def on_restart(child_id: str, info: RestartInfo) -> None:
            restarts.append((child_id, info))

        async def on_give_up(child_id: str, reason: str) -> None:
            given_up.append((child_id, reason))

        a, b = Probe("a"), Probe("b")
        async with open_dynamic_supervisor(
            intensity=Intensity(max_restarts=2, period=5.0),
            on_restart=on_restart,
            on_give_up=on_give_up,
        ) as supervisor:
            await supervisor.start_child(a.spec(restart=Restart.TRANSIENT))
            await supervisor.start_child(b.spec(restart=Restart.TRANSIENT))
            b.crash()  # b's crash does not count against a
            await b.wait_starts(2)
            for started in (2, 3):
                a.crash()
                await a.wait_starts(started)
            a.crash()
            await a.wait_until(lambda p: p.live == 0)
            await trio.testing.wait_all_tasks_blocked()
            assert given_up == [("a", "ValueError: a crashed")]
            assert supervisor.which_children() == ["b"]
            assert restarts == [
                ("b", RestartInfo(reason="ValueError: b crashed", restarts=1)),
                ("a", RestartInfo(reason="ValueError: a crashed", restarts=1)),
                ("a", RestartInfo(reason="ValueError: a crashed", restarts=2)),
            ]
            await trio.sleep(30)
            assert (a.starts, b.starts, b.live) == (3, 2, 1)
            stats = supervisor.statistics()
            assert (stats.given_up, stats.restarts, stats.children) == (1, 3, 1)


async def test_transient_child_removed_after_normal_exit(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        a = Probe("a")
        async with open_dynamic_supervisor() as supervisor:
            await supervisor.start_child(a.spec(restart=Restart.TRANSIENT))
            a.crash()
            await a.wait_starts(2)
            a.finish()
            await trio.sleep(30)
            assert a.starts == 2
            assert supervisor.which_children() == []


async def test_permanent_and_temporary_children(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        permanent, temporary = Probe("p"), Probe("t")
        async with open_dynamic_supervisor() as supervisor:
            await supervisor.start_child(permanent.spec(restart=Restart.PERMANENT))
            await supervisor.start_child(temporary.spec(restart=Restart.TEMPORARY))
            permanent.finish()
            temporary.crash()
            await permanent.wait_starts(2)
            await trio.sleep(30)
            assert permanent.infos[-1] == RestartInfo(reason="exited normally", restarts=1)
            assert temporary.starts == 1
            assert supervisor.which_children() == ["p"]


async def test_failed_first_start_is_restarted_before_start_child_returns(
    autojump_clock: Clock,
) -> None:
    with trio.fail_after(60):
        a = Probe("a", fail_starts=2)
        async with open_dynamic_supervisor() as supervisor:
            assert await supervisor.start_child(a.spec(restart=Restart.TRANSIENT))
            assert a.live == 1
            assert a.infos == [
                None,
                RestartInfo(reason="RuntimeError: a failed to start", restarts=1),
                RestartInfo(reason="RuntimeError: a failed to start", restarts=2),
            ]


async def test_child_that_never_starts_is_given_up(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        given_up: list[tuple[str, str]] = []

        async def on_give_up(child_id: str, reason: str) -> None:
            given_up.append((child_id, reason))

        a = Probe("a", fail_starts=100)
        async with open_dynamic_supervisor(on_give_up=on_give_up) as supervisor:
            assert not await supervisor.start_child(a.spec(restart=Restart.TRANSIENT))
            assert a.starts == 4  # the first start and three restarts
            assert given_up == [("a", "RuntimeError: a failed to start")]
            assert supervisor.which_children() == []
            # A temporary child that fails is not restarted at all.
            assert not await supervisor.start_child(
                Probe("t", fail_starts=1).spec(restart=Restart.TEMPORARY)
            )


async def test_terminate_during_backoff_cancels_the_restart(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        a = Probe("a")
        async with open_dynamic_supervisor() as supervisor:
            await supervisor.start_child(a.spec())
            a.crash()
            await a.wait_until(lambda p: p.live == 0)
            await supervisor.terminate_child("a")  # the restart is still in its backoff
            await trio.sleep(30)
            assert a.starts == 1


async def test_outer_cancellation_stops_children_gracefully(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        log: list[str] = []
        a = Probe("a", log=log)
        stubborn = Probe("b", log=log, honours_stop=False)
        c = Probe("c", log=log)
        supervisor = DynamicSupervisor()
        with trio.CancelScope() as outer:
            async with trio.open_nursery() as nursery:
                await nursery.start(supervisor.run)
                await supervisor.start_child(a.spec())
                await supervisor.start_child(stubborn.spec(shutdown=3.0))
                await supervisor.start_child(c.spec(shutdown=1.0))
                del log[:]
                cancelled_at = trio.current_time()
                outer.cancel()
        assert outer.cancelled_caught
        # Nudged in reverse start order; each has its own timeout, counted from the nudge.
        assert log[:3] == ["nudge c", "nudge b", "nudge a"]
        assert sorted(log[3:]) == ["end a stopped", "end b cancelled", "end c stopped"]
        assert stubborn.end_times == [cancelled_at + 3.0]
        assert a.end_times == c.end_times == [cancelled_at]
        assert a.live == stubborn.live == c.live == 0
        with pytest.raises(trio.ClosedResourceError):
            await supervisor.start_child(Probe("d").spec())
        assert supervisor.which_children() == []


async def test_cancelled_start_child_forgets_the_child(autojump_clock: Clock) -> None:
    with trio.fail_after(60):

        async def never_ready(
            restart: RestartInfo | None,
            *,
            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
        ) -> None:
            await trio.sleep_forever()

        async with open_dynamic_supervisor() as supervisor:
            with trio.move_on_after(1.0) as scope:
                await supervisor.start_child(ChildSpec(id="slow", start=never_ready))
            assert scope.cancelled_caught
            assert supervisor.which_children() == []


def test_the_traceback_budget_allows_a_burst_then_a_steady_rate() -> None:
    budget = TracebackBudget(burst=3, per_second=2.0)
    assert [budget.allow(0.0) for _ in range(5)] == [True, True, True, False, False]
    assert budget.left_out == 2
    assert budget.allow(0.5)  # one token back after half a second
    assert not budget.allow(0.5)
    assert [budget.allow(10.0) for _ in range(4)] == [True, True, True, False]  # never > burst


async def test_a_storm_of_crashes_logs_a_few_tracebacks_and_every_crash(
    autojump_clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async def crash_once(
        restart: RestartInfo | None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        await trio.sleep(1)
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="greenroom.supervisor"), trio.fail_after(60):
        async with open_dynamic_supervisor() as supervisor:
            for n in range(30):
                spec = ChildSpec(id=f"c{n}", start=crash_once, restart=Restart.TEMPORARY)
                await supervisor.start_child(spec)
            await trio.sleep(2)  # all thirty crash at the same moment
    crashes = [r for r in caplog.records if "crashed: ValueError: boom" in r.getMessage()]
    assert len(crashes) == 30  # every crash is logged...
    with_traceback = [r for r in crashes if r.exc_info]
    assert len(with_traceback) == TRACEBACK_BURST  # ...but only a burst of them in full
