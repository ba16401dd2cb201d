"""Atomic replacement and durable appends, on real files."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenroom.store import atomic
from greenroom.store.atomic import (
    StoreWriteError,
    append_lines,
    remove_stale_temps,
    write_files_atomically,
)


class FsyncCounter:
    """Counts fsync calls, split into files and folders."""

    def __init__(self) -> None:
        self.files = 0
        self.folders = 0

    def __call__(self, fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            self.folders += 1
        else:
            self.files += 1


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> FsyncCounter:
    counter = FsyncCounter()
    real = os.fsync

    def counting(fd: int) -> None:
        counter(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return counter


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder that refuses writes for real: chmod when that works (not root), else a path
    whose parent is a regular file."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "existing").write_bytes(b"old")
    folder.chmod(0o555)
    try:
        (folder / "probe").write_bytes(b"x")
    except PermissionError:
        yield folder
    else:
        (folder / "probe").unlink()
        folder.chmod(0o755)
        blocker = tmp_path / "blocker"
        blocker.write_bytes(b"a file, not a folder")
        yield blocker
    finally:
        folder.chmod(0o755)


def entries(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    write_files_atomically({target: b"first"})
    assert target.read_bytes() == b"first"
    write_files_atomically({target: b"second, longer"})
    assert target.read_bytes() == b"second, longer"
    write_files_atomically({target: b""})
    assert target.read_bytes() == b""
    assert entries(tmp_path) == ["a.bin"]


def test_write_creates_missing_folders(tmp_path: Path) -> None:
    target = tmp_path / "x" / "y" / "z.bin"
    write_files_atomically({target: b"deep"})
    assert target.read_bytes() == b"deep"


def test_write_many_files_leaves_no_temp(tmp_path: Path) -> None:
    files = {tmp_path / f"f{i}": f"content {i}".encode() for i in range(50)}
    write_files_atomically(files)
    for path, data in files.items():
        assert path.read_bytes() == data
    assert len(entries(tmp_path)) == 50


def test_folder_fsyncs_are_grouped(tmp_path: Path, fsyncs: FsyncCounter) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    files = {one / f"f{i}": b"x" for i in range(20)}
    files.update({two / f"g{i}": b"y" for i in range(5)})
    write_files_atomically(files)
    assert fsyncs.files == 25
    assert fsyncs.folders == 2


def test_single_folder_batch_has_one_folder_fsync(tmp_path: Path, fsyncs: FsyncCounter) -> None:
    write_files_atomically({tmp_path / f"f{i}": b"x" for i in range(100)})
    assert (fsyncs.files, fsyncs.folders) == (100, 1)


def test_failed_fsync_keeps_old_file_and_removes_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "keep.bin"
    write_files_atomically({target: b"old content"})

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StoreWriteError) as caught:
        write_files_atomically({target: b"new content"})
    monkeypatch.undo()
    assert caught.value.path == target
    assert caught.value.errno == errno.ENOSPC
    assert "keep.bin" in str(caught.value)
    assert "No space left" in caught.value.reason
    assert target.read_bytes() == b"old content"
    assert entries(tmp_path) == ["keep.bin"]


def test_failed_write_midway_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short write then ENOSPC, the way a nearly full disk fails."""
    target = tmp_path / "keep.bin"
    write_files_atomically({target: b"old"})
    real_write = os.write
    calls = 0

    def nearly_full(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, bytes(data[:3]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", nearly_full)
    with pytest.raises(StoreWriteError):
        write_files_atomically({target: b"0123456789"})
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert entries(tmp_path) == ["keep.bin"]


def test_batch_failure_keeps_earlier_files_whole(tmp_path: Path, read_only_folder: Path) -> None:
    good = tmp_path / "good.bin"
    bad = read_only_folder / "new.bin"
    with pytest.raises(StoreWriteError) as caught:
        write_files_atomically({good: b"written", bad: b"refused"})
    assert caught.value.path == bad
    assert caught.value.reason
    assert good.read_bytes() == b"written"


def test_read_only_folder_refuses_with_reason(read_only_folder: Path) -> None:
    with pytest.raises(StoreWriteError) as caught:
        write_files_atomically({read_only_folder / "existing": b"new"})
    assert caught.value.reason in {"Permission denied", "Not a directory"}
    if read_only_folder.is_dir():
        assert (read_only_folder / "existing").read_bytes() == b"old"
        assert entries(read_only_folder) == ["existing"]


def test_dev_full_gives_enospc(tmp_path: Path) -> None:
    """Appending to /dev/full fails for real with ENOSPC, and the error says so."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with pytest.raises(StoreWriteError) as caught:
        append_lines({Path("/dev/full"): b"line\n"})
    assert caught.value.errno == errno.ENOSPC


def test_remove_stale_temps(tmp_path: Path) -> None:
    (tmp_path / "s-1.msgpack").write_bytes(b"keep")
    (tmp_path / "s-1.msgpack.tmp-0123456789abcdef").write_bytes(b"stale")
    (tmp_path / "notes.tmp-x").write_bytes(b"not ours")
    assert remove_stale_temps(tmp_path) == 1
    assert entries(tmp_path) == ["notes.tmp-x", "s-1.msgpack"]
    assert remove_stale_temps(tmp_path / "missing") == 0


def test_temp_names_are_recognised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str | Path, dst: str | Path) -> None:
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_files_atomically({tmp_path / "a.msgpack": b"x"})
    assert len(seen) == 1
    assert seen[0].startswith("a.msgpack.tmp-")
    assert atomic.is_temp_name(seen[0])


# -- append_lines ---------------------------------------------------------------------------


def test_append_only_appends(tmp_path: Path) -> None:
    path = tmp_path / "h" / "log.jsonl"
    append_lines({path: b"one\n"})
    before = path.read_bytes()
    append_lines({path: b"two\nthree\n"})
    after = path.read_bytes()
    assert after[: len(before)] == before
    assert after == b"one\ntwo\nthree\n"


def test_append_fsyncs_each_file_and_new_folders_once(tmp_path: Path, fsyncs: FsyncCounter) -> None:
    existing = tmp_path / "old.log"
    existing.write_bytes(b"x\n")
    appends = {tmp_path / f"new{i}.log": b"line\n" for i in range(10)}
    appends[existing] = b"y\n"
    append_lines(appends)
    assert fsyncs.files == 11
    assert fsyncs.folders == 1
    fsyncs.files = fsyncs.folders = 0
    append_lines({existing: b"z\n"})
    assert (fsyncs.files, fsyncs.folders) == (1, 0)


def test_append_cuts_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b'whole\n{"half')
    append_lines({path: b"next\n"})
    assert path.read_bytes() == b"whole\nnext\n"


def test_append_cuts_torn_tail_longer_than_a_chunk(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"whole\n" + b"x" * 200_000)
    append_lines({path: b"next\n"})
    assert path.read_bytes() == b"whole\nnext\n"
    path.write_bytes(b"y" * 100_000)
    append_lines({path: b"next\n"})
    assert path.read_bytes() == b"next\n"


def test_append_keeps_a_whole_unterminated_line(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"one\ntwo")
    append_lines({path: b"three\n"}, keep_tail=lambda tail: tail == b"two")
    assert path.read_bytes() == b"one\ntwo\nthree\n"


def test_append_failure_names_file(read_only_folder: Path) -> None:
    with pytest.raises(StoreWriteError) as caught:
        append_lines({read_only_folder / "sub" / "log": b"x\n"})
    assert "log" in str(caught.value)


class TestWriteBatch:
    """One flush: appends and atomic replacements, made durable with grouped syncs."""

    def files(self, folder: Path, count: int) -> dict[Path, bytes]:
        return {folder / f"f{i}.bin": f"new {i}".encode() for i in range(count)}

    def test_appends_and_replaces_with_one_syncfs_per_filesystem(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsyncs: FsyncCounter
    ) -> None:
        syncs: list[int] = []
        real = atomic._syncfs  # the grouping is what is tested; the kernel call is real on Linux

        def counting(fd: int) -> int:
            syncs.append(fd)
            return real(fd) if real is not None else 0

        monkeypatch.setattr(atomic, "_syncfs", counting)
        log = tmp_path / "logs" / "a.jsonl"
        log.parent.mkdir()
        log.write_bytes(b"old\n")
        (tmp_path / "snap").mkdir()
        files = self.files(tmp_path / "snap", 100)
        atomic.write_batch({log: b"more\n"}, files)
        assert log.read_bytes() == b"old\nmore\n"
        assert all(path.read_bytes() == data for path, data in files.items())
        assert len(syncs) == 1  # one filesystem
        # No file fsync at all; the snapshot folder once; the log's folder gained no entry.
        assert (fsyncs.files, fsyncs.folders) == (0, 1)
        assert not [p for p in (tmp_path / "snap").iterdir() if atomic.is_temp_name(p.name)]

    def test_many_new_folders_cost_a_syncfs_not_a_fsync_each(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsyncs: FsyncCounter
    ) -> None:
        syncs: list[int] = []
        real = atomic._syncfs

        def counting(fd: int) -> int:
            syncs.append(fd)
            return real(fd) if real is not None else 0

        monkeypatch.setattr(atomic, "_syncfs", counting)
        # The first turn of twenty new projects: each history file in folders made for it.
        appends = {tmp_path / f"p{n}" / ".ai" / "history" / "h.jsonl": b"line\n" for n in range(20)}
        (tmp_path / "snap").mkdir()
        atomic.write_batch(appends, self.files(tmp_path / "snap", 20))
        assert all(path.read_bytes() == b"line\n" for path in appends)
        # Before the renames, one syncfs for the data and the sixty new entries; after them,
        # the snapshot folder's one fsync. Before grouping: sixty folder fsyncs more.
        assert len(syncs) == 1
        assert (fsyncs.files, fsyncs.folders) == (0, 1)

    def test_without_syncfs_new_folders_are_durable_before_the_renames(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsyncs: FsyncCounter
    ) -> None:
        monkeypatch.setattr(atomic, "_syncfs", None)
        folders_at_rename: list[int] = []
        real_replace = os.replace

        def replace(src: object, dst: object) -> None:
            folders_at_rename.append(fsyncs.folders)
            real_replace(src, dst)  # type: ignore[arg-type]

        monkeypatch.setattr(atomic.os, "replace", replace)
        log = tmp_path / "new" / "deeper" / "log.jsonl"
        atomic.write_batch({log: b"line\n"}, self.files(tmp_path, 1))
        # tmp_path gained "new", "new" gained "deeper", "deeper" gained the log: all three
        # folders were synced before the snapshot's rename, which counts the line.
        assert folders_at_rename == [3]

    def test_without_syncfs_every_file_is_fsynced(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsyncs: FsyncCounter
    ) -> None:
        monkeypatch.setattr(atomic, "_syncfs", None)
        atomic.write_batch({}, self.files(tmp_path, 10))
        assert (fsyncs.files, fsyncs.folders) == (10, 1)

    def test_a_failure_leaves_old_files_and_no_temps(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        files = self.files(tmp_path, 5)
        for path in files:
            path.write_bytes(b"old")
        real_replace = os.replace
        calls = 0

        def failing(src: object, dst: object) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_replace(src, dst)  # type: ignore[arg-type]

        monkeypatch.setattr(atomic.os, "replace", failing)
        with pytest.raises(atomic.StoreWriteError, match="No space left") as caught:
            atomic.write_batch({}, files)
        paths = list(files)
        assert caught.value.path == paths[2]
        assert [p.read_bytes() for p in paths] == [b"new 0", b"new 1", b"old", b"old", b"old"]
        assert not [p for p in tmp_path.iterdir() if atomic.is_temp_name(p.name)]
