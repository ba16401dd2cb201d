"""Three cluster nodes in one process, on a real PostgreSQL and a real Redis.

Each node is a whole runtime (as ``greenroom serve`` runs it) with its own data folder; they
share the projects folder and the engines. Time is real here (the engines are), so every wait
is for a condition, bounded generously; nothing asserts how long something took.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from greenroom.cluster.errors import EngineUnavailable
from greenroom.cluster.node import Node
from greenroom.cluster.streams import Entry
from greenroom.config import ClusterConfig, Config, SimulatedConfig
from greenroom.protocol import commands as cmd
from greenroom.protocol.events import (
    Event,
    LoadingChanged,
    MessageAdded,
    Notification,
    SessionRestarted,
    SessionUpdated,
    StreamingUpdate,
)
from greenroom.runtime import Client, Runtime, open_runtime
from tests.conftest import make_config
from tests.engines import Engine, flush_redis

WAIT = 60.0
"""The bound on any one wait: far above what a loaded machine needs, so never the cause."""


def node_config(tmp_path: Path, name: str, database_url: str, bus_url: str, **kw: Any) -> Config:
    settings: dict[str, Any] = {
        "data_dir": tmp_path / name,
        "projects_dir": tmp_path / "projects",
        "flush_interval": 0.2,
        "simulated": SimulatedConfig(seed=1, tokens_per_second=40.0, reply_tokens=30),
        "cluster": ClusterConfig(
            database_url=database_url, bus_url=bus_url, node_id=name, lease_seconds=4.0
        ),
    }
    settings.update(kw)
    return make_config(tmp_path, **settings)


@asynccontextmanager
async def cluster(
    tmp_path: Path, database_url: str, bus_url: str, names: tuple[str, ...] = ("a", "b", "c")
) -> AsyncIterator[dict[str, Runtime]]:
    async with AsyncExitStack() as stack:
        nodes = {}
        for name in names:
            config = node_config(tmp_path, name, database_url, bus_url)
            nodes[name] = await stack.enter_async_context(open_runtime(config))
        yield nodes


async def owner_that_leaves(
    stack: AsyncExitStack, tmp_path: Path, database_url: str, bus_url: str
) -> tuple[Runtime, str, AsyncExitStack]:
    """Node b, and the session of project ``p`` made on it; b leaves (gracefully) when the
    test closes the stack returned, or at the latest with ``stack``."""
    b_stack = AsyncExitStack()
    stack.push_async_callback(b_stack.aclose)  # a test that fails first still stops b
    b = await b_stack.enter_async_context(
        open_runtime(node_config(tmp_path, "b", database_url, bus_url))
    )
    return b, await opened_on(b, "p"), b_stack


async def opened_on(node: Runtime, project: str) -> str:
    """``openSession`` of ``project`` through ``node`` (as a connection runs it); the session."""
    opened = await node.execute_wire(cmd.OpenSession(project=project))
    session: str = opened["session"]["session"]
    return session


async def events_until(client: Client, done: Any, into: list[Event]) -> None:
    with trio.fail_after(WAIT):
        while True:
            event = await client.events.receive()
            into.append(event)
            if done(event):
                return


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (the node's state has no event to wait on)."""
    with trio.fail_after(WAIT):
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.05)


async def renewals(node: Node, count: int) -> None:
    """Wait until ``node``'s heartbeat renewed its lease ``count`` more times: each renewal
    after the first is a whole heartbeat, its check of the sessions held included, however
    long the machine takes to get there."""
    for _ in range(count):
        renewed = node._last_renewal
        await until(lambda renewed=renewed: node._last_renewal != renewed)


def idle(session: str) -> Any:
    return lambda e: (
        e.session == session
        and isinstance(e.data, SessionUpdated)
        and e.data.summary.status == "idle"
    )


def turn_ended(session: str) -> Any:
    return lambda e: (
        e.session == session and isinstance(e.data, LoadingChanged) and not e.data.loading
    )


def seqs_rise_by_one(events: list[Event], session: str) -> None:
    """The session's seqs, as a client saw them, rise by one; the failure shows the events
    around the first that does not (a repeat or a gap), whole."""
    mine = [e for e in events if e.session == session and e.seq is not None]
    assert mine, f"no event of {session} was seen"
    for at, (before, event) in enumerate(pairwise(mine)):
        assert before.seq is not None
        assert event.seq == before.seq + 1, "\n".join(
            f"{'>' if i == at + 1 else ' '} {e.seq} {e.data!r}"
            for i, e in enumerate(mine)
            if abs(i - at) <= 4
        )


async def test_any_node_serves_any_session(
    tmp_path: Path, database_url: str, bus_url: str
) -> None:
    async with cluster(tmp_path, database_url, bus_url) as nodes:
        a, b, c = nodes["a"], nodes["b"], nodes["c"]
        session = await opened_on(b, "p")
        # The project has one session in the whole cluster, whichever node is asked.
        assert await opened_on(a, "p") == session
        assert b.node is not None and session in b.node.owned
        assert a.node is not None and session not in a.node.owned

        async with a.connect() as watcher:
            watcher.subscribe(session)
            sent = await c.execute_wire(cmd.SendMessage(session=session, content="hello"))
            assert sent == {"queued": False}
            seen: list[Event] = []
            await events_until(watcher, turn_ended(session), seen)
        # Node a saw b's turn live, every event once, in seq order.
        seqs_rise_by_one(seen, session)
        assert all(n.node is not None and n.node.stats.gone_back == 0 for n in nodes.values())
        assert any(isinstance(e.data, StreamingUpdate) for e in seen)
        assert [e.data.message.role for e in seen if isinstance(e.data, MessageAdded)] == [
            "user",
            "assistant",
        ]
        # Every node lists it.
        for node in nodes.values():
            listed = await node.execute(cmd.ListSessions())
            assert [s.session for s in listed] == [session]
            projects = await node.execute(cmd.ListProjects())
            assert [(p.project, p.session) for p in projects] == [("p", session)]


@asynccontextmanager
async def watched_from_b(
    tmp_path: Path, database_url: str, bus_url: str
) -> AsyncIterator[tuple[Runtime, Node, str, Client, int]]:
    """Nodes a and b, a session made on a, and a client of b subscribed to it: a, b's node,
    the session, the client and the seq it subscribed at."""
    async with cluster(tmp_path, database_url, bus_url, ("a", "b")) as nodes:
        a, b = nodes["a"], nodes["b"]
        session = await opened_on(a, "p")
        assert b.node is not None
        async with b.connect() as watcher:
            await b.prepare_subscribe(session, None)  # made a moment ago, on a
            yield a, b.node, session, watcher, watcher.subscribe(session).seq


def pick(entries: list[Entry], session: str, after: int, picked: list[int]) -> None:
    """Put in ``picked`` the seq of the first entry of ``session`` past ``after``, once: the
    one a test of the live stream skips or damages."""
    for entry in entries:
        if entry.session == session and not picked and entry.seq > after:
            picked.append(entry.seq)


async def a_turn_seen(owner: Runtime, session: str, watcher: Client) -> list[Event]:
    await owner.execute_wire(cmd.SendMessage(session=session, content="hello"))
    seen: list[Event] = []
    await events_until(watcher, turn_ended(session), seen)
    return seen


async def test_a_gap_the_bus_fails_to_fill_is_filled_once_it_answers(
    tmp_path: Path, database_url: str, bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live stream skips an event of a session (trimmed past a node that was behind),
    and the bus fails the reads of the session's stream that would fill the gap: the node
    reads the same entries again once the bus answers, and its clients see every event
    once, in order. (A failed fill used to end the node's live reader, and the server.)"""
    async with watched_from_b(tmp_path, database_url, bus_url) as (a, b, session, watcher, first):
        read_live, replay = b.streams.read_live, b.streams.replay
        skipped: list[int] = []
        failed: list[int] = []

        async def read_live_skipping(cursor: bytes, **kw: Any) -> tuple[bytes, list[Entry]]:
            cursor, entries = await read_live(cursor, **kw)
            pick(entries, session, first + 3, skipped)
            return cursor, [e for e in entries if (e.session, e.seq) != (session, *skipped)]

        async def replay_failing(of: str, after: int) -> list[Entry]:
            if of == session and len(failed) < 2:
                failed.append(after)
                raise EngineUnavailable("Redis did not answer (a test)")
            return await replay(of, after)

        monkeypatch.setattr(b.streams, "read_live", read_live_skipping)
        monkeypatch.setattr(b.streams, "replay", replay_failing)
        seen = await a_turn_seen(a, session, watcher)
        assert skipped and failed == [skipped[0] - 1] * 2
        seqs_rise_by_one(seen, session)
        assert b.stats.gaps_filled == 1


@pytest.mark.parametrize("in_its_stream_too", [False, True])
async def test_an_event_a_node_cannot_read_is_passed_over(
    tmp_path: Path,
    database_url: str,
    bus_url: str,
    monkeypatch: pytest.MonkeyPatch,
    in_its_stream_too: bool,
) -> None:
    """An event on the bus that this node cannot read (damaged, or written by a newer
    version) is logged and passed over: the node's clients get it from the session's stream
    when that copy can be read, and otherwise miss that one event; the node goes on either
    way. (It used to end the node's live reader, and the server.)"""
    async with watched_from_b(tmp_path, database_url, bus_url) as (a, b, session, watcher, first):
        read_live, replay = b.streams.read_live, b.streams.replay
        damaged: list[int] = []

        def damage(entries: list[Entry]) -> list[Entry]:
            return [
                attrs.evolve(e, record=b"\xc1 not msgpack")
                if (e.session, e.seq) == (session, *damaged)
                else e
                for e in entries
            ]

        async def read_live_damaged(cursor: bytes, **kw: Any) -> tuple[bytes, list[Entry]]:
            cursor, entries = await read_live(cursor, **kw)
            pick(entries, session, first + 3, damaged)
            return cursor, damage(entries)

        async def replay_damaged(of: str, after: int) -> list[Entry]:
            entries = await replay(of, after)
            return damage(entries) if in_its_stream_too else entries

        monkeypatch.setattr(b.streams, "read_live", read_live_damaged)
        monkeypatch.setattr(b.streams, "replay", replay_damaged)
        seen = await a_turn_seen(a, session, watcher)
        assert damaged
        if in_its_stream_too:
            mine = [e.seq for e in seen if e.session == session]
            assert damaged[0] not in mine
            assert mine == [*range(first + 1, damaged[0]), *range(damaged[0] + 1, mine[-1] + 1)]
        else:
            seqs_rise_by_one(seen, session)
            assert b.stats.gaps_filled >= 1


async def test_a_node_that_leaves_hands_its_sessions_over(
    tmp_path: Path, database_url: str, bus_url: str
) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_runtime(node_config(tmp_path, "a", database_url, bus_url))
        )
        _, session, b_stack = await owner_that_leaves(stack, tmp_path, database_url, bus_url)
        async with a.connect() as watcher:
            watcher.subscribe(session)
            await a.execute_wire(cmd.SendMessage(session=session, content="a long one"))
            seen: list[Event] = []
            # Wait until the turn streams, then stop b gracefully mid-turn.
            await events_until(
                watcher, lambda e: isinstance(e.data, StreamingUpdate), seen
            )
            await b_stack.aclose()
            # a takes the session over at once, says so, and finishes the turn.
            await events_until(
                watcher,
                lambda e: turn_ended(session)(e) and e.data.reason == "completed",
                seen,
            )
        seqs_rise_by_one(seen, session)
        assert any(isinstance(e.data, SessionRestarted) for e in seen)
        assert a.node is not None and session in a.node.owned
        assert a.node.stats.gone_back == 0  # a new owner, not a session gone back
        state = await a.get_state(session)
        assert [m.role for m in state.messages][:1] == ["user"]
        assert state.messages[-1].role == "assistant" and not state.messages[-1].stopped


async def test_a_new_owner_is_followed_by_the_other_nodes_as_a_new_owner(
    tmp_path: Path, database_url: str, bus_url: str
) -> None:
    """A session handed over mid-turn comes under a newer epoch: the nodes that do not take
    it check that it went on from where they are (it did), and show the rest of the turn
    as they showed its start, taking it for no session gone back."""
    async with AsyncExitStack() as stack:
        a, c = [
            await stack.enter_async_context(
                open_runtime(node_config(tmp_path, name, database_url, bus_url))
            )
            for name in ("a", "c")
        ]
        b, session, b_stack = await owner_that_leaves(stack, tmp_path, database_url, bus_url)
        seen: dict[str, list[Event]] = {"a": [], "c": []}
        async with a.connect() as on_a, c.connect() as on_c:
            on_a.subscribe(session)
            on_c.subscribe(session)
            await b.execute_wire(cmd.SendMessage(session=session, content="a long one"))
            await events_until(on_a, lambda e: isinstance(e.data, StreamingUpdate), seen["a"])
            await b_stack.aclose()
            for name, watcher in (("a", on_a), ("c", on_c)):
                await events_until(
                    watcher,
                    lambda e: turn_ended(session)(e) and e.data.reason == "completed",
                    seen[name],
                )
        for name, node in (("a", a), ("c", c)):
            seqs_rise_by_one(seen[name], session)
            assert any(isinstance(e.data, SessionRestarted) for e in seen[name])
            assert node.node is not None and node.node.stats.gone_back == 0
        assert a.node is not None and c.node is not None
        assert (session in a.node.owned) != (session in c.node.owned)


@pytest.mark.parametrize("missing", ["database", "bus"])
async def test_an_engine_unreachable_at_start_is_named(
    tmp_path: Path, database_url: str, bus_url: str, missing: str
) -> None:
    from greenroom.cluster.errors import EngineUnavailable
    from tests.engines import free_port

    dead = free_port()
    if missing == "database":
        database_url = f"postgresql://gr:secret@127.0.0.1:{dead}/greenroom"
    else:
        bus_url = f"redis://127.0.0.1:{dead}/0"
    with pytest.raises(EngineUnavailable) as caught:
        async with open_runtime(node_config(tmp_path, "a", database_url, bus_url)):
            pass
    message = str(caught.value)
    assert ("PostgreSQL" if missing == "database" else "Redis") in message
    assert "secret" not in message


async def test_a_session_just_made_on_another_node_can_be_subscribed_at_once(
    tmp_path: Path, database_url: str, bus_url: str
) -> None:
    async with cluster(tmp_path, database_url, bus_url, ("a", "b")) as nodes:
        a, b = nodes["a"], nodes["b"]
        session = await opened_on(a, "p")
        await a.execute_wire(cmd.SendMessage(session=session, content="hello"))
        assert b.node is not None
        # As if b's live stream had not brought the session's first events yet.
        b.node.replicas.pop(session, None)
        b.node.released.pop(session, None)
        b.bus.forget(session)
        async with b.connect() as client:
            await b.prepare_subscribe(session, 0)
            subscribed = client.subscribe(session, 0)
        assert subscribed.seq >= 3
        assert subscribed.replay is not None
        assert [e.seq for e in subscribed.replay][:3] == [1, 2, 3]


async def test_a_turn_on_one_node_notifies_clients_of_another(
    tmp_path: Path, database_url: str, bus_url: str
) -> None:
    async with cluster(tmp_path, database_url, bus_url, ("a", "b")) as nodes:
        a, b = nodes["a"], nodes["b"]
        session = await opened_on(b, "p")
        async with a.connect() as elsewhere:
            await elsewhere.focus("another-project")
            await b.execute_wire(cmd.SendMessage(session=session, content="hello"))
            seen: list[Event] = []
            await events_until(elsewhere, lambda e: isinstance(e.data, Notification), seen)
        told = seen[-1].data
        assert isinstance(told, Notification)
        assert (told.session, told.project, told.kind) == (session, "p", "completed")


async def test_stop_all_stops_the_turns_of_every_node(
    tmp_path: Path, database_url: str, bus_url: str
) -> None:
    async with cluster(tmp_path, database_url, bus_url, ("a", "b")) as nodes:
        a, b = nodes["a"], nodes["b"]
        sessions = [await opened_on(a, "p"), await opened_on(b, "q")]
        async with a.connect() as watcher:
            seen: list[Event] = []
            for session in sessions:
                watcher.subscribe(session)
                await a.execute_wire(cmd.SendMessage(session=session, content="[[stall]]"))
                await events_until(
                    watcher,
                    lambda e, s=session: e.session == s and isinstance(e.data, LoadingChanged),
                    seen,
                )
            assert await a.execute_wire(cmd.StopAll()) == {"stopped": 2}
            for session in sessions:
                await events_until(watcher, turn_ended(session), seen)
        ends = [e.data for e in seen if isinstance(e.data, LoadingChanged) and not e.data.loading]
        assert [end.reason for end in ends] == ["stopped", "stopped"]


async def test_a_session_being_made_is_not_taken_again_by_its_own_heartbeat(
    tmp_path: Path, database_url: str, bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the database naming this node the owner of a new session and the node holding
    it, its heartbeat must not take it again (a second epoch, the actor restarted under a
    command): made slow here by a bus that answers only after three more heartbeats."""
    async with cluster(tmp_path, database_url, bus_url, names=("a",)) as nodes:
        node = nodes["a"].node
        assert node is not None
        streams = type(node.streams)
        raise_owner = streams.raise_owner

        async def slow_raise_owner(self: Any, session: str, epoch: int) -> bool:
            await renewals(node, 3)
            return await raise_owner(self, session, epoch)

        monkeypatch.setattr(streams, "raise_owner", slow_raise_owner)
        session = await opened_on(nodes["a"], "p")
        monkeypatch.undo()
        await renewals(node, 2)
        assert node.owned[session] == 1
        assert node.stats.claimed == 0
        assert await nodes["a"].execute(cmd.SendMessage(session=session, content="hi")) is False


async def test_a_second_open_of_a_project_being_made_waits_for_it(
    tmp_path: Path, database_url: str, bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ``openSession`` of a new project at once on one node: the second finds the
    database naming this node the owner of a session it does not hold yet (the first is
    making it). It waits for it rather than claiming it (a second epoch under the first's
    feet). The first's make goes on only once the second waits, or has claimed."""
    async with cluster(tmp_path, database_url, bus_url, names=("a",)) as nodes:
        node = nodes["a"].node
        assert node is not None
        database = node.database
        claim, claims = database.claim, list[str]()
        create_session, created = database.create_session, threading.Event()

        def counted_claim(session: str) -> Any:
            claims.append(session)
            return claim(session)

        def create_session_and_say_so(row: Any) -> Any:
            made = create_session(row)
            created.set()
            return made

        streams = type(node.streams)
        raise_owner = streams.raise_owner

        async def second_open_under_way(self: Any, session: str, epoch: int) -> bool:
            def second_waits_or_claimed() -> bool:
                making = node._making.get(session) if isinstance(node._making, dict) else None
                waiting = making is not None and making.statistics().tasks_waiting > 0
                return waiting or bool(claims)

            await until(second_waits_or_claimed)
            return await raise_owner(self, session, epoch)

        database.claim = counted_claim  # type: ignore[method-assign]
        database.create_session = create_session_and_say_so  # type: ignore[method-assign]
        monkeypatch.setattr(streams, "raise_owner", second_open_under_way)
        opened: list[str] = []

        async def open_p() -> None:
            opened.append(await opened_on(nodes["a"], "p"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(open_p)
            await until(created.is_set)  # the database names the node the owner now
            nursery.start_soon(open_p)
        monkeypatch.undo()
        assert len(opened) == 2 and opened[0] == opened[1]
        assert claims == [] and node.stats.claimed == 0
        assert node.owned[opened[0]] == 1
        assert await nodes["a"].execute(cmd.SendMessage(session=opened[0], content="hi")) is False


async def test_a_session_lost_while_it_is_taken_over_is_let_go_once_it_runs(
    tmp_path: Path, database_url: str, bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node loses a session (its lease lapsed, say) while it is still handing it to the
    runtime: its copy is let go once it runs, not before (to start afterwards, owned by
    nobody, and stand in the way of the next take-over); the heartbeat takes it again, and
    it answers."""
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_runtime(node_config(tmp_path, "a", database_url, bus_url))
        )
        b, session, b_stack = await owner_that_leaves(stack, tmp_path, database_url, bus_url)
        node = a.node
        assert node is not None and node.host is not None
        host = type(node.host)
        adopt = host.adopt

        async def lost_while_taken_over(self: Any, claim: Any) -> None:
            if self.node is node and node.stats.claimed == 1:  # the first take-over only
                node.lose(claim.row.session, "lost while it was being taken over")
                # Time for the copy to be let go now, if the node let it go before it runs.
                with trio.move_on_after(1.0):
                    await until(lambda: claim.row.session not in node._leaving)
            await adopt(self, claim)

        monkeypatch.setattr(host, "adopt", lost_while_taken_over)
        async with a.connect() as watcher:
            watcher.subscribe(session)
            await b.execute_wire(cmd.SendMessage(session=session, content="a long one"))
            seen: list[Event] = []
            await events_until(watcher, lambda e: isinstance(e.data, StreamingUpdate), seen)
            # Its owner leaves mid-turn: a takes it over (the turn resumes), loses it, and
            # takes it again; the turn ends once, and the session answers the next one.
            await b_stack.aclose()
            await events_until(
                watcher,
                lambda e: turn_ended(session)(e) and e.data.reason == "completed",
                seen,
            )
            assert node.stats.claimed == 2 and session in node.owned
            assert await a.execute(cmd.SendMessage(session=session, content="hi")) is False
            await events_until(watcher, turn_ended(session), seen)
        seqs_rise_by_one(seen, session)
        assert node.stats.lost == 1
        state = await a.get_state(session)
        assert [m.role for m in state.messages][-2:] == ["user", "assistant"]
        assert [m.role for m in state.messages].count("user") == 2


async def test_a_take_over_cancelled_half_way_is_let_go_and_taken_again(
    tmp_path: Path, database_url: str, bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command that claimed a session (its owner gone) is cancelled, its client gone,
    while the node rebuilds the session: the node lets it go rather than hold it with
    nothing running, and the heartbeat takes it again; it answers."""
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_runtime(node_config(tmp_path, "a", database_url, bus_url))
        )
        _, session, b_stack = await owner_that_leaves(stack, tmp_path, database_url, bus_url)
        node = a.node
        assert node is not None and node.host is not None
        node.database.claim_orphans = lambda limit: []  # type: ignore[method-assign]
        host = type(node.host)
        adopt, stuck = host.adopt, trio.Event()

        async def stuck_the_first_time(self: Any, claim: Any) -> None:
            if self.node is node and not stuck.is_set():
                stuck.set()
                await trio.sleep_forever()
            await adopt(self, claim)

        monkeypatch.setattr(host, "adopt", stuck_the_first_time)
        await b_stack.aclose()  # the owner leaves; only a command claims the session here
        async with trio.open_nursery() as nursery:
            command = trio.CancelScope()

            async def send() -> None:
                with command:
                    await a.execute_wire(cmd.SendMessage(session=session, content="hi"))

            nursery.start_soon(send)
            await stuck.wait()
            command.cancel()
        await until(lambda: node.stats.claimed == 2 and session in node.owned)
        assert node.stats.lost == 1
        assert await a.execute(cmd.SendMessage(session=session, content="hi")) is False


@pytest.mark.parametrize("refused", ["append", "write"])
async def test_a_write_refused_under_an_older_epoch_does_not_lose_a_newer_claim(
    tmp_path: Path,
    database_url: str,
    bus_url: str,
    monkeypatch: pytest.MonkeyPatch,
    refused: str,
) -> None:
    """A journal append (or a snapshot write) made under one epoch comes back refused,
    because meanwhile the node took the session again, at a newer one (as after a lease that
    lapsed while an engine was away): the refusal speaks of the old claim only, and the node
    keeps the new one. Here the retake is made while the append or the write is on its way."""
    async with cluster(tmp_path, database_url, bus_url, names=("a",)) as nodes:
        node = nodes["a"].node
        assert node is not None
        session = await opened_on(nodes["a"], "p")
        epoch = node.owned[session]
        retaken = trio.Event()

        async def retake() -> None:
            """What the heartbeat does to a session of its own it no longer holds."""
            row = await node.db(node.database.claim, session)
            assert row is not None
            assert await node.streams.raise_owner(session, row.epoch)
            node._hold(session, row.epoch)
            retaken.set()

        if refused == "append":
            streams = type(node.streams)
            append = streams.append

            async def append_after_a_retake(self: Any, appends: Any) -> Any:
                if not retaken.is_set() and any(a.session == session for a in appends):
                    await retake()
                return await append(self, appends)

            monkeypatch.setattr(streams, "append", append_after_a_retake)
        else:
            database = node.database
            write = database.write

            def write_after_a_retake(epochs: Any, *rest: Any) -> Any:
                if session in epochs and not trio.from_thread.run_sync(retaken.is_set):
                    trio.from_thread.run(retake)
                return write(epochs, *rest)

            database.write = write_after_a_retake  # type: ignore[method-assign]
        await nodes["a"].execute(cmd.SendMessage(session=session, content="hi"))
        await until(lambda: node.stats.fenced >= 1)
        monkeypatch.undo()
        assert node.stats.lost == 0
        assert node.owned[session] == epoch + 1


async def test_a_session_taken_while_the_heartbeat_asks_is_kept(
    tmp_path: Path, database_url: str, bus_url: str
) -> None:
    """The heartbeat asks the database which sessions are this node's, and the claimer takes
    one while the answer is on its way: an answer read before the claim, which must not make
    the node let the session go (and take it again, at another epoch, restarting its turn).
    Here the claim waits for the question, and the answer for the claim to be held."""
    async with AsyncExitStack() as stack:
        config = node_config(tmp_path, "a", database_url, bus_url)
        assert config.cluster is not None
        # A longer lease: the heartbeat is held up while the claim is made.
        cluster = attrs.evolve(config.cluster, lease_seconds=8.0)
        a = await stack.enter_async_context(open_runtime(attrs.evolve(config, cluster=cluster)))
        _, session, b_stack = await owner_that_leaves(stack, tmp_path, database_url, bus_url)
        node = a.node
        assert node is not None
        database = node.database
        owned, claim_orphans = database.owned, database.claim_orphans
        left, asked = threading.Event(), threading.Event()

        def owned_read_before_the_claim() -> dict[str, int]:
            answer = owned()
            if left.is_set() and session not in answer and not asked.is_set():
                asked.set()
                waited = time.monotonic() + WAIT
                while session not in node.owned and time.monotonic() < waited:
                    time.sleep(0.01)
            return answer

        def claim_orphans_once_asked(limit: int) -> Any:
            asked.wait(WAIT)
            return claim_orphans(limit)

        database.owned = owned_read_before_the_claim  # type: ignore[method-assign]
        database.claim_orphans = claim_orphans_once_asked  # type: ignore[method-assign]
        await b_stack.aclose()  # the session's owner leaves: a claims it
        left.set()
        await until(lambda: session in node.owned)
        assert asked.is_set()
        epoch = node.owned[session]
        await renewals(node, 2)
        assert (node.stats.claimed, node.stats.lost) == (1, 0)
        assert node.owned[session] == epoch


async def test_events_the_live_stream_showed_while_the_session_was_lost_are_not_shown_again(
    tmp_path: Path, database_url: str, bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node loses a session while the journal's append of its events is under way, and
    its live stream reader shows them first (the session is no longer its own): when the
    journal goes on, it must not show them a second time. Made certain here by an append that
    waits, once it is done, for the reader to have shown it (and a heartbeat that takes the
    session again only then: its own again, the reader would pass the events over)."""
    async with cluster(tmp_path, database_url, bus_url, names=("a",)) as nodes:
        runtime = nodes["a"]
        node = runtime.node
        assert node is not None
        session = await opened_on(runtime, "p")
        streams = type(node.streams)
        append, raise_owner, show = streams.append, streams.raise_owner, Node.show
        raced: list[int] = []  # the last seq of the append the session was lost during
        shown = trio.Event()  # ... and the reader showed it

        async def show_and_tell(self: Node, event: Event, epoch: int | None = None) -> None:
            await show(self, event, epoch)
            if raced and self.released.get(session, 0) >= raced[0]:
                shown.set()

        async def shown_by_the_reader() -> None:
            with trio.fail_after(WAIT):
                await shown.wait()

        async def lost_while_appending(self: Any, appends: Any) -> set[str]:
            ours = [batch for batch in appends if batch.session == session]
            if not ours or raced:
                return await append(self, appends)
            raced.append(ours[0].entries[-1][0])
            # Lost once the batch was made, before the bus has it: the append still goes
            # out under the old epoch, which the bus still holds, and is accepted.
            node.lose(session, "lost while its append was under way")
            fenced: set[str] = await append(self, appends)
            await shown_by_the_reader()
            return fenced

        async def raise_owner_once_shown(self: Any, of: str, epoch: int) -> bool:
            if raced and of == session:
                await shown_by_the_reader()
            return await raise_owner(self, of, epoch)

        async with runtime.connect() as watcher:
            watcher.subscribe(session)
            monkeypatch.setattr(streams, "append", lost_while_appending)
            monkeypatch.setattr(streams, "raise_owner", raise_owner_once_shown)
            monkeypatch.setattr(Node, "show", show_and_tell)
            await runtime.execute_wire(cmd.SendMessage(session=session, content="hi"))
            seen: list[Event] = []
            # Taken again at the next heartbeat (the database still names the node its owner).
            await events_until(watcher, lambda e: isinstance(e.data, SessionRestarted), seen)
            await events_until(watcher, turn_ended(session), seen)
        assert node.stats.gone_back == 0
    assert raced
    seqs_rise_by_one(seen, session)


async def empty_the_bus_under(
    owner: Runtime,
    session: str,
    redis_engine: Engine,
    watcher: Client,
    seen: list[Event],
    last: int,
) -> None:
    """Empty the bus under the owner of ``session``: its next append is refused (the bus no
    longer names it the owner), it lets the session go, and its heartbeat takes it again
    from its snapshot, at epoch 2; then a turn there, until ``watcher`` sees one of the
    session's events at or below ``last`` (the seqs gone back)."""
    await trio.to_thread.run_sync(flush_redis, redis_engine)
    node = owner.node
    assert node is not None
    await owner.execute_wire(cmd.SendMessage(session=session, content="two"))
    await until(lambda: node.owned.get(session) == 2)
    await owner.execute_wire(cmd.SendMessage(session=session, content="three"))
    await events_until(watcher, lambda e: e.session == session and (e.seq or 0) <= last, seen)


async def test_a_bus_emptied_under_its_owner_shows_the_session_going_back_to_its_snapshot(
    tmp_path: Path, database_url: str, bus_url: str, redis_engine: Engine
) -> None:
    """Valkey/Redis restarted empty (docs/cluster.md, "Redis durability"): the owner's next
    append is refused, it takes the session again from its snapshot, and shows its events
    from there, the seqs going back to the snapshot's, rather than nothing of the session
    until it passes the last seq shown (a client that subscribes again then gets reset)."""
    # No flush in the test's time: the snapshot stays the one made with the session.
    config = node_config(tmp_path, "a", database_url, bus_url, flush_interval=3600.0)
    async with open_runtime(config) as runtime, runtime.connect() as watcher:
        session = await opened_on(runtime, "p")
        watcher.subscribe(session)
        seen: list[Event] = []
        await runtime.execute_wire(cmd.SendMessage(session=session, content="one [[tokens:3]]"))
        await events_until(watcher, turn_ended(session), seen)
        last = max(e.seq or 0 for e in seen)
        await empty_the_bus_under(runtime, session, redis_engine, watcher, seen, last)
        async with runtime.connect() as again:
            resumed = again.subscribe(session, since=last)
    back = seen[-1]
    assert isinstance(back.data, MessageAdded | SessionRestarted), back
    assert resumed.replay is None and resumed.seq < last, resumed  # a reset: reload


@pytest.mark.parametrize("missed", [False, True])
async def test_a_bus_emptied_under_an_owner_shows_another_node_the_session_going_back(
    tmp_path: Path,
    database_url: str,
    bus_url: str,
    redis_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    missed: bool,
) -> None:
    """As above, seen from another node: its clients get the owner's events from the
    snapshot's seq on, not nothing until the seqs pass the last one it showed, and a client
    that subscribes again there is reset rather than given the events the bus lost. With
    ``missed``, the node's live stream does not bring it the new owner's events up to that
    last seq (trimmed while it was behind): it finds out from the first one it gets."""
    stay = {"flush_interval": 3600.0}  # the snapshot stays the one made with the session
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_runtime(node_config(tmp_path, "a", database_url, bus_url, **stay))
        )
        b = await stack.enter_async_context(
            open_runtime(node_config(tmp_path, "b", database_url, bus_url, **stay))
        )
        session = await opened_on(a, "p")
        assert b.node is not None
        streams = b.node.streams
        read_live = streams.read_live
        last = 0  # from the flush on, the entries of the session up to this seq are missed

        async def read_live_missing(cursor: bytes, **kw: Any) -> tuple[bytes, list[Entry]]:
            cursor, entries = await read_live(cursor, **kw)
            return cursor, [e for e in entries if e.session != session or e.seq > last]

        if missed:  # before any read starts: one under way when the flush comes is filtered
            monkeypatch.setattr(streams, "read_live", read_live_missing)
        watcher = await stack.enter_async_context(b.connect())
        watcher.subscribe(session)
        seen: list[Event] = []
        await a.execute_wire(cmd.SendMessage(session=session, content="one [[tokens:3]]"))
        await events_until(watcher, turn_ended(session), seen)
        await events_until(watcher, idle(session), seen)  # the turn's last event
        last = max(e.seq or 0 for e in seen)
        before = len(seen)
        await empty_the_bus_under(a, session, redis_engine, watcher, seen, last)
        if not missed:  # b shows the session below the client's seq yet: it can tell
            async with b.connect() as again:
                resumed = again.subscribe(session, since=last)
            assert resumed.replay is None and resumed.seq < last, resumed  # a reset: reload
        assert b.node.stats.gone_back == 1
        # Both nodes list the session as the owner has it, once its turn has ended; its
        # events from the snapshot's seq on came once each, in order, and they are all b
        # keeps of the session for a resume.
        await events_until(watcher, turn_ended(session), seen)
        await until(lambda: listed(b, session) == listed(a, session))
        back = next(
            i for i, e in enumerate(seen) if i >= before and e.session == session and e.seq <= last
        )
        seqs_rise_by_one(seen[back:], session)
        async with b.connect() as again:
            kept = again.subscribe(session, since=0).replay
        assert kept, kept
        seqs = [e.seq for e in kept]  # rising; by more than one past a run of merged deltas
        assert seqs[0] == seen[back].seq and seqs == sorted(set(seqs)), seqs


def listed(node: Runtime, session: str) -> tuple[int, str]:
    """What ``listSessions`` on ``node`` says of ``session``: its message count and status."""
    summaries = {s.session: s for s in node.mirror.summaries()}
    assert node.node is not None
    summaries.update({s.session: s for s in node.node.summaries()})
    summary = summaries[session]
    return summary.message_count, summary.status
