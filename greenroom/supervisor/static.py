"""The static supervisor: a fixed, ordered list of children, restarted by strategy.

It is the root of greenroom's tree (persistence, journal, notifier, the sessions' dynamic
supervisor, session manager, idle sweeper; see ``runtime.open_runtime``). It handles one exit
at a time, like OTP's supervisors: restarts are rare there, and the strategies that restart
several children need the children to start one after the other anyway.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

import attrs
import trio

from greenroom.supervisor.backoff import Backoff
from greenroom.supervisor.child import (
    Child,
    ChildExit,
    ChildRun,
    logger,
    run_hook,
    stop_in_order,
)
from greenroom.supervisor.errors import ChildExists, SupervisorGaveUp
from greenroom.supervisor.intensity import Intensity, RestartWindow
from greenroom.supervisor.lifecycle import Lifecycle, running
from greenroom.supervisor.spec import ChildSpec, Restart, RestartInfo, Strategy
from greenroom.supervisor.statistics import SupervisorStatistics

#: ``on_restart(child_id, info)``: awaited before each restarted child starts.
RestartHook = Callable[[str, RestartInfo], Awaitable[None]]


def _rng(value: random.Random | None) -> random.Random:
    return random.Random() if value is None else value


def _specs(children: Iterable[ChildSpec]) -> tuple[ChildSpec, ...]:
    return tuple(children)


@attrs.define(eq=False)
class Supervisor:
    """Runs ``children`` in order and restarts them per ``strategy``, ``intensity`` and
    ``backoff``; stops them in reverse order when cancelled or closed.

    Use :func:`open_supervisor`, or start :meth:`run` in a nursery you own.
    """

    children: tuple[ChildSpec, ...] = attrs.field(converter=_specs)
    strategy: Strategy = attrs.field(default=Strategy.ONE_FOR_ONE, kw_only=True)
    intensity: Intensity = attrs.field(factory=Intensity, kw_only=True)
    backoff: Backoff = attrs.field(factory=Backoff, kw_only=True)
    rng: random.Random = attrs.field(default=None, converter=_rng, kw_only=True)
    on_restart: RestartHook | None = attrs.field(default=None, kw_only=True)

    _records: list[Child] = attrs.field(init=False)
    _window: RestartWindow = attrs.field(init=False)
    _send: trio.MemorySendChannel[ChildExit] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[ChildExit] = attrs.field(init=False)
    _nursery: trio.Nursery | None = attrs.field(init=False, default=None)
    _life: Lifecycle = attrs.field(init=False, factory=Lifecycle)

    def __attrs_post_init__(self) -> None:
        ids: set[str] = set()
        for spec in self.children:
            if spec.id in ids:
                raise ChildExists(spec.id)
            ids.add(spec.id)
        self._window = RestartWindow(self.intensity)
        self._records = [
            Child(spec=spec, window=RestartWindow(self.intensity)) for spec in self.children
        ]
        # Unbounded, safely: each run sends at most one message, at most one run per child is
        # alive at a time, and the loop drains the channel.
        self._send, self._receive = trio.open_memory_channel[ChildExit](math.inf)

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the children in order (each ready before the next), report ready with
        ``task_status.started(self)``, then supervise until cancelled or :meth:`aclose`.

        Raises :class:`SupervisorGaveUp` once restarts go past the intensity. However it ends,
        the children are first stopped in reverse start order, shielded from cancellation.
        """
        self._life.begin()
        gave_up: SupervisorGaveUp | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    with self._life.loop_scope:
                        for record in self._records:
                            await self._start(record, None)
                        task_status.started(self)
                        gave_up = await self._supervise()
                finally:
                    await stop_in_order(self._live_runs())
            # Raised out here, not in the nursery, so that it is not wrapped in a group.
            if gave_up is not None:
                raise gave_up
        finally:
            self._nursery = None
            self._receive.close()
            self._life.end()

    async def aclose(self) -> None:
        """Stop every child in reverse start order and end :meth:`run`; return once done."""
        await self._life.close()

    def which_children(self) -> list[str]:
        """The ids of the children currently running, in start order."""
        return [record.id for record in self._records if record.running]

    def statistics(self) -> SupervisorStatistics:
        """A snapshot of the children and their restarts."""
        return SupervisorStatistics(
            children=len(self._records),
            running=sum(record.running for record in self._records),
            restarts=sum(record.restarts for record in self._records),
            child_restarts={record.id: record.restarts for record in self._records},
        )

    def _live_runs(self) -> list[ChildRun]:
        return [record.current for record in self._records if record.current is not None]

    async def _start(
        self, record: Child, info: RestartInfo | None, not_before: float | None = None
    ) -> None:
        assert self._nursery is not None
        run = ChildRun(child=record, exits=self._send)
        record.current = run
        announce = None
        if info is not None and self.on_restart is not None:
            announce = functools.partial(
                run_hook, "on_restart", functools.partial(self.on_restart, record.id, info)
            )
        await self._nursery.start(
            functools.partial(run.run, info, not_before=not_before, announce=announce)
        )

    async def _supervise(self) -> SupervisorGaveUp:
        """Handle exits until one goes past the intensity; return the error to raise."""
        async for exit_ in self._receive:
            gave_up = await self._handle(exit_)
            if gave_up is not None:
                return gave_up
        raise AssertionError("the exit channel is never closed while the loop runs")

    async def _handle(self, exit_: ChildExit) -> SupervisorGaveUp | None:
        record = exit_.run.child
        if exit_.run is not record.current or exit_.run.stopping:
            return None  # a run this supervisor stopped, or one already replaced
        record.current = None
        if not record.spec.restart.restarts_after(crashed=exit_.crashed):
            return None
        if not self._window.admit(exit_.time):
            logger.error(
                "giving up: child %r went past %d restarts in %s s; last: %s",
                record.id,
                self.intensity.max_restarts,
                self.intensity.period,
                exit_.reason,
            )
            return SupervisorGaveUp(record.id, exit_.reason)
        attempt = record.next_attempt(exit_.time, self.intensity.period)
        not_before = exit_.time + self.backoff.delay(attempt, self.rng)
        group = self._group(record)
        for other in reversed(group):
            if other is not record and other.current is not None:
                await other.current.stop()
                other.current = None
        # Temporary children stopped for a sibling's sake stay stopped, as in OTP.
        for member in group:
            if member is record or member.spec.restart is not Restart.TEMPORARY:
                member.restarts += 1
                info = RestartInfo(reason=exit_.reason, restarts=member.restarts)
                await self._start(member, info, not_before)
        return None

    def _group(self, record: Child) -> list[Child]:
        """The children the strategy restarts with ``record``, in start order."""
        if self.strategy is Strategy.ONE_FOR_ONE:
            return [record]
        index = self._records.index(record)
        candidates = (
            self._records if self.strategy is Strategy.ONE_FOR_ALL else self._records[index:]
        )
        return [r for r in candidates if r is record or r.current is not None]


@asynccontextmanager
async def open_supervisor(
    children: Iterable[ChildSpec],
    *,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    intensity: Intensity | None = None,
    backoff: Backoff | None = None,
    rng: random.Random | None = None,
    on_restart: RestartHook | None = None,
) -> AsyncIterator[Supervisor]:
    """Run a :class:`Supervisor` for the duration of the block, its children started on entry
    and stopped in reverse order on exit.

    Errors from the block or the supervisor (:class:`SupervisorGaveUp`) come out of the
    ``async with`` in an ``ExceptionGroup``, as from any nursery.
    """
    supervisor = Supervisor(
        children,
        strategy=strategy,
        intensity=Intensity() if intensity is None else intensity,
        backoff=Backoff() if backoff is None else backoff,
        rng=rng,
        on_restart=on_restart,
    )
    async with running(supervisor):
        yield supervisor
