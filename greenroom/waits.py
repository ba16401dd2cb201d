"""Waiting only when there is something to wait for.

trio makes every ``await`` of its own a checkpoint: ``Event.wait`` on a set event, a
channel's ``send`` with room and a semaphore's ``acquire`` with a token to give all yield to
the scheduler, and the task goes on only after every other runnable task had its turn. That
is right in a loop, which must let others run. On the way of a command through a connection
and into an actor it was a trip through the run queue per step, for nothing: a quarter of
the time of a thousand ``sendMessage`` (the ``bench.ramp`` figures in bench/README.md).
These take the no-wait path first, and wait as trio does otherwise. A caller already
cancelled is still told so at once (and takes or sends nothing), as by trio's own. Use them
where the caller checkpoints soon anyway (in what it runs, or in a wait that follows), never
as the only checkpoint of a loop.
"""

from __future__ import annotations

import math
from typing import TypeVar

import trio

__all__ = ["acquire", "after", "send"]

T = TypeVar("T")


async def after(event: trio.Event) -> None:
    """``await event.wait()``, with no checkpoint if it is set already."""
    if not event.is_set() or _cancelled():
        await event.wait()


async def send(channel: trio.MemorySendChannel[T], item: T) -> None:
    """``await channel.send(item)``, with no checkpoint while there is room."""
    if _cancelled():
        await channel.send(item)  # which raises Cancelled, and sends nothing
        return
    try:
        channel.send_nowait(item)
    except trio.WouldBlock:
        await channel.send(item)


async def acquire(semaphore: trio.Semaphore) -> None:
    """``await semaphore.acquire()``, with no checkpoint while it has a token to give."""
    if _cancelled():
        await semaphore.acquire()  # which raises Cancelled, and takes nothing
        return
    try:
        semaphore.acquire_nowait()
    except trio.WouldBlock:
        await semaphore.acquire()


def _cancelled() -> bool:
    """Whether a checkpoint here would raise Cancelled (no yield, no checkpoint counted)."""
    return trio.current_effective_deadline() == -math.inf
