"""The journal actor: durable before visible.

Every published event comes here first (the bus's gate). The actor takes everything that
waits in its mailbox as one batch, writes the batch to the journal (``os.write`` into the page
cache: from then on a kill -9 cannot take it back), and only then applies each event to the
persistence mirror and releases it on the bus, to the notifier and the clients. A batch is
what came in while the previous one was written, so batches stay as short as one write.

The write happens in the event loop, not in a worker thread, on purpose: a write into the page
cache takes microseconds, while a thread hop per batch costs a hand-off of the interpreter lock
(up to the switch interval) on the way of every event to every client. What does go to a
worker thread is the slow part: the group commit, one ``fsync`` of the journal at most every
``sync_interval``, which bounds what a power loss can take; and removing segments that the
snapshots have made unnecessary (see :meth:`JournalActor.checkpoint`).

A write that fails (a full disk) is cut off and retried every ``sync_interval``, logged and
counted; meanwhile nothing is released, and publishing sessions wait once the mailbox is full.
Nothing is lost and nothing is shown that is not written.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

import attrs
import msgpack  # type: ignore[import-untyped]  # no stubs, no py.typed
import trio

from greenroom.actors.bus import EventBus
from greenroom.actors.mailbox import Inbox
from greenroom.actors.persistence import Mirror
from greenroom.actors.tally import Tally
from greenroom.protocol.events import Event
from greenroom.store.journal import JournalFiles, JournalWriteError, encode_record

logger = logging.getLogger("greenroom.journal")

BATCH = 8192
"""The most events written (or appended) at once."""
STOP_SECONDS = 30.0
"""How long a stopping journal may take to write what is still queued (and the local journal,
then, to sync it)."""
KEEP_BYTES = 16 << 20
"""Journal segments kept past their checkpoint, so that clients can resume with ``since`` after
a restart (the replay window then reaches this far back)."""


async def release(events: Iterable[Event], mirror: Mirror, bus: EventBus, tally: Tally) -> None:
    """What a journal does with each event once it is durable: apply it to the mirror,
    count it, and let everyone see it. (One call for many events: a coroutine per event
    was a cost of its own.)"""
    for event in events:
        mirror.apply(event)
        tally.count(event)
        stopped = bus.release_nowait(event)
        if stopped is not None:
            await bus.release_rest(event, stopped)


async def write_batches(
    inbox: Inbox[Event], write: Callable[[list[Event]], Awaitable[None]]
) -> None:
    """A journal's loop: ``write`` (then release) each batch, everything that waits in the
    mailbox at once. On a graceful stop (the sessions are stopped by now) what is still
    queued is written and released too, so that the journal ends where the mirror does."""
    try:
        while batch := await inbox.receive_batch(limit=BATCH):
            await write(batch)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(STOP_SECONDS):
            rest = inbox.drain_nowait()
            if rest:
                await write(rest)


@attrs.define(eq=False)
class JournalStatistics:
    batches: int = 0
    records: int = 0
    bytes_written: int = 0
    syncs: int = 0
    write_failures: int = 0
    last_failure: str | None = None
    segments_removed: int = 0
    last_sync_seconds: float = 0.0
    max_sync_seconds: float = 0.0
    size: int = 0
    """Bytes in the journal's segments now."""


@attrs.define(eq=False)
class JournalActor:
    """Writes each batch of events, then applies and releases it (see the module docstring)."""

    files: JournalFiles
    mirror: Mirror
    bus: EventBus
    sync_interval: float
    keep_bytes: int = KEEP_BYTES
    stats: JournalStatistics = attrs.Factory(JournalStatistics)
    tally: Tally = attrs.Factory(Tally)
    _checkpointed: int = -1  # the mirror's applied count at the last successful flush
    _packer: msgpack.Packer = attrs.field(init=False, factory=msgpack.Packer)

    async def run(
        self,
        inbox: Inbox[Event],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sync_every_interval)
                task_status.started()
                await write_batches(inbox, self._write_and_release)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(STOP_SECONDS):
                await self._sync()  # what the last batches wrote, too

    async def _write_and_release(self, batch: list[Event]) -> None:
        pack = self._packer.pack
        data = b"".join([encode_record(event, pack) for event in batch])
        while True:
            try:
                self.files.append(data, self.mirror.applied)
                break
            except JournalWriteError as failure:
                self.stats.write_failures += 1
                self.stats.last_failure = str(failure)
                logger.error("writing the journal failed (will retry): %s", failure)
                await trio.sleep(self.sync_interval)
        self.stats.batches += 1
        self.stats.records += len(batch)
        self.stats.bytes_written += len(data)
        self.stats.size = self.files.size
        await release(batch, self.mirror, self.bus, self.tally)

    def checkpoint(self, applied: int) -> None:
        """The persistence actor wrote everything the mirror had applied when its count was
        ``applied``: the journal before that point is needed only for replay now."""
        self._checkpointed = max(self._checkpointed, applied)

    async def _sync_every_interval(self) -> None:
        while True:
            await trio.sleep(self.sync_interval)
            await self._sync()

    async def _sync(self) -> None:
        """Group commit: one fsync of what was written since the last, off the event loop;
        then drop the segments that are checkpointed and beyond the replay window."""
        files = self.files
        what = files.take_sync()
        if what is not None:
            started = trio.current_time()
            try:
                await trio.to_thread.run_sync(files.sync, what)
            except OSError as failure:
                self.stats.write_failures += 1
                self.stats.last_failure = f"cannot sync the journal: {failure}"
                logger.error("syncing the journal failed (will retry): %s", failure)
                files.retry_sync(what)
                return
            took = trio.current_time() - started
            self.stats.syncs += 1
            self.stats.last_sync_seconds = took
            self.stats.max_sync_seconds = max(self.stats.max_sync_seconds, took)
            self.tally.sync_seconds.observe(took)
        removable = files.removable(self._checkpointed, self.keep_bytes)
        if removable:
            files.forget(removable)
            await trio.to_thread.run_sync(files.remove, removable)
            self.stats.segments_removed += len(removable)
        self.stats.size = files.size
