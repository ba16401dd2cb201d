"""The client side of the subprocess scenarios, run in a process of its own (on the other core).

    python -m bench.driver stream --port P --token T --server-pid PID --sessions N ...
    python -m bench.driver peer   --port P --clients C
    python -m bench.driver idle   --port P --token T --t0 MONOTONIC --project NAME
    python -m bench.driver turns  --port P --token T --sessions N   (then ``check``)
    python -m bench.driver flood  --port P --token T --server-pid PID --rounds K ...

Each mode prints one JSON object as its last line. The clients are :mod:`bench.wsclient` raw
sockets speaking JSON (what a browser speaks), so that parsing, not a client library, is their
cost. Times are ``time.monotonic()``, which on Linux is one clock for every process.

Latency is exact: the turns ask the simulated provider to ``[[stamp]]`` each token with
``time.monotonic()`` at the moment it is emitted, and a client subtracts it from the moment it
has the token ("exact"). The older estimate is kept beside it as a cross-check (see
bench/README.md): the simulated provider emits the
j-th token of a turn j/rate seconds after the stream starts. A client that receives token j at
``t`` computes ``t - j/rate``, the *lateness*, which is the stream start plus the latency. Two
anchors bound the latency: the time the client sent ``sendMessage`` (the stream cannot start
before it: an upper bound), and the smallest lateness seen for that session (no token arrives
before it is emitted: a lower bound, exact if the quickest token had no delay).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import trio

from bench.common import cpu_seconds, host_cpu_times, io_counters, status_kib
from bench.wsclient import Closed, WsClient

PATH_FMT = "/ws?token={token}"
SUBPROTOCOL = "greenroom.v1.json"

EventHandler = Callable[[dict[str, Any], float], None]


class CallFailed(Exception):
    pass


class Conn:
    """A greenroom connection: numbered commands, replies matched by id, events to a handler."""

    def __init__(self, ws: WsClient, on_event: EventHandler | None = None) -> None:
        self.ws = ws
        self.on_event = on_event
        self.next_id = 1
        self.waiting: dict[int, list[Any]] = {}
        self.welcome: dict[str, Any] | None = None
        self.welcome_at = 0.0
        self.got_welcome = trio.Event()
        self.closed_code: int | None = None
        self.closed = trio.Event()
        self.frames = 0
        self.events = 0

    @classmethod
    async def open(
        cls,
        nursery: trio.Nursery,
        host: str,
        port: int,
        token: str,
        on_event: EventHandler | None = None,
    ) -> Conn:
        ws = await WsClient.connect(
            host, port, PATH_FMT.format(token=token), subprotocol=SUBPROTOCOL
        )
        conn = cls(ws, on_event)
        nursery.start_soon(conn.read)
        with trio.fail_after(300):
            await conn.got_welcome.wait()
        return conn

    async def read(self) -> None:
        on_event = self.on_event
        waiting = self.waiting
        try:
            async for _opcode, payload in self.ws.frames():
                now = time.monotonic()
                self.frames += 1
                obj = json.loads(payload)
                for item in obj if isinstance(obj, list) else (obj,):
                    if "re" in item:
                        slot = waiting.pop(item["re"], None)
                        if slot is not None:
                            slot[1] = item
                            slot[0].set()
                    elif item.get("event") == "welcome":
                        self.welcome = item["data"]
                        self.welcome_at = now
                        self.got_welcome.set()
                    else:
                        self.events += 1
                        if on_event is not None:
                            on_event(item, now)
        except Closed as closed:
            self.closed_code = closed.code
        finally:
            self.closed.set()
            for slot in self.waiting.values():
                slot[0].set()
            self.waiting.clear()

    async def call_many(
        self, commands: Sequence[tuple[str, dict[str, Any]]], *, window: int = 64,
        sent_at: list[float] | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Send every command, at most ``window`` awaiting their reply at a time (the server
        reads 64 ahead; more would block this sender, and the pongs behind it, on TCP), and
        return the replies in order; ``sent_at`` gets the time each was written."""
        slots: list[list[Any]] = []
        for op, fields in commands:
            if len(slots) >= window:
                await slots[-window][0].wait()
            if self.closed.is_set():
                break
            slot: list[Any] = [trio.Event(), None]
            self.waiting[self.next_id] = slot
            slots.append(slot)
            frame = json.dumps({"id": self.next_id, "op": op, **fields})
            self.next_id += 1
            if sent_at is not None:
                sent_at.append(time.monotonic())
            await self.ws.send(frame)
        if len(slots) < len(commands):
            raise CallFailed(f"connection closed ({self.closed_code})")
        results = []
        for slot in slots:
            await slot[0].wait()
            reply = slot[1]
            if reply is None:
                raise CallFailed(f"connection closed ({self.closed_code})")
            if not reply.get("ok"):
                raise CallFailed(str(reply.get("error")))
            results.append(reply["result"])
        return results

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        return (await self.call_many([(op, fields)]))[0]


# -- stream -----------------------------------------------------------------------------------


class StreamCounter:
    """One subscribed client's tally: tokens, events, and the lateness of every token."""

    def __init__(self, index: dict[str, int], rate: float) -> None:
        self.index = index
        self.inv_rate = 1.0 / rate
        self.tokens: dict[str, int] = {}
        self.token_total = 0
        self.late = array("d")
        self.late_session = array("i")
        self.exact = array("d")  # receipt minus the token's own emission stamp
        self.done: set[str] = set()
        self.last_done_at = 0.0

    def __call__(self, item: dict[str, Any], now: float) -> None:
        name = item["event"]
        if name == "streamingUpdate":
            delta: str = item["data"]["delta"]
            stamps = delta.split("@")[1:]
            for stamp in stamps:
                try:
                    self.exact.append(now - float(stamp.split(" ", 1)[0]))
                except ValueError:
                    continue
            n = len(stamps) or delta.count(" ") + delta.endswith(".")
            if n:
                session = item["session"]
                prev = self.tokens.get(session, 0)
                self.tokens[session] = prev + n
                self.token_total += n
                idx = self.index.get(session, -1)
                inv = self.inv_rate
                for j in range(prev + 1, prev + n + 1):
                    self.late.append(now - j * inv)
                    self.late_session.append(idx)
        elif name == "loadingChanged" and not item["data"]["loading"]:
            self.done.add(item["session"])
            self.last_done_at = now


def latency_figures(
    counters: Sequence[StreamCounter], sent_at: Sequence[float], sessions: int
) -> dict[str, Any]:
    try:
        import numpy as np
    except ImportError:  # numpy comes with matplotlib; without it, pure Python
        np = None
    if np is not None:
        late = np.concatenate([np.frombuffer(c.late, dtype=np.float64) for c in counters])
        sess = np.concatenate([np.frombuffer(c.late_session, dtype=np.int32) for c in counters])
        if late.size == 0:
            return {"samples": 0}
        floor = np.full(sessions, np.inf)
        np.minimum.at(floor, sess, late)
        lower = late - floor[sess]
        upper = late - np.asarray(sent_at)[sess]

        def figures(values: Any) -> dict[str, float]:
            p50, p99 = np.percentile(values, [50, 99])
            return {
                "p50_ms": round(float(p50) * 1000, 2),
                "p99_ms": round(float(p99) * 1000, 2),
                "max_ms": round(float(values.max()) * 1000, 2),
            }

        exact = np.concatenate([np.frombuffer(c.exact, dtype=np.float64) for c in counters])
        return {
            "samples": int(late.size),
            "exact": figures(exact) if exact.size else {},
            "lower": figures(lower),
            "upper": figures(upper),
        }
    from bench.common import percentiles

    floor_list = [float("inf")] * sessions
    for c in counters:
        for value, s in zip(c.late, c.late_session, strict=True):
            floor_list[s] = min(floor_list[s], value)
    low = [v - floor_list[s] for c in counters for v, s in zip(c.late, c.late_session, strict=True)]
    up = [v - sent_at[s] for c in counters for v, s in zip(c.late, c.late_session, strict=True)]
    exact_list = [v for c in counters for v in c.exact]
    return {
        "samples": len(low),
        "exact": percentiles(exact_list) if exact_list else {},
        "lower": percentiles(low),
        "upper": percentiles(up),
    }


async def stream(args: argparse.Namespace) -> dict[str, Any]:
    n, rate, tokens = args.sessions, args.rate, args.tokens
    pid = args.server_pid
    async with trio.open_nursery() as nursery:
        control = await Conn.open(nursery, args.host, args.port, args.token)
        opened = await control.call_many(
            [("openSession", {"project": f"p{i:05}"}) for i in range(n)]
        )
        ids = [r["session"]["session"] for r in opened]
        index = {sid: i for i, sid in enumerate(ids)}
        counters = [StreamCounter(index, rate) for _ in range(args.clients)]
        clients = [
            await Conn.open(nursery, args.host, args.port, args.token, counter)
            for counter in counters
        ]
        for client in clients:
            await client.call_many([("subscribe", {"session": sid}) for sid in ids])
        stats0 = await control.call("stats")
        cpu0, io0 = cpu_seconds(pid), io_counters(pid)
        client0, host0 = time.process_time(), host_cpu_times()
        t0 = time.monotonic()
        sent_at: list[float] = []
        content = f"go [[tokens:{tokens}]] [[rate:{rate}]] [[stamp]]"
        await control.call_many(
            [("sendMessage", {"session": sid, "content": content}) for sid in ids],
            sent_at=sent_at,
        )
        sent_done = time.monotonic()
        deadline = t0 + tokens / rate * 4 + 30 + n / 200
        timed_out = False
        while True:
            if all(
                len(c.done) >= n or k.closed.is_set()
                for c, k in zip(counters, clients, strict=True)
            ):
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            await trio.sleep(0.02)
        t1 = max([c.last_done_at for c in counters] + [t0])
        cpu1, io1, hwm = cpu_seconds(pid), io_counters(pid), status_kib(pid, "VmHWM")
        rss = status_kib(pid, "VmRSS")
        client1, host1 = time.process_time(), host_cpu_times()
        t_end = time.monotonic()
        stats1 = await control.call("stats")
        for conn in [control, *clients]:
            await conn.ws.close()
        nursery.cancel_scope.cancel()
    window = max(t1 - t0, 1e-9)
    events = sum(k.events for k in clients)
    frames = sum(k.frames for k in clients)
    token_deliveries = sum(c.token_total for c in counters)
    persistence0, persistence1 = stats0.get("persistence", {}), stats1.get("persistence", {})
    journal0, journal1 = stats0.get("journal", {}), stats1.get("journal", {})

    def journal_per_s(key: str) -> float:
        return round((journal1.get(key, 0) - journal0.get(key, 0)) / window, 1)

    return {
        "sessions": n,
        "rate": rate,
        "clients": args.clients,
        "tokens_per_turn": tokens,
        "seconds": round(window, 3),
        "send_seconds": round(sent_done - t0, 3),
        "timed_out": timed_out,
        "tokens_generated": n * tokens,
        "tokens_generated_per_s": round(n * tokens / window, 1),
        "offered_events_per_s": round(n * rate * args.clients, 1),
        "events_delivered": events,
        "events_delivered_per_s": round(events / window, 1),
        "token_deliveries_per_s": round(token_deliveries / window, 1),
        "frames_per_s": round(frames / window, 1),
        "events_per_frame": round(events / max(frames, 1), 2),
        "client_bytes_per_s": round(sum(k.ws.bytes_received for k in clients) / window, 1),
        "latency": latency_figures(counters, sent_at, n),
        "server_cpu": round((cpu1 - cpu0) / max(t_end - t0, 1e-9), 3),
        "cpu_us_per_token": round((cpu1 - cpu0) / max(n * tokens, 1) * 1e6, 1),
        "client_cpu": round((client1 - client0) / max(t_end - t0, 1e-9), 3),
        "steal": round((host1[0] - host0[0]) / max(host1[1] - host0[1], 1), 3),
        "journal_bytes_per_s": journal_per_s("bytesWritten"),
        "journal_writes_per_s": journal_per_s("batches"),
        "journal_syncs_per_s": journal_per_s("syncs"),
        "server_peak_rss_kib": hwm,
        "server_rss_kib": rss,
        "server_write_bytes": io1.get("write_bytes", 0) - io0.get("write_bytes", 0),
        "server_wchar": io1.get("wchar", 0) - io0.get("wchar", 0),
        "merged_deltas": stats1.get("mergedDeltas", 0) - stats0.get("mergedDeltas", 0),
        "closed_slow": stats1.get("closedSlow", 0) - stats0.get("closedSlow", 0),
        "clients_closed": [k.closed_code for k in clients if k.closed_code is not None],
        "sessions_completed_min": min(len(c.done) for c in counters) if counters else 0,
        "events_published": stats1.get("eventsPublished", 0) - stats0.get("eventsPublished", 0),
        "server_events_sent": stats1.get("eventsSent", 0) - stats0.get("eventsSent", 0),
        "server_frames_sent": stats1.get("framesSent", 0) - stats0.get("framesSent", 0),
        "snapshot_writes": persistence1.get("snapshotWrites", 0)
        - persistence0.get("snapshotWrites", 0),
        "partials_writes": persistence1.get("partialsWrites", 0)
        - persistence0.get("partialsWrites", 0),
        "partial_snapshots": persistence1.get("partialSnapshots", 0)
        - persistence0.get("partialSnapshots", 0),
        "history_appends": persistence1.get("historyAppends", 0)
        - persistence0.get("historyAppends", 0),
        "flushes": persistence1.get("flushes", 0) - persistence0.get("flushes", 0),
        "stats": stats1,
    }


# -- peer -------------------------------------------------------------------------------------


async def peer(args: argparse.Namespace) -> dict[str, Any]:
    """C clients of a bare server (bench.peers): count events, one per frame, and their
    latency from the server's own ``t`` stamp."""
    results: list[dict[str, Any]] = []

    async def one(ws: WsClient, go: trio.Event) -> None:
        await go.wait()
        await ws.send("go")
        events = 0
        first = last = 0.0
        late = array("d")
        try:
            async for _opcode, payload in ws.frames():
                now = time.monotonic()
                obj = json.loads(payload)
                for item in obj if isinstance(obj, list) else (obj,):
                    events += 1
                    late.append(now - item["t"])
                if not first:
                    first = now
                last = now
        except Closed:
            pass
        results.append({"events": events, "first": first, "last": last, "late": late,
                        "frames": ws.frames_received})  # fmt: skip

    with trio.fail_after(args.seconds * 4 + 60):
        sockets = [await WsClient.connect(args.host, args.port, "/") for _ in range(args.clients)]
        go = trio.Event()
        async with trio.open_nursery() as nursery:
            for ws in sockets:
                nursery.start_soon(one, ws, go)
            go.set()
    first = min(r["first"] for r in results if r["first"])
    last = max(r["last"] for r in results)
    window = max(last - first, 1e-9)
    events = sum(r["events"] for r in results)
    frames = sum(r["frames"] for r in results)
    late = [v for r in results for v in r["late"]]
    from bench.common import percentiles

    return {
        "clients": args.clients,
        "seconds": round(window, 3),
        "events": events,
        "events_delivered_per_s": round(events / window, 1),
        "frames_per_s": round(frames / window, 1),
        "latency": percentiles(late),
    }


# -- idle, turns, check -----------------------------------------------------------------------


async def idle(args: argparse.Namespace) -> dict[str, Any]:
    async with trio.open_nursery() as nursery:
        connect_at = time.monotonic()
        conn = await Conn.open(nursery, args.host, args.port, args.token)
        welcome_sessions = len((conn.welcome or {}).get("sessions", ()))
        lists = []
        count = 0
        for _ in range(args.repeat):
            started = time.monotonic()
            result = await conn.call("listSessions")
            lists.append(time.monotonic() - started)
            count = len(result["sessions"])
        timings = {}
        for label in ("open_cold_seconds", "open_warm_seconds"):
            started = time.monotonic()
            state = await conn.call("openSession", project=args.project)
            timings[label] = round(time.monotonic() - started, 4)
        await conn.ws.close()
        nursery.cancel_scope.cancel()
    return {
        "welcome_after_start_seconds": round(conn.welcome_at - args.t0, 3),
        "welcome_after_connect_seconds": round(conn.welcome_at - connect_at, 3),
        "welcome_sessions": welcome_sessions,
        "list_sessions_seconds": round(min(lists), 4),
        "list_sessions_seconds_all": [round(x, 4) for x in lists],
        "listed": count,
        "opened_message_count": state["session"]["messageCount"],
        **timings,
    }


async def turns(args: argparse.Namespace) -> dict[str, Any]:
    """Open N sessions and run one short turn in each; report each one's message count."""
    done: set[str] = set()
    all_done = trio.Event()
    wanted = args.sessions

    def on_event(item: dict[str, Any], now: float) -> None:
        if item["event"] == "loadingChanged" and not item["data"]["loading"]:
            done.add(item["session"])
            if len(done) >= wanted:
                all_done.set()

    async with trio.open_nursery() as nursery:
        conn = await Conn.open(nursery, args.host, args.port, args.token, on_event)
        projects = [f"{args.prefix}{i:05}" for i in range(args.sessions)]
        opened = await conn.call_many([("openSession", {"project": p}) for p in projects])
        ids = [r["session"]["session"] for r in opened]
        content = "tell me [[tokens:20]] [[rate:inf]]"
        await conn.call_many([("sendMessage", {"session": s, "content": content}) for s in ids])
        with trio.move_on_after(120):
            await all_done.wait()
        states = await conn.call_many([("openSession", {"project": p}) for p in projects])
        await conn.ws.close()
        nursery.cancel_scope.cancel()
    return {
        "completed": len(done),
        "counts": {p: s["session"]["messageCount"] for p, s in zip(projects, states, strict=True)},
    }


async def check(args: argparse.Namespace) -> dict[str, Any]:
    """Welcome time since ``t0``, and each project's message count now."""
    expected: dict[str, int] = json.loads(args.expect)
    async with trio.open_nursery() as nursery:
        conn = await Conn.open(nursery, args.host, args.port, args.token)
        states = await conn.call_many([("openSession", {"project": p}) for p in expected])
        await conn.ws.close()
        nursery.cancel_scope.cancel()
    counts = {p: s["session"]["messageCount"] for p, s in zip(expected, states, strict=True)}
    lost = {p: (expected[p], counts[p]) for p in expected if counts[p] < expected[p]}
    return {
        "welcome_after_start_seconds": round(conn.welcome_at - args.t0, 3),
        "sessions_checked": len(expected),
        "sessions_with_lost_messages": len(lost),
        "lost": dict(list(lost.items())[:10]),
    }


async def flood(args: argparse.Namespace) -> dict[str, Any]:
    """Rounds of one flood each: a client that subscribes and then never reads, and a session
    with a long turn and ``--queued`` texts of ``--size`` characters queued behind it. Each
    round waits for every turn to end, deletes the session, lets the server settle and reads
    its RSS. Before queued texts were previews in summaries, each of these rounds sent the
    stalled client the sum of every queue's texts (about 75 MB for 24 x 250 kB)."""
    pid = args.server_pid
    ended: dict[str, int] = {}
    changed = trio.Event()

    def on_event(item: dict[str, Any], now: float) -> None:
        nonlocal changed
        if item["event"] == "loadingChanged" and not item["data"]["loading"]:
            ended[item["session"]] = ended.get(item["session"], 0) + 1
            changed.set()
            changed = trio.Event()

    async with trio.open_nursery() as nursery:
        control = await Conn.open(nursery, args.host, args.port, args.token, on_event)
        await trio.sleep(args.settle)
        baseline = status_kib(pid, "VmRSS")
        rounds = []
        for r in range(args.rounds):
            stats0 = await control.call("stats")
            opened = await control.call("openSession", project=f"{args.prefix}{r}")
            sid = opened["session"]["session"]
            await control.call("subscribe", session=sid)
            stalled = await WsClient.connect(
                args.host, args.port, PATH_FMT.format(token=args.token), subprotocol=SUBPROTOCOL
            )
            await stalled.send(json.dumps({"id": 1, "op": "subscribe", "session": sid}))
            started = time.monotonic()
            content = f"flood {r} [[tokens:{args.tokens}]] [[rate:{args.rate}]]"
            await control.call("sendMessage", session=sid, content=content)
            texts = [f"{k} " + "x" * args.size for k in range(args.queued)]
            await control.call_many(
                [("sendMessage", {"session": sid, "content": text}) for text in texts]
            )
            with trio.move_on_after(args.tokens / args.rate + 60 + args.queued * 5):
                while ended.get(sid, 0) < args.queued + 1:
                    await changed.wait()
            turns = time.monotonic() - started
            peak = status_kib(pid, "VmHWM")
            stats1 = await control.call("stats")
            await control.call("deleteSession", session=sid)
            await stalled.close()
            await trio.sleep(args.settle)
            rss = status_kib(pid, "VmRSS")
            rounds.append({
                "round": r + 1,
                "turns_ended": ended.get(sid, 0),
                "turns_seconds": round(turns, 2),
                "closed_slow": stats1.get("closedSlow", 0) - stats0.get("closedSlow", 0),
                "peak_rss_kib": peak,
                "rss_after_kib": rss,
                "rss_after_vs_before": round(rss / max(baseline, 1), 3),
            })  # fmt: skip
        await control.ws.close()
        nursery.cancel_scope.cancel()
    return {"rss_before_kib": baseline, "rounds": rounds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.driver")
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("stream", "peer", "idle", "turns", "check", "flood"):
        p = sub.add_parser(name)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--token", default="")
        p.add_argument("--clients", type=int, default=10)
        p.add_argument("--sessions", type=int, default=100)
        p.add_argument("--rate", type=float, default=20.0)
        p.add_argument("--tokens", type=int, default=100)
        p.add_argument("--seconds", type=float, default=3.0)
        p.add_argument("--server-pid", type=int, default=0)
        p.add_argument("--t0", type=float, default=0.0)
        p.add_argument("--project", default="project-7")
        p.add_argument("--repeat", type=int, default=3)
        p.add_argument("--prefix", default="k")
        p.add_argument("--expect", default="{}")
        p.add_argument("--rounds", type=int, default=3)
        p.add_argument("--queued", type=int, default=24)
        p.add_argument("--size", type=int, default=250_000)
        p.add_argument("--settle", type=float, default=2.0)
    args = parser.parse_args(argv)
    mode = {"stream": stream, "peer": peer, "idle": idle, "turns": turns, "check": check,
            "flood": flood}  # fmt: skip
    result = trio.run(mode[args.mode], args)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
