"""Session snapshots: one small msgpack file per session, ``<data_dir>/sessions/<id>.msgpack``.

A file holds the envelope ``{"format": 1, "session": <id>, "payload": <map>}``; the payload is
a session's state but its messages (which are in its history file): :func:`snapshot_payload`
writes it and :func:`dormant_from_payload` reads it back. A file that cannot be read back is
moved to ``sessions/corrupt/`` and reported, never deleted and never allowed to stop the
server from starting.

Beside them, ``sessions/streaming.msgpack`` (the partials file) holds, in one file, the
payloads of the sessions that changed lately or whose turn is running:
``{"format": 1, "partials": {<id>: <payload>, ...}}``. A thousand sessions streaming (or
starting or ending a turn) cost one file per flush instead of a thousand (the per-file
syscalls, not the bytes, were the cost); a session's own file is written once it rests
(greenroom.actors.persistence).
A payload there counts only when its ``seq`` is above that of the session's own file.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import msgpack  # type: ignore[import-untyped]

from greenroom.protocol.chat import Message
from greenroom.protocol.convert import structure, summary_to_record, unstructure
from greenroom.protocol.errors import GreenroomError, InvalidArgument
from greenroom.protocol.events import PartialToolCall, Summary
from greenroom.protocol.state import SessionState, Streaming
from greenroom.protocol.values import validate_project_name
from greenroom.store import atomic

FORMAT_VERSION = 1
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
"""A snapshot file larger than this is refused as corrupt (a session's state is far smaller)."""
MAX_PARTIALS_BYTES = 1 << 30
"""The partials file holds every session that changed lately, streamed text included: allowed
far more."""

_SESSION_ID = re.compile(r"s-[0-9a-f]{1,64}")
_SUFFIX = ".msgpack"
_FILE_NAME = re.compile(r"(s-[0-9a-f]{1,64})\.msgpack")
_FIRST_READ = 64 * 1024
PARTIALS_NAME = "streaming.msgpack"


class CorruptSnapshot(GreenroomError):
    """Snapshot bytes that are not a valid snapshot; ``reason`` says what is wrong."""

    def __init__(self, reason: str, *, name: str | None = None) -> None:
        where = f" {name}" if name else ""
        super().__init__(f"corrupt snapshot{where}: {reason}")
        self.reason = reason
        self.name = name


class SnapshotEncodeError(GreenroomError):
    """Some payloads could not be encoded (a value msgpack cannot hold); ``errors`` by session."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        listed = "; ".join(f"{session}: {reason}" for session, reason in errors.items())
        super().__init__(f"cannot encode snapshots: {listed}")
        self.errors = dict(errors)


@attrs.frozen(kw_only=True)
class QuarantinedFile:
    """A snapshot file that was moved aside: its name, why, and where it went (None if it
    could not be moved)."""

    name: str
    reason: str
    moved_to: Path | None


@attrs.frozen(kw_only=True)
class ScanResult:
    """What :meth:`SnapshotStore.scan` found: the good snapshots and the files moved aside."""

    snapshots: list[tuple[str, dict[str, Any]]]
    quarantined: list[QuarantinedFile]
    removed_temps: int = 0


def is_session_id(value: object) -> bool:
    """Whether ``value`` is a session id (``s-`` and 1 to 64 lowercase hex digits)."""
    return isinstance(value, str) and _SESSION_ID.fullmatch(value) is not None


def encode_snapshot(session: str, payload: dict[str, Any]) -> bytes:
    """The file bytes of one session's snapshot."""
    if not is_session_id(session):
        raise InvalidArgument(f"invalid session id {session!r}")
    if not isinstance(payload, dict):
        raise TypeError(f"a snapshot payload must be a dict, not {type(payload).__name__}")
    envelope = {"format": FORMAT_VERSION, "session": session, "payload": payload}
    return msgpack.packb(envelope, use_bin_type=True)  # type: ignore[no-any-return]


def decode_snapshot(data: bytes) -> tuple[str, dict[str, Any]]:
    """Read snapshot bytes back into ``(session, payload)``; raise CorruptSnapshot if they are
    not one (not msgpack, truncated, trailing bytes, wrong types, unknown format version)."""
    envelope = _unpack(data, MAX_SNAPSHOT_BYTES)
    session = envelope.get("session")
    if not is_session_id(session):
        raise CorruptSnapshot(f"invalid session id {session!r}")
    assert isinstance(session, str)
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        raise CorruptSnapshot(f"payload must be a map, not {_kind(payload)}")
    return session, payload


def encode_partial(session: str, payload: dict[str, Any]) -> bytes:
    """One session's payload as the partials file holds it (see :func:`join_partials`)."""
    if not is_session_id(session):
        raise InvalidArgument(f"invalid session id {session!r}")
    if not isinstance(payload, dict):
        raise TypeError(f"a snapshot payload must be a dict, not {type(payload).__name__}")
    return msgpack.packb(payload, use_bin_type=True)  # type: ignore[no-any-return]


def join_partials(encoded: Mapping[str, bytes]) -> bytes:
    """The partials file's bytes from its payloads, each encoded by :func:`encode_partial`:
    byte for byte what packing the whole envelope gives (a msgpack map is its header, then
    its keys and values one after the other), so that a payload that did not change since the
    last write is not encoded again."""
    packer = msgpack.Packer(use_bin_type=True)
    parts = [
        packer.pack_map_header(2),
        packer.pack("format"),
        packer.pack(FORMAT_VERSION),
        packer.pack("partials"),
        packer.pack_map_header(len(encoded)),
    ]
    for session, payload in encoded.items():
        parts.append(packer.pack(session))
        parts.append(payload)
    return b"".join(parts)


def decode_partials(data: bytes) -> dict[str, dict[str, Any]]:
    """Read the partials file's bytes back; raise CorruptSnapshot if they are not one."""
    envelope = _unpack(data, MAX_PARTIALS_BYTES)
    partials = envelope.get("partials")
    if not isinstance(partials, dict):
        raise CorruptSnapshot(f"partials must be a map, not {_kind(partials)}")
    for session, payload in partials.items():
        if not is_session_id(session):
            raise CorruptSnapshot(f"invalid session id {session!r}")
        if not isinstance(payload, dict):
            raise CorruptSnapshot(f"payload of {session} must be a map, not {_kind(payload)}")
    return partials


def _unpack(data: bytes, limit: int) -> dict[Any, Any]:
    """The envelope of a snapshot or partials file, its format version checked."""
    if len(data) > limit:
        raise CorruptSnapshot(f"too large ({len(data)} bytes, at most {limit})")
    if not data:
        raise CorruptSnapshot("empty file")
    try:
        # msgpack bounds every length by len(data), so a few hostile bytes cannot claim a
        # huge allocation, and its C unpacker bounds the nesting depth. Timestamps decode to
        # floats and other extension types are refused, so only plain values come out.
        envelope = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            timestamp=1,
            ext_hook=_refuse_ext,
            max_str_len=len(data),
            max_bin_len=len(data),
            max_array_len=len(data),
            max_map_len=len(data),
            max_ext_len=len(data),
        )
    except msgpack.ExtraData:
        raise CorruptSnapshot("trailing bytes after the snapshot") from None
    except Exception as exc:  # untrusted bytes: any failure to unpack means corrupt
        reason = str(exc) or type(exc).__name__
        if "incomplete" in reason.lower() or isinstance(exc, msgpack.OutOfData):
            reason = "truncated"
        raise CorruptSnapshot(f"not msgpack: {reason}") from None
    if not isinstance(envelope, dict):
        raise CorruptSnapshot(f"envelope must be a map, not {_kind(envelope)}")
    version = envelope.get("format")
    if type(version) is not int:
        raise CorruptSnapshot(f"format version must be an integer, not {_kind(version)}")
    if version != FORMAT_VERSION:
        raise CorruptSnapshot(
            f"unknown format version {version} (this greenroom reads {FORMAT_VERSION})"
        )
    return envelope


class SnapshotStore:
    """The snapshot files under ``<data_dir>/sessions``. Synchronous: call it from a thread.

    Not safe for concurrent use: the persistence actor owns it and calls one method at a time.
    """

    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / "sessions"
        self.corrupt_folder = self.folder / "corrupt"

    def path(self, session: str) -> Path:
        """The file of ``session`` (the id is validated: it is never a way out of the folder)."""
        if not is_session_id(session):
            raise InvalidArgument(f"invalid session id {session!r}")
        return self.folder / f"{session}{_SUFFIX}"

    def write(self, batch: Mapping[str, dict[str, Any]]) -> None:
        """Write the snapshots of a batch of sessions, each atomically, one folder fsync.

        A payload that cannot be encoded does not stop the others: they are written, then
        :class:`SnapshotEncodeError` names the ones that were not. A disk failure raises
        atomic.StoreWriteError.
        """
        files, errors = self.encode(batch)
        atomic.write_files_atomically(files)
        if errors:
            raise SnapshotEncodeError(errors)

    @property
    def partials_path(self) -> Path:
        """The one file of the payloads of the sessions that changed lately (see the module
        docstring)."""
        return self.folder / PARTIALS_NAME

    def encode_partials(self, partials: Mapping[str, dict[str, Any]]) -> bytes:
        """The bytes of the partials file for ``partials`` (payloads by session)."""
        return join_partials({s: encode_partial(s, p) for s, p in partials.items()})

    def load_partials(self) -> tuple[dict[str, dict[str, Any]], QuarantinedFile | None]:
        """The payloads of the partials file (none if it is missing), and the file moved
        aside if it was corrupt (then nothing of it is used)."""
        path = self.partials_path
        try:
            data = _read(str(path), MAX_PARTIALS_BYTES)
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            reason = f"unreadable: {exc.strerror or exc}"
        else:
            try:
                return decode_partials(data), None
            except CorruptSnapshot as exc:
                reason = exc.reason
        return {}, self.quarantine_partials(reason)

    def quarantine_partials(self, reason: str) -> QuarantinedFile:
        """Move the partials file aside (it is written again from what could be used)."""
        moved = self._quarantine(PARTIALS_NAME, reason)
        self._sync_after_quarantine()
        return moved

    def encode(
        self, batch: Mapping[str, dict[str, Any]]
    ) -> tuple[dict[Path, bytes], dict[str, str]]:
        """The file contents of a batch, and the sessions whose payload could not be encoded
        (for writing through atomic.write_batch)."""
        files: dict[Path, bytes] = {}
        errors: dict[str, str] = {}
        for session, payload in batch.items():
            path = self.path(session)
            try:
                files[path] = encode_snapshot(session, payload)
            except (TypeError, ValueError, OverflowError) as exc:
                errors[session] = str(exc) or type(exc).__name__
        return files, errors

    def delete(self, session: str) -> None:
        """Remove the snapshot of ``session``, durably; a missing one is fine."""
        path = self.path(session)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise atomic.StoreWriteError(path, exc.strerror or str(exc), errno=exc.errno) from exc
        atomic.fsync_folder(self.folder)

    def load(self, session: str) -> dict[str, Any] | None:
        """The payload of ``session``, or None if it has no snapshot.

        A corrupt snapshot is moved aside and CorruptSnapshot raised (its message says where).
        """
        path = self.path(session)
        try:
            data = _read(str(path))
        except FileNotFoundError:
            return None
        except OSError as exc:
            reason = f"unreadable: {exc.strerror or exc}"
        else:
            try:
                found, payload = decode_snapshot(data)
            except CorruptSnapshot as exc:
                reason = exc.reason
            else:
                if found == session:
                    return payload
                reason = f"holds session {found}, not {session}"
        quarantined = self._quarantine(path.name, reason)
        self._sync_after_quarantine()
        where = f", moved to {quarantined.moved_to}" if quarantined.moved_to else ""
        raise CorruptSnapshot(f"{reason}{where}", name=path.name)

    def scan(self) -> ScanResult:
        """Load every snapshot; move each corrupt or unreadable file aside and report it.

        Files whose names are not ``<session id>.msgpack`` are left alone, except the temp
        files a crash left behind, which are removed: call this at startup, before writing.
        """
        snapshots: list[tuple[str, dict[str, Any]]] = []
        quarantined: list[QuarantinedFile] = []
        removed_temps = 0
        folder = str(self.folder)
        try:
            with os.scandir(folder) as entries:
                names = [entry.name for entry in entries]
        except FileNotFoundError:
            return ScanResult(snapshots=[], quarantined=[])
        for name in names:
            match = _FILE_NAME.fullmatch(name)
            if match is None:
                if atomic.is_temp_name(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(folder, name))
                    removed_temps += 1
                continue
            try:
                data = _read(os.path.join(folder, name))
            except FileNotFoundError:
                continue  # gone since the listing
            except OSError as exc:
                quarantined.append(self._quarantine(name, f"unreadable: {exc.strerror or exc}"))
                continue
            try:
                session, payload = decode_snapshot(data)
            except CorruptSnapshot as exc:
                quarantined.append(self._quarantine(name, exc.reason))
                continue
            if session != match[1]:
                quarantined.append(self._quarantine(name, f"holds session {session}"))
                continue
            snapshots.append((session, payload))
        if quarantined or removed_temps:
            self._sync_after_quarantine()
        return ScanResult(snapshots=snapshots, quarantined=quarantined, removed_temps=removed_temps)

    def quarantine(self, session: str, reason: str) -> QuarantinedFile:
        """Move the snapshot of ``session`` aside: it decoded, but its content is unusable."""
        moved = self._quarantine(self.path(session).name, reason)
        self._sync_after_quarantine()
        return moved

    def _quarantine(self, name: str, reason: str) -> QuarantinedFile:
        """Move ``sessions/<name>`` to ``sessions/corrupt/<name>.<unix time>`` (with a counter
        after it when that is taken)."""
        try:
            os.makedirs(self.corrupt_folder, exist_ok=True)
            target = atomic.unused_path(self.corrupt_folder, f"{name}.{int(time.time())}")
            os.rename(self.folder / name, target)
        except OSError as exc:
            why = exc.strerror or str(exc)
            return QuarantinedFile(name=name, reason=f"{reason} (not moved: {why})", moved_to=None)
        return QuarantinedFile(name=name, reason=reason, moved_to=target)

    def _sync_after_quarantine(self) -> None:
        # Best effort: a failure to make the move durable is no reason to refuse to start.
        for folder in (self.corrupt_folder, self.folder):
            with contextlib.suppress(GreenroomError):
                atomic.fsync_folder(folder)


def _read(path: str, limit: int = MAX_SNAPSHOT_BYTES) -> bytes:
    """A file's bytes, read with as few system calls as a small file allows, up to one byte
    past the size limit (so that an oversized file is seen as such without reading it all)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        first = os.read(fd, _FIRST_READ)
        if len(first) < _FIRST_READ:
            return first
        chunks = [first]
        total = len(first)
        while total <= limit:
            chunk = os.read(fd, min(1024 * 1024, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _refuse_ext(code: int, data: bytes) -> object:
    raise ValueError(f"unexpected msgpack extension type {code}")


def _kind(value: object) -> str:
    return "nil" if value is None else type(value).__name__


# -- what a snapshot holds: a session's state but its messages ---------------------------


@attrs.frozen(kw_only=True)
class Dormant:
    """A session whose messages are on disk only."""

    summary: Summary
    seq: int
    partial: str | None = None
    tool_calls: tuple[PartialToolCall, ...] | None = None


def snapshot_payload(state: SessionState | Dormant) -> dict[str, Any]:
    """What is written for a session: everything but its messages."""
    if isinstance(state, Dormant):
        summary, seq, partial, calls = state.summary, state.seq, state.partial, state.tool_calls
    else:
        summary, seq = state.summary(), state.seq
        partial = state.streaming.text if state.streaming is not None else None
        calls = state.streaming.tool_calls if state.streaming is not None else None
    wire = summary_to_record(summary)  # a flush builds one per changed session: no evolve
    wire["preview"] = None  # derived from the partial text when read back
    return {
        "summary": wire,
        "seq": seq,
        "partial": partial,
        "toolCalls": None if calls is None else unstructure(calls),
    }


def dormant_from_payload(session: str, payload: Mapping[str, Any]) -> Dormant:
    """The inverse of :func:`snapshot_payload`; raises GreenroomError on a bad payload."""
    try:
        summary = structure(payload["summary"], Summary)
        seq = payload["seq"]
        partial = payload.get("partial")
        raw_calls = payload.get("toolCalls")
        calls = (
            None if raw_calls is None else structure(raw_calls, tuple[PartialToolCall, ...])
        )
    except Exception as exc:  # cattrs raises several kinds; all mean "not a snapshot"
        raise GreenroomError(f"snapshot of {session} is malformed: {exc}") from exc
    if summary.session != session or not isinstance(seq, int):
        raise GreenroomError(f"snapshot of {session} is malformed")
    try:  # its project names a folder under the projects folder: never one outside it
        validate_project_name(summary.project)
    except InvalidArgument as exc:
        raise GreenroomError(f"snapshot of {session} is malformed: {exc}") from None
    if partial is not None and not isinstance(partial, str):
        raise GreenroomError(f"snapshot of {session} has a bad partial text")
    preview = partial[:50] if partial else None
    return Dormant(
        summary=attrs.evolve(summary, preview=preview), seq=seq, partial=partial, tool_calls=calls
    )


def wake(dormant: Dormant, messages: Sequence[Message]) -> SessionState:
    """A full session state from a dormant one and its messages read from disk."""
    state = SessionState.from_summary(attrs.evolve(dormant.summary, message_count=0))
    state.messages = list(messages)
    state.seq = dormant.seq
    if dormant.partial or dormant.tool_calls:
        state.streaming = Streaming.of(dormant.partial or "", dormant.tool_calls)
    return state
