"""The journal's files: an append-only log of every published event, in segments.

Each record is ``length (u32 LE) | crc32 (u32 LE) | msgpack payload``; a payload is one event
(``event_to_record``: the protocol's event object, summaries with their queued texts whole), or
for a plain text delta the short array ``["d", session, project, seq, offset, delta]``, which is
most of what a journal holds and costs a tenth to encode.

Segments are ``<data dir>/journal/<number>.journal``, numbered in the order they were begun.
The newest is the *active* one: records are appended to it with ``os.write`` (into the page
cache, which survives a kill -9), and it is fsynced by group commit. A segment is closed when it
passes ``segment_bytes``. Reading stops at the first record that is torn or corrupt: what
follows it (the rest of that segment, and every later segment) is moved to ``journal/corrupt/``
so that nothing after a hole is ever applied.

Synchronous, like the rest of :mod:`greenroom.store`; the journal actor decides which calls run
in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import attrs
import msgpack  # type: ignore[import-untyped]  # no stubs, no py.typed

from greenroom.protocol.convert import event_from_record, event_to_record
from greenroom.protocol.errors import GreenroomError
from greenroom.protocol.events import Event, StreamingUpdate
from greenroom.store.atomic import fsync_folder, unused_path

HEADER: Final = struct.Struct("<II")
MAX_RECORD_BYTES: Final = 64 << 20
"""A record longer than this is taken for corruption (an event is bounded far below it)."""
SEGMENT_BYTES: Final = 32 << 20
_NAME = re.compile(r"([0-9]{12})\.journal")
_DELTA: Final = "d"


class CorruptRecord(GreenroomError):
    """A journal record that cannot be read back."""


def encode_record(event: Event, pack: Callable[[object], bytes] | None = None) -> bytes:
    """One event as a journal record (header and payload). ``pack`` is a ``msgpack.Packer``'s
    ``pack``, kept by a caller that encodes many (``msgpack.packb`` makes a packer per call,
    which tripled the cost of a delta's record); it must not be shared between threads."""
    payload = encode_payload(event, pack)
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def encode_payload(event: Event, pack: Callable[[object], bytes] | None = None) -> bytes:
    """One event as a record's payload (no header): what :func:`decode_payload` reads, and
    what a cluster's streams carry."""
    if pack is None:
        pack = msgpack.Packer().pack
    data = event.data
    if type(data) is StreamingUpdate and data.tool_calls is None:
        return pack((_DELTA, event.session, event.project, event.seq, data.offset, data.delta))
    return pack(event_to_record(event))


def decode_payload(payload: bytes) -> Event:
    """The event of one record's payload; raises :class:`CorruptRecord`."""
    try:
        obj: Any = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        if isinstance(obj, list) and obj and obj[0] == _DELTA:
            _, session, project, seq, offset, delta = obj
            return Event(
                session=session,
                project=project,
                seq=seq,
                data=StreamingUpdate(offset=offset, delta=delta),
            )
        return event_from_record(obj)
    except Exception as exc:  # msgpack and cattrs raise many kinds; all mean "not an event"
        raise CorruptRecord(f"not a journal record: {exc}") from exc


def iter_records(data: bytes) -> Iterator[tuple[int, Event]]:
    """``(end offset, event)`` for each whole, valid record of ``data``, in order; stops at
    the first that is torn or corrupt (the caller compares the last end with ``len(data)``)."""
    pos, size = 0, len(data)
    while pos + HEADER.size <= size:
        length, crc = HEADER.unpack_from(data, pos)
        start, end = pos + HEADER.size, pos + HEADER.size + length
        if length > MAX_RECORD_BYTES or end > size:
            return
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            return
        try:
            event = decode_payload(payload)
        except CorruptRecord:
            return
        yield end, event
        pos = end


@attrs.frozen(kw_only=True)
class MovedAside:
    """Journal bytes that could not be read, kept in ``journal/corrupt/`` for a person."""

    path: Path
    reason: str


@attrs.frozen(kw_only=True)
class JournalRead:
    """What :func:`read_journal` found: the events in order, and what it moved aside."""

    events: tuple[Event, ...]
    segments: tuple[tuple[int, int], ...]  # (number, size) of each segment kept
    moved: tuple[MovedAside, ...]


def segment_path(folder: Path, number: int) -> Path:
    return folder / f"{number:012d}.journal"


def list_segments(folder: Path) -> list[int]:
    """The numbers of the segments in ``folder``, oldest first."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    found = (_NAME.fullmatch(name) for name in names)
    return sorted(int(match.group(1)) for match in found if match)


def read_journal(folder: Path) -> JournalRead:
    """Every valid event of the journal, oldest first; a torn or corrupt tail (and whatever
    comes after it) is moved aside, so that the journal on disk is exactly what was read."""
    events: list[Event] = []
    kept: list[tuple[int, int]] = []
    moved: list[MovedAside] = []
    numbers = list_segments(folder)
    for position, number in enumerate(numbers):
        path = segment_path(folder, number)
        data = path.read_bytes()
        end = 0
        for record_end, event in iter_records(data):
            events.append(event)
            end = record_end
        kept.append((number, end))
        if end == len(data):
            continue
        reason = f"record at byte {end} of {path.name} is torn or corrupt"
        moved.append(_move_tail(folder, path, end, data[end:], reason))
        for later in numbers[position + 1 :]:
            later_path = segment_path(folder, later)
            moved.append(_move_whole(folder, later_path, f"follows a hole in {path.name}"))
        break
    return JournalRead(events=tuple(events), segments=tuple(kept), moved=tuple(moved))


def _aside(folder: Path, name: str) -> Path:
    """A path in the journal's ``corrupt/`` for ``name`` that holds nothing yet (segment
    numbers are used again after a hole)."""
    corrupt = folder / "corrupt"
    corrupt.mkdir(exist_ok=True)
    return unused_path(corrupt, name)


def _move_tail(folder: Path, path: Path, keep: int, tail: bytes, reason: str) -> MovedAside:
    target = _aside(folder, f"{path.name}.{keep}")
    target.write_bytes(tail)
    with open(target, "rb") as kept:
        os.fsync(kept.fileno())
    os.truncate(path, keep)
    fsync_folder(target.parent)
    return MovedAside(path=target, reason=reason)


def _move_whole(folder: Path, path: Path, reason: str) -> MovedAside:
    target = _aside(folder, path.name)
    os.replace(path, target)
    fsync_folder(target.parent)
    fsync_folder(folder)
    return MovedAside(path=target, reason=reason)


@attrs.define(eq=False)
class Segment:
    number: int
    size: int
    last_applied: int | None = None
    """The mirror's count of applied events when the segment was closed (None while active;
    0 for segments of an earlier run, all applied at startup)."""


class JournalWriteError(GreenroomError):
    """The journal could not be written; nothing of the failed batch stays on disk."""

    def __init__(self, path: Path, exc: OSError) -> None:
        super().__init__(f"cannot write {path.name}: {exc.strerror or exc}")
        self.path = path
        self.errno = exc.errno


@attrs.define(eq=False)
class JournalFiles:
    """The segments of one journal folder, and the open active one."""

    folder: Path
    segment_bytes: int = SEGMENT_BYTES
    segments: list[Segment] = attrs.Factory(list)  # closed ones, oldest first
    active: Segment | None = None
    _fd: int | None = None
    _to_sync: list[int] = attrs.Factory(list)  # fds of segments closed since the last sync
    _unsynced: bool = False
    _new_folder_entry: bool = False

    @classmethod
    def open(cls, folder: Path, found: Iterable[tuple[int, int]], **kw: Any) -> JournalFiles:
        """Begin a new active segment after the ``found`` ones (kept, as from an earlier run)."""
        files = cls(folder, **kw)
        files.segments = [Segment(number=n, size=s, last_applied=0) for n, s in found]
        folder.mkdir(parents=True, exist_ok=True)
        files._begin(max((n for n, _ in found), default=0) + 1)
        return files

    def _begin(self, number: int) -> None:
        path = segment_path(self.folder, number)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o644)
        self.active = Segment(number=number, size=0)
        self._new_folder_entry = True

    def append(self, data: bytes, applied: int) -> None:
        """Write ``data`` (whole records) at the end of the active segment; on failure cut it
        off again and raise :class:`JournalWriteError`. ``applied`` is the mirror's count of
        applied events, recorded for the segment closed when the active one is full."""
        assert self.active is not None and self._fd is not None
        if self.active.size >= self.segment_bytes:
            self._rotate(applied)
        fd, active = self._fd, self.active
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, active.size)
            raise JournalWriteError(segment_path(self.folder, active.number), exc) from exc
        active.size += len(data)
        self._unsynced = True

    def _rotate(self, applied: int) -> None:
        assert self.active is not None and self._fd is not None
        self.active.last_applied = applied
        self.segments.append(self.active)
        self._to_sync.append(self._fd)  # synced and closed by the next sync
        self._unsynced = True
        self._begin(self.active.number + 1)

    def take_sync(self) -> tuple[int | None, list[int], bool] | None:
        """What the next group commit must sync (the active fd, closed fds, the folder), or
        None when nothing was written since the last one. Taken in the event loop; the sync
        itself (:meth:`sync`) runs in a worker thread."""
        if not self._unsynced:
            return None
        closing, self._to_sync = self._to_sync, []
        folder, self._new_folder_entry = self._new_folder_entry, False
        self._unsynced = False
        return self._fd, closing, folder

    def sync(self, what: tuple[int | None, list[int], bool]) -> None:
        """Make what :meth:`take_sync` took durable (power loss included); a worker thread's
        call. The closed segments' files are closed once they are synced."""
        active, closing, folder = what
        for fd in closing:
            os.fsync(fd)
        if active is not None:
            os.fsync(active)
        if folder:
            fsync_folder(self.folder)
        for fd in closing:
            with contextlib.suppress(OSError):
                os.close(fd)

    def retry_sync(self, what: tuple[int | None, list[int], bool]) -> None:
        """Have the next :meth:`take_sync` take again what a failed :meth:`sync` had."""
        _, closing, folder = what
        self._to_sync = closing + self._to_sync
        self._new_folder_entry = self._new_folder_entry or folder
        self._unsynced = True

    def removable(self, checkpointed: int, keep_bytes: int) -> list[Segment]:
        """Closed segments wholly in the snapshots (``checkpointed``: the mirror's applied
        count at the last successful flush) and older than the newest ``keep_bytes`` of them,
        which stay for replay after a restart."""
        done = [s for s in self.segments if (s.last_applied or 0) <= checkpointed]
        kept = 0
        removable: list[Segment] = []
        for segment in reversed(done):
            kept += segment.size
            if kept > keep_bytes or segment.size == 0:  # an empty one replays nothing
                removable.append(segment)
        return removable

    def remove(self, segments: Iterable[Segment]) -> None:
        """Delete ``segments`` (a worker thread's call)."""
        for segment in segments:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(segment_path(self.folder, segment.number))

    def forget(self, segments: Iterable[Segment]) -> None:
        gone = {id(s) for s in segments}
        self.segments = [s for s in self.segments if id(s) not in gone]

    @property
    def size(self) -> int:
        """Bytes in every segment, the active one included."""
        active = self.active.size if self.active is not None else 0
        return active + sum(s.size for s in self.segments)

    def close(self) -> None:
        """Sync and close every open file (when the runtime stops)."""
        fds = [*self._to_sync, *([self._fd] if self._fd is not None else [])]
        self._to_sync, self._fd = [], None
        try:
            for fd in fds:
                os.fsync(fd)
            fsync_folder(self.folder)
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
