"""Ordered shutdown: reverse start order, graceful stops, timeouts, outer cancellation."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from greenroom.supervisor import ChildSpec, RestartInfo, Supervisor, open_supervisor
from tests.supervisor.probe import Probe, probes

Clock = trio.testing.MockClock


async def test_shutdown_in_reverse_order_gracefully(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        log, (a, b, c) = probes("a", "b", "c")
        async with open_supervisor([p.spec() for p in (a, b, c)]):
            del log[:]
        assert log == [
            "nudge c",
            "end c stopped",
            "nudge b",
            "end b stopped",
            "nudge a",
            "end a stopped",
        ]
        assert a.live == b.live == c.live == 0


async def test_child_ignoring_stop_is_cancelled_after_its_shutdown_timeout(
    autojump_clock: Clock,
) -> None:
    with trio.fail_after(60):
        log: list[str] = []
        a = Probe("a", log=log)
        stubborn = Probe("b", log=log, honours_stop=False)
        plain = Probe("c", log=log)
        supervisor = Supervisor(
            [a.spec(), stubborn.spec(shutdown=2.0), plain.spec(with_stop=False, shutdown=9.0)]
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            del log[:]
            closed_at = trio.current_time()
            await supervisor.aclose()
        assert log == [
            "end c cancelled",  # no stop nudge: cancelled at once
            "nudge b",
            "end b cancelled",
            "nudge a",
            "end a stopped",
        ]
        assert plain.end_times == [closed_at]
        assert stubborn.end_times == [closed_at + 2.0]
        assert a.end_times == [closed_at + 2.0]


async def test_outer_cancellation_still_stops_in_order(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        log: list[str] = []
        a = Probe("a", log=log)
        stubborn = Probe("b", log=log, honours_stop=False)
        c = Probe("c", log=log)
        supervisor = Supervisor([a.spec(), stubborn.spec(shutdown=3.0), c.spec()])
        with trio.CancelScope() as outer:
            async with trio.open_nursery() as nursery:
                await nursery.start(supervisor.run)
                del log[:]
                cancelled_at = trio.current_time()
                outer.cancel()
        assert outer.cancelled_caught
        assert log == [
            "nudge c",
            "end c stopped",
            "nudge b",
            "end b cancelled",
            "nudge a",
            "end a stopped",
        ]
        assert stubborn.end_times == [cancelled_at + 3.0]
        assert trio.current_time() == cancelled_at + 3.0
        assert a.live == stubborn.live == c.live == 0


async def test_run_lets_cancelled_propagate(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        _, (a,) = probes("a")
        with trio.move_on_after(1.0) as scope:
            await Supervisor([a.spec()]).run()
            pytest.fail("run() returned although it was cancelled")
        assert scope.cancelled_caught
        assert a.log == ["start a", "nudge a", "end a stopped"]


async def test_cancelled_while_starting_stops_the_children_already_started(
    autojump_clock: Clock,
) -> None:
    with trio.fail_after(60):
        log, (a,) = probes("a")

        async def never_ready(
            restart: RestartInfo | None,
            *,
            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
        ) -> None:
            try:
                await trio.sleep_forever()
            finally:
                log.append("end slow")

        supervisor = Supervisor([a.spec(), ChildSpec(id="slow", start=never_ready)])
        with trio.move_on_after(3.0) as scope:
            await supervisor.run()
        assert scope.cancelled_caught
        assert log == ["start a", "end slow", "nudge a", "end a stopped"]
        assert a.live == 0


async def test_error_in_the_block_still_stops_children_in_order(autojump_clock: Clock) -> None:
    with trio.fail_after(60):
        log, (a, b) = probes("a", "b")
        with pytest.RaisesGroup(pytest.RaisesExc(KeyError)):
            async with open_supervisor([a.spec(), b.spec()]):
                del log[:]
                raise KeyError("oops")
        assert log == ["nudge b", "end b stopped", "nudge a", "end a stopped"]
