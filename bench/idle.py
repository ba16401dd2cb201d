"""Scenario 3: many snapshotted, idle sessions. What a restart and a listing cost.

    python -m bench.idle                        # 10,000 and 100,000 sessions
    python -m bench.idle --sessions 1000        # quick

For each count: snapshot files written directly (SnapshotStore + snapshot_payload, 40
messages each by their summary; one of them, ``project-7``, also gets a real 40-message
history file so that opening it cold reads one), then a fresh ``greenroom serve`` on that
folder. Measured: time from process start to the "serving at" line and to the ``welcome``
frame, RSS per idle session (VmRSS minus that of a server with no sessions, divided by N),
``listSessions`` round trip (best of 3), and ``openSession`` of one dormant session (cold)
and again (warm).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    print_table,
    run_driver,
    serving,
    status_kib,
    temp_folder,
    write_result,
)

DEFAULT_COUNTS = (10_000, 100_000)
HISTORY_NAME = "2026-11-26T10-00-00Z-abc"
MESSAGES = 40


def payload_factory() -> Callable[[int], dict[str, Any]]:
    """The snapshot payload of idle session i (project ``project-i``)."""
    from greenroom.protocol.events import Summary
    from greenroom.store.snapshots import Dormant, snapshot_payload

    def payload(i: int) -> dict[str, Any]:
        summary = Summary(
            session=f"s-{i:08x}",
            project=f"project-{i}",
            name=HISTORY_NAME,
            status="idle",
            loading=False,
            message_count=MESSAGES,
            last_activity=1_790_000_000.0 + i,
            preview=None,
        )
        return snapshot_payload(Dormant(summary=summary, seq=120))

    return payload


def write_snapshots(data_dir: Path, sessions: int, *, batch: int = 2000) -> float:
    """Write ``sessions`` idle snapshots and one history file; returns the seconds taken."""
    from greenroom.protocol.chat import Message
    from greenroom.store.history import append_histories, history_path
    from greenroom.store.snapshots import SnapshotStore

    started = time.monotonic()
    store = SnapshotStore(data_dir)
    payload_of = payload_factory()
    for start in range(0, sessions, batch):
        chunk = range(start, min(sessions, start + batch))
        store.write({f"s-{i:08x}": payload_of(i) for i in chunk})
    messages = [
        Message(role="user" if k % 2 == 0 else "assistant", content=f"message {k} " * 20)
        for k in range(MESSAGES)
    ]
    path = history_path(data_dir / "projects" / "project-7", HISTORY_NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    append_histories({path: messages})
    return time.monotonic() - started


def measure(sessions: int) -> dict[str, Any]:
    with temp_folder() as folder:
        data_dir = folder / "data"
        written = write_snapshots(data_dir, sessions) if sessions else 0.0
        with serving(folder, timeout=600) as served:
            rss_serving = status_kib(served.pid, "VmRSS")
            args = ["idle", "--port", str(served.port), f"--token={served.token}",
                    "--t0", repr(served.started)]  # fmt: skip
            if sessions:
                args += ["--project", "project-7"]
            else:
                args += ["--project", "empty"]
            result = run_driver(args, timeout=600)
            rss_after = status_kib(served.pid, "VmRSS")
            hwm = status_kib(served.pid, "VmHWM")
    return {
        "sessions": sessions,
        "write_seconds": round(written, 2),
        "serving_after_start_seconds": round(served.serving_after, 3),
        **result,
        "rss_serving_kib": rss_serving,
        "rss_after_kib": rss_after,
        "peak_rss_kib": hwm,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.idle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sessions", default=",".join(map(str, DEFAULT_COUNTS)),
                        help="comma-separated counts")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.sessions.split(",")]
    print("idle: baseline (no sessions) ...", flush=True)
    base = measure(0)
    rows = []
    for n in counts:
        print(f"idle: {n} sessions ...", flush=True)
        row = measure(n)
        row["rss_bytes_per_idle_session"] = round(
            (row["rss_after_kib"] - base["rss_after_kib"]) * 1024 / n
        )
        row["rss_bytes_per_idle_session_at_serving"] = round(
            (row["rss_serving_kib"] - base["rss_serving_kib"]) * 1024 / n
        )
        rows.append(row)
    print()
    print_table(rows, ("sessions", "serving_after_start_seconds", "welcome_after_start_seconds",
                       "rss_bytes_per_idle_session", "list_sessions_seconds",
                       "open_cold_seconds", "open_warm_seconds", "peak_rss_kib"))  # fmt: skip
    result = {"baseline": base, "runs": rows}
    write_result("idle", result, args.out)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
