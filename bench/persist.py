"""Persistence figures: what streaming sessions cost on disk, and what a restore costs.

    python -m bench.persist stream  [--sessions 1000 --rate 20 --seconds 10 --flush 1.0]
    python -m bench.persist restore [--sessions 10000]

``stream`` runs N sessions of the in-process runtime, each streaming at R tokens/s on the real
clock, and reports snapshot writes/s, fsyncs/s, and bytes written per committed message.
``restore`` writes N snapshots, then times a restore (every session listed, none loaded) and
measures the memory it takes. Both print a table and write a JSON file under bench/results/.
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

from greenroom.config import Config, SimulatedConfig
from greenroom.runtime import open_runtime, restore_mirror
from greenroom.store.snapshots import SnapshotStore

RESULTS = Path(__file__).parent / "results"


def rss_bytes() -> int:
    """Resident memory now (Linux), in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class FsyncCounter:
    """Counts os.fsync calls (files and folders) while installed."""

    def __init__(self) -> None:
        self.calls = 0
        self._real: Callable[[int], None] = os.fsync

    def __enter__(self) -> FsyncCounter:
        def counting(fd: int) -> None:
            self.calls += 1
            self._real(fd)

        os.fsync = counting
        return self

    def __exit__(self, *exc: object) -> None:
        os.fsync = self._real


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
                    (await runtime.open_session(f"p{i:05}")).summary.session
                    for i in range(sessions)
                ]
                await trio.sleep(flush * 1.5)
                stats0 = runtime.statistics().persistence
                fsyncs0 = fsyncs.calls
                started = time.perf_counter()
                for session in ids:
                    await runtime.send_message(session, f"go [[tokens:{tokens}]]")
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
        history = folder_bytes(config.projects_root, "*.jsonl")
        snapshot_size = folder_bytes(config.data_dir / "sessions", "*.msgpack") / sessions
    writes = stats.snapshot_writes - stats0.snapshot_writes
    messages = stats.history_appends - stats0.history_appends
    written = history + writes * snapshot_size
    return {
        "scenario": "persist.stream",
        "sessions": sessions,
        "tokens_per_second": rate,
        "tokens_per_turn": tokens,
        "flush_interval": flush,
        "turn_seconds": round(elapsed, 3),
        "snapshot_writes": writes,
        "snapshot_writes_per_second": round(writes / elapsed, 1),
        "writes_per_session": round(writes / sessions, 2),
        "fsyncs_per_second": round(fsync_count / elapsed, 1),
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
        payload_of = _payload_factory()
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


def _payload_factory() -> Callable[[int], dict[str, Any]]:
    from greenroom.actors.events import Summary
    from greenroom.actors.persistence import Dormant, snapshot_payload

    def payload(i: int) -> dict[str, Any]:
        summary = Summary(
            session=f"s-{i:08x}",
            project=f"project-{i}",
            name="2026-11-26T10-00-00Z-abc",
            status="idle",
            loading=False,
            message_count=40,
            last_activity=1_790_000_000.0 + i,
            preview=None,
        )
        return snapshot_payload(Dormant(summary=summary, seq=120))

    return payload


def report(result: dict[str, Any]) -> None:
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{result['scenario']}-{int(time.time())}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"(written to {out})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.persist", description=__doc__)
    sub = parser.add_subparsers(dest="scenario", required=True)
    s = sub.add_parser("stream")
    s.add_argument("--sessions", type=int, default=1000)
    s.add_argument("--rate", type=float, default=20.0)
    s.add_argument("--seconds", type=float, default=10.0)
    s.add_argument("--flush", type=float, default=1.0)
    r = sub.add_parser("restore")
    r.add_argument("--sessions", type=int, default=10_000)
    args = parser.parse_args(argv)
    if args.scenario == "stream":
        result = trio.run(stream, args.sessions, args.rate, args.seconds, args.flush)
    else:
        result = trio.run(restore, args.sessions)
    report(result)


if __name__ == "__main__":
    main(sys.argv[1:])
