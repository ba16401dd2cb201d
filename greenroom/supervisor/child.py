"""One supervised child: its record across restarts, and the runner of one incarnation.

Both :class:`~greenroom.supervisor.Supervisor` and
:class:`~greenroom.supervisor.DynamicSupervisor` run their children through :class:`ChildRun`,
so that readiness, crash reporting, graceful stop and cancellation behave the same in both.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import attrs
import trio

from greenroom.runlocal import PerRun
from greenroom.supervisor.intensity import RestartWindow
from greenroom.supervisor.spec import ChildSpec, RestartInfo

logger = logging.getLogger("greenroom.supervisor")

#: The ``RestartInfo.reason`` of a child that returned instead of raising.
NORMAL_EXIT = "exited normally"

#: Crash tracebacks logged in full: at most ``TRACEBACK_BURST`` at once, refilled at
#: ``TRACEBACKS_PER_SECOND``. Beyond that a crash is one line: formatting hundreds of
#: tracebacks (exception groups, nested) during a storm of crashes is what delayed the
#: restarts themselves.
TRACEBACK_BURST = 10
TRACEBACKS_PER_SECOND = 2.0

#: Seconds the shutdown budget allows, beyond the children's own ``shutdown`` timeouts, for
#: cancelled children to unwind (their ``finally`` blocks may still await a little).
CANCEL_GRACE = 1.0


def describe(exc: BaseException) -> str:
    """``"ExceptionType: message"``, the reason given for a crash.

    A crash inside a child's own nursery arrives wrapped in exception groups; the reason names
    what was raised, not the wrapping (several leaves are joined with ``"; "``).
    """
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(leaf) for leaf in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


async def run_hook(name: str, call: Callable[[], Awaitable[None]]) -> None:
    """Await a user hook; log what it raises instead of letting it take down the supervisor."""
    try:
        await call()
    except Exception:
        logger.exception("supervisor hook %s failed", name)


@attrs.define
class TracebackBudget:
    """A token bucket for crash tracebacks (see :data:`TRACEBACK_BURST`); one per trio run."""

    burst: int = TRACEBACK_BURST
    per_second: float = TRACEBACKS_PER_SECOND
    left_out: int = 0
    """Crashes logged without their traceback since the last one logged with it."""
    _tokens: float = attrs.field(init=False)
    _at: float | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self._tokens = float(self.burst)

    def allow(self, now: float) -> bool:
        """Whether a traceback may be logged now (it counts against the budget)."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.left_out += 1
        return False


traceback_budget: Final = PerRun("greenroom.tracebacks", TracebackBudget).get
"""The crash traceback budget of the current trio run."""


@attrs.frozen(kw_only=True)
class ChildExit:
    """What a run tells its supervisor's loop when it ended by itself (not stopped)."""

    run: ChildRun
    crashed: bool
    reason: str
    #: trio time of the exit, which the restart intensity and the backoff are measured from.
    time: float


@attrs.define(eq=False)
class Child:
    """One child across its restarts: its spec, its current run and its restart history."""

    spec: ChildSpec
    #: Restart intensity counted for this child alone (used by the dynamic supervisor).
    window: RestartWindow
    restarts: int = 0
    current: ChildRun | None = None
    #: Set once the child has first called ``started()``, or has been removed before that.
    settled: trio.Event = attrs.Factory(trio.Event)
    _attempt: int = 0
    _last_restart: float | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def running(self) -> bool:
        """Whether the current run has called ``started()`` and not ended."""
        run = self.current
        return run is not None and run.started and not run.done.is_set()

    def next_attempt(self, now: float, period: float) -> int:
        """The backoff attempt number of a restart at ``now``.

        It starts again from 1 once the child has had no restart for ``period`` seconds: a
        child that crashes once a day should not wait as if it crashed in a tight loop.
        """
        if self._last_restart is None or now - self._last_restart >= period:
            self._attempt = 0
        self._attempt += 1
        self._last_restart = now
        return self._attempt


@attrs.define(eq=False)
class _Readiness:
    """The ``task_status`` a child's start function gets: forwards ``started()`` and marks the
    run as started, which shields it from outer cancellation so that only its supervisor stops
    it, in order."""

    run: ChildRun
    inner: trio.TaskStatus[None]
    called: bool = False

    def started(self, value: object = None) -> None:
        # The value is not kept: a restarted child would have to publish a new one anyway, so
        # children publish what others need through their own registry.
        if self.called:
            raise RuntimeError("started() called twice")
        self.called = True
        self.run.started = True
        self.run.scope.shield = True
        self.run.child.settled.set()
        self.inner.started()


@attrs.define(eq=False)
class ChildRun:
    """One incarnation of a child: one task with its own cancel scope.

    Before ``started()`` the scope is not shielded: a supervisor that is cancelled while a child
    is still starting simply cancels that start. After ``started()`` it is shielded, so the
    child ends only when its supervisor stops it (nudge, grace period, cancel).
    """

    child: Child
    exits: trio.MemorySendChannel[ChildExit]
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    done: trio.Event = attrs.Factory(trio.Event)
    started: bool = False
    #: The supervisor is stopping this run: its exit is expected and is not reported.
    stopping: bool = False
    _nudged: bool = False

    async def run(
        self,
        info: RestartInfo | None,
        *,
        not_before: float | None = None,
        announce: Callable[[], Awaitable[None]] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Wait until ``not_before`` (the backoff), ``announce`` the restart, run the child.

        A child that raises, before or after ``started()``, is logged and reported as a crash;
        one that returns is reported as a normal exit. ``task_status.started()`` is called in
        either case, so the caller's ``nursery.start`` returns and the loop decides what next.
        ``trio.Cancelled`` from outside propagates untouched.
        """
        readiness = _Readiness(self, task_status)
        try:
            crash: Exception | None = None
            try:
                with self.scope:
                    if not_before is not None:
                        await trio.sleep_until(not_before)
                    if announce is not None:
                        await announce()
                    await self.child.spec.start(info, task_status=readiness)
            except Exception as exc:
                crash = exc
            self._report(crash)
            if not readiness.called:
                task_status.started()
        finally:
            self.done.set()

    def _report(self, crash: Exception | None) -> None:
        now = trio.current_time()
        if crash is None:
            reason = NORMAL_EXIT
        else:
            reason = describe(crash)
            what = "crashed" if self.started else "failed to start"
            budget = traceback_budget()
            if budget.allow(now):
                left_out, budget.left_out = budget.left_out, 0
                more = f" ({left_out} crashes before it without traceback)" if left_out else ""
                logger.error(
                    "child %r %s: %s%s", self.child.id, what, reason, more, exc_info=crash
                )
            else:
                logger.error("child %r %s: %s (traceback left out)", self.child.id, what, reason)
        if self.stopping:
            return
        # The channel is unbounded (see the supervisors) so this never blocks or fails.
        self.exits.send_nowait(
            ChildExit(run=self, crashed=crash is not None, reason=reason, time=now)
        )

    def nudge(self) -> None:
        """Ask the run to end: call the spec's ``stop`` if it has started and has one, else
        cancel it at once."""
        self.stopping = True
        if self._nudged:
            return
        self._nudged = True
        stop = self.child.spec.stop
        if not self.started or stop is None or self.done.is_set():
            self.scope.cancel()
            return
        try:
            stop()
        except Exception:
            logger.exception("stop nudge of child %r failed; cancelling it", self.child.id)
            self.scope.cancel()

    async def finish(self, deadline: float) -> None:
        """Wait for the run to end until ``deadline``, then cancel it and wait for it."""
        with trio.move_on_at(deadline):
            await self.done.wait()
        self.scope.cancel()
        await self.done.wait()

    async def stop(self) -> None:
        """Nudge, give the child its ``shutdown`` seconds, then cancel; return once it ended."""
        self.nudge()
        await self.finish(trio.current_time() + self.child.spec.shutdown)

    def cancel(self) -> None:
        """Cancel the run at once, without a nudge."""
        self.stopping = True
        self.scope.cancel()


async def stop_in_order(runs: Sequence[ChildRun]) -> None:
    """Stop ``runs`` one after the other in reverse order, shielded and bounded in time.

    Runs under a shield so that the cancellation which triggered a shutdown cannot skip it, and
    under a deadline (the sum of the shutdown timeouts plus a grace) so that it always ends.
    """
    budget = sum(run.child.spec.shutdown for run in runs) + CANCEL_GRACE
    with trio.move_on_after(budget, shield=True) as scope:
        for run in reversed(runs):
            await run.stop()
    _cancel_leftovers(runs, timed_out=scope.cancelled_caught)


async def stop_together(runs: Sequence[ChildRun]) -> None:
    """Stop ``runs``: nudge all in reverse order, give each its ``shutdown`` seconds from the
    nudge, then cancel the ones left in reverse order. Shielded and bounded like
    :func:`stop_in_order`, but in the longest timeout rather than their sum, which matters with
    thousands of sessions."""
    if not runs:
        return
    budget = max(run.child.spec.shutdown for run in runs) + CANCEL_GRACE
    with trio.move_on_after(budget, shield=True) as scope:
        nudged_at = trio.current_time()
        for run in reversed(runs):
            run.nudge()
        for run in reversed(runs):
            await run.finish(nudged_at + run.child.spec.shutdown)
    _cancel_leftovers(runs, timed_out=scope.cancelled_caught)


def _cancel_leftovers(runs: Sequence[ChildRun], *, timed_out: bool) -> None:
    if timed_out:
        left = [run.child.id for run in runs if not run.done.is_set()]
        logger.error("children %s did not end within the shutdown budget; cancelled", left)
    # Whatever is left would keep the supervisor's nursery open: cancel it.
    for run in runs:
        run.cancel()
