"""Three real ``greenroom serve`` nodes on one PostgreSQL and one Redis (docs/cluster.md).

The nodes share the projects folder and the token; each has its own data folder. Clients
connect to each node with the real websocket client. The lease is short (2 s) and a turn
lasts seconds, so an owner can be killed (kill -9) or paused (SIGSTOP) mid-stream. Time is
real: every wait is for a condition, bounded generously; nothing asserts how long something
took. Every process a test starts is stopped by it (a paused one gets SIGCONT first).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from greenroom.transport.client import ConnectionLost, GreenroomClient, connect
from tests.e2e.harness import Server, kill_server, start_node, stop_server
from tests.reliability.resume import Seen

JSON = dict[str, Any]
WAIT = 60.0
"""The bound on any one wait: far above what a loaded machine needs, so never the cause."""
LEASE = ("--lease-seconds", "2", "--flush-interval", "0.2")
NAMES = ("a", "b", "c")
LONG = "a long one [[tokens:200]] [[rate:25]]"  # about 8 s of streaming


@attrs.define(eq=False)
class Cluster:
    """The running nodes of a test, by node id; stopped (all of them) when the test ends."""

    tmp_path: Path
    database_url: str
    bus_url: str
    nodes: dict[str, Server] = attrs.Factory(dict)
    paused: set[str] = attrs.Factory(set)

    async def start(self, name: str) -> Server:
        server = await start_node(self.tmp_path, name, self.database_url, self.bus_url, *LEASE)
        self.nodes[name] = server
        return server

    async def kill(self, name: str) -> None:
        server = self.nodes[name]
        await kill_server(server)
        await _reap(server)

    def pause(self, name: str) -> None:
        self.paused.add(name)
        self.nodes[name].process.send_signal(signal.SIGSTOP)

    def wake(self, name: str) -> None:
        self.nodes[name].process.send_signal(signal.SIGCONT)
        self.paused.discard(name)

    async def stop_all(self) -> None:
        with trio.CancelScope(shield=True):
            for name in list(self.paused):
                self.wake(name)
            for server in self.nodes.values():
                if server.process.returncode is None:
                    server.process.kill()
                with trio.move_on_after(10):
                    await _reap(server)


async def _reap(server: Server) -> None:
    await server.process.wait()
    if server.process.stdout is not None:
        await server.process.stdout.aclose()


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path, database_url: str, bus_url: str) -> AsyncIterator[Cluster]:
    running = Cluster(tmp_path=tmp_path, database_url=database_url, bus_url=bus_url)
    try:
        for name in NAMES:
            await running.start(name)
        yield running
    finally:
        await running.stop_all()


def client_of(server: Server, **options: Any) -> contextlib.AbstractAsyncContextManager[GreenroomClient]:
    options.setdefault("reconnect", False)
    return connect(server.url, server.token, **options)


@attrs.define(eq=False)
class Watch:
    """Every event of one session that one client got, checked as it comes (:class:`Seen`:
    seqs only rise, streamed text never spliced), with a way to wait for one."""

    view: Seen
    events: list[JSON] = attrs.Factory(list)
    changed: trio.Event = attrs.Factory(trio.Event)
    partial_before_restart: str | None = None
    closed: bool = False

    async def follow(self, client: GreenroomClient) -> None:
        with contextlib.suppress(ConnectionLost):
            async for event in client.events():
                if event.get("session") != self.view.session:
                    continue
                if event["event"] == "sessionRestarted" and self.partial_before_restart is None:
                    self.partial_before_restart = self.view.partial
                self.view.see(event)
                self.events.append(event)
                self.changed.set()
        self.closed = True
        self.changed.set()

    async def until(self, done: Callable[[list[JSON]], bool], what: str) -> None:
        with trio.fail_after(WAIT):
            while not done(self.events):
                if self.closed:
                    raise AssertionError(f"the client closed before {what}")
                self.changed = trio.Event()
                await self.changed.wait()

    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events if e.get("seq") is not None]


async def subscribed(client: GreenroomClient, project: str, nursery: trio.Nursery) -> Watch:
    """Open ``project``'s session on ``client`` and follow it from the state it has now."""
    state = (await client.open_session(project))["session"]
    watch = Watch(view=Seen.of(state))
    nursery.start_soon(watch.follow, client)
    await client.subscribe(state["session"], since=state["seq"])
    return watch


def streamed(events: list[JSON]) -> bool:
    return any(e["event"] == "streamingUpdate" for e in events)


def restarted_and_ended(events: list[JSON]) -> bool:
    """A ``sessionRestarted``, then the end of a completed turn."""
    after = itertools.dropwhile(lambda e: e["event"] != "sessionRestarted", events)
    return any(
        e["event"] == "loadingChanged" and not e["data"]["loading"]
        and e["data"].get("reason") == "completed"
        for e in after
    )  # fmt: skip


def turn_ended(events: list[JSON]) -> bool:
    return any(e["event"] == "loadingChanged" and not e["data"]["loading"] for e in events)


def rise_by_one(watch: Watch) -> None:
    seqs = watch.seqs()
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


def nothing_seen_lost(watch: Watch, state: JSON) -> None:
    """Every message the client saw added is in ``state`` at its index, and the text it saw
    streamed before the restart was committed (a stopped assistant message) or is in the
    final text."""
    watch.view.check_state(state)
    partial = watch.partial_before_restart or ""
    assert partial, "the client saw text streamed before the owner went away"
    replies = [m.get("content") or "" for m in state["messages"] if m["role"] == "assistant"]
    assert any(r.startswith(partial) for r in replies) or partial in "".join(replies), (
        f"streamed text {partial[:40]!r}... lost"
    )


async def owner_of(tmp: Cluster, session: str) -> str:
    """The node whose log says it took or made ``session`` last (the database knows too,
    but the log is what an operator reads)."""
    for name, server in tmp.nodes.items():
        if f"session {session}" in server.stderr.read_text():
            return name
    raise AssertionError(f"no node logged {session}")


# -- 1. kill -9 of the owner mid-stream ---------------------------------------------------------


async def test_kill_9_of_the_owner_mid_stream(
    tmp_path: Path, database_url: str, bus_url: str
) -> None:
    async with cluster(tmp_path, database_url, bus_url) as nodes:
        a, b, c = (nodes.nodes[n] for n in NAMES)
        async with (
            client_of(a) as on_a,
            client_of(b) as on_b,
            client_of(c) as on_c,
            trio.open_nursery() as nursery,
        ):
            # openSession of a new project makes the session on the node that got it: a.
            session = (await on_a.open_session("p"))["session"]["session"]
            watches = [await subscribed(client, "p", nursery) for client in (on_b, on_c)]
            await on_b.send_message(session, LONG)  # forwarded to a
            for watch in watches:
                await watch.until(streamed, "text streamed")
            await nodes.kill("a")
            for watch in watches:
                await watch.until(restarted_and_ended, "the turn resumed and ended")
            state = (await on_b.open_session("p"))["session"]
            nursery.cancel_scope.cancel()
        for watch in watches:
            rise_by_one(watch)
            nothing_seen_lost(watch, state)
            names = [e["event"] for e in watch.events]
            assert names.count("sessionRestarted") == 1, names
        assert state["status"] == "idle"
        messages = state["messages"]
        assert [m["role"] for m in messages[:2]] == ["user", "assistant"]
        assert any(m.get("stopped") for m in messages), "the cut reply kept as a stopped one"
        # The resumed turn completed the reply: partial + rest = the 200 tokens asked for.
        assert len("".join(m.get("content") or "" for m in messages[1:]).split()) == 200
        taken = [n for n in ("b", "c") if f"took session {session}" in nodes.nodes[n].stderr.read_text()]
        assert len(taken) == 1, taken


# -- 2. SIGSTOP of the owner past its lease, then SIGCONT ---------------------------------------


async def test_a_paused_owner_wakes_fenced_and_forwards(
    tmp_path: Path, database_url: str, bus_url: str
) -> None:
    async with cluster(tmp_path, database_url, bus_url) as nodes:
        a, b, c = (nodes.nodes[n] for n in NAMES)
        async with (
            client_of(a) as on_a,
            client_of(b) as on_b,
            client_of(c) as on_c,
            trio.open_nursery() as nursery,
        ):
            session = (await on_a.open_session("p"))["session"]["session"]
            watch_a, watch_b, watch_c = [
                await subscribed(client, "p", nursery) for client in (on_a, on_b, on_c)
            ]
            await on_a.send_message(session, LONG)
            for watch in (watch_a, watch_b, watch_c):
                await watch.until(streamed, "text streamed")
            nodes.pause("a")
            # Past the lease, b or c claims the session and resumes the turn.
            for watch in (watch_b, watch_c):
                await watch.until(
                    lambda events: any(e["event"] == "sessionRestarted" for e in events),
                    "another node took the session",
                )
            nodes.wake("a")
            # a's late appends (or its next heartbeat) are refused: it says it lost the session.
            with trio.fail_after(WAIT):
                while f"node a lost session {session}" not in a.stderr.read_text():
                    await trio.sleep(0.1)
            for watch in (watch_a, watch_b, watch_c):
                await watch.until(restarted_and_ended, "the resumed turn ended")
            ends = [len(w.events) for w in (watch_a, watch_b, watch_c)]
            # The woken node forwards the session's commands to its new owner.
            assert await on_a.send_message(session, "and one more [[tokens:5]]") == {
                "queued": False
            }
            for watch, end in zip((watch_a, watch_b, watch_c), ends, strict=True):
                await watch.until(lambda events, end=end: turn_ended(events[end:]), "a new turn")
            state = (await on_a.open_session("p"))["session"]
            nursery.cancel_scope.cancel()
        owner = next(n for n in ("b", "c") if f"took session {session}" in nodes.nodes[n].stderr.read_text())
        log = nodes.nodes[owner].stderr.read_text()
        assert f"node {owner} took session {session}" in log
        for watch in (watch_a, watch_b, watch_c):
            # No duplicate, nothing out of order, nothing skipped, on the woken node too.
            rise_by_one(watch)
            watch.view.check_state(state)
        for watch in (watch_b, watch_c):
            nothing_seen_lost(watch, state)
        assert state["messages"][-2]["content"] == "and one more [[tokens:5]]"
        assert state["messages"][-1]["role"] == "assistant"
