"""Scenarios 1, 2 and 6: N sessions streaming at R tokens/s to C clients subscribed to all of
them, against the ceiling of the bare stack and a peer stack, plotted against N.

    python -m bench.stream                          # quick: N=100, R=20, C=10, 5 s turns
    python -m bench.stream --sweep                  # N = 100, 1000, 2000, 5000
    python -m bench.stream --sessions 1000 --rate 20 --clients 10 --seconds 10
    python -m bench.stream --sessions 2000 --repeat 3   # median of 3 runs, with min-max

For every N: a fresh ``greenroom serve`` (pinned to core 0) and a fresh data folder; the
clients run in ``python -m bench.driver stream`` (pinned to core 1). Then the same clients
receive one-frame-per-event streams from ``python -m bench.peers trio`` (bare trio-websocket)
and ``python -m bench.peers websockets`` (asyncio), as fast as those servers go, and the
stream's delivered events/s is given as a ratio to each. Beside the server's CPU the table
gives the client process's CPU and the host's steal time: a run whose client used more than
``CLIENT_BUSY`` of a core, or whose steal passed ``STEAL_HIGH``, is flagged, because its
latency says more about the client or the host than about the server. Prints a table, writes
``bench/results/stream-*.json`` and, with matplotlib, ``stream-*.png`` beside it.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    RESULTS,
    pin,
    print_table,
    profiling,
    read_line,
    run_driver,
    serving,
    stop_process,
    temp_folder,
    write_result,
)

SWEEP = (100, 1000, 2000, 5000)
COLUMNS = (
    "sessions", "runs", "tokens_generated_per_s", "events_delivered_per_s",
    "token_deliveries_per_s", "frames_per_s", "p50_ms", "p99_ms", "p99_range", "max_ms",
    "p99_upper_ms", "server_cpu", "cpu_us_per_token", "client_cpu", "steal",
    "server_peak_rss_kib", "merged_deltas", "closed_slow", "vs_trio", "vs_websockets", "flags",
)  # fmt: skip
JOURNAL_COLUMNS = (
    "sessions", "journal_bytes_per_s", "journal_writes_per_s", "journal_syncs_per_s",
    "server_write_bytes", "cpu_us_per_token", "send_seconds",
)  # fmt: skip
CLIENT_BUSY = 0.8
"""Client CPU (cores) above which a run is flagged: the clients may have been the bottleneck."""
STEAL_HIGH = 0.05
"""Host steal (a fraction of all CPU time) above which a run is flagged as noisy."""


def run_stream(
    sessions: int, rate: float, clients: int, seconds: float, profile: Path | None = None
) -> dict[str, Any]:
    tokens = max(1, int(rate * seconds))
    with temp_folder() as folder, serving(folder) as served, profiling(served.pid, profile):
        result = run_driver(
            ["stream", "--port", str(served.port), f"--token={served.token}",
             "--server-pid", str(served.pid), "--sessions", str(sessions),
             "--rate", str(rate), "--clients", str(clients), "--tokens", str(tokens)],
            timeout=seconds * 4 + 120 + sessions / 50,
        )  # fmt: skip
    latency = result.get("latency", {})
    lower, upper = latency.get("lower", {}), latency.get("upper", {})
    # The stamped (exact) figures when there are any; the estimate otherwise.
    lower = latency.get("exact") or lower
    result.update(
        p50_ms=lower.get("p50_ms"),
        p99_ms=lower.get("p99_ms"),
        max_ms=lower.get("max_ms"),
        p99_upper_ms=upper.get("p99_ms"),
    )
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for repeated runs of the same N: the (low) median of every figure, the p99's
    min-max, and the flags of any run."""
    row: dict[str, Any] = dict(runs[len(runs) // 2])
    for key, value in runs[0].items():
        values = [r.get(key) for r in runs]
        if isinstance(value, int | float) and not isinstance(value, bool) and None not in values:
            row[key] = statistics.median_low(values)
    p99s = [r["p99_ms"] for r in runs if r.get("p99_ms") is not None]
    row["runs"] = len(runs)
    row["p99_range"] = f"{min(p99s):g}-{max(p99s):g}" if p99s else None
    flags = set()
    for run in runs:
        if run.get("client_cpu", 0) > CLIENT_BUSY:
            flags.add("client-busy")
        if run.get("steal", 0) > STEAL_HIGH:
            flags.add("steal")
        if run.get("clients_closed") or run.get("timed_out"):
            flags.add("closed")
    row["flags"] = ",".join(sorted(flags)) or None
    row["p99_ms_all"] = p99s
    return row


def run_peer(kind: str, sessions: int, clients: int, seconds: float) -> dict[str, Any]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.peers", kind, "--sessions", str(sessions),
         "--seconds", str(seconds)],
        stdout=subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    try:
        pin(process.pid, 0)
        assert process.stdout is not None
        line = read_line(process.stdout, time.monotonic() + 30)
        port = int(line.rsplit(":", 1)[1].strip("/"))
        result = run_driver(
            ["peer", "--port", str(port), "--clients", str(clients), "--seconds", str(seconds)],
            timeout=seconds * 4 + 60,
        )
    finally:
        stop_process(process, grace=5)
    return {"kind": kind, **result}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sessions", default="100", help="N, or a comma-separated list")
    parser.add_argument("--sweep", action="store_true", help=f"N in {SWEEP}")
    parser.add_argument("--rate", type=float, default=20.0, help="tokens/s per session")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each turn")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each N; median shown")
    parser.add_argument("--peer-seconds", type=float, default=3.0)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the server: bench/results/profile-N.txt (collapsed stacks)",
    )
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    args = parser.parse_args(argv)
    counts = list(SWEEP) if args.sweep else [int(x) for x in args.sessions.split(",")]

    rows = []
    for n in counts:
        print(f"stream: {n} sessions x {args.rate:g} tokens/s -> {args.clients} clients ...",
              flush=True)  # fmt: skip
        profile = None
        if args.profile:
            (args.out or RESULTS).mkdir(parents=True, exist_ok=True)
            profile = (args.out or RESULTS) / f"profile-{n}.txt"
        runs = []
        for _ in range(max(1, args.repeat)):
            runs.append(run_stream(n, args.rate, args.clients, args.seconds, profile))
        rows.append(summarize(runs))
    peers: dict[str, Any] = {}
    if not args.no_peers:
        for kind in ("trio", "websockets"):
            if importlib.util.find_spec(kind) is None:
                print(f"peer: {kind} skipped (not installed: pip install -e '.[bench]')")
                continue
            print(f"peer: {kind} ...", flush=True)
            peers[kind] = run_peer(kind, max(counts), args.clients, args.peer_seconds)
    for row in rows:
        for kind, peer in peers.items():
            rate = peer["events_delivered_per_s"]
            row[f"vs_{kind}"] = round(row["events_delivered_per_s"] / rate, 2) if rate else None
    print()
    print_table(rows, COLUMNS)
    print()
    print_table(rows, JOURNAL_COLUMNS)
    if peers:
        print()
        print_table(
            list(peers.values()),
            ("kind", "clients", "events_delivered_per_s", "frames_per_s", "seconds"),
        )
    result = {
        "rate": args.rate,
        "clients": args.clients,
        "turn_seconds": args.seconds,
        "runs": [{k: v for k, v in row.items() if k != "stats"} for row in rows],
        "last_stats": rows[-1].get("stats") if rows else None,
        "peers": peers,
    }
    path = write_result("stream", result, args.out)
    if len(rows) > 1 or args.sweep:
        from bench.plot import plot_stream

        png = plot_stream(result, path.with_suffix(".png"))
        if png:
            print(f"(plot: {png})")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
