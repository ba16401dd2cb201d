"""Scenario 5: sessions crashing mid-turn, and the server killed with -9.

    python -m bench.crash                     # both parts
    python -m bench.crash restart [--sessions 200 --turns 3 --backoff 0,0.05]
    python -m bench.crash kill [--sessions 10000 --busy 100]

``restart`` (in process: a remote client cannot crash a session actor): the runtime of
``open_runtime`` with a provider that wraps the simulated one and raises a RuntimeError (a bug,
not a ProviderError) mid-stream in a random share of the streams, at most ``--crashes`` per
session. For each crash: crash -> ``sessionRestarted`` seen by a client, crash -> the resumed
turn's ``loadingChanged`` true, crash -> its first token. Backoff is the supervisor's jittered
initial delay (``initial * U[0.5, 1]`` for a first restart); with 0 the figures are the restart
itself. Then the proof: every message a client saw committed (``messageAdded``) is in the
session's state at the same index, after the run and again after the runtime is closed and
opened again from disk; every turn completed.

``kill``: ``greenroom serve`` on a folder of N snapshotted idle sessions; ``--busy`` more
sessions each run a turn; a flush interval and a half later the server is killed with
SIGKILL and started again on the same folder: time until it serves and until a client gets
its welcome, and whether any committed message was lost (message counts per busy session).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import signal
import sys
import tempfile
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import attrs
import trio

from bench.common import (
    percentiles,
    print_pairs,
    print_table,
    run_driver,
    start_server,
    stop_process,
    temp_folder,
    write_result,
)
from bench.idle import write_snapshots
from greenroom.agent.provider import Chunk, CompletionRequest
from greenroom.agent.simulated import SimulatedProvider
from greenroom.cli.serve import tune_gc
from greenroom.config import Config, SimulatedConfig, SupervisionConfig
from greenroom.protocol import commands as cmd
from greenroom.protocol.errors import ActorError
from greenroom.protocol.events import (
    LoadingChanged,
    MessageAdded,
    SessionRestarted,
    StreamingUpdate,
)
from greenroom.runtime import open_runtime

TAG = "crash-bench:"


@attrs.define(eq=False)
class RandomCrashes:
    """The simulated provider, except that a stream raises RuntimeError after a random number
    of chunks, with probability ``p``, at most ``limit`` times per project."""

    inner: SimulatedProvider
    rng: random.Random
    p: float
    limit: int
    crashes: dict[str, list[float]] = attrs.Factory(dict)

    @property
    def name(self) -> str:
        return "crashing-simulated"

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        project = ""
        for message in reversed(request.messages):
            if message.role == "user" and message.content and TAG in message.content:
                project = message.content.split(TAG, 1)[1].split()[0]
                break
        times = self.crashes.setdefault(project, [])
        crash_after = self.rng.randint(1, 20) if (
            len(times) < self.limit and self.rng.random() < self.p
        ) else -1  # fmt: skip
        sent = 0
        async with aclosing(self.inner.stream(request)) as chunks:
            async for chunk in chunks:
                if sent == crash_after:
                    times.append(time.perf_counter())
                    raise RuntimeError(f"bench crash in {project}")
                sent += 1
                yield chunk


async def restart(
    sessions: int, turns: int, backoff: float, p: float, crashes: int, rate: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="greenroom-crash-") as tmp:
        config = Config(
            data_dir=Path(tmp) / "data",
            simulated=SimulatedConfig(tokens_per_second=rate),
            supervision=SupervisionConfig(backoff_initial=backoff, max_restarts=crashes + 2),
        )
        sim = config.simulated
        provider = RandomCrashes(
            inner=SimulatedProvider(
                seed=sim.seed, tokens_per_second=sim.tokens_per_second,
                reply_tokens=sim.reply_tokens,
            ),
            rng=random.Random(8),
            p=p,
            limit=crashes,
        )  # fmt: skip
        committed: dict[str, dict[int, tuple[str, str | None]]] = {}
        projects: dict[str, str] = {}
        # After each crash, the first of each of these events, per session.
        after: dict[str, dict[str, list[float]]] = {}
        restarted_at: dict[str, list[float]] = {}
        completed: dict[str, int] = {}
        started = time.perf_counter()
        async with (
            open_runtime(config, provider=provider) as runtime,
            runtime.connect(capacity=1 << 20) as client,
        ):
            for i in range(sessions):
                view = await runtime.execute(cmd.OpenSession(project=f"c{i:05}"))
                projects[view.summary.session] = f"c{i:05}"
                client.subscribe(view.summary.session)
            sent: dict[str, int] = {}

            async def send_next(sid: str) -> None:
                """The session's next turn; a send that met a crash is checked, not repeated
                blindly (the ask fails fast when its target dies)."""
                t = sent.get(sid, 0)
                if t >= turns:
                    return
                sent[sid] = t + 1
                content = f"turn {t} {TAG}{projects[sid]} [[tokens:40]]"
                for _ in range(50):
                    try:
                        await runtime.execute(cmd.SendMessage(session=sid, content=content))
                        return
                    except ActorError:
                        await trio.sleep(0.02)
                        view = await runtime.get_state(sid)
                        if any(m.content == content for m in view.messages) or content in (
                            view.summary.queued
                        ):
                            return

            waiting = {"resumed": True, "token": True}
            pending: dict[str, dict[str, bool]] = {}
            async with trio.open_nursery() as nursery:
                for sid in projects:
                    nursery.start_soon(send_next, sid)
                with trio.move_on_after(60 + turns * 40 / rate * 3):
                    while sum(completed.values()) < sessions * turns:
                        event = await client.events.receive()
                        now = time.perf_counter()
                        sid = event.session or ""
                        data = event.data
                        if isinstance(data, SessionRestarted):
                            restarted_at.setdefault(sid, []).append(now)
                            pending[sid] = dict(waiting)
                        elif isinstance(data, MessageAdded):
                            committed.setdefault(sid, {})[data.index] = (
                                data.message.role, data.message.content,
                            )  # fmt: skip
                        elif isinstance(data, LoadingChanged):
                            if data.loading and pending.get(sid, {}).pop("resumed", False):
                                after.setdefault(sid, {}).setdefault("resumed", []).append(now)
                            if not data.loading and data.reason == "completed":
                                completed[sid] = completed.get(sid, 0) + 1
                                nursery.start_soon(send_next, sid)
                        elif isinstance(data, StreamingUpdate) and pending.get(sid, {}).pop(
                            "token", False
                        ):
                            after.setdefault(sid, {}).setdefault("token", []).append(now)
                nursery.cancel_scope.cancel()
            elapsed = time.perf_counter() - started
            stats = runtime.statistics()
            lost_live = await _lost(runtime, projects, committed)
        # The same data folder, opened again: what was committed is on disk.
        async with open_runtime(config) as again:
            lost_disk = await _lost(again, projects, committed)
    by_project = {projects[sid]: sid for sid in projects}
    to_restart, to_resumed, to_token = [], [], []
    for project, times in provider.crashes.items():
        sid = by_project.get(project)
        if sid is None:
            continue
        for k, crash in enumerate(times):
            if k < len(restarted_at.get(sid, ())):
                to_restart.append(restarted_at[sid][k] - crash)
            if k < len(after.get(sid, {}).get("resumed", ())):
                to_resumed.append(after[sid]["resumed"][k] - crash)
            if k < len(after.get(sid, {}).get("token", ())):
                to_token.append(after[sid]["token"][k] - crash)
    crash_count = sum(len(t) for t in provider.crashes.values())
    return {
        "sessions": sessions,
        "turns_per_session": turns,
        "backoff_initial": backoff,
        "crashes": crash_count,
        "restarts_seen": sum(len(t) for t in restarted_at.values()),
        "supervisor_restarts": stats.restarts,
        "given_up": stats.given_up,
        "turns_completed": sum(completed.values()),
        "turns_expected": sessions * turns,
        "seconds": round(elapsed, 2),
        "crash_to_restarted": percentiles(to_restart),
        "crash_to_running": percentiles(to_resumed),
        "crash_to_first_token": percentiles(to_token),
        "committed_messages_seen": sum(len(c) for c in committed.values()),
        "committed_lost_live": lost_live,
        "committed_lost_after_reopen": lost_disk,
    }


async def _lost(
    runtime: Any, projects: dict[str, str], committed: dict[str, dict[int, tuple[str, Any]]]
) -> int:
    """How many committed messages are not in their session's state at their index."""
    lost = 0
    for project in projects.values():
        view = await runtime.execute(cmd.OpenSession(project=project))
        seen = committed.get(view.summary.session, {})
        messages = view.messages
        for index, (role, content) in seen.items():
            if index >= len(messages) or (messages[index].role, messages[index].content) != (
                role,
                content,
            ):
                lost += 1
    return lost


def kill(sessions: int, busy: int) -> dict[str, Any]:
    with temp_folder() as folder:
        written = write_snapshots(folder / "data", sessions) if sessions else 0.0
        first = start_server(folder, timeout=600)
        try:
            turns = run_driver(
                ["turns", "--port", str(first.port), f"--token={first.token}",
                 "--sessions", str(busy), "--prefix", "k"],
                timeout=300,
            )  # fmt: skip
            time.sleep(1.5)  # a flush interval and a half: everything committed is on disk
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(timeout=10)
        finally:
            stop_process(first.process)
        second = start_server(folder, timeout=600)
        try:
            checked = run_driver(
                ["check", "--port", str(second.port), f"--token={second.token}",
                 "--t0", repr(second.started), f"--expect={json.dumps(turns['counts'])}"],
                timeout=300,
            )  # fmt: skip
        finally:
            stop_process(second.process)
    return {
        "idle_sessions": sessions,
        "busy_sessions": busy,
        "busy_turns_completed": turns["completed"],
        "write_seconds": round(written, 2),
        "first_start_serving_seconds": round(first.serving_after, 3),
        "restart_serving_seconds": round(second.serving_after, 3),
        **{f"restart_{k}": v for k, v in checked.items()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.crash",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("part", nargs="?", choices=("all", "restart", "kill"), default="all")
    parser.add_argument("--sessions", type=int, default=200, help="restart: sessions")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--backoff", default="0,0.05", help="restart: backoff_initial values")
    parser.add_argument("--probability", type=float, default=0.5)
    parser.add_argument("--crashes", type=int, default=2, help="at most, per session")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--idle", type=int, default=9_900, help="kill: snapshotted sessions")
    parser.add_argument(
        "--busy", type=int, default=100, help="kill: sessions with a turn"
    )  # idle + busy: within the 10,000 limit
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    if args.part in ("all", "restart"):
        runs = []
        # The runtime runs in this process here: collect garbage as `greenroom serve` does
        # (and as the caller did afterwards: the tests call this in their own process).
        previous = gc.get_threshold()
        tune_gc()
        try:
            for backoff in (float(x) for x in args.backoff.split(",")):
                print(f"crash: restart, backoff {backoff:g} s ...", flush=True)
                runs.append(
                    trio.run(
                        restart,
                        args.sessions,
                        args.turns,
                        backoff,
                        args.probability,
                        args.crashes,
                        args.rate,
                    )
                )
        finally:
            gc.set_threshold(*previous)
        result["restart"] = runs
        rows = [
            {
                "backoff": r["backoff_initial"],
                "crashes": r["crashes"],
                "restarted_p50_ms": r["crash_to_restarted"]["p50_ms"],
                "restarted_p99_ms": r["crash_to_restarted"]["p99_ms"],
                "running_p50_ms": r["crash_to_running"]["p50_ms"],
                "running_p99_ms": r["crash_to_running"]["p99_ms"],
                "first_token_p99_ms": r["crash_to_first_token"]["p99_ms"],
                "turns": f"{r['turns_completed']}/{r['turns_expected']}",
                "lost": r["committed_lost_live"] + r["committed_lost_after_reopen"],
            }
            for r in runs
        ]
        print()
        print_table(rows, list(rows[0]))
    if args.part in ("all", "kill"):
        print(f"crash: kill -9 with {args.idle} sessions ...", flush=True)
        result["kill"] = kill(args.idle, args.busy)
        print()
        print_pairs(result["kill"])
    write_result("crash", result, args.out)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
