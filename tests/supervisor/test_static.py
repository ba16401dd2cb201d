"""The static supervisor: restart types, strategies, intensity, backoff, hooks, statistics."""

from __future__ import annotations

import logging
import random

import pytest
import trio
import trio.testing

from greenroom.supervisor import (
    Backoff,
    ChildExists,
    ChildSpec,
    Intensity,
    Restart,
    RestartInfo,
    Strategy,
    Supervisor,
    SupervisorGaveUp,
    open_supervisor,
)
from tests.supervisor.probe import probes

Clock = trio.testing.MockClock


def crashed(child_id: str, restarts: int) -> RestartInfo:
    return RestartInfo(reason=f"ValueError: {child_id} crashed", restarts=restarts)


async def test_permanent_child_restarted_after_return_and_after_crash(
    autojump_clock: Clock,
) -> None:
    with trio.fail_after(60):
        _, (a,) = probes("a")
        events: list[tuple[str, RestartInfo]] = []

        async def on_restart(child_id: str, info: RestartInfo) -> None:
            events.append((child_id, info))

        async with open_supervisor([a.spec()], on_restart=on_restart):
            a.finish()
            await a.wait_starts(2)
            a.crash()
            await a.wait_starts(3)
        expected = [RestartInfo(reason="exited normally", restarts=1), crashed("a", 2)]
        assert a.infos == [None, *expected]
        assert events == [("a", info) for info in expected]
        assert a.live == 0


async def test_transient_child_restarted_only_after_crash(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        _, (a, b) = probes("a", "b")
        async with open_supervisor([a.spec(restart=Restart.TRANSIENT), b.spec()]) as supervisor:
            a.crash()
            await a.wait_starts(2)
            a.finish()
            await trio.sleep(30)
            assert a.starts == 2
            assert a.infos == [None, crashed("a", 1)]
            assert supervisor.which_children() == ["b"]
            assert b.starts == 1


async def test_temporary_child_never_restarted(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        _, (a, b) = probes("a", "b")
        async with open_supervisor(
            [a.spec(restart=Restart.TEMPORARY), b.spec(restart=Restart.TEMPORARY)]
        ) as supervisor:
            a.crash()
            b.finish()
            await trio.sleep(30)
            assert (a.starts, b.starts) == (1, 1)
            assert supervisor.which_children() == []
            assert supervisor.statistics().restarts == 0


async def test_one_for_one_restarts_only_the_crashed_child(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        log, (a, b, c) = probes("a", "b", "c")
        async with open_supervisor([p.spec() for p in (a, b, c)]):
            b.crash()
            await b.wait_starts(2)
            await trio.testing.wait_all_tasks_blocked()
            assert log == ["start a", "start b", "start c", "end b crashed", "start b"]
            assert (a.starts, c.starts) == (1, 1)


async def test_one_for_all_stops_others_in_reverse_then_restarts_all_in_order(
    autojump_clock: Clock,
) -> None:
    with trio.fail_after(60):
        log, (a, b, c) = probes("a", "b", "c")
        async with open_supervisor([p.spec() for p in (a, b, c)], strategy=Strategy.ONE_FOR_ALL):
            del log[:]
            b.crash()
            await c.wait_starts(2)
            await trio.testing.wait_all_tasks_blocked()
            assert log == [
                "end b crashed",
                "nudge c",
                "end c stopped",
                "nudge a",
                "end a stopped",
                "start a",
                "start b",
                "start c",
            ]
            # Every restarted child is told why, with its own count.
            assert a.infos[-1] == c.infos[-1] == b.infos[-1] == crashed("b", 1)


async def test_one_for_all_drops_temporary_siblings(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        log, (a, b) = probes("a", "b")
        async with open_supervisor(
            [a.spec(), b.spec(restart=Restart.TEMPORARY)], strategy=Strategy.ONE_FOR_ALL
        ) as supervisor:
            a.crash()
            await a.wait_starts(2)
            await trio.testing.wait_all_tasks_blocked()
            assert b.starts == 1
            assert "end b stopped" in log
            assert supervisor.which_children() == ["a"]


async def test_rest_for_one_restarts_the_crashed_and_later_children(
    autojump_clock: Clock,
) -> None:
    with trio.fail_after(60):
        log, (a, b, c, d) = probes("a", "b", "c", "d")
        async with open_supervisor(
            [p.spec() for p in (a, b, c, d)], strategy=Strategy.REST_FOR_ONE
        ):
            del log[:]
            b.crash()
            await d.wait_starts(2)
            await trio.testing.wait_all_tasks_blocked()
            assert log == [
                "end b crashed",
                "nudge d",
                "end d stopped",
                "nudge c",
                "end c stopped",
                "start b",
                "start c",
                "start d",
            ]
            assert a.starts == 1


async def test_past_intensity_gives_up_and_stops_everything(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        log, (a, b) = probes("a", "b")
        supervisor = Supervisor([a.spec(), b.spec()], intensity=Intensity(max_restarts=3))
        with pytest.RaisesGroup(
            pytest.RaisesExc(
                SupervisorGaveUp,
                check=lambda e: (e.child_id, e.reason) == ("a", "ValueError: a crashed"),
            )
        ):
            async with trio.open_nursery() as nursery:
                await nursery.start(supervisor.run)
                for started in range(2, 5):
                    a.crash()
                    await a.wait_starts(started)
                a.crash()  # the fourth within the period
                await trio.sleep_forever()
        assert trio.current_time() < 5.0
        assert a.starts == 4
        assert log[-2:] == ["nudge b", "end b stopped"]
        assert a.live == b.live == 0


async def test_crashes_spread_wider_than_the_period_never_give_up(
    autojump_clock: Clock,
) -> None:
    with trio.fail_after(600):
        _, (a,) = probes("a")
        async with open_supervisor([a.spec()], intensity=Intensity(max_restarts=3, period=5.0)):
            for started in range(2, 22):
                await trio.sleep(2.0)  # at most three crashes in any five seconds
                a.crash()
                await a.wait_starts(started)
        assert a.starts == 21


async def test_backoff_delay_doubles_caps_and_resets(autojump_clock: Clock) -> None:
    with trio.fail_after(120):
        _, (a,) = probes("a")
        backoff = Backoff(initial=0.1, factor=2.0, maximum=0.5, jitter=0.5)
        expected_rng = random.Random(1234)
        async with open_supervisor(
            [a.spec()],
            intensity=Intensity(max_restarts=10, period=5.0),
            backoff=backoff,
            rng=random.Random(1234),
        ):
            delays = []
            for attempt in range(1, 6):
                crashed_at = trio.current_time()
                a.crash()
                await a.wait_starts(attempt + 1)
                delay = a.start_times[-1] - crashed_at
                assert delay == pytest.approx(backoff.delay(attempt, expected_rng))
                delays.append(delay)
            for attempt, delay in enumerate(delays, start=1):
                base = min(0.5, 0.1 * 2 ** (attempt - 1))
                assert base / 2 <= delay <= base
            # A quiet period as long as the intensity period: the attempts start again.
            await trio.sleep(5.0)
            crashed_at = trio.current_time()
            a.crash()
            await a.wait_starts(7)
            delay = a.start_times[-1] - crashed_at
            assert delay == pytest.approx(backoff.delay(1, expected_rng))
            assert delay <= 0.1


async def test_start_failure_counts_as_a_crash(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        log, (a, b) = probes("a", "b")
        a.fail_starts = 1
        async with open_supervisor([a.spec(restart=Restart.TRANSIENT), b.spec()]) as sup:
            await a.wait_starts(2)
            assert log == ["start a", "start b", "start a"]
            assert a.infos == [
                None,
                RestartInfo(reason="RuntimeError: a failed to start", restarts=1),
            ]
            assert sup.which_children() == ["a", "b"]


async def test_statistics(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        _, (a, b) = probes("a", "b")
        async with open_supervisor([a.spec(), b.spec()]) as supervisor:
            a.crash()
            await a.wait_starts(2)
            a.crash()
            await a.wait_starts(3)
            stats = supervisor.statistics()
        assert (stats.children, stats.running, stats.restarts) == (2, 2, 2)
        assert stats.child_restarts == {"a": 2, "b": 0}
        assert supervisor.statistics().running == 0


async def test_failing_restart_hook_is_logged_not_fatal(
    autojump_clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(60):
        _, (a,) = probes("a")

        async def on_restart(child_id: str, info: RestartInfo) -> None:
            raise KeyError(child_id)

        with caplog.at_level(logging.ERROR, logger="greenroom.supervisor"):
            async with open_supervisor([a.spec()], on_restart=on_restart):
                a.crash()
                await a.wait_starts(2)
        assert "hook on_restart failed" in caplog.text
        assert "child 'a' crashed: ValueError: a crashed" in caplog.text


async def test_duplicate_ids_and_reuse_are_refused(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        _, (a,) = probes("a")
        with pytest.raises(ChildExists):
            Supervisor([a.spec(), a.spec()])
        supervisor = Supervisor([a.spec()])
        await supervisor.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await supervisor.run()
        assert a.starts == 0


async def test_run_raises_gave_up_bare(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        starts: list[float] = []

        async def crasher(
            restart: RestartInfo | None,
            *,
            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
        ) -> None:
            starts.append(trio.current_time())
            task_status.started()
            raise ValueError("boom")

        supervisor = Supervisor(
            [ChildSpec(id="x", start=crasher)], intensity=Intensity(max_restarts=2)
        )
        with pytest.raises(SupervisorGaveUp, match="ValueError: boom") as info:
            await supervisor.run()
        assert info.value.child_id == "x"
        assert len(starts) == 3
        assert supervisor.statistics().running == 0
