"""Chaos against the real ``greenroom serve``: turns, faults, stops, deletes, drops, kill -9.

Each round starts the server on the same data folder, drives 50 sessions with a seeded random
mix of turns (plain, tool calls, provider failures, stalls), stops, delete-and-reopens and
client drops, and ends with ``kill -9``. After every restart, what was committed more than a
flush interval before the kill must still be there, in order. At the end the server is
stopped gracefully and started once more: everything must then match exactly, on disk too,
no session is left running, and the server's file descriptors do not grow with more turns.

Short by default (a few seconds a round); GREENROOM_CHAOS_SECONDS makes each round longer.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Any

import trio

from greenroom.store.history import history_path, read_history
from greenroom.transport.client import ConnectionLost, GreenroomClient, connect
from tests.e2e.harness import Server, kill_server, start_server, stop_server
from tests.reliability.chaos import seconds
from tests.reliability.support import fds_of

JSON = dict[str, Any]
SEED = 20261126
PROJECTS = [f"c{i:02}" for i in range(50)]
ROUNDS = 3
MARGIN = 2.0  # one flush interval (1 s), plus a flush that may have been cut by the kill


Committed = dict[str, list[tuple[float, int, JSON]]]


async def record(client: GreenroomClient, committed: Committed) -> None:
    """Every messageAdded of the subscribed sessions: when it was seen, its index, itself."""
    with contextlib.suppress(ConnectionLost):
        async for event in client.events():
            if event["event"] == "messageAdded" and event["session"] in committed:
                data = event["data"]
                committed[event["session"]].append(
                    (trio.current_time(), data["index"], data["message"])
                )


async def drive(client: GreenroomClient, sessions: dict[str, str], rng: random.Random,
                duration: float, files: dict[str, str], deleted: set[str]) -> None:  # fmt: skip
    """Random actions on random sessions until ``duration`` has passed."""
    deadline = trio.current_time() + duration
    counter = 0
    while trio.current_time() < deadline:
        project = rng.choice(PROJECTS)
        session = sessions[project]
        counter += 1
        action = rng.choices(
            ["plain", "tool", "fail", "stall", "stop", "delete"], [40, 20, 8, 4, 20, 3]
        )[0]
        try:
            if action == "plain":
                tokens = rng.randint(3, 60)
                await client.send_message(session, f"go [[tokens:{tokens}]] [[rate:60]]")
            elif action == "tool":
                name = f"f{counter}.txt"
                files[f"{project}/{name}"] = f"v{counter}"
                await client.send_message(session, f"create file {name} with v{counter}")
            elif action == "fail":
                await client.send_message(session, "talk [[fail:server]] [[rate:60]]")
            elif action == "stall":
                await client.send_message(session, "wait [[stall]]")
            elif action == "stop":
                await client.stop_generation(session)
            else:
                deleted.add(session)
                await client.delete_session(session)
                reopened = await client.open_session(project)
                sessions[project] = reopened["session"]["session"]
                await client.subscribe(sessions[project])
        except ConnectionLost:
            raise
        except Exception as error:  # a refused command (a full queue, say) is fine: it is said
            assert getattr(error, "code", None) in {"limit_reached", "conflict"}, error
        await trio.sleep(rng.uniform(0, 0.01))


async def open_all(client: GreenroomClient) -> dict[str, str]:
    sessions = {}
    for project in PROJECTS:
        sessions[project] = (await client.open_session(project))["session"]["session"]
        await client.subscribe(sessions[project])
    return sessions


async def states_of(client: GreenroomClient) -> dict[str, JSON]:
    listed = (await client.list_sessions())["sessions"]
    return {s["session"]: (await client.open_session(s["project"]))["session"] for s in listed}


async def quiescent(client: GreenroomClient, limit: float = 60) -> None:
    """Wait until no session is running (resumed turns end by themselves)."""
    with trio.fail_after(limit):
        while True:
            listed = (await client.list_sessions())["sessions"]
            if not [s for s in listed if s["status"] in ("running", "stopping")]:
                return
            await trio.sleep(0.2)


async def reap(server: Server) -> None:
    """Wait for the server process to end and close its stdout pipe."""
    await server.process.wait()
    if server.process.stdout is not None:
        await server.process.stdout.aclose()


def survivors_ok(committed: Committed, killed_at: float, states: dict[str, JSON]) -> int:
    """Messages committed well before the kill are still there, at their index; how many."""
    checked = 0
    for session, seen in committed.items():
        old = [(index, m) for t, index, m in seen if t < killed_at - MARGIN]
        if session not in states:
            assert not old, f"{session} disappeared with committed messages"
            continue
        got = states[session]["messages"]
        for index, message in old:
            assert index < len(got) and got[index] == message, f"{session} lost message {index}"
        checked += len(old)
    return checked


async def test_chaos_against_the_real_server_with_kill_9(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    files: dict[str, str] = {}
    server: Server | None = None
    survived = 0
    try:
        for _ in range(ROUNDS):
            server = await start_server(tmp_path)
            committed: Committed = {}
            deleted: set[str] = set()
            async with (
                connect(server.url, server.token, reconnect=False) as client,
                trio.open_nursery() as nursery,
            ):
                sessions = await open_all(client)
                for session in sessions.values():
                    committed[session] = []
                nursery.start_soon(record, client, committed)
                with contextlib.suppress(ConnectionLost):
                    await drive(client, sessions, rng, seconds(3.0), files, deleted)
                killed_at = trio.current_time()
                await kill_server(server)
                nursery.cancel_scope.cancel()
            await reap(server)
            server = await start_server(tmp_path)
            for session in deleted:
                committed.pop(session, None)  # deleted on purpose
            async with connect(server.url, server.token, reconnect=False) as client:
                survived += survivors_ok(committed, killed_at, await states_of(client))
            await kill_server(server)  # the next round starts from a killed server again
            await reap(server)

        # Quiet down, stop gracefully: then everything must match exactly.
        server = await start_server(tmp_path)
        async with connect(server.url, server.token, reconnect=False) as client:
            await trio.sleep(1)  # let the interrupted turns resume
            await client.stop_all()  # a [[stall]] turn (and what is queued behind it) waits forever
            await quiescent(client)
            before = await states_of(client)
            fds = fds_of(server.process.pid)
            # (A project whose session was deleted just before a kill has none now.)
            for session in sorted(before)[:20]:
                await client.send_message(session, "one more [[tokens:5]] [[rate:200]]")
            await quiescent(client)
            before = await states_of(client)
            assert fds_of(server.process.pid) <= fds + 2  # no descriptor leaks with more turns
        assert await stop_server(server) == 0
        await reap(server)
        server = await start_server(tmp_path)
        async with connect(server.url, server.token, reconnect=False) as client:
            after = await states_of(client)
            assert not [s for s in after.values() if s["status"] in ("running", "stopping")]
        assert await stop_server(server) == 0
        assert after == before
        projects_root = server.data_dir / "projects"
        for state in after.values():
            path = history_path(projects_root / state["project"], state["name"])
            on_disk = read_history(path) if path.exists() else []
            assert len(on_disk) == len(state["messages"])
        written = sum(
            (projects_root / name).exists() and (projects_root / name).read_text() == value
            for name, value in files.items()
        )
        assert survived > 0 and written > 0
        print(f"\nchaos serve: {ROUNDS} kills, {survived} messages checked, {written} files")
    finally:
        if server is not None:
            if server.process.returncode is None:
                server.process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await reap(server)
