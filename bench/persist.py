"""Scenario 4: what streaming sessions cost on disk, against the browser system's way.

    python -m bench.persist                 # the whole scenario (subprocess server, fsyncs, naive)
    python -m bench.persist server [--sessions 1000 --rates 20,200 --seconds 10 --clients 1]
    python -m bench.persist naive  [--lengths 10,100,1000 --reply-tokens 100,1000,5000]
    python -m bench.persist stream  [--sessions 1000 --rate 20 --seconds 10 --flush 1.0]
    python -m bench.persist restore [--sessions 10000]

``server`` runs N sessions streaming at each rate R through a real ``greenroom serve`` (clients
in another process) and reports, from ``stats`` and /proc/PID/io, snapshot writes/s, writes per
session per second (bounded by 1/flush interval whatever R), history appends, and bytes written
to disk per committed message. ``stream`` is the same in process (no websocket), where every
``os.fsync`` can be counted: fsyncs/s. ``naive`` writes the same turns the way the original
browser system did (the whole history file rewritten per message, the whole accumulated text
sent per chunk) next to greenroom's way (one line appended per message, a snapshot without the
messages, only the new text per chunk), for growing history and reply lengths, so the O(n)
versus O(n^2) difference shows as figures. ``restore`` writes N snapshots and times an
in-process restore. Each prints a table and writes a JSON file under bench/results/.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from bench.common import print_pairs, print_table, write_result
from bench.idle import payload_factory
from greenroom.config import Config, SimulatedConfig
from greenroom.protocol import commands as cmd
from greenroom.runtime import open_runtime, restore_mirror
from greenroom.store import atomic
from greenroom.store.snapshots import SnapshotStore


def rss_bytes() -> int:
    """Resident memory now (Linux), in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class FsyncCounter:
    """Counts the syncs that reach the disk while installed: os.fsync calls (files and
    folders) and syncfs calls (a whole filesystem each), apart."""

    def __init__(self) -> None:
        self.calls = 0
        self.syncfs_calls = 0
        self._real: Callable[[int], None] = os.fsync
        self._real_syncfs = atomic._syncfs

    def __enter__(self) -> FsyncCounter:
        def counting(fd: int) -> None:
            self.calls += 1
            self._real(fd)

        real_syncfs = self._real_syncfs

        def counting_syncfs(fd: int) -> int:
            self.syncfs_calls += 1
            return real_syncfs(fd) if real_syncfs is not None else 0

        os.fsync = counting
        if real_syncfs is not None:
            atomic._syncfs = counting_syncfs
        return self

    def __exit__(self, *exc: object) -> None:
        os.fsync = self._real
        atomic._syncfs = self._real_syncfs


def folder_bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


async def stream(sessions: int, rate: float, seconds: float, flush: float) -> dict[str, Any]:
    tokens = int(rate * seconds)
    with tempfile.TemporaryDirectory(prefix="greenroom-bench-") as tmp:
        config = Config(
            data_dir=Path(tmp) / "data",
            flush_interval=flush,
            simulated=SimulatedConfig(tokens_per_second=rate),
        )
        with FsyncCounter() as fsyncs:
            async with open_runtime(config) as runtime, runtime.connect() as client:
                ids = [
                    (await runtime.execute(cmd.OpenSession(project=f"p{i:05}"))).summary.session
                    for i in range(sessions)
                ]
                await trio.sleep(flush * 1.5)
                stats0 = runtime.statistics().persistence
                fsyncs0, syncfs0 = fsyncs.calls, fsyncs.syncfs_calls
                started = time.perf_counter()
                for session in ids:
                    await runtime.execute(
                        cmd.SendMessage(session=session, content=f"go [[tokens:{tokens}]]")
                    )
                remaining = set(ids)
                while remaining:
                    event = await client.events.receive()
                    data = event.data
                    if event.name == "loadingChanged" and not data.loading:  # type: ignore[union-attr]
                        remaining.discard(event.session or "")
                elapsed = time.perf_counter() - started
                await trio.sleep(flush * 1.5)
                stats = runtime.statistics().persistence
                fsync_count = fsyncs.calls - fsyncs0
                syncfs_count = fsyncs.syncfs_calls - syncfs0
        history = folder_bytes(config.projects_root, "*.jsonl")
        snapshot_size = folder_bytes(config.data_dir / "sessions", "*.msgpack") / sessions
    writes = stats.snapshot_writes - stats0.snapshot_writes
    partials = stats.partial_snapshots - stats0.partial_snapshots
    partial_files = stats.partials_writes - stats0.partials_writes
    messages = stats.history_appends - stats0.history_appends
    written = history + (writes + partials) * snapshot_size  # a partial costs a snapshot
    return {
        "scenario": "persist.stream",
        "sessions": sessions,
        "tokens_per_second": rate,
        "tokens_per_turn": tokens,
        "flush_interval": flush,
        "turn_seconds": round(elapsed, 3),
        "snapshot_writes": writes,
        "snapshot_writes_per_second": round(writes / elapsed, 1),
        "partial_snapshots": partials,
        "partials_files_per_second": round(partial_files / elapsed, 1),
        "writes_per_session": round((writes + partials) / sessions, 2),
        "fsyncs_per_second": round(fsync_count / elapsed, 1),
        "syncfs_per_second": round(syncfs_count / elapsed, 1),
        "committed_messages": messages,
        "bytes_written_per_committed_message": round(written / max(messages, 1)),
        "snapshot_bytes": round(snapshot_size),
        "write_failures": stats.write_failures,
        "max_flush_seconds": round(stats.max_flush_seconds, 3),
        "flushes": stats.flushes - stats0.flushes,
    }


async def restore(sessions: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="greenroom-bench-") as tmp:
        config = Config(data_dir=Path(tmp) / "data")
        store = SnapshotStore(config.data_dir)
        payload_of = payload_factory()
        batch = 2000
        for start in range(0, sessions, batch):
            chunk = {
                f"s-{i:08x}": payload_of(i) for i in range(start, min(sessions, start + batch))
            }
            await trio.to_thread.run_sync(store.write, chunk)
        gc.collect()
        before = rss_bytes()
        started = time.perf_counter()
        mirror, quarantined = await restore_mirror(config)
        took = time.perf_counter() - started
        gc.collect()
        per_session = (rss_bytes() - before) / sessions
        assert len(mirror.dormant) == sessions and not quarantined
        started = time.perf_counter()
        summaries = mirror.summaries()
        listing = time.perf_counter() - started
    return {
        "scenario": "persist.restore",
        "sessions": len(summaries),
        "restore_seconds": round(took, 3),
        "rss_bytes_per_idle_session": round(per_session),
        "list_seconds": round(listing, 4),
    }


def server(sessions: int, rates: list[float], seconds: float, clients: int) -> list[dict[str, Any]]:
    """The stream scenario through ``greenroom serve`` at each rate: disk figures."""
    from bench.stream import run_stream

    rows = []
    for rate in rates:
        print(f"persist: {sessions} sessions x {rate:g} tokens/s through greenroom serve ...",
              flush=True)  # fmt: skip
        run = run_stream(sessions, rate, clients, seconds)
        window = run["seconds"]
        committed = max(run["history_appends"], 1)
        rows.append(
            {
                "sessions": sessions,
                "tokens_per_second": rate,
                "seconds": window,
                "snapshot_writes": run["snapshot_writes"],
                "snapshot_writes_per_s": round(run["snapshot_writes"] / window, 1),
                "partials_writes_per_s": round(run["partials_writes"] / window, 1),
                # A session written in its own file or in the partials file, either way.
                "writes_per_session_per_s": round(
                    (run["snapshot_writes"] + run["partial_snapshots"]) / sessions / window, 3
                ),
                "files_written_per_s": round(
                    (run["snapshot_writes"] + run["partials_writes"]) / window, 1
                ),
                "flushes": run["flushes"],
                "history_appends": run["history_appends"],
                "disk_write_bytes": run["server_write_bytes"],
                "write_syscall_bytes": run["server_wchar"],
                "disk_bytes_per_committed_message": round(run["server_write_bytes"] / committed),
                "syscall_bytes_per_committed_message": round(run["server_wchar"] / committed),
                "server_cpu": run["server_cpu"],
            }
        )
    return rows


def naive(lengths: list[int], reply_tokens: list[int]) -> dict[str, Any]:
    """Greenroom's writes and sends against the browser system's, as histories and replies
    grow. Both write real files in a temporary folder; bytes are counted, not estimated."""
    from greenroom.protocol.chat import Message
    from greenroom.store.history import append_histories, encode_lines
    from greenroom.store.snapshots import encode_snapshot

    def message(k: int) -> Message:
        words = " ".join(f"word{j % 50}" for j in range(60))  # some 400 characters
        return Message(role="user" if k % 2 == 0 else "assistant", content=f"{k} {words}")

    snapshot_bytes = len(encode_snapshot("s-00000001", payload_factory()(1)))
    disk = []
    with tempfile.TemporaryDirectory(prefix="greenroom-naive-") as tmp:
        for n in lengths:
            history = [message(k) for k in range(n)]
            ours = Path(tmp) / f"ours-{n}.jsonl"
            append_histories({ours: history})
            before = ours.stat().st_size
            started = time.perf_counter()
            append_histories({ours: [message(n)]})
            ours_seconds = time.perf_counter() - started
            appended = ours.stat().st_size - before
            # The browser system: the whole file written again for the new message.
            theirs = Path(tmp) / f"theirs-{n}.jsonl"
            started = time.perf_counter()
            whole = encode_lines([*history, message(n)])
            with open(theirs, "wb") as file:
                file.write(whole)
                file.flush()
                os.fsync(file.fileno())
            theirs_seconds = time.perf_counter() - started
            disk.append(
                {
                    "history_messages": n,
                    "greenroom_bytes_per_message": appended + snapshot_bytes,
                    "greenroom_history_bytes": appended,
                    "greenroom_snapshot_bytes": snapshot_bytes,
                    "naive_bytes_per_message": len(whole),
                    "naive_over_greenroom": round(len(whole) / (appended + snapshot_bytes), 1),
                    "greenroom_ms": round(ours_seconds * 1000, 2),
                    "naive_ms": round(theirs_seconds * 1000, 2),
                }
            )
    wire = []
    envelope = {"event": "streamingUpdate", "session": "s-1d13a145", "project": "blog", "seq": 0}
    for count in reply_tokens:
        tokens = [f"word{j % 50} " for j in range(count)]
        ours_bytes = theirs_bytes = 0
        text = ""
        for seq, token in enumerate(tokens):
            offset = len(text)
            text += token
            ours_bytes += len(json.dumps({**envelope, "seq": seq, "data": {
                "offset": offset, "delta": token, "toolCalls": None}}))  # fmt: skip
            theirs_bytes += len(json.dumps({**envelope, "seq": seq, "data": {
                "content": text}}))  # fmt: skip
        wire.append(
            {
                "reply_tokens": count,
                "greenroom_bytes_sent": ours_bytes,
                "naive_bytes_sent": theirs_bytes,
                "naive_over_greenroom": round(theirs_bytes / ours_bytes, 1),
            }
        )
    return {"disk": disk, "wire": wire}


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.persist",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="scenario")
    a = sub.add_parser("all", help="the whole scenario (the default)")
    v = sub.add_parser("server")
    for p in (a, v):
        p.add_argument("--sessions", type=int, default=1000)
        p.add_argument("--rates", default="20,200")
        p.add_argument("--seconds", type=float, default=10.0)
        p.add_argument("--clients", type=int, default=1)
        p.add_argument("--flush", type=float, default=1.0, help="(in-process run only)")
    n = sub.add_parser("naive")
    for p in (a, n):
        p.add_argument("--lengths", default="10,100,1000,10000")
        p.add_argument("--reply-tokens", default="100,1000,10000")
    s = sub.add_parser("stream")
    s.add_argument("--sessions", type=int, default=1000)
    s.add_argument("--rate", type=float, default=20.0)
    s.add_argument("--seconds", type=float, default=10.0)
    s.add_argument("--flush", type=float, default=1.0)
    r = sub.add_parser("restore")
    r.add_argument("--sessions", type=int, default=10_000)
    for p in (a, v, n, s, r):
        p.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv or ["all"])
    result: dict[str, Any]
    if args.scenario == "stream":
        result = trio.run(stream, args.sessions, args.rate, args.seconds, args.flush)
        print_pairs(result)
        write_result(result.pop("scenario"), result, args.out)
        return result
    if args.scenario == "restore":
        result = trio.run(restore, args.sessions)
        print_pairs(result)
        write_result(result.pop("scenario"), result, args.out)
        return result
    result = {}
    if args.scenario in ("all", "server"):
        result["server"] = server(args.sessions, _floats(args.rates), args.seconds, args.clients)
        print()
        print_table(result["server"], list(result["server"][0]))
    if args.scenario == "all":
        print("persist: in process, counting fsyncs ...", flush=True)
        rate = _floats(args.rates)[0]
        inproc = trio.run(stream, args.sessions, rate, args.seconds, args.flush)
        inproc.pop("scenario")
        result["in_process"] = inproc
        print()
        print_pairs(inproc)
    if args.scenario in ("all", "naive"):
        result["naive"] = naive(_ints(args.lengths), _ints(args.reply_tokens))
        print()
        print_table(result["naive"]["disk"], list(result["naive"]["disk"][0]))
        print()
        print_table(result["naive"]["wire"], list(result["naive"]["wire"][0]))
    write_result("persist" if args.scenario == "all" else f"persist.{args.scenario}", result,
                 args.out)  # fmt: skip
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
