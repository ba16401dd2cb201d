"""Scenario cluster: ``greenroom serve`` nodes of one cluster (docs/cluster.md) on private
PostgreSQL and Redis servers, started for the run on loopback ports (tests/engines.py).

    python -m bench.cluster                    # quick: 100 sessions, 5 s turns, leases 10 and 2
    python -m bench.cluster --sessions 300,800 --clients 4 --seconds 5 --kills 2
    python -m bench.cluster --parts failover --leases 2

Three parts, each on a fresh database and an emptied Redis, with fresh nodes:

- ``scale``: N sessions, each one turn of R tokens/s, to C clients each subscribed to all N
  sessions (as bench/stream.py), on one node and then on two. With two nodes, the sessions are
  opened half on each node (a session is owned by the node that made it), each turn is sent to
  its owner, and the clients are split between the nodes: half of every client's tokens come
  from the other node, through Redis. Each node is pinned to a core of its own (one node: core
  0, the clients on core 1; two nodes: cores 0 and 1, the clients unpinned). The engines are
  never pinned: on a 2-core machine they share the nodes' cores, as the clients do with two
  nodes; the table says how many cores each node had.
- ``cross``: the sessions are all owned by node A; one client on A and one on node B, each
  subscribed to all of them. Token latency (stamped, exact: receipt minus the moment the
  simulated provider emitted the token) for the local client and for the client across nodes.
- ``failover``: node A owns S sessions streaming long turns; a client on node B is subscribed
  to them. Once B has seen tokens of every session, A is killed (SIGKILL). Reported per
  session: kill to ``sessionRestarted`` on B, and kill to the first token on B after that
  event (the resumed turn streaming again; tokens the owner appended just before it died
  still arrive a few ms after the kill, and do not count); for each lease in ``--leases``
  (10 s is the default lease), ``--kills`` times each. B's seqs per session are checked
  across the takeover: ``seq_gaps`` and ``seq_regressions`` count any that did not rise by
  one.

The clients of ``scale`` and ``cross`` run in a process of their own (``python -m bench.cluster
drive``), the ``failover`` client in this one. Prints tables and writes
``bench/results/cluster-*.json``. No figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import sys
import time
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import trio

from bench.common import (
    Served,
    cpu_seconds,
    percentiles,
    print_table,
    run_driver,
    start_server,
    stop_process,
    temp_folder,
    write_result,
)

TOKEN = "bench-cluster-token-" + "x" * 24
"""Every node's GREENROOM_TOKEN (loopback only, for the run)."""
SCALE_COLUMNS = (
    "nodes", "node_cores", "sessions", "clients", "tokens_generated_per_s",
    "token_deliveries_per_s", "p50_ms", "p99_ms", "max_ms", "local_p99_ms", "cross_p99_ms",
    "node_cpu", "sessions_completed_min", "clients_closed", "timed_out",
)  # fmt: skip
LISTED_WITHIN = 120.0
"""Seconds a node may take to list the sessions another node made (far above what it needs)."""
CROSS_COLUMNS = ("client", "sessions", "tokens", "p50_ms", "p99_ms", "max_ms")
FAILOVER_COLUMNS = (
    "lease_seconds", "kills", "sessions", "restarted_p50_ms", "restarted_max_ms",
    "streaming_p50_ms", "streaming_max_ms", "not_resumed", "seq_gaps", "seq_regressions",
)  # fmt: skip


# -- engines and nodes ------------------------------------------------------------------------


@contextlib.contextmanager
def engines() -> Iterator[tuple[Any, Any]]:
    """A private PostgreSQL and Redis for the run (tests/engines.py, imported here so that
    the other scenarios need neither)."""
    from tests.engines import running_postgres, running_redis

    with running_postgres() as postgres, running_redis() as redis:
        yield postgres, redis


def fresh_cluster(postgres: Any, redis: Any) -> tuple[str, str]:
    """A new empty database and an emptied Redis: the URLs of a cluster of its own."""
    from tests.engines import flush_redis, fresh_database

    flush_redis(redis)
    return fresh_database(postgres), redis.url


@contextlib.contextmanager
def nodes(
    folder: Path,
    database_url: str,
    bus_url: str,
    names: Sequence[str],
    *,
    lease: float | None = None,
    cpus: Sequence[int | None] = (),
) -> Iterator[list[Served]]:
    """``greenroom serve`` for each of ``names``, one after the other (the first makes the
    tables), sharing the projects folder under ``folder``; each stopped on the way out."""
    env = {
        "GREENROOM_TOKEN": TOKEN,
        "GREENROOM_DATABASE_URL": database_url,
        "GREENROOM_BUS_URL": bus_url,
        "GREENROOM_PROJECTS_DIR": str(folder / "projects"),
        "GREENROOM_TOKENS_PER_SECOND": "20",
    }
    if lease is not None:
        env["GREENROOM_LEASE_SECONDS"] = str(lease)
    started: list[Served] = []
    try:
        for i, name in enumerate(names):
            cpu = cpus[i] if i < len(cpus) else None
            started.append(
                start_server(folder / name, cpu=cpu, env={**env, "GREENROOM_NODE_ID": name})
            )
        yield started
    finally:
        for served in started:
            stop_process(served.process, grace=20)


# -- the clients (python -m bench.cluster drive) ----------------------------------------------


class Tally:
    """One client's tokens: the exact latency of each, apart for the sessions its own node
    owns (local) and those another node owns (cross), and the turns it saw end."""

    def __init__(self, owner: dict[str, int], node: int) -> None:
        self.owner = owner
        self.node = node
        self.local = array("d")
        self.cross = array("d")
        self.done: set[str] = set()
        self.last_done_at = 0.0

    def __call__(self, item: dict[str, Any], now: float) -> None:
        name = item["event"]
        if name == "streamingUpdate":
            local = self.owner.get(item["session"]) == self.node
            target = self.local if local else self.cross
            for stamp in item["data"]["delta"].split("@")[1:]:
                with contextlib.suppress(ValueError):
                    target.append(now - float(stamp.split(" ", 1)[0]))
        elif name == "loadingChanged" and not item["data"]["loading"]:
            self.done.add(item["session"])
            self.last_done_at = now


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    from bench.driver import Conn

    ports = [int(p) for p in args.ports.split(",")]
    pids = [int(p) for p in args.pids.split(",")]
    open_on = [int(i) for i in args.open_on.split(",")]
    clients_on = [int(i) for i in args.clients_on.split(",")]
    n, rate, tokens = args.sessions, args.rate, args.tokens
    async with trio.open_nursery() as nursery:
        controls = [await Conn.open(nursery, "127.0.0.1", port, args.token) for port in ports]
        owner: dict[str, int] = {}
        by_node: dict[int, list[str]] = {}
        for node in sorted(set(open_on)):
            mine = [i for i in range(n) if open_on[i % len(open_on)] == node]
            opened = await controls[node].call_many(
                [("openSession", {"project": f"p{i:05}"}) for i in mine]
            )
            by_node[node] = [r["session"]["session"] for r in opened]
            owner.update(dict.fromkeys(by_node[node], node))
        ids = [sid for sids in by_node.values() for sid in sids]
        # A node learns of the sessions another node made from the live stream, a moment
        # later: subscribing before it has would be refused (not_found).
        made_at = time.monotonic()
        for node in sorted(set(clients_on)):
            await _until_listed(controls[node], set(ids))
        listed_after = time.monotonic() - made_at
        tallies, clients = [], []
        for k in range(args.clients):
            node = clients_on[k % len(clients_on)]
            tally = Tally(owner, node)
            conn = await Conn.open(nursery, "127.0.0.1", ports[node], args.token, tally)
            await conn.call_many([("subscribe", {"session": sid}) for sid in ids])
            tallies.append(tally)
            clients.append(conn)
        cpu0 = [cpu_seconds(pid) for pid in pids]
        t0 = time.monotonic()
        content = f"go [[tokens:{tokens}]] [[rate:{rate}]] [[stamp]]"

        async def send(node: int) -> None:
            await controls[node].call_many(
                [("sendMessage", {"session": sid, "content": content}) for sid in by_node[node]]
            )

        async with trio.open_nursery() as senders:
            for node in by_node:
                senders.start_soon(send, node)
        deadline = t0 + tokens / rate * 4 + 30 + n / 50
        timed_out = False
        while not all(
            len(t.done) >= n or c.closed.is_set() for t, c in zip(tallies, clients, strict=True)
        ):
            if time.monotonic() > deadline:
                timed_out = True
                break
            await trio.sleep(0.05)
        t_end = time.monotonic()
        cpu1 = [cpu_seconds(pid) for pid in pids]
        for conn in [*controls, *clients]:
            await conn.ws.close()
        nursery.cancel_scope.cancel()
    window = max(max([t.last_done_at for t in tallies] + [t0]) - t0, 1e-9)
    local = [v for t in tallies for v in t.local]
    cross = [v for t in tallies for v in t.cross]
    every = local + cross
    per_client = [
        {"node": t.node, "tokens": len(t.local) + len(t.cross),
         **percentiles([*t.local, *t.cross])}
        for t in tallies
    ]  # fmt: skip
    return {
        "nodes": len(ports),
        "sessions": n,
        "clients": args.clients,
        "rate": rate,
        "tokens_per_turn": tokens,
        "seconds": round(window, 3),
        "timed_out": timed_out,
        "tokens_generated_per_s": round(n * tokens / window, 1),
        "token_deliveries_per_s": round(len(every) / window, 1),
        **percentiles(every),
        "local_p99_ms": percentiles(local)["p99_ms"],
        "cross_p99_ms": percentiles(cross)["p99_ms"],
        "local": percentiles(local),
        "cross": percentiles(cross),
        "per_client": per_client,
        "node_cpu": [
            round((b - a) / max(t_end - t0, 1e-9), 3) for a, b in zip(cpu0, cpu1, strict=True)
        ],
        "sessions_completed_min": min((len(t.done) for t in tallies), default=0),
        "clients_closed": [c.closed_code for c in clients if c.closed_code is not None],
        "listed_everywhere_after_s": round(listed_after, 3),
    }


async def _until_listed(control: Any, ids: set[str]) -> None:
    """Wait until ``control``'s node lists every session of ``ids``."""
    with trio.fail_after(LISTED_WITHIN):
        while True:
            listed = await control.call("listSessions")
            if ids <= {s["session"] for s in listed["sessions"]}:
                return
            await trio.sleep(0.05)


# -- the parts --------------------------------------------------------------------------------


def scale(args: argparse.Namespace, postgres: Any, redis: Any) -> list[dict[str, Any]]:
    rows = []
    tokens = max(1, int(args.rate * args.seconds))
    for sessions, count in itertools.product(args.sessions, (1, 2)):
        print(f"cluster scale: {count} node(s), {sessions} sessions x {args.rate:g} "
              f"tokens/s -> {args.clients} clients ...", flush=True)  # fmt: skip
        database, bus = fresh_cluster(postgres, redis)
        names = ["a", "b"][:count]
        with temp_folder() as folder, nodes(folder, database, bus, names, cpus=(0, 1)) as served:
            row = run_driver(
                ["drive", "--ports", ",".join(str(s.port) for s in served),
                 "--pids", ",".join(str(s.pid) for s in served),
                 "--token", TOKEN, "--sessions", str(sessions),
                 "--open-on", ",".join(str(i) for i in range(count)),
                 "--clients-on", ",".join(str(i) for i in range(count)),
                 "--clients", str(args.clients), "--rate", str(args.rate),
                 "--tokens", str(tokens)],
                timeout=args.seconds * 4 + 180 + sessions / 20,
                cpu=1 if count == 1 else None,
                module="bench.cluster",
            )  # fmt: skip
        row["node_cores"] = (
            "1 (core 0; clients on core 1)" if count == 1 else "1 each (cores 0, 1; clients: both)"
        )
        rows.append(row)
    return rows


def cross(args: argparse.Namespace, postgres: Any, redis: Any) -> dict[str, Any]:
    tokens = max(1, int(args.rate * args.seconds))
    print(f"cluster cross: {args.cross_sessions} sessions owned by node a, a client on a and "
          "one on b ...", flush=True)  # fmt: skip
    database, bus = fresh_cluster(postgres, redis)
    with temp_folder() as folder, nodes(folder, database, bus, ["a", "b"], cpus=(0, 1)) as served:
        result = run_driver(
            ["drive", "--ports", ",".join(str(s.port) for s in served),
             "--pids", ",".join(str(s.pid) for s in served),
             "--token", TOKEN, "--sessions", str(args.cross_sessions), "--open-on", "0",
             "--clients-on", "0,1", "--clients", "2", "--rate", str(args.rate),
             "--tokens", str(tokens)],
            timeout=args.seconds * 4 + 180,
            cpu=None,
            module="bench.cluster",
        )  # fmt: skip
    result["rows"] = [
        {"client": "on a (owner)", "sessions": args.cross_sessions, **result["per_client"][0]},
        {"client": "on b (across)", "sessions": args.cross_sessions, **result["per_client"][1]},
    ]
    return result


async def _failover_round(
    owner: Served, watcher: Served, sessions: int, turn_seconds: float
) -> dict[str, Any]:
    from bench.driver import Conn

    restarted: dict[str, float] = {}
    streaming_again: dict[str, float] = {}
    streaming: set[str] = set()
    killed_at: list[float] = []
    all_streaming = trio.Event()
    all_resumed = trio.Event()

    last_seq: dict[str, int] = {}
    seq_faults = {"gaps": 0, "regressions": 0}

    def on_event(item: dict[str, Any], now: float) -> None:
        session, name, seq = item.get("session"), item["event"], item.get("seq")
        if session is None:
            return
        if seq is not None:
            before = last_seq.get(session)
            if before is not None and seq <= before:
                seq_faults["regressions"] += 1
            elif before is not None and seq > before + 1:
                seq_faults["gaps"] += 1
            last_seq[session] = max(seq, before or 0)
        if not killed_at:
            if name == "streamingUpdate":
                streaming.add(session)
                if len(streaming) == sessions:
                    all_streaming.set()
            return
        if name == "sessionRestarted":
            restarted.setdefault(session, now - killed_at[0])
        # Tokens the killed owner appended just before it died still arrive: the turn streams
        # again only with the first token after the session's restart.
        elif name == "streamingUpdate" and session in restarted and session not in streaming_again:
            streaming_again[session] = now - killed_at[0]
            if len(streaming_again) == sessions:
                all_resumed.set()

    timed_out = False
    async with trio.open_nursery() as nursery:
        control = await Conn.open(nursery, "127.0.0.1", owner.port, TOKEN)
        opened = await control.call_many(
            [("openSession", {"project": f"f{i:03}"}) for i in range(sessions)]
        )
        ids = [r["session"]["session"] for r in opened]
        client = await Conn.open(nursery, "127.0.0.1", watcher.port, TOKEN, on_event)
        await client.call_many([("subscribe", {"session": sid}) for sid in ids])
        tokens = int(20 * turn_seconds)
        content = f"go [[tokens:{tokens}]] [[rate:20]]"
        await control.call_many([("sendMessage", {"session": s, "content": content}) for s in ids])
        with trio.fail_after(120):
            await all_streaming.wait()
        killed_at.append(time.monotonic())
        os.kill(owner.pid, signal.SIGKILL)
        with trio.move_on_after(turn_seconds) as waited:
            await all_resumed.wait()
        timed_out = waited.cancelled_caught
        for conn in (client, control):  # the control's peer is dead: its socket closes
            await conn.ws.close()
        nursery.cancel_scope.cancel()
    return {
        "restarted": list(restarted.values()),
        "streaming": list(streaming_again.values()),
        "not_resumed": sessions - len(streaming_again),
        "timed_out": timed_out,
        "seq_gaps": seq_faults["gaps"],
        "seq_regressions": seq_faults["regressions"],
    }


def failover(args: argparse.Namespace, postgres: Any, redis: Any) -> list[dict[str, Any]]:
    rows = []
    for lease in args.leases:
        restarted: list[float] = []
        streaming: list[float] = []
        not_resumed = gaps = regressions = 0
        for k in range(args.kills):
            print(f"cluster failover: lease {lease:g} s, kill {k + 1} of {args.kills} ...",
                  flush=True)  # fmt: skip
            database, bus = fresh_cluster(postgres, redis)
            # Long enough to still be streaming when the lease has lapsed and a node claimed.
            turn = lease * 2 + 30
            with (
                temp_folder() as folder,
                nodes(folder, database, bus, ["a", "b"], lease=lease, cpus=(0, 1)) as served,
            ):
                result = trio.run(_failover_round, served[0], served[1], args.failover_sessions,
                                  turn)  # fmt: skip
            restarted += result["restarted"]
            streaming += result["streaming"]
            not_resumed += result["not_resumed"]
            gaps += result["seq_gaps"]
            regressions += result["seq_regressions"]
        r, s = percentiles(restarted), percentiles(streaming)
        rows.append({
            "lease_seconds": lease, "kills": args.kills, "sessions": args.failover_sessions,
            "restarted_p50_ms": r["p50_ms"], "restarted_max_ms": r["max_ms"],
            "streaming_p50_ms": s["p50_ms"], "streaming_max_ms": s["max_ms"],
            "not_resumed": not_resumed, "seq_gaps": gaps, "seq_regressions": regressions,
        })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["drive"]:
        return _drive_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--parts", default="scale,cross,failover", help="which parts, in order")
    parser.add_argument("--sessions", default="100", help="N of the scale part (a list: 100,500)")
    parser.add_argument("--clients", type=int, default=4, help="C of the scale part")
    parser.add_argument("--rate", type=float, default=20.0, help="tokens/s per session")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each turn")
    parser.add_argument("--cross-sessions", type=int, default=50)
    parser.add_argument("--leases", default="10,2", help="lease seconds of the failover part")
    parser.add_argument("--kills", type=int, default=1, help="kill -9 per lease")
    parser.add_argument("--failover-sessions", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    args = parser.parse_args(argv)
    args.leases = [float(x) for x in args.leases.split(",")]
    args.sessions = [int(x) for x in args.sessions.split(",")]
    parts = args.parts.split(",")
    unknown = set(parts) - {"scale", "cross", "failover"}
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    result: dict[str, Any] = {"rate": args.rate, "turn_seconds": args.seconds}
    with engines() as (postgres, redis):
        if "scale" in parts:
            result["scale"] = scale(args, postgres, redis)
        if "cross" in parts:
            result["cross"] = cross(args, postgres, redis)
        if "failover" in parts:
            result["failover"] = failover(args, postgres, redis)
    if "scale" in result:
        print()
        print_table(result["scale"], SCALE_COLUMNS)
    if "cross" in result:
        print()
        print_table(result["cross"]["rows"], CROSS_COLUMNS)
    if "failover" in result:
        print()
        print_table(result["failover"], FAILOVER_COLUMNS)
    write_result("cluster", result, args.out)
    return result


def _drive_main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster drive")
    parser.add_argument("--ports", required=True)
    parser.add_argument("--pids", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--open-on", required=True, help="node indexes the sessions are made on")
    parser.add_argument("--clients-on", required=True, help="node indexes of the clients")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--tokens", type=int, required=True)
    result = trio.run(drive, parser.parse_args(argv))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
