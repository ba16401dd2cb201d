"""The dynamic supervisor: children added and removed at run time, one per session.

Unlike the static supervisor, children are independent of each other (OTP's
``simple_one_for_one``): restart intensity is counted per child, a child past its intensity is
given up alone, and a restart waits out its backoff in the child's own task, so that one
session crashing in a loop never delays the others.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from greenroom.supervisor.backoff import Backoff
from greenroom.supervisor.child import Child, ChildExit, ChildRun, run_hook, stop_together
from greenroom.supervisor.errors import ChildExists, NoSuchChild
from greenroom.supervisor.intensity import Intensity, RestartWindow
from greenroom.supervisor.lifecycle import Lifecycle, RunState, running
from greenroom.supervisor.spec import ChildSpec, RestartInfo
from greenroom.supervisor.static import RestartHook
from greenroom.supervisor.statistics import SupervisorStatistics

logger = logging.getLogger("greenroom.supervisor")

#: ``on_give_up(child_id, reason)``: awaited when a child is removed for going past its
#: intensity.
GiveUpHook = Callable[[str, str], Awaitable[None]]


def _rng(value: random.Random | None) -> random.Random:
    return random.Random() if value is None else value


@attrs.define(eq=False, kw_only=True)
class DynamicSupervisor:
    """Supervises children added with :meth:`start_child` and removed with
    :meth:`terminate_child`, each restarted per its own restart type, intensity and backoff.

    Use :func:`open_dynamic_supervisor`, or start :meth:`run` in a nursery you own.
    """

    intensity: Intensity = attrs.field(factory=Intensity)
    backoff: Backoff = attrs.field(factory=Backoff)
    rng: random.Random = attrs.field(default=None, converter=_rng)
    on_restart: RestartHook | None = None
    on_give_up: GiveUpHook | None = None

    # Insertion order is start order, which shutdown reverses.
    _records: dict[str, Child] = attrs.field(init=False, factory=dict)
    _send: trio.MemorySendChannel[ChildExit] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[ChildExit] = attrs.field(init=False)
    _nursery: trio.Nursery | None = attrs.field(init=False, default=None)
    _life: Lifecycle = attrs.field(init=False, factory=Lifecycle)
    _restarts: int = attrs.field(init=False, default=0)
    _given_up: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        # Unbounded, safely: each run sends at most one message and only while its child is
        # supervised, so the backlog is at most one message per child; the loop drains it.
        self._send, self._receive = trio.open_memory_channel[ChildExit](math.inf)

    async def run(
        self, *, task_status: trio.TaskStatus[DynamicSupervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Report ready at once, then supervise the children added until cancelled or
        :meth:`aclose`; then stop them all, shielded from cancellation and bounded in time."""
        self._life.begin()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    with self._life.loop_scope:
                        task_status.started(self)
                        async for exit_ in self._receive:
                            await self._handle(exit_)
                finally:
                    self._life.state = RunState.CLOSED  # no start_child from here on
                    runs = [r.current for r in self._records.values() if r.current is not None]
                    await stop_together(runs)
                    for record in self._records.values():
                        record.settled.set()
                    self._records.clear()
        finally:
            self._nursery = None
            self._receive.close()
            self._life.end()

    async def aclose(self) -> None:
        """Stop every child and end :meth:`run`; return once done."""
        await self._life.close()

    async def start_child(self, spec: ChildSpec) -> bool:
        """Add a child and start it; return once it has called ``started()`` (True), or was
        removed before it ever did (False: given up, or a temporary child that failed).

        A first start that raises is a crash like any other: the child's restart type,
        intensity and backoff apply. Raises :class:`ChildExists` for an id in use and
        ``trio.ClosedResourceError`` once the supervisor is closing or closed.
        """
        if self._life.state is not RunState.RUNNING or self._nursery is None:
            raise trio.ClosedResourceError("the supervisor is not running")
        if spec.id in self._records:
            raise ChildExists(spec.id)
        record = Child(spec=spec, window=RestartWindow(self.intensity))
        self._records[spec.id] = record
        run = self._new_run(record)
        try:
            await self._nursery.start(run.run, None)
        except BaseException:
            # Our caller was cancelled (or the start machinery failed) before the child was
            # ready: the run has ended; forget the child.
            if not run.started:
                self._forget(record)
            raise
        await record.settled.wait()
        return self._records.get(spec.id) is record

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child for good: nudge, wait its ``shutdown`` seconds, cancel. No restart.

        Raises :class:`NoSuchChild` for an unknown id. When this returns the child is gone.
        """
        record = self._records.get(child_id)
        if record is None:
            raise NoSuchChild(child_id)
        self._forget(record)
        run = record.current
        if run is not None:
            # Shielded so that a cancelled caller cannot leave a nudged child running,
            # unsupervised; bounded by the child's shutdown timeout.
            with trio.CancelScope(shield=True):
                await run.stop()
            record.current = None

    def which_children(self) -> list[str]:
        """The ids of the supervised children, in start order."""
        return list(self._records)

    def statistics(self) -> SupervisorStatistics:
        """A snapshot of the children, their restarts and the children given up."""
        return SupervisorStatistics(
            children=len(self._records),
            running=sum(record.running for record in self._records.values()),
            restarts=self._restarts,
            child_restarts={r.id: r.restarts for r in self._records.values()},
            given_up=self._given_up,
        )

    def _new_run(self, record: Child) -> ChildRun:
        run = ChildRun(child=record, exits=self._send)
        record.current = run
        return run

    def _forget(self, record: Child) -> None:
        if self._records.get(record.id) is record:
            del self._records[record.id]
        record.settled.set()

    async def _handle(self, exit_: ChildExit) -> None:
        record = exit_.run.child
        if (
            exit_.run is not record.current
            or exit_.run.stopping
            or self._records.get(record.id) is not record
        ):
            return  # stopped on purpose, or already replaced or removed
        record.current = None
        if not record.spec.restart.restarts_after(crashed=exit_.crashed):
            self._forget(record)
            return
        if not record.window.admit(exit_.time):
            self._forget(record)
            self._given_up += 1
            logger.error(
                "giving up child %r: more than %d restarts in %s s; last: %s",
                record.id,
                self.intensity.max_restarts,
                self.intensity.period,
                exit_.reason,
            )
            if self.on_give_up is not None:
                await run_hook(
                    "on_give_up", functools.partial(self.on_give_up, record.id, exit_.reason)
                )
            return
        attempt = record.next_attempt(exit_.time, self.intensity.period)
        not_before = exit_.time + self.backoff.delay(attempt, self.rng)
        record.restarts += 1
        self._restarts += 1
        info = RestartInfo(reason=exit_.reason, restarts=record.restarts)
        announce = None
        if self.on_restart is not None:
            announce = functools.partial(
                run_hook, "on_restart", functools.partial(self.on_restart, record.id, info)
            )
        run = self._new_run(record)
        assert self._nursery is not None
        # Not nursery.start: the restart waits out its backoff in its own task, and nobody
        # waits for its readiness.
        self._nursery.start_soon(
            functools.partial(run.run, info, not_before=not_before, announce=announce)
        )


@asynccontextmanager
async def open_dynamic_supervisor(
    *,
    intensity: Intensity | None = None,
    backoff: Backoff | None = None,
    rng: random.Random | None = None,
    on_restart: RestartHook | None = None,
    on_give_up: GiveUpHook | None = None,
) -> AsyncIterator[DynamicSupervisor]:
    """Run a :class:`DynamicSupervisor` for the duration of the block; on exit its children
    are stopped. Errors come out of the ``async with`` in an ``ExceptionGroup``."""
    supervisor = DynamicSupervisor(
        intensity=Intensity() if intensity is None else intensity,
        backoff=Backoff() if backoff is None else backoff,
        rng=rng,
        on_restart=on_restart,
        on_give_up=on_give_up,
    )
    async with running(supervisor):
        yield supervisor
