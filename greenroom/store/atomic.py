"""Crash-safe file writes: atomic replacement and durable appends, in batches.

Synchronous on purpose: the persistence actor calls these through ``trio.to_thread.run_sync``
with a whole flush at once, so that the folder fsyncs, the expensive part, are paid once per
folder per flush rather than once per file.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from greenroom.protocol.errors import GreenroomError

_TEMP_MARK = ".tmp-"
_TEMP_NAME = re.compile(r".+\.tmp-[0-9a-f]{16}")
_CHUNK = 64 * 1024


class StoreWriteError(GreenroomError):
    """A file could not be written (disk full, read-only folder, ...).

    ``path`` is the file, ``reason`` the operating system's words for why. Nothing that was on
    disk before the failed write is damaged.
    """

    def __init__(self, path: Path, reason: str, *, errno: int | None = None) -> None:
        super().__init__(f"cannot write {path.name}: {reason}")
        self.path = path
        self.reason = reason
        self.errno = errno


def _error(path: Path, exc: OSError) -> StoreWriteError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return StoreWriteError(path, reason, errno=exc.errno)


@contextlib.contextmanager
def _fsyncing(folders: Mapping[Path, None]) -> Iterator[None]:
    """Fsync each of ``folders`` (filled in by the block) once the block ends, and also when
    it fails: the renames and creations that did happen should be durable too, and the first
    error is the news."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(GreenroomError):
            _fsync_folders(folders)
        raise
    _fsync_folders(folders)


def write_files_atomically(files: Mapping[Path, bytes]) -> None:
    """Replace each file with its new bytes so that a crash leaves it either old or new.

    Each file goes to a temp file beside it, is fsynced and renamed over the target; then each
    distinct folder is fsynced once, which is what makes the renames durable and a flush of a
    thousand files affordable. Missing folders are created. On failure the temp file is
    removed and :class:`StoreWriteError` is raised; files replaced before the failure stay
    replaced (each one is whole), the failed one and those after it keep their old content.
    """
    folders: dict[Path, None] = {}  # insertion-ordered set
    with _fsyncing(folders):
        for path, data in files.items():
            folder = path.parent
            if folder not in folders:
                _ensure_folder(folder, path)
            _replace(path, data)
            folders[folder] = None


def append_lines(
    appends: Mapping[Path, bytes],
    *,
    keep_tail: Callable[[bytes], bool] | None = None,
) -> None:
    """Append each blob of whole lines to its file and fsync it; create missing files and folders.

    Bytes already in a file are never changed, with one exception that keeps line files
    readable after a crash: a file whose last line has no newline (an append cut short by a
    crash) first gets that tail either cut off or, when ``keep_tail(tail)`` says it is a whole
    line that merely lacks its newline (files written by other tools), completed with a
    newline. A folder is fsynced once when a file was created in it.
    """
    created_in: dict[Path, None] = {}
    with _fsyncing(created_in):
        for path, data in appends.items():
            if _append(path, data, keep_tail)[0]:
                created_in[path.parent] = None


def write_batch(
    appends: Mapping[Path, bytes],
    files: Mapping[Path, bytes],
    *,
    keep_tail: Callable[[bytes], bool] | None = None,
) -> None:
    """One flush: append to some files, replace others atomically, all made durable together.

    Everything is written first with no sync; then the data is made durable with one
    ``syncfs`` per filesystem touched (Linux; elsewhere, one fsync per file); then the temp
    files are renamed over their targets and each folder is fsynced once. So a flush of a
    thousand sessions costs a handful of syncs, not two thousand, and a crash still leaves
    each replaced file either old or new. Appends follow :func:`append_lines`' rules. On
    failure :class:`StoreWriteError` names the file; appends before it were made, files
    replaced before it stay replaced, and no temp file is left behind.
    """
    folders: dict[Path, None] = {}  # folders whose entries change: synced at the end
    # Folders that gain an entry before the renames (new folders, new files): synced with the
    # data, so that a snapshot never counts a line in a file not yet durably there.
    changed: dict[Path, None] = {}
    temps: list[tuple[Path, Path]] = []
    with _fsyncing(folders):
        try:
            written: dict[Path, int] = {}  # each appended file, and its size before the append
            for path, data in appends.items():
                created, before = _append(path, data, keep_tail, sync=False, changed=changed)
                if created:
                    changed[path.parent] = None
                written[path] = before
            for path, data in files.items():
                if path.parent not in folders:
                    _ensure_folder(path.parent, path, changed)
                    folders[path.parent] = None
                temps.append((_write_temp(path, data, sync=False), path))
            try:
                _sync_data([*written, *(temp for temp, _ in temps)], changed)
            except StoreWriteError as error:
                # No append is known to be durable: undo them all and name the first, so that
                # the caller appends all of them again rather than some of them twice.
                for path, before in written.items():
                    _truncate_quietly(path, before)
                if not written:
                    raise
                first = next(iter(written))
                raise StoreWriteError(first, error.reason, errno=error.errno) from error
            while temps:
                temp, path = temps[0]
                try:
                    os.replace(temp, path)
                except OSError as exc:
                    raise _error(path, exc) from exc
                temps.pop(0)
        except BaseException:
            for temp, _ in temps:
                _unlink_quietly(temp)
            raise


def _sync_data(paths: Iterable[Path], folders: Iterable[Path] = ()) -> None:
    """Make the written data of ``paths`` and the entries of ``folders`` durable, with as few
    syscalls as possible: one syncfs per filesystem covers them all."""
    paths = list(paths)
    if _syncfs is not None and paths:
        _syncfs_of(paths)
        return
    for path in paths:
        _fsync_path(path)
    _fsync_folders(folders)


def _syncfs_of(paths: Iterable[Path]) -> None:
    """One syncfs per filesystem that ``paths`` (files or folders) are on (Linux only)."""
    syncfs = _syncfs
    assert syncfs is not None
    devices: dict[int, Path] = {}
    for path in paths:
        try:
            devices.setdefault(os.stat(path).st_dev, path)
        except OSError as exc:
            raise _error(path, exc) from exc
    for path in devices.values():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _error(path, exc) from exc
        try:
            if syncfs(fd) != 0:
                code = ctypes.get_errno()
                raise _error(path, OSError(code, os.strerror(code)))
        finally:
            os.close(fd)


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _error(path, exc) from exc


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2), which flushes one whole filesystem in one call; None elsewhere."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_syncfs = _load_syncfs()


def remove_stale_temps(folder: Path) -> int:
    """Remove the temp files that a crash in :func:`write_files_atomically` left in ``folder``.

    Call it only while nothing is writing into ``folder`` (at startup): a temp file being
    written looks the same as a stale one. Returns how many were removed.
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise _error(folder, exc) from exc
    for entry in entries:
        if is_temp_name(entry.name):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _error(Path(entry.path), exc) from exc
            removed += 1
    return removed


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of the temp file names :func:`write_files_atomically` uses."""
    return _TEMP_MARK in name and _TEMP_NAME.fullmatch(name) is not None


def unused_path(folder: Path, name: str) -> Path:
    """``folder/name``, or else ``name.1``, ``name.2``, ...: the first that holds nothing, so
    that what is set aside never replaces what an earlier incident set aside."""
    target, counter = folder / name, 0
    while target.exists():
        counter += 1
        target = folder / f"{name}.{counter}"
    return target


def fsync_folder(folder: Path) -> None:
    """Make the creation, renaming and removal of entries in ``folder`` durable."""
    _fsync_folders([folder])


def _replace(path: Path, data: bytes) -> None:
    temp = _write_temp(path, data, sync=True)
    try:
        os.replace(temp, path)
    except BaseException as exc:
        _unlink_quietly(temp)
        if isinstance(exc, OSError):
            raise _error(path, exc) from exc
        raise


def _write_temp(path: Path, data: bytes, *, sync: bool) -> Path:
    """Write ``data`` to a new temp file beside ``path``; return the temp file's path."""
    temp = path.with_name(f"{path.name}{_TEMP_MARK}{os.urandom(8).hex()}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise _error(path, exc) from exc
    try:
        try:
            _write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException as exc:
        _unlink_quietly(temp)
        if isinstance(exc, OSError):
            raise _error(path, exc) from exc
        raise
    return temp


def _append(
    path: Path,
    data: bytes,
    keep_tail: Callable[[bytes], bool] | None,
    *,
    sync: bool = True,
    changed: dict[Path, None] | None = None,
) -> tuple[bool, int]:
    """Append to one file; return whether the file was created, and its size before.

    A failed append (a short write on a full disk, a failed fsync) is cut off again, so that
    the caller can append the same lines later without writing some of them twice.
    """
    flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC  # read: to look at the last line
    created = False
    try:
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            _ensure_folder(path.parent, path, changed)
            fd = os.open(path, flags | os.O_CREAT, 0o644)
            created = True
    except OSError as exc:
        raise _error(path, exc) from exc
    before = 0
    try:
        try:
            if not created:
                data = _mend_tail(fd, data, keep_tail)
                before = os.fstat(fd).st_size
            try:
                _write_all(fd, data)
                if sync:
                    os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, before)
                raise
        finally:
            os.close(fd)
    except OSError as exc:
        raise _error(path, exc) from exc
    return created, before


def _truncate_quietly(path: Path, size: int) -> None:
    with contextlib.suppress(OSError):
        os.truncate(path, size)


def _mend_tail(fd: int, data: bytes, keep_tail: Callable[[bytes], bool] | None) -> bytes:
    """Deal with an unterminated last line before appending (see :func:`append_lines`)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return data
    # Find the start of the unterminated tail, reading backwards.
    end = size
    start = 0
    while end > 0:
        begin = max(0, end - _CHUNK)
        newline = os.pread(fd, end - begin, begin).rfind(b"\n")
        if newline >= 0:
            start = begin + newline + 1
            break
        end = begin
    tail = os.pread(fd, size - start, start) if keep_tail is not None else b""
    if keep_tail is not None and keep_tail(tail):
        return b"\n" + data
    os.ftruncate(fd, start)
    return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _ensure_folder(
    folder: Path, for_file: Path, changed: dict[Path, None] | None = None
) -> None:
    """Create ``folder`` (and its parents) if missing: durably, or, when ``changed`` is given,
    adding to it the folders that gained an entry, for the caller to sync with the rest."""
    if folder.is_dir():
        return
    missing: list[Path] = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        for item in reversed(missing):
            try:
                os.mkdir(item)
            except FileExistsError:
                if not item.is_dir():
                    raise
            if changed is None:
                _fsync_folders([item.parent])
            else:
                changed[item.parent] = None
    except OSError as exc:
        raise _error(for_file, exc) from exc


_SYNCFS_ABOVE = 4
"""More folders than this to sync at once (a flush that created many projects' history
folders): one syncfs per filesystem instead of a fsync each."""


def _fsync_folders(folders: Iterable[Path]) -> None:
    folders = list(folders)
    if _syncfs is not None and len(folders) > _SYNCFS_ABOVE:
        _syncfs_of(folders)
        return
    for folder in folders:
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _error(folder, exc) from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            # Some filesystems cannot fsync a folder and say so with EINVAL; their renames
            # are as durable as they will ever be.
            if exc.errno != errno.EINVAL:
                raise _error(folder, exc) from exc
        finally:
            os.close(fd)


def _unlink_quietly(path: Path) -> None:
    # Cleanup after a failure: the original error is the one to report.
    with contextlib.suppress(OSError):
        os.unlink(path)
