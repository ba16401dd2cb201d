"""A node while an engine goes away and comes back, on private servers this test stops and
starts (on the same port and files). Waits are for conditions, bounded generously."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from greenroom.cluster.folder import WrongProjectsFolder
from greenroom.config import SimulatedConfig
from greenroom.protocol import commands as cmd
from greenroom.protocol.events import Event, LoadingChanged, SessionRestarted
from greenroom.runtime import Client, Runtime, open_runtime
from tests.cluster.test_nodes import (
    events_until,
    node_config,
    opened_on,
    seqs_rise_by_one,
    until,
)
from tests.engines import running_postgres, running_redis

LONG_TURNS = SimulatedConfig(seed=1, tokens_per_second=50.0, reply_tokens=1000)
"""Turns of twenty seconds: still running when the test takes an engine away."""


async def start_turn(runtime: Runtime, watcher: Client) -> tuple[str, list[Event]]:
    session = await opened_on(runtime, "p")
    watcher.subscribe(session)
    await runtime.execute_wire(cmd.SendMessage(session=session, content="a long one"))
    seen: list[Event] = []
    await events_until(
        watcher, lambda e: isinstance(e.data, LoadingChanged) and e.data.loading, seen
    )
    return session, seen


async def test_postgresql_away_the_node_lets_go_then_takes_its_sessions_again(
    tmp_path: Path, bus_url: str
) -> None:
    with running_postgres() as database:
        config = node_config(tmp_path, "a", database.url, bus_url, simulated=LONG_TURNS)
        async with open_runtime(config) as runtime, runtime.connect() as watcher:
            node = runtime.node
            assert node is not None
            session, seen = await start_turn(runtime, watcher)
            await trio.to_thread.run_sync(database.stop)
            # Not ready; then, once the lease could not be renewed, it holds nothing.
            await until(lambda: node.health() is not None)
            assert node.health() in ("PostgreSQL unreachable", "lease lapsed")
            await until(lambda: session not in node.owned)
            await trio.to_thread.run_sync(database.start)
            # Back: it takes its session again, resumes the turn, and is ready.
            await events_until(watcher, lambda e: isinstance(e.data, SessionRestarted), seen)
            await events_until(
                watcher,
                lambda e: isinstance(e.data, LoadingChanged)
                and e.data.reason == "completed",
                seen,
            )
            assert session in node.owned
            await until(lambda: node.health() is None)
    seqs_rise_by_one(seen, session)
    assert any(isinstance(e.data, SessionRestarted) for e in seen)


# coredis leaves the memory streams of its failed reconnects unclosed: collected right after
# this test (see tests/conftest.py), under its filters, not in whichever test comes next.
@pytest.mark.collect_garbage_after
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_redis_away_nothing_is_shown_until_it_is_back(
    tmp_path: Path, database_url: str
) -> None:
    session, seen, shown = await redis_away_and_back(tmp_path, database_url)
    assert len(seen) > shown
    seqs_rise_by_one(seen, session)


async def redis_away_and_back(tmp_path: Path, database_url: str) -> tuple[str, list[Event], int]:
    """A turn that Redis leaves and comes back to: the session, what a client saw, and how
    many events it had seen when Redis went away."""
    with running_redis(durable=True) as bus:
        config = node_config(tmp_path, "a", database_url, bus.url)
        async with open_runtime(config) as runtime, runtime.connect() as watcher:
            node = runtime.node
            assert node is not None
            session, seen = await start_turn(runtime, watcher)
            await trio.to_thread.run_sync(bus.stop)
            await until(lambda: node.health() == "Valkey/Redis unreachable")
            # While it is away, nothing new reaches a client (durable before visible): the
            # journal appends in order, so what was released before it failed is queued now.
            while watcher.events.queued():
                seen.append(watcher.events.receive_nowait())
            shown = len(seen)
            await trio.sleep(0.5)
            assert watcher.events.queued() == 0
            await trio.to_thread.run_sync(bus.start)
            await events_until(
                watcher,
                lambda e: isinstance(e.data, LoadingChanged)
                and e.data.reason == "completed",
                seen,
            )
            await until(lambda: node.health() is None)
    return session, seen, shown


async def test_a_node_that_sees_another_projects_folder_refuses_to_start(
    tmp_path: Path, database_url: str, bus_url: str
) -> None:
    first = node_config(tmp_path, "a", database_url, bus_url)
    async with open_runtime(first):
        pass
    other = node_config(tmp_path / "elsewhere", "b", database_url, bus_url)
    with pytest.raises(WrongProjectsFolder, match="every node must see the same projects"):
        async with open_runtime(other):
            pass
    # The same folder is fine, for a new node as for the first again.
    async with open_runtime(node_config(tmp_path, "b", database_url, bus_url)) as runtime:
        statistics = runtime.statistics().cluster
        assert statistics is not None and statistics.node == "b"
