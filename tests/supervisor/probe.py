"""A controllable child for supervisor tests: it records what happens to it, and the test
tells it when to crash or return."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio

from greenroom.supervisor import ChildSpec, RestartInfo


@attrs.define(eq=False)
class Probe:
    """One child. ``log`` (shared between probes) gets ``"start <id>"`` when an incarnation
    starts and ``"end <id> <how>"`` when it ends, ``how`` being ``crashed``, ``returned``,
    ``stopped`` (it honoured the stop nudge) or ``cancelled``."""

    id: str
    log: list[str] = attrs.Factory(list)
    honours_stop: bool = True
    #: How many of the next starts raise before calling started().
    fail_starts: int = 0
    infos: list[RestartInfo | None] = attrs.Factory(list)
    start_times: list[float] = attrs.Factory(list)
    end_times: list[float] = attrs.Factory(list)
    live: int = 0
    _command: str | None = None
    _wake: trio.Event = attrs.Factory(trio.Event)
    _changed: trio.Event = attrs.Factory(trio.Event)

    def spec(self, *, with_stop: bool = True, **kwargs: Any) -> ChildSpec:
        return ChildSpec(
            id=self.id, start=self.start, stop=self.request_stop if with_stop else None, **kwargs
        )

    @property
    def starts(self) -> int:
        return len(self.start_times)

    def crash(self) -> None:
        """Make the running incarnation raise ``ValueError("<id> crashed")``."""
        self._send("crash")

    def finish(self) -> None:
        """Make the running incarnation return normally."""
        self._send("return")

    def request_stop(self) -> None:
        """The ``stop`` nudge given to the supervisor."""
        self.log.append(f"nudge {self.id}")
        if self.honours_stop:
            self._send("stop")

    async def wait_until(self, predicate: Callable[[Probe], bool]) -> None:
        """Block (virtual time runs on) until ``predicate(self)`` holds."""
        while not predicate(self):
            await self._changed.wait()

    async def wait_starts(self, count: int) -> None:
        """Block until the child has been started ``count`` times and is running."""
        await self.wait_until(lambda p: p.starts >= count and p.live > 0)

    def _send(self, command: str) -> None:
        self._command = command
        self._wake.set()

    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def start(
        self,
        restart: RestartInfo | None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.infos.append(restart)
        self.start_times.append(trio.current_time())
        self.log.append(f"start {self.id}")
        if self.fail_starts:
            self.fail_starts -= 1
            self._touch()
            raise RuntimeError(f"{self.id} failed to start")
        self._command = None
        self._wake = trio.Event()
        self.live += 1
        how = "cancelled"
        try:
            task_status.started()
            self._touch()
            await self._wake.wait()
            if self._command == "crash":
                how = "crashed"
                raise ValueError(f"{self.id} crashed")
            how = "returned" if self._command == "return" else "stopped"
        finally:
            self.live -= 1
            self.end_times.append(trio.current_time())
            self.log.append(f"end {self.id} {how}")
            self._touch()


def probes(*ids: str, **kwargs: bool) -> tuple[list[str], list[Probe]]:
    """Probes that share one log."""
    log: list[str] = []
    return log, [Probe(child_id, log=log, **kwargs) for child_id in ids]
