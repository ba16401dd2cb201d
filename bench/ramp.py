"""Commands in bulk: how long N ``sendMessage`` (and then N ``stopGeneration``) take on one
connection, sent in one go (64 awaiting their reply at a time), to N sessions.

    python -m bench.ramp                      # N = 1000, 3 rounds
    python -m bench.ramp --sessions 200 --rounds 1
    python -m bench.ramp --rounds 10 --profile   # + py-spy of the server
    python -m bench.ramp --in-process            # the same commands, with no websocket

A fresh ``greenroom serve`` and N sessions opened first; each round sends N ``sendMessage``
whose turns stall (``[[stall]]``: three tokens, then nothing until stopped, so what is
measured is mostly the commands' path, not the streams they start), then N
``stopGeneration``. Reports the best and
the median round of each, in seconds, and per command in ms. The stream scenario's
``send_seconds`` is the same ramp while the turns stream (the server is then saturated by the
streams it started).

``--in-process`` runs the same rounds against a runtime opened in this process (no server, no
websocket, no lifecycle log), 64 commands under way at a time, with one in-process client that,
like the connection (which opens the sessions but subscribes to none), gets every lifecycle
event: set beside a run over the websocket, it says how much of a command's cost is the
runtime's and how much the transport's. Its CPU column is this process's.
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
from greenroom.config import Config
from greenroom.protocol import commands as cmd
from greenroom.runtime import Client, Runtime, open_runtime

WINDOW = 64
"""Commands awaiting their reply at a time (the server reads 64 ahead on a connection)."""
STALL = "[[stall]] ramp"
"""A turn that streams three tokens and waits to be stopped (those tokens are not what a ramp
costs: see bench/README.md)."""


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
                [("openSession", {"project": f"p{i:05}"}) for i in range(sessions)],
                window=WINDOW,
            )
            ids = [reply["session"]["session"] for reply in opened]
            for _ in range(rounds):
                started, used = time.monotonic(), cpu_seconds(pid)
                await conn.call_many(
                    [("sendMessage", {"session": s, "content": STALL}) for s in ids],
                    window=WINDOW,
                )
                sends.append(time.monotonic() - started)
                cpu["send"].append(cpu_seconds(pid) - used)
                started, used = time.monotonic(), cpu_seconds(pid)
                await conn.call_many(
                    [("stopGeneration", {"session": s}) for s in ids], window=WINDOW
                )
                stops.append(time.monotonic() - started)
                cpu["stop"].append(cpu_seconds(pid) - used)
            await conn.ws.close()
            nursery.cancel_scope.cancel()
    return {"send": sends, "stop": stops, "cpu": cpu}


async def ramp_in_process(folder: Path, sessions: int, rounds: int) -> dict[str, Any]:
    """The rounds of :func:`ramp` through ``Runtime.execute_wire``: the same shape of result,
    the CPU being this process's."""
    config = Config(data_dir=folder / "data", projects_dir=folder / "projects")
    sends: list[float] = []
    stops: list[float] = []
    cpu: dict[str, list[float]] = {"send": [], "stop": []}

    async def run_all(runtime: Runtime, commands: list[cmd.Command[Any]]) -> None:
        pending = iter(commands)

        async def worker() -> None:
            for command in pending:
                result = await runtime.execute_wire(command)
                if result.get("queued"):  # the round before did not stop its turn
                    raise RuntimeError(f"{command.op} was queued behind a running turn")

        async with trio.open_nursery() as workers:
            for _ in range(WINDOW):
                workers.start_soon(worker)

    async def drain(client: Client) -> None:
        while await client.events.wait():
            client.events.take()

    with trio.fail_after(60 + sessions * rounds / 10):
        async with (
            open_runtime(config) as runtime,
            runtime.connect("bench", capacity=1 << 22) as client,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(drain, client)
            ids = []
            for i in range(sessions):
                opened = await runtime.execute(cmd.OpenSession(project=f"p{i:05}"))
                ids.append(opened.summary.session)
            for _ in range(rounds):
                for key, made, into in (
                    ("send", lambda s: cmd.SendMessage(session=s, content=STALL), sends),
                    ("stop", lambda s: cmd.StopGeneration(session=s), stops),
                ):
                    started, used = time.monotonic(), time.process_time()
                    await run_all(runtime, [made(s) for s in ids])
                    into.append(time.monotonic() - started)
                    cpu[key].append(time.process_time() - used)
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
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="the same rounds on a runtime in this process, with no websocket",
    )
    args = parser.parse_args(argv)
    if args.profile and args.in_process:
        parser.error("--profile profiles a server; --in-process runs none")
    out = Path(args.out) if args.out else None
    profile = (out or RESULTS) / "profile-ramp.txt" if args.profile else None
    where = " in process" if args.in_process else ""
    print(f"ramp{where}: {args.sessions} sessions, {args.rounds} rounds ...")
    if args.in_process:
        with temp_folder() as folder:
            times = trio.run(ramp_in_process, folder, args.sessions, args.rounds)
    else:
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
    result = {"rounds": args.rounds, "in_process": args.in_process, "rows": rows, "times": times}
    write_result("ramp", result, out)


if __name__ == "__main__":
    main()
