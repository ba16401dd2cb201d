"""The run-once lifecycle both supervisors share: new, running, closed."""

from __future__ import annotations

import enum

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
