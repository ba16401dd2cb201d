"""The persistence actor and its mirror: the up-to-date copy of every session, kept on disk.

The journal actor applies every event to the mirror once the event is journaled, and before
anyone else sees it; a restarted session actor is rebuilt from the mirror, with nothing lost
that was published. Every request here first waits until the events published before it are
applied (``EventBus.settled``): a ``LoadState`` asked after an event was published sees it.

Disk: every ``flush_interval`` the sessions that changed are written in one batch, off the event
loop (a throttle, not a debounce: a session streaming for ten minutes is written every interval,
its partial text included). A batch first appends the newly committed messages to each project's
history file (``.ai/history/<name>.jsonl``, never rewritten), then writes each changed session's
small snapshot (summary, seq, partial text; no messages) atomically: to the one partials file
that holds every session that changed lately, and to its own file once it rests (see
:meth:`Mirror.take_batch`). So the bytes written per
committed message do not grow with the length of the history, and a snapshot never counts a
message that is not on disk. A successful flush is a checkpoint of the journal: what the mirror
had applied is in the snapshots and histories. A failed write is logged, counted and retried at
the next interval; the mirror and the journal keep everything meanwhile.

A session is *dormant* when only its snapshot is in memory: every session at startup, and a
session unloaded for idleness. Its messages are read from its history file when it is next
needed, so startup time and memory do not grow with the total history size.

(Over 600 lines: the mirror decides what each flush writes and the actor writes it and gives
back what failed; the two share one bookkeeping, and split they would each explain the other.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio

from greenroom.actors.bus import EventBus
from greenroom.actors.mailbox import Inbox, Reply
from greenroom.actors.tally import Durations
from greenroom.protocol.chat import Message
from greenroom.protocol.errors import DiskError, GreenroomError
from greenroom.protocol.events import (
    Event,
    MessageAdded,
    SessionCreated,
    SessionDeleted,
    StreamingUpdate,
    Summary,
)
from greenroom.protocol.state import SessionState, Streaming
from greenroom.store.atomic import write_batch
from greenroom.store.history import (
    cut_history,
    encode_appends,
    history_path,
    is_message_line,
    read_history,
)
from greenroom.store.snapshots import (
    Dormant,
    QuarantinedFile,
    SnapshotEncodeError,
    SnapshotStore,
    encode_partial,
    join_partials,
    snapshot_payload,
    wake,
)

logger = logging.getLogger("greenroom.persistence")

COOL_FLUSHES = 5
"""Flush intervals a session stays unchanged (with no turn running) before it is written to
its own file rather than to the partials file (see Mirror.take_batch)."""
OWN_FILE_EVERY = 60
"""Flush intervals a session that keeps changing stays in the partials file at most before
its own file is written too: so that its own file is never far behind, should the partials
file be lost."""
OWN_FILES_PER_FLUSH = 256
"""Sessions written to their own files in one flush at most; the others wait in the partials
file for the next flushes."""


@attrs.frozen(kw_only=True)
class LoadState:
    """A private copy of one session's state (its messages read from disk if it was dormant),
    or None when there is no such session."""

    session: str
    reply: Reply[SessionState | None] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class ListSummaries:
    reply: Reply[tuple[Summary, ...]] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class Unload:
    """Write the session if it changed, then keep only its snapshot in memory."""

    session: str
    reply: Reply[None] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class Flush:
    """Write every change now (before reading a history file that may have pending lines);
    with ``project``, only when lines of that project's history wait to be written (or may be
    in the flush being written): opening one project must not cost a flush of every session
    that streams."""

    project: str | None = None
    reply: Reply[None] = attrs.field(factory=Reply, eq=False, repr=False)


PersistenceMessage = LoadState | ListSummaries | Unload | Flush


class SharedStore(Protocol):
    """Where a cluster node writes and reads instead of local files
    (greenroom.cluster.journal.DatabaseStore)."""

    async def write(self, batch: Batch, mirror: Mirror) -> None: ...

    async def read_messages(self, project: str, chat: str, count: int) -> list[Message]: ...


def copy_state(state: SessionState) -> SessionState:
    """A deep enough copy: messages are frozen, the lists and the streaming text are not."""
    streaming = None
    if state.streaming is not None:
        streaming = Streaming.of(state.streaming.text, state.streaming.tool_calls)
    return attrs.evolve(
        state, messages=list(state.messages), queued=list(state.queued), streaming=streaming
    )


# -- the mirror -------------------------------------------------------------------------------


@attrs.define(eq=False)
class Mirror:
    """Every session's state, kept by applying events, and what is still to be written.
    Owned by the runtime, so that it survives a restart of the persistence actor."""

    sessions: dict[str, SessionState] = attrs.Factory(dict)
    dormant: dict[str, Dormant] = attrs.Factory(dict)
    applied: int = 0
    _dirty: set[str] = attrs.Factory(set)  # changed since the last flush
    # Changed by streamed text only since the last flush. ``_in_partials``: the sessions whose
    # newest state is in the partials file (see take_batch).
    _streamed: set[str] = attrs.Factory(set)
    _in_partials: set[str] = attrs.Factory(set)
    _partials_stale: bool = False  # the last write of the partials file failed
    # Sessions written to the partials file, and when each last changed.
    _hot: dict[str, float] = attrs.Factory(dict)
    _joined: dict[str, float] = attrs.Factory(dict)  # when each came into the partials file
    _encoded: dict[str, bytes] = attrs.Factory(dict)  # their encodings there, while unchanged
    _deleted: set[str] = attrs.Factory(set)
    # Committed messages not yet appended, by (project, history name), in commit order, and
    # the index in its chat of the first of them.
    _history: dict[tuple[str, str], list[Message]] = attrs.Factory(dict)
    _history_start: dict[tuple[str, str], int] = attrs.Factory(dict)

    def apply(self, event: Event) -> None:
        self.applied += 1
        session = event.session
        if session is None:
            return
        data = event.data
        if type(data) is StreamingUpdate:  # most events: written with the partials
            streamed = self.sessions.get(session)
            if streamed is not None:
                streamed.apply(event)
                if session not in self._dirty:
                    self._streamed.add(session)
            return
        match data:
            case SessionCreated(summary=summary) if summary.message_count > 0:
                # Opened from an existing history file: its messages are on disk already.
                self.dormant[session] = Dormant(summary=summary, seq=event.seq or 0)
                self._dirty.add(session)
            case SessionCreated(summary=summary):
                state = self.sessions[session] = SessionState.from_summary(summary)
                state.apply(event)
                self._dirty.add(session)
            case SessionDeleted():
                self.sessions.pop(session, None)
                self.dormant.pop(session, None)
                self._dirty.discard(session)
                self._streamed.discard(session)
                self._deleted.add(session)
            case _:
                current = self.sessions.get(session)
                if current is None:
                    return
                current.apply(event)
                self._dirty.add(session)
                self._streamed.discard(session)
                if isinstance(data, MessageAdded):
                    key = (current.project, current.name)
                    self._history.setdefault(key, []).append(data.message)
                    self._history_start.setdefault(key, data.index)

    def summaries(self) -> tuple[Summary, ...]:
        loaded = tuple(state.summary() for state in self.sessions.values())
        return loaded + tuple(d.summary for d in self.dormant.values())

    def restore(self, session: str, dormant: Dormant, *, dirty: bool = False) -> None:
        """Keep ``session`` as read from disk; ``dirty`` when it came from the partials file,
        so that its own file catches up at the next flush."""
        self.dormant[session] = dormant
        if dirty:
            self._dirty.add(session)

    def rewrite_partials(self) -> None:
        """Have the next flush rewrite the partials file (found on disk at startup: what it
        holds is either restored into its sessions' own files or stale, and must go)."""
        self._partials_stale = True

    def make_dormant(self, session: str) -> None:
        state = self.sessions.pop(session, None)
        if state is not None:
            self.dormant[session] = Dormant(
                summary=state.summary(),
                seq=state.seq,
                partial=state.streaming.text if state.streaming is not None else None,
                tool_calls=state.streaming.tool_calls if state.streaming is not None else None,
            )

    def has_pending(self, session: str | None = None) -> bool:
        if session is None:
            return bool(self._dirty or self._streamed or self._deleted or self._history)
        state = self.sessions.get(session)
        return session in self._dirty or session in self._streamed or (
            state is not None and (state.project, state.name) in self._history
        )

    def history_pending(self, project: str) -> bool:
        """Whether lines of ``project``'s history wait to be written."""
        return any(key[0] == project for key in self._history)

    def take_batch(
        self,
        now: float = 0.0,
        rest: float = 0.0,
        own_files: int | None = OWN_FILES_PER_FLUSH,
        at_most: float = math.inf,
    ) -> Batch:
        """Everything to write now (at time ``now``); the mirror forgets it until
        ``give_back``.

        Every session that changed is written to the one partials file, whatever changed; a
        session goes to its own file once it has stayed the same for ``rest`` seconds and no
        turn of it runs, or once it has been in the partials file for ``at_most`` seconds
        (so that its own file is never far behind), at most ``own_files`` a flush (None:
        all), and then leaves the partials file. So a thousand turns starting or ending
        together cost one file, and a session that keeps changing (a conversation going on)
        is written in that one file until it rests (and at least every ``at_most`` seconds
        to its own). The partials file is rewritten whole when one of its sessions changed,
        joins it or leaves it; each session's encoding in it is kept until that session
        changes (``encoded``)."""
        changed = (self._dirty | self._streamed) - self._deleted
        hot, joined = self._hot, self._joined
        for session in changed:
            hot[session] = now
            joined.setdefault(session, now)
            self._encoded.pop(session, None)
        sessions = self.sessions
        snapshots: dict[str, dict[str, Any]] = {}
        for session, at in hot.items():
            if own_files is not None and len(snapshots) >= own_files:
                break
            state = sessions.get(session)
            resting = now - at >= rest and (state is None or not state.loading)
            if not resting and now - joined[session] < at_most:
                continue
            payload = self._payload(session)
            if payload is not None:
                snapshots[session] = payload
        for session in self._deleted:
            hot.pop(session, None)
            joined.pop(session, None)
            self._encoded.pop(session, None)
        for session in snapshots:
            del hot[session], joined[session]
            self._encoded.pop(session, None)
        partials: dict[str, dict[str, Any]] | None = None
        kept: dict[str, bytes] = {}
        leaving = self._in_partials - hot.keys()
        if changed or leaving or self._partials_stale:
            self._in_partials = set(hot)
            self._partials_stale = False
            partials = {}
            for session in hot:
                encoded = self._encoded.get(session)
                if encoded is not None:
                    kept[session] = encoded
                    continue
                payload = self._payload(session)
                if payload is not None:
                    partials[session] = payload
        batch = Batch(
            snapshots=snapshots,
            partials=partials,
            kept=kept,
            history=self._history,
            history_start=self._history_start,
            deleted=self._deleted,
        )
        self._dirty, self._streamed, self._history, self._deleted = set(), set(), {}, set()
        self._history_start = {}
        return batch

    def keep_encoded(self, encoded: Mapping[str, bytes]) -> None:
        """After a successful write: the partials file's encodings of sessions that have not
        changed since (reused by the next rewrite)."""
        for session, data in encoded.items():
            if session in self._hot:
                self._encoded[session] = data

    def _payload(self, session: str) -> dict[str, Any] | None:
        state: SessionState | Dormant | None = self.sessions.get(session)
        if state is None:
            state = self.dormant.get(session)
        return snapshot_payload(state) if state is not None else None

    def give_back(self, batch: Batch, *, history_from: tuple[str, str] | None) -> None:
        """Requeue what a failed write did not write: the snapshots, the partials, the
        deletions, and the history appends from ``history_from`` on (those before it were
        appended)."""
        self._dirty |= {s for s in batch.snapshots if s in self.sessions or s in self.dormant}
        if batch.partials is not None:
            self._partials_stale = True
        self._deleted |= batch.deleted
        keys = list(batch.history)
        start = keys.index(history_from) if history_from in batch.history else len(keys)
        merged: dict[tuple[str, str], list[Message]] = {}
        for key in keys[start:]:
            merged[key] = batch.history[key]
            if key in batch.history_start:
                self._history_start[key] = batch.history_start[key]
        for key, messages in self._history.items():
            merged.setdefault(key, []).extend(messages)
        self._history = merged

    def forget(self, session: str) -> Summary | None:
        """Drop ``session`` without deleting it (another node owns it now): nothing of it is
        written from here on. Its last summary."""
        state = self.sessions.pop(session, None)
        dormant = self.dormant.pop(session, None)
        self._dirty.discard(session)
        self._streamed.discard(session)
        self._in_partials.discard(session)
        self._hot.pop(session, None)
        self._joined.pop(session, None)
        self._encoded.pop(session, None)
        if state is not None:
            key = (state.project, state.name)
            self._history.pop(key, None)
            self._history_start.pop(key, None)
            return state.summary()
        return dormant.summary if dormant is not None else None

    def recover(self, events: Iterable[Event], projects_root: Path) -> int:
        """Apply the journal's events that the snapshots do not hold yet (those above each
        session's ``seq``), in journal order; returns how many. Reads history files: call it
        in a worker thread, before anything else uses the mirror.

        A dormant session with such events is woken with its history cut back to what its
        snapshot counts, so that the first flush appends each recovered message exactly once.
        A session deleted in the journal is only deleted: its history file may already belong
        to the session that reopened its project. A session whose journaled events do not
        follow its state with no gap (a lost snapshot, a journal trimmed past it) is left as
        it stands, and the gap logged: applying later events over an older state would make a
        chat that never was.
        """
        events = list(events)
        deleted = {e.session for e in events if isinstance(e.data, SessionDeleted)}
        recovered = 0
        broken: set[str] = set()
        for event in events:
            session, seq = event.session, event.seq
            if session is None or seq is None or session in broken:
                continue
            if session in deleted:
                if isinstance(event.data, SessionDeleted) and session in self.dormant:
                    self.apply(event)  # its snapshot was still there: remove it
                    recovered += 1
                continue
            state = self.sessions.get(session)
            if state is None:
                dormant = self.dormant.get(session)
                if dormant is None:
                    if isinstance(event.data, SessionCreated):
                        self.apply(event)
                        recovered += 1
                    continue  # deleted later in the journal, or before its snapshot
                if not _follows(session, dormant.seq, seq, broken):
                    continue
                summary = dormant.summary
                path = history_path(projects_root / summary.project, summary.name)
                try:
                    messages = cut_history(path, summary.message_count)
                except (GreenroomError, OSError) as error:
                    logger.error("session %s: not recovered from the journal: %s", session, error)
                    broken.add(session)
                    continue
                del self.dormant[session]
                state = self.sessions[session] = wake(dormant, messages)
            if not _follows(session, state.seq, seq, broken):
                continue
            self.apply(event)
            recovered += 1
        return recovered


def _follows(session: str, have: int, seq: int, broken: set[str]) -> bool:
    """Whether the journal's event ``seq`` is the next after the session's ``have``: one
    already applied is passed over; after a gap, nothing more of the session is applied."""
    if seq > have + 1:
        logger.error(
            "session %s: not recovered from the journal past seq %d: its next event there is "
            "seq %d (the events between are in no file: a snapshot newer than the journal's "
            "tail was lost)",
            session, have, seq,
        )  # fmt: skip
        broken.add(session)
    return seq == have + 1


@attrs.frozen(kw_only=True)
class Batch:
    snapshots: dict[str, dict[str, Any]]
    # The partials file, if it changed: the payloads to encode, and the encodings kept from
    # earlier writes of the sessions that did not change since.
    partials: dict[str, dict[str, Any]] | None
    history: dict[tuple[str, str], list[Message]]
    deleted: set[str]
    history_start: dict[tuple[str, str], int] = attrs.Factory(dict)
    """Per chat in ``history``, the index of its first message."""
    kept: dict[str, bytes] = attrs.Factory(dict)

    def __bool__(self) -> bool:
        return bool(self.snapshots or self.partials is not None or self.history or self.deleted)


@attrs.define(eq=False)
class PersistenceStatistics:
    flushes: int = 0
    snapshot_writes: int = 0
    """Sessions written to their own files."""
    partials_writes: int = 0
    """Writes of the one partials file (the snapshots of the sessions that changed lately)."""
    partial_snapshots: int = 0
    """Session snapshots written in the partials file, over all its writes."""
    history_appends: int = 0
    write_failures: int = 0
    last_failure: str | None = None
    loads: int = 0
    last_flush_seconds: float = 0.0
    max_flush_seconds: float = 0.0
    quarantined: tuple[QuarantinedFile, ...] = ()


# -- the actor --------------------------------------------------------------------------------


@attrs.define(eq=False)
class PersistenceActor:
    """Applies events to the mirror, answers state requests, and writes to disk."""

    mirror: Mirror
    store: SnapshotStore
    projects_root: Path
    flush_interval: float
    bus: EventBus
    # Told the mirror's applied count after each successful flush (the journal's checkpoint).
    on_checkpoint: Callable[[int], None] = lambda applied: None
    stats: PersistenceStatistics = attrs.Factory(PersistenceStatistics)
    # Where each flush's duration is counted (the metrics' histogram).
    flush_seconds: Durations = attrs.Factory(Durations)
    shared: SharedStore | None = None
    """A cluster node's store (None: local files)."""
    _flush_lock: trio.Lock = attrs.Factory(trio.Lock)

    async def run(
        self,
        inbox: Inbox[PersistenceMessage],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flush_every_interval)
                task_status.started()
                async for message in inbox:
                    await self.bus.settled()  # answer as of every event published before
                    await self._handle(message)
                nursery.cancel_scope.cancel()
        finally:
            # Whatever ended the loop (a stop, a crash, a cancellation), write what is left,
            # every session with no turn running to its own file.
            with trio.CancelScope(shield=True), trio.move_on_after(60):
                await self.flush(final=True)

    async def _handle(self, message: PersistenceMessage) -> None:
        match message:
            case LoadState(session=session, reply=reply):
                try:
                    reply.send(await self._load(session))
                except GreenroomError as error:
                    reply.fail(error)
                except OSError as error:  # its history unreadable: this load fails, not the actor
                    reply.fail(DiskError.of(error))
            case ListSummaries(reply=reply):
                reply.send(self.mirror.summaries())
            case Flush(project=project, reply=reply):
                if (
                    project is None
                    or self.mirror.history_pending(project)
                    or self._flush_lock.locked()
                ):
                    await self.flush()
                reply.send(None)
            case Unload(session=session, reply=reply):
                # A flush under way may be writing the session's last changes: waited for.
                if self.mirror.has_pending(session) or self._flush_lock.locked():
                    await self.flush()
                # A write that failed keeps the session in memory, whole: dormant, it would
                # be woken from a history that lacks what is still to be written.
                if not self.mirror.has_pending(session):
                    self.mirror.make_dormant(session)
                reply.send(None)

    async def _load(self, session: str) -> SessionState | None:
        state = self.mirror.sessions.get(session)
        if state is not None:
            return copy_state(state)
        dormant = self.mirror.dormant.get(session)
        if dormant is None:
            return None
        summary = dormant.summary
        path = history_path(self.projects_root / summary.project, summary.name)
        count = summary.message_count

        def read() -> list[Message]:
            return read_history(path, limit=count) if count and path.exists() else []

        if self.shared is not None:
            messages = await self.shared.read_messages(summary.project, summary.name, count)
        else:
            messages = await trio.to_thread.run_sync(read)
        if len(messages) < count:
            logger.warning(
                "session %s: its history has %d of %d messages; continuing with those",
                session,
                len(messages),
                count,
            )
        if self.mirror.dormant.get(session) is not dormant:
            # Deleted, or woken by an earlier request, while its history was read.
            current = self.mirror.sessions.get(session)
            return copy_state(current) if current is not None else None
        del self.mirror.dormant[session]
        awake = self.mirror.sessions[session] = wake(dormant, messages)
        self.stats.loads += 1
        return copy_state(awake)

    async def _flush_every_interval(self) -> None:
        while True:
            await trio.sleep(self.flush_interval)
            await self.flush()

    async def flush(self, *, final: bool = False) -> None:
        """Write every change now, in one batch, in a worker thread; ``final``: every session
        with no turn running to its own file, whether it rested or not, all in this batch."""
        async with self._flush_lock:
            applied = self.mirror.applied
            now = trio.current_time()
            if final:
                batch = self.mirror.take_batch(now, rest=0.0, own_files=None)
            else:
                interval = self.flush_interval
                batch = self.mirror.take_batch(
                    now, rest=COOL_FLUSHES * interval, at_most=OWN_FILE_EVERY * interval
                )
            if not batch:
                self.on_checkpoint(applied)  # nothing waits: all that was applied is on disk
                return
            appends = {
                history_path(self.projects_root / project, name): messages
                for (project, name), messages in batch.history.items()
            }
            keys = dict(zip(appends, batch.history, strict=True))
            store = self.store

            def write() -> dict[str, bytes]:
                # History is appended before the snapshots are renamed into place, and both are
                # made durable together: a snapshot never counts a message not on disk. The
                # partials file is renamed last: a session that left it has its own file first.
                files, errors = store.encode(batch.snapshots)
                encoded: dict[str, bytes] = {}
                if batch.partials is not None:
                    for session, payload in batch.partials.items():
                        try:
                            encoded[session] = encode_partial(session, payload)
                        except (TypeError, ValueError, OverflowError) as exc:
                            errors[session] = str(exc) or type(exc).__name__
                    files[store.partials_path] = join_partials({**batch.kept, **encoded})
                write_batch(encode_appends(appends), files, keep_tail=is_message_line)
                for session in batch.deleted:
                    store.delete(session)
                if errors:
                    raise SnapshotEncodeError(errors)
                return encoded

            started = trio.current_time()
            try:
                if self.shared is not None:
                    await self.shared.write(batch, self.mirror)
                    # A row per session: the next write needs only the sessions that change.
                    self.mirror.keep_encoded(dict.fromkeys(batch.partials or (), b""))
                else:
                    self.mirror.keep_encoded(await trio.to_thread.run_sync(write))
            except (GreenroomError, OSError) as failure:
                failed_path = getattr(failure, "path", None)
                failed_key = keys.get(failed_path) if isinstance(failed_path, Path) else None
                if self.shared is not None:  # one transaction: nothing of it was written
                    failed_key = next(iter(batch.history), None)
                self.mirror.give_back(batch, history_from=failed_key)
                self.stats.write_failures += 1
                self.stats.last_failure = str(failure)
                logger.error("writing sessions failed (will retry): %s", failure)
                return
            took = trio.current_time() - started
            self.stats.last_flush_seconds = took
            self.stats.max_flush_seconds = max(self.stats.max_flush_seconds, took)
            self.flush_seconds.observe(took)
            self.stats.flushes += 1
            self.stats.snapshot_writes += len(batch.snapshots)
            if batch.partials is not None:
                self.stats.partials_writes += 1
                self.stats.partial_snapshots += len(batch.partials) + len(batch.kept)
            self.stats.history_appends += sum(len(m) for m in batch.history.values())
            self.on_checkpoint(applied)
