"""Sleeping until a due time, with one timer for many sleepers.

The simulated provider paces every token of every stream against a schedule. With
``trio.sleep_until`` each token costs a cancel scope, a deadline in trio's timer heap and a
``Cancelled`` raised and caught to end the sleep: at a thousand streams of 20 tokens/s that
timer work alone outweighed everything else the server did per token.

A :class:`Pacer` groups the due times into ticks of ``tick`` seconds. The first sleeper of a
tick keeps its timer, with a deadline that later sleepers of the same tick push back to
their own due time if it is later; the others park, and are woken together when it fires. So
there is one timer per tick in use rather than one per sleeper, and nobody wakes before their
due time (at most one tick after it). If the timekeeper is cancelled (its stream stopped) it
wakes the others, and one of them takes its place.

One pacer per trio run (:func:`current_pacer`), so that every stream of a process shares it.
"""

from __future__ import annotations

from typing import Final

import attrs
import trio

from greenroom.runlocal import PerRun

__all__ = ["DEFAULT_TICK", "Pacer", "current_pacer"]

DEFAULT_TICK: Final = 0.002
"""Seconds of trio time grouped under one timer: how late a sleeper may wake, at most."""


@attrs.define(eq=False)
class _Tick:
    lot: trio.lowlevel.ParkingLot
    scope: trio.CancelScope


@attrs.define(eq=False)
class Pacer:
    """Sleeps until due times, one timer per tick (see the module docstring)."""

    tick: float = DEFAULT_TICK
    timers: int = 0
    """How many timers were set so far (one per tick in use)."""
    _ticks: dict[int, _Tick] = attrs.Factory(dict)

    async def sleep_until(self, when: float) -> None:
        """Return at ``when`` or up to one tick later (a checkpoint if it is already due)."""
        if trio.current_time() >= when:
            await trio.lowlevel.checkpoint()
            return
        while trio.current_time() < when:
            key = int(when / self.tick)
            tick = self._ticks.get(key)
            if tick is None:
                await self._keep_time(key, when)
            else:
                if when > tick.scope.deadline:
                    tick.scope.deadline = when
                await tick.lot.park()

    async def _keep_time(self, key: int, when: float) -> None:
        tick = self._ticks[key] = _Tick(trio.lowlevel.ParkingLot(), trio.CancelScope(deadline=when))
        self.timers += 1
        try:
            with tick.scope:
                await trio.sleep_forever()
        finally:
            # Whether the tick came or this sleeper was cancelled, the others wake: those
            # still early loop and set a timer of their own.
            del self._ticks[key]
            tick.lot.unpark_all()


current_pacer: Final = PerRun("greenroom.pacer", Pacer).get
"""The pacer of the current trio run (made on first use)."""
