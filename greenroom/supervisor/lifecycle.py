"""The run-once lifecycle both supervisors share: new, running, closed."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import attrs
import trio


class RunState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


@attrs.define(eq=False)
class Lifecycle:
    """A supervisor runs once: ``begin`` when ``run`` starts, ``end`` however it ends.

    ``close`` (behind a supervisor's ``aclose``) cancels ``loop_scope``, the scope its loop
    runs in, and waits for the end; a supervisor that never ran is simply closed.
    """

    loop_scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    finished: trio.Event = attrs.Factory(trio.Event)
    state: RunState = RunState.NEW

    def begin(self) -> None:
        if self.state is not RunState.NEW:
            raise trio.ClosedResourceError("this supervisor has already run or been closed")
        self.state = RunState.RUNNING

    def end(self) -> None:
        self.state = RunState.CLOSED
        self.finished.set()

    async def close(self) -> None:
        if self.state is RunState.NEW:
            self.end()
            return
        self.loop_scope.cancel()
        await self.finished.wait()


class Runnable(Protocol):
    """What :func:`running` needs of a supervisor."""

    async def run(self, *, task_status: Any = ...) -> None: ...

    async def aclose(self) -> None: ...


S = TypeVar("S", bound=Runnable)


@asynccontextmanager
async def running(supervisor: S) -> AsyncIterator[S]:
    """Run ``supervisor`` in a nursery of its own for the block, and close it on exit: the
    body of both ``open_*supervisor`` functions."""
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        try:
            yield supervisor
        finally:
            await supervisor.aclose()
