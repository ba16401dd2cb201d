"""Commands in bulk: how long N ``sendMessage`` (and then N ``stopGeneration``) take on one
connection, sent in one go (64 awaiting their reply at a time), to N sessions.

    python -m bench.ramp                      # N = 1000, 3 rounds
    python -m bench.ramp --sessions 200 --rounds 1
    python -m bench.ramp --rounds 10 --profile   # + py-spy of the server

A fresh ``greenroom serve`` and N sessions opened first; each round sends N ``sendMessage``
whose turns stall at once (``[[stall]]``: no token is streamed, so what is measured is the
commands' path, not the streams they start), then N ``stopGeneration``. Reports the best and
the median round of each, in seconds, and per command in ms. The stream scenario's
``send_seconds`` is the same ramp while the turns stream (the server is then saturated by the
streams it started).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import trio

from bench.common import (
    RESULTS,
    cpu_seconds,
    print_table,
    profiling,
    serving,
    temp_folder,
    write_result,
)
from bench.driver import Conn


async def ramp(
    host: str, port: int, token: str, sessions: int, rounds: int, pid: int
) -> dict[str, Any]:
    sends: list[float] = []
    stops: list[float] = []
    cpu: dict[str, list[float]] = {"send": [], "stop": []}
    with trio.fail_after(60 + sessions * rounds / 10):
        async with trio.open_nursery() as nursery:
            conn = await Conn.open(nursery, host, port, token)
            opened = await conn.call_many(
                [("openSession", {"project": f"p{i:05}"}) for i in range(sessions)]
            )
            ids = [reply["session"]["session"] for reply in opened]
            for _ in range(rounds):
                started, used = time.monotonic(), cpu_seconds(pid)
                await conn.call_many(
                    [("sendMessage", {"session": s, "content": "[[stall]] ramp"}) for s in ids]
                )
                sends.append(time.monotonic() - started)
                cpu["send"].append(cpu_seconds(pid) - used)
                started, used = time.monotonic(), cpu_seconds(pid)
                await conn.call_many([("stopGeneration", {"session": s}) for s in ids])
                stops.append(time.monotonic() - started)
                cpu["stop"].append(cpu_seconds(pid) - used)
            await conn.ws.close()
            nursery.cancel_scope.cancel()
    return {"send": sends, "stop": stops, "cpu": cpu}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the server (sessions opened too): bench/results/profile-ramp.txt",
    )
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else None
    profile = (out or RESULTS) / "profile-ramp.txt" if args.profile else None
    print(f"ramp: {args.sessions} sessions, {args.rounds} rounds ...")
    with temp_folder() as folder, serving(folder) as served, profiling(served.pid, profile):
        times = trio.run(
            ramp,
            served.host,
            served.port,
            served.token,
            args.sessions,
            args.rounds,
            served.process.pid,
        )
    rows = []
    for op, key in (("sendMessage", "send"), ("stopGeneration", "stop")):
        values = times[key]
        rows.append(
            {
                "command": op,
                "sessions": args.sessions,
                "best_seconds": round(min(values), 3),
                "median_seconds": round(statistics.median(values), 3),
                "best_ms_per_command": round(min(values) / args.sessions * 1000, 3),
                # The server's CPU over the round's wall time (1.0: one core all the time).
                "server_cpu": round(
                    statistics.median(
                        c / w for c, w in zip(times["cpu"][key], values, strict=True)
                    ),
                    2,
                ),
                "server_cpu_ms_per_command": round(
                    statistics.median(times["cpu"][key]) / args.sessions * 1000, 3
                ),
            }
        )
    print_table(rows, list(rows[0]))
    write_result("ramp", {"rounds": args.rounds, "rows": rows, "times": times}, out)


if __name__ == "__main__":
    main()
