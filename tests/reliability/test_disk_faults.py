"""Disk faults while flushing: the server keeps running, says so, keeps the mirror, retries,
and damages nothing already on disk; after the fault every message is on disk exactly once.

Tests run as root in CI, where chmod stops nothing, so the faults are injected: the store's
``os`` module is swapped (in greenroom.store.atomic only) for one whose ``write`` fails with
ENOSPC after a short write, whose ``open`` for writing fails with EROFS, or whose ``syncfs`` /
``fsync`` fails with EIO. One more test makes a real fault (the sessions folder replaced by a
file) and reads the failure over the websocket ``stats``.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import trio

import greenroom.store.atomic as atomic
from greenroom.actors.persistence import COOL_FLUSHES
from greenroom.config import Config
from greenroom.protocol import commands as cmd
from greenroom.protocol.chat import Message
from greenroom.protocol.events import LoadingChanged
from greenroom.runtime import Runtime
from greenroom.store.history import history_path, read_history
from tests.conftest import make_config, next_event, open_test_runtime, turn_ended
from tests.reliability.support import open_server
from tests.transport.test_server_support import WireClient, open_client
from tests.transport.test_server_support import turn_ended as wire_turn_ended


class FaultyOs:
    """``os`` as greenroom.store.atomic sees it, with one fault switched on or off."""

    def __init__(self, fault: str) -> None:
        self.fault = fault
        self.on = False
        self.injected = 0
        self._short = False

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: Any) -> int:
        if self.on and self.fault == "enospc":
            self.injected += 1
            # As a disk fills: a short write (all but the last byte), then ENOSPC.
            self._short = not self._short
            if self._short and len(data) > 1:
                return os.write(fd, bytes(data[:-1]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)

    def open(self, path: Any, flags: int, mode: int = 0o777) -> int:
        if self.on and self.fault == "erofs" and flags & (os.O_WRONLY | os.O_RDWR):
            self.injected += 1
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return os.open(path, flags, mode)

    def fsync(self, fd: int) -> None:
        if self.on and self.fault == "eio":
            self.injected += 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fsync(fd)


async def turn(runtime: Runtime, session: str, text: str) -> None:
    async with runtime.connect() as client:
        await runtime.execute(cmd.SendMessage(session=session, content=text))
        ended = await next_event(client, turn_ended(session), limit=600)
    assert ended.data == LoadingChanged(loading=False, reason="completed")


def disk_state(config: Config, session: str, project: str) -> tuple[bytes, list[Message]]:
    snapshot = (config.data_dir / "sessions" / f"{session}.msgpack").read_bytes()
    folder = config.projects_root / project / ".ai" / "history"
    (history,) = folder.iterdir()
    return snapshot, read_history(history)


@pytest.mark.parametrize("fault", ["enospc", "erofs", "eio"])
async def test_a_failing_disk_keeps_the_server_and_the_data(
    tmp_path: Path,
    autojump_clock: trio.abc.Clock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    faulty = FaultyOs(fault)
    monkeypatch.setattr(atomic, "os", faulty)
    real_syncfs = atomic._syncfs
    if fault == "eio" and real_syncfs is not None:

        def failing_syncfs(fd: int) -> int:
            if faulty.on:
                faulty.injected += 1
                return -1
            return real_syncfs(fd)

        monkeypatch.setattr(atomic, "_syncfs", failing_syncfs)
    config = make_config(tmp_path)
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="disk"))).summary.session
        await turn(runtime, session, "before the fault")
        await trio.sleep(3 + COOL_FLUSHES * config.flush_interval)  # at rest in its own file
        before_snapshot, before_history = disk_state(config, session, "disk")
        history_file = next((config.projects_root / "disk" / ".ai" / "history").iterdir())
        before_bytes = history_file.read_bytes()
        assert len(before_history) == 2

        faulty.on = True
        with caplog.at_level(logging.ERROR, logger="greenroom"):
            await turn(runtime, session, "during the fault")
            await turn(runtime, session, "create file f.txt with still working")
            await trio.sleep(5)
        stats = runtime.statistics().persistence
        assert faulty.injected and stats.write_failures >= 2, stats
        assert stats.last_failure
        assert any("will retry" in r.getMessage() for r in caplog.records)
        # The mirror kept everything; the server still runs turns.
        state = await runtime.get_state(session)
        assert state.summary.message_count == 2 + 2 + 4
        # Nothing on disk before the fault was damaged (an append may have a cut tail).
        snapshot, history = disk_state(config, session, "disk")
        assert snapshot == before_snapshot
        assert history_file.read_bytes().startswith(before_bytes)
        assert history[:2] == before_history

        faulty.on = False  # the disk recovers: the next flush writes everything
        failures = stats.write_failures
        await trio.sleep(3)
        stats = runtime.statistics().persistence
        assert stats.write_failures == failures
        messages = list(state.messages)
    async with open_test_runtime(config) as runtime:
        restored = await runtime.get_state(session)
    assert list(restored.messages) == messages  # each message on disk, exactly once, in order
    assert read_history(history_path(config.projects_root / "disk", restored.summary.name)) == (
        messages
    )


async def test_a_write_failure_shows_in_stats_over_the_websocket(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with (
            open_server(tmp_path, flush_interval=0.05) as running,
            open_client(running.address) as client,
        ):
            await client.next_item()
            session = (await client.call("openSession", project="wire"))["session"]["session"]
            await client.call("subscribe", session=session)
            await client.call("sendMessage", session=session, content="one")
            await client.event(wire_turn_ended(session))
            folder = tmp_path / "data" / "sessions"
            while not any(folder.iterdir()):  # noqa: ASYNC110 - polling the server
                await trio.sleep(0.05)
            away = folder.with_name("sessions-away")
            folder.rename(away)
            folder.write_text("a file where the folder was")  # a real fault, even for root
            await client.call("sendMessage", session=session, content="two")
            await client.event(wire_turn_ended(session))
            while not (await client.call("stats"))["persistence"]["writeFailures"]:  # noqa: ASYNC110 - polling the server
                await trio.sleep(0.05)
            persistence = (await client.call("stats"))["persistence"]
            assert persistence["lastFailure"], persistence
            assert (await client.call("openSession", project="wire"))["session"][
                "messageCount"
            ] == 4
            folder.unlink()
            away.rename(folder)
            # Writes succeed again. A flush that began before the folder came back may still
            # fail (and be counted), so look after the first write that succeeded: from then
            # on no write fails, and the session keeps being written.
            after = await written_after(client, persistence["snapshotWrites"])
            await client.call("sendMessage", session=session, content="three")
            await client.event(wire_turn_ended(session))
            again = await written_after(client, after["snapshotWrites"])
            assert again["writeFailures"] == after["writeFailures"]


async def written_after(client: WireClient, snapshots: int) -> dict[str, Any]:
    """The persistence statistics once a snapshot write after the first ``snapshots`` is done."""
    while (stats := (await client.call("stats"))["persistence"])["snapshotWrites"] <= snapshots:  # noqa: ASYNC110 - polling the server
        await trio.sleep(0.05)
    return stats
