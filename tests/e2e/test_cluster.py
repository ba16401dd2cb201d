"""Three real ``greenroom serve`` nodes on one PostgreSQL and one Redis (docs/cluster.md).

The nodes share the projects folder and the token; each has its own data folder. Clients
connect to each node with the real websocket client. The lease is short (4 s) and a turn
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
import pytest
import trio

from greenroom.transport.client import CommandError, ConnectionLost, GreenroomClient, connect
from tests.e2e.harness import Server, kill_server, log_tail, logged, start_node
from tests.reliability.resume import LIFECYCLE, Seen

JSON = dict[str, Any]
WAIT = 60.0
"""The bound on any one wait: far above what a loaded machine needs, so never the cause."""
LEASE = ("--lease-seconds", "4", "--flush-interval", "0.2")
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


def client_of(
    server: Server, **options: Any
) -> contextlib.AbstractAsyncContextManager[GreenroomClient]:
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
    ended: str | None = None  # why its client's events ended
    ahead: dict[int, JSON] = attrs.Factory(dict)  # lifecycle events not yet in their place

    async def follow(self, client: GreenroomClient) -> None:
        await follow_all(client, {self.view.session: self})

    def take(self, event: JSON) -> None:
        seq = event.get("seq")
        last = self.view.last
        if seq is not None and event["event"] in LIFECYCLE and seq != last + 1:
            # A lifecycle event again, in a replay; or ahead of the stream (every connection
            # gets them: one that came between openSession and subscribe), which the replay
            # must bring again in its place (no_gap checks it did). Checked, not kept here.
            self.view.see(event)
            if seq > last:
                self.ahead[seq] = event
            return
        if seq is not None:
            self.ahead.pop(seq, None)
        if event["event"] == "sessionRestarted" and self.partial_before_restart is None:
            self.partial_before_restart = self.view.partial
        self.view.see(event)
        self.events.append(event)
        self.changed.set()

    def close(self, why: str) -> None:
        self.closed = True
        self.ended = why
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


def test_a_watch_keeps_lifecycle_events_in_their_place_in_the_stream() -> None:
    """A lifecycle event that came ahead of the subscribe (seq 318 after the state's 316) is
    kept where the replay brings it, after 317: the seq rule holds for what is kept."""
    watch = Watch(view=Seen(session="s-1", last=316))

    def lifecycle(seq: int) -> JSON:
        data = {"loading": False, "reason": "completed", "error": None}
        return {"event": "loadingChanged", "session": "s-1", "project": "p", "seq": seq,
                "data": data}  # fmt: skip

    watch.take(lifecycle(318))  # before the subscribe
    assert list(watch.ahead) == [318]
    delta = {"offset": 0, "delta": "hi", "toolCalls": None}
    watch.take({"event": "streamingUpdate", "session": "s-1", "project": "p", "seq": 317,
                "data": delta})  # fmt: skip
    watch.take(lifecycle(318))  # the replay's
    assert watch.seqs() == [317, 318] and not watch.ahead
    no_gap(watch)
    watch.take(lifecycle(320))  # ahead, and never brought in its place: no_gap says so
    with pytest.raises(AssertionError, match="never brought"):
        no_gap(watch)


async def follow_all(client: GreenroomClient, watches: dict[str, Watch]) -> None:
    """Hand each event of ``client`` to the watch of its session, until the client closes."""
    ended = "the client closed"
    try:
        async for event in client.events():
            watch = watches.get(event.get("session") or "")
            if watch is not None:
                watch.take(event)
    except ConnectionLost as lost:
        ended = str(lost)
    for watch in watches.values():
        watch.close(ended)


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


def no_gap(*watches: Watch) -> None:
    """The seq rule (docs/protocol.md, "seq"): each client's seqs of the session strictly
    rise by one, except where consecutive ``streamingUpdate``s were merged into the last of
    them (a connection behind, or a replay); what each seq is, is taken from every client."""
    truth: dict[int, str] = {}
    for watch in watches:
        for event in watch.events:
            if event.get("seq") is not None:
                assert truth.setdefault(event["seq"], event["event"]) == event["event"]
    for watch in watches:
        assert not watch.ahead, f"never brought in their place: seqs {sorted(watch.ahead)}"
        numbered = [(e["seq"], e["event"]) for e in watch.events if e.get("seq") is not None]
        for (a, _), (b, name) in itertools.pairwise(numbered):
            assert b > a, f"seq {b} after {a}"
            if b > a + 1:
                skipped = [truth.get(s, "streamingUpdate") for s in range(a + 1, b)]
                assert name == "streamingUpdate", (a, b, name)
                assert set(skipped) == {"streamingUpdate"}, (a, b, skipped)


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


def took(nodes: Cluster, session: str) -> list[str]:
    """The nodes whose log says they took ``session`` over."""
    return [
        name
        for name, server in nodes.nodes.items()
        if f"node {name} took session {session}" in server.stderr.read_text()
    ]


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
            # stats says which node answered and what it did for the cluster.
            counters = {"b": (await on_b.stats())["cluster"], "c": (await on_c.stats())["cluster"]}
            nursery.cancel_scope.cancel()
        assert {name: counted["node"] for name, counted in counters.items()} == {"b": "b", "c": "c"}
        assert counters["b"]["forwarded"] >= 1 and counters["b"]["databaseOk"]
        assert sum(counted["claimed"] for counted in counters.values()) == 1
        no_gap(*watches)
        for watch in watches:
            nothing_seen_lost(watch, state)
            names = [e["event"] for e in watch.events]
            assert names.count("sessionRestarted") == 1, names
        assert state["status"] == "idle"
        messages = state["messages"]
        assert [m["role"] for m in messages[:2]] == ["user", "assistant"]
        assert any(m.get("stopped") for m in messages), "the cut reply kept as a stopped one"
        # The resumed turn completed the reply: partial + rest = the 200 tokens asked for.
        assert len("".join(m.get("content") or "" for m in messages[1:]).split()) == 200
        assert len(took(nodes, session)) == 1, took(nodes, session)


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
            await logged(a, f"node a lost session {session}")
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
        assert len(took(nodes, session)) == 1 and "a" not in took(nodes, session)
        # No duplicate, nothing out of order, nothing skipped, on the woken node too.
        no_gap(watch_a, watch_b, watch_c)
        for watch in (watch_a, watch_b, watch_c):
            watch.view.check_state(state)
        for watch in (watch_b, watch_c):
            nothing_seen_lost(watch, state)
        assert state["messages"][-2]["content"] == "and one more [[tokens:5]]"
        assert state["messages"][-1]["role"] == "assistant"


# -- 3. a client moving between nodes mid-stream ------------------------------------------------


@attrs.define(eq=False)
class Balancer:
    """A TCP load balancer in front of the nodes, as a deployment has: each new connection
    goes to the node ``target`` names (None: accepted and closed at once, a node being
    drained); :meth:`cut` drops every connection it carries."""

    target: Server | None
    port: int = 0
    carried: list[str] = attrs.Factory(list)
    """The URL of the node each connection went to, in order."""
    _scopes: set[trio.CancelScope] = attrs.Factory(set)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._carry, listeners)

    def cut(self) -> None:
        for scope in self._scopes:
            scope.cancel()

    async def _carry(self, downstream: trio.SocketStream) -> None:
        target = self.target
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                async with downstream:
                    if target is None:
                        return
                    port = int(target.url.rsplit(":", 1)[1].split("/")[0])
                    async with await trio.open_tcp_stream("127.0.0.1", port) as upstream:
                        self.carried.append(target.url)
                        async with trio.open_nursery() as pipes:
                            pipes.start_soon(_pipe, downstream, upstream, pipes.cancel_scope)
                            pipes.start_soon(_pipe, upstream, downstream, pipes.cancel_scope)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self._scopes.discard(scope)


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope) -> None:
    with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    both.cancel()


async def test_a_client_moves_to_another_node_mid_stream(
    tmp_path: Path, database_url: str, bus_url: str
) -> None:
    async with cluster(tmp_path, database_url, bus_url) as nodes:
        a, b, c = (nodes.nodes[n] for n in NAMES)
        async with trio.open_nursery() as nursery:
            balancer = Balancer(target=a)
            await nursery.start(balancer.run)
            async with (
                client_of(c) as on_c,
                # The client's own reconnect and resume: it knows only the balancer's URL.
                connect(balancer.url, a.token, reconnect=True) as moving,
            ):
                # The session lives on c; the moving client starts on a.
                session = (await on_c.open_session("p"))["session"]["session"]
                witness = await subscribed(on_c, "p", nursery)
                watch = await subscribed(moving, "p", nursery)
                await on_c.send_message(session, LONG)
                await watch.until(streamed, "text streamed")
                # a is drained: the client loses its connection mid-turn and cannot come
                # back until the balancer sends it to b; meanwhile the turn goes on.
                balancer.target = None
                balancer.cut()
                cut_at = watch.view.last
                await witness.until(
                    lambda events: sum(e["seq"] > cut_at + 5 for e in events) > 0,
                    "events published while the client was away",
                )
                assert watch.view.last == cut_at, "the client still got events"
                balancer.target = b
                await watch.until(turn_ended, "the turn ended")
                await witness.until(turn_ended, "the turn ended")
                state = (await moving.open_session("p"))["session"]
                nursery.cancel_scope.cancel()
        assert balancer.carried == [a.url, b.url]
        assert moving.reconnects == 1
        # Exactly what it missed, then the live ones: the same events as the client that
        # never moved, every seq once, in order.
        no_gap(watch, witness)
        assert watch.seqs()[-1] == witness.seqs()[-1]

        def committed(events: list[JSON]) -> list[JSON]:
            return [e for e in events if e["seq"] > cut_at and e["event"] != "streamingUpdate"]

        assert committed(watch.events) == committed(witness.events)
        assert watch.view.messages == witness.view.messages
        watch.view.check_state(state)
        assert state["messages"][-1]["role"] == "assistant"


# -- 4. chaos on three nodes --------------------------------------------------------------------

CHAOS_SEED = 20261207
CHAOS_PROJECTS = [f"k{i}" for i in range(6)]
KILLS = 2
# What the cluster may answer to a random command: a full queue, a turn already stopping, a
# session whose owner just died (the forward times out, or it is being claimed).
REFUSALS = {"limit_reached", "conflict", "unavailable"}


@attrs.define(eq=False)
class Follower:
    """A client on one node, following every chaos session; its watches outlive it."""

    node: str
    client: GreenroomClient
    watches: dict[str, Watch] = attrs.Factory(dict)
    ended: str | None = None  # how its task ended, if it did


async def follow(
    nodes: Cluster, name: str, *, task_status: trio.TaskStatus[Follower] = trio.TASK_STATUS_IGNORED
) -> None:
    """A client on node ``name`` that follows every chaos session, until its node dies or
    the test ends."""
    async with client_of(nodes.nodes[name]) as client:
        following = Follower(node=name, client=client)
        for project in CHAOS_PROJECTS:
            state = (await client.open_session(project))["session"]
            following.watches[state["session"]] = Watch(view=Seen.of(state))
        try:
            async with trio.open_nursery() as inner:
                inner.start_soon(follow_all, client, following.watches)
                for session, watch in following.watches.items():
                    await client.subscribe(session, since=watch.view.last)
                task_status.started(following)
        except BaseException as error:
            following.ended = repr(error)
            raise
        following.ended = "returned"


async def chaos(
    nodes: Cluster,
    followers: dict[str, Follower],
    sessions: list[str],
    rng: random.Random,
    actions: int,
) -> int:
    """``actions`` random commands, each on a random node; how many were refused."""
    refused = 0
    for _ in range(actions):
        name = rng.choice(sorted(followers))
        client = followers[name].client
        session = rng.choice(sessions)
        action = rng.choices(["plain", "fail", "stop"], [60, 10, 30])[0]
        try:
            if action == "plain":
                tokens = rng.randint(3, 60)
                await client.send_message(session, f"go [[tokens:{tokens}]] [[rate:40]]")
            elif action == "fail":
                await client.send_message(session, "talk [[fail:server]] [[rate:40]]")
            else:
                await client.stop_generation(session)
        except CommandError as error:
            assert error.code in REFUSALS, error
            refused += 1
        except ConnectionLost as error:
            # Never expected of a node that runs: say why, and what the node's log says.
            following = followers[name]
            ended = (following.ended, {w.ended for w in following.watches.values()})
            log = log_tail(nodes.nodes[name].stderr)
            raise AssertionError(f"{error} on node {name} ({ended}):\n{log}") from error
        await trio.sleep(rng.uniform(0, 0.2))
    return refused


async def quiet(client: GreenroomClient) -> None:
    """Wait until the cluster (as ``client``'s node lists it) runs no turn."""
    with trio.fail_after(WAIT):
        while True:
            listed = (await client.list_sessions())["sessions"]
            if not [s for s in listed if s["status"] in ("running", "stopping")]:
                return
            await trio.sleep(0.2)


async def test_chaos_on_three_nodes_with_kill_9(
    tmp_path: Path, database_url: str, bus_url: str
) -> None:
    rng = random.Random(CHAOS_SEED)
    gone: list[Follower] = []  # the followers of killed nodes: what they saw must last
    async with (
        cluster(tmp_path, database_url, bus_url) as nodes,
        trio.open_nursery() as nursery,
    ):
        try:
            followers: dict[str, Follower] = {}
            # The sessions are made on random nodes, so that every node owns some.
            for project in CHAOS_PROJECTS:
                async with client_of(nodes.nodes[rng.choice(NAMES)]) as maker:
                    await maker.open_session(project)
            for name in NAMES:
                followers[name] = await nursery.start(follow, nodes, name)
            sessions = sorted(followers["a"].watches)
            refused = await chaos(nodes, followers, sessions, rng, 30)
            victims = rng.sample(NAMES, KILLS)
            for victim in victims:
                await nodes.kill(victim)
                gone.append(followers.pop(victim))
                # The survivors go on while the victim's sessions are claimed.
                refused += await chaos(nodes, followers, sessions, rng, 15)
                await nodes.start(victim)  # the same node id, once its lease lapsed
                followers[victim] = await nursery.start(follow, nodes, victim)
                refused += await chaos(nodes, followers, sessions, rng, 15)
            some = followers["a"].client
            await some.stop_all()
            for following in followers.values():
                await quiet(following.client)
            # Every node shows the same final state of every session.
            states: dict[str, dict[str, JSON]] = {}
            for name, following in followers.items():
                states[name] = {
                    s["session"]: s
                    for s in [
                        (await following.client.open_session(p))["session"]
                        for p in CHAOS_PROJECTS
                    ]
                }
            final = states["a"]
            for name in NAMES:
                assert _comparable(states[name]) == _comparable(final), name
            # Nothing any client saw is lost, on any node, killed or not; every client's
            # seqs follow the seq rule against what every other client saw.
            everyone = [*gone, *followers.values()]
            checked = 0
            for session in sessions:
                watches = [f.watches[session] for f in everyone]
                no_gap(*watches)
                for watch in watches:
                    checked += watch.view.check_state(final[session])
            # A client of a killed node resumes, on the node that was never killed, where it
            # stopped: no reset, and the seqs go on from the last it saw. (A restarted node
            # retains only what it released since it started: see
            # test_a_restarted_node_replays_what_a_client_missed.)
            resumed = 0
            survivor = next(n for n in NAMES if n not in victims)
            for following in gone:
                async with client_of(nodes.nodes[survivor]) as again:
                    for session, watch in following.watches.items():
                        watch.closed = False
                        reply = await again.subscribe(session, since=watch.view.last)
                        assert not reply.get("reset"), reply
                        assert reply["seq"] >= watch.view.last
                        async with trio.open_nursery() as replay:
                            replay.start_soon(follow_all, again, {session: watch})
                            await watch.until(
                                lambda _, watch=watch, seq=reply["seq"]: watch.view.last >= seq,
                                "the replay",
                            )
                            replay.cancel_scope.cancel()
                        resumed += 1
                        assert watch.view.last == final[session]["seq"]
                        no_gap(watch)
            assert checked > 0 and resumed > 0
            assert refused < 60  # most commands ran
        finally:
            nursery.cancel_scope.cancel()


def _comparable(states: dict[str, JSON]) -> dict[str, JSON]:
    """A session's state as every node must show it (what a node adds of its own, left out)."""
    return {
        session: {k: v for k, v in state.items() if k not in ("subscribers",)}
        for session, state in states.items()
    }


async def test_a_restarted_node_replays_what_a_client_missed(
    tmp_path: Path, database_url: str, bus_url: str
) -> None:
    async with cluster(tmp_path, database_url, bus_url) as nodes:
        a, b = nodes.nodes["a"], nodes.nodes["b"]
        async with client_of(a) as on_a, trio.open_nursery() as nursery:
            session = (await on_a.open_session("p"))["session"]["session"]
            watch = await subscribed(on_a, "p", nursery)
            await on_a.send_message(session, "short [[tokens:5]] [[rate:50]]")
            await watch.until(turn_ended, "the turn ended")
            nursery.cancel_scope.cancel()
        await nodes.kill("b")
        await nodes.start("b")  # started after every event the client saw
        async with client_of(nodes.nodes["b"]) as on_b:
            reply = await on_b.subscribe(session, since=3)
        assert b is not nodes.nodes["b"]
        assert not reply.get("reset"), reply
