"""Chaos against the real ``greenroom serve``: turns, faults, stops, deletes, drops, kill -9.

Each round starts the server on the same data folder, drives 50 sessions with a seeded random
mix of turns (plain, tool calls, provider failures, stalls), stops, delete-and-reopens and
client drops, and ends with ``kill -9``; in the first rounds a process that burns a core runs
beside the server. After every restart, nothing any client saw is lost (no margin: every
message it saw committed is there, at its index), and a client that resumes every session
with ``since`` gets what it missed with no ``reset`` and no splice (see
:mod:`tests.reliability.resume`): the restarted server's history continues the one it saw,
under the same seqs. At the end the server is
stopped gracefully and started once more: everything must then match exactly, on disk too,
no session is left running, and the server's file descriptors do not grow with more turns.

Short by default (a few seconds a round); GREENROOM_CHAOS_SECONDS makes each round longer.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

from greenroom.store.history import history_path, read_history
from greenroom.transport.client import ConnectionLost, GreenroomClient, connect
from tests.e2e.harness import Server, kill_server, start_server, stop_server
from tests.reliability.chaos import seconds
from tests.reliability.resume import Seen
from tests.reliability.support import fds_of

JSON = dict[str, Any]
SEED = 20261126
PROJECTS = [f"c{i:02}" for i in range(50)]
ROUNDS = 3
HOGGED_ROUNDS = 2  # rounds with a busy core beside the server
RESUME_WAIT = 1.0  # how long the resumed client follows the restarted server


async def record(client: GreenroomClient, seen: dict[str, Seen]) -> None:
    """Every event of the subscribed sessions, into what this client saw of each."""
    with contextlib.suppress(ConnectionLost):
        async for event in client.events():
            view = seen.get(event.get("session") or "")
            if view is not None:
                view.see(event)


@contextlib.asynccontextmanager
async def cpu_hog(on: bool) -> AsyncIterator[None]:
    """A process that keeps one core busy while the block runs (when ``on``)."""
    if not on:
        yield
        return
    hog = await trio.lowlevel.open_process([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        with trio.CancelScope(shield=True), trio.fail_after(10):
            await hog.wait()


async def drive(client: GreenroomClient, sessions: dict[str, str], rng: random.Random,
                duration: float, files: dict[str, str], deleted: set[str],
                seen: dict[str, Seen]) -> None:  # fmt: skip
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
                sessions[project] = await open_one(client, project, seen)
        except ConnectionLost:
            raise
        except Exception as error:  # a refused command (a full queue, say) is fine: it is said
            assert getattr(error, "code", None) in {"limit_reached", "conflict"}, error
        await trio.sleep(rng.uniform(0, 0.01))


async def open_all(client: GreenroomClient, seen: dict[str, Seen]) -> dict[str, str]:
    sessions = {}
    for project in PROJECTS:
        sessions[project] = await open_one(client, project, seen)
    return sessions


async def open_one(client: GreenroomClient, project: str, seen: dict[str, Seen]) -> str:
    """Open the project's session and follow it from the state it has now on."""
    state = (await client.open_session(project))["session"]
    session: str = state["session"]
    seen[session] = Seen.of(state)
    await client.subscribe(session, since=state["seq"])
    return session


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


def survivors_ok(seen: dict[str, Seen], states: dict[str, JSON]) -> int:
    """Every message a client saw committed is still there, at its index; how many."""
    checked = 0
    for session, view in seen.items():
        if session not in states:
            assert not view.messages, f"{session} disappeared with committed messages"
            continue
        checked += view.check_state(states[session])
    return checked


async def resume_all(server: Server, seen: dict[str, Seen]) -> int:
    """Subscribe to every session with the last seq seen before the kill; follow the replay
    and the resumed turns for a while. Returns how many events came after the restart."""
    before = sum(view.events for view in seen.values())
    async with (
        connect(server.url, server.token, reconnect=False) as client,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(record, client, seen)
        for session, view in seen.items():
            reply = await client.subscribe(session, since=view.last)
            assert not reply.get("reset"), f"{session}: reset at since={view.last}: {reply}"
            assert reply["seq"] >= view.last
        await trio.sleep(RESUME_WAIT)
        nursery.cancel_scope.cancel()
    return sum(view.events for view in seen.values()) - before


async def test_chaos_against_the_real_server_with_kill_9(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    files: dict[str, str] = {}
    server: Server | None = None
    survived = resumed = 0
    try:
        for round in range(ROUNDS):
            server = await start_server(tmp_path)
            seen: dict[str, Seen] = {}
            deleted: set[str] = set()
            async with (
                cpu_hog(round < HOGGED_ROUNDS),
                connect(server.url, server.token, reconnect=False) as client,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(record, client, seen)
                sessions = await open_all(client, seen)
                with contextlib.suppress(ConnectionLost):
                    await drive(client, sessions, rng, seconds(3.0), files, deleted, seen)
                await kill_server(server)
                nursery.cancel_scope.cancel()
            await reap(server)
            server = await start_server(tmp_path)
            for session in deleted:
                seen.pop(session, None)  # deleted on purpose
            async with connect(server.url, server.token, reconnect=False) as client:
                survived += survivors_ok(seen, await states_of(client))
            resumed += await resume_all(server, seen)
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
        assert survived > 0 and written > 0 and resumed > 0
        print(
            f"\nchaos serve: {ROUNDS} kills, {survived} messages checked, {resumed} events "
            f"after restarts, {written} files"
        )
    finally:
        if server is not None:
            if server.process.returncode is None:
                server.process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await reap(server)
