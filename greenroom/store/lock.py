"""One server per data folder: an exclusive lock, taken before anything there is read.

Two servers on one folder would both restore the same sessions and append to the same history
files. The lock is ``flock`` on ``<data dir>/greenroom.lock``, held for the life of the open file
(the process's life: the kernel drops it when the process dies, however it dies, so a kill -9
never leaves a stale lock). The file says who holds it, for the refusal's message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Final

import attrs

from greenroom.protocol.errors import GreenroomError

LOCK_FILE: Final = "greenroom.lock"


class DataDirLocked(GreenroomError):
    """Another process holds the data folder; ``holder`` is what it wrote about itself."""

    def __init__(self, folder: Path, holder: dict[str, Any]) -> None:
        pid = holder.get("pid")
        url = holder.get("url")
        who = f"pid {pid}" if pid is not None else "another process"
        where = f", serving at {url}" if url else ""
        super().__init__(
            f"another greenroom server ({who}{where}) already uses the data folder {folder}; "
            "stop it first, or give this one its own --data-dir"
        )
        self.holder = holder


@attrs.define(eq=False)
class DataDirLock:
    """The held lock; :meth:`describe` records where the server listens."""

    folder: Path
    _fd: int | None

    def describe(self, **info: Any) -> None:
        """Say who holds the lock (pid, and what ``info`` adds: the URL), for the next one."""
        if self._fd is None:
            return
        data = json.dumps({"pid": os.getpid(), **info}).encode("utf-8")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the file drops the lock
            self._fd = None


def lock_data_dir(folder: Path) -> DataDirLock:
    """Take the data folder's lock (creating the folder), or raise :class:`DataDirLocked`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise DataDirLocked(folder, holder) from None
    except BaseException:
        os.close(fd)
        raise
    lock = DataDirLock(folder=folder, fd=fd)
    lock.describe()
    return lock


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data.decode("utf-8")) if data else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}
