"""kill -9 of the real server mid-stream, then a restart on the same data folder.

The promise (docs/reliability.md): nothing a client saw is lost, committed or streamed (the
streamed text survives as a stopped message), and the interrupted turns resume (policy auto) or
wait for resumeSession (policy manual).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import trio

from greenroom.transport.client import ConnectionLost, GreenroomClient, connect
from tests.e2e.harness import WAIT, Server, kill_server, start_server, stop_server

JSON = dict[str, Any]
SESSIONS = 20


class Record:
    """What one client saw of one session, with the (real) time it saw it."""

    def __init__(self) -> None:
        self.committed: list[tuple[float, JSON]] = []
        self.partial = ""  # the text streamed since the last reply was committed


async def watch(client: GreenroomClient, records: dict[str, Record]) -> None:
    with contextlib.suppress(ConnectionLost):  # the kill ends the stream; that is the point
        await record_events(client, records)


async def record_events(client: GreenroomClient, records: dict[str, Record]) -> None:
    async for event in client.events():
        record = records.get(event.get("session") or "")
        if record is None:
            continue
        now = trio.current_time()
        if event["event"] == "messageAdded":
            record.committed.append((now, event["data"]["message"]))
            if event["data"]["message"]["role"] == "assistant":
                record.partial = ""
        elif event["event"] == "streamingUpdate":
            data = event["data"]
            record.partial = record.partial[: data["offset"]] + data["delta"]


async def drive_until_kill(server: Server) -> dict[str, Record]:
    records: dict[str, Record] = {}
    async with (
        connect(server.url, server.token, reconnect=False) as client,
        trio.open_nursery() as nursery,
    ):
        for i in range(SESSIONS):
            session = (await client.open_session(f"p{i:02}"))["session"]["session"]
            records[session] = Record()
            await client.subscribe(session)
        nursery.start_soon(watch, client, records)
        for session in records:
            await client.send_message(session, "a short one [[tokens:5]] [[rate:100]]")
        # Then a long turn in every session, cut by the kill.
        for session in records:
            await client.send_message(session, "a long one [[tokens:400]] [[rate:40]]")
        # Killed once every session's long turn has streamed (its short one committed).
        with trio.fail_after(WAIT):
            while not all(len(r.committed) >= 3 and r.partial for r in records.values()):  # noqa: ASYNC110
                await trio.sleep(0.05)
        await kill_server(server)
        nursery.cancel_scope.cancel()
    return records


async def wait_until(client: GreenroomClient, done: Any, limit: float = 60) -> list[JSON]:
    with trio.fail_after(limit):
        while True:
            sessions: list[JSON] = (await client.list_sessions())["sessions"]
            if done(sessions):
                return sessions
            await trio.sleep(0.2)


def check_survivors(records: dict[str, Record], states: dict[str, JSON]) -> None:
    """Everything seen is there: every committed message, and all the streamed text (no
    margin: the journal has every event before a client can see it)."""
    for session, record in records.items():
        messages = states[session]["messages"]
        seen = [m for _, m in record.committed]
        assert messages[: len(seen)] == seen, f"{session} lost committed messages"
        stopped = messages[len(seen)] if len(messages) > len(seen) else {}
        assert stopped.get("stopped"), f"{session}: the cut reply is not kept"
        assert (stopped.get("content") or "").startswith(record.partial), (
            f"{session} lost streamed text"
        )


@pytest.mark.parametrize("policy", ["auto", "manual"])
async def test_kill_9_mid_stream_loses_nothing_a_client_saw(
    tmp_path: Path, policy: str
) -> None:
    first = await start_server(tmp_path)
    try:
        records = await drive_until_kill(first)
    finally:
        first.process.kill()
    second = await start_server(tmp_path, "--resume", policy)
    try:
        async with connect(second.url, second.token, reconnect=False) as client:
            if policy == "auto":
                listed = await wait_until(client, lambda ss: all(s["status"] == "idle" for s in ss))
            else:
                listed = await wait_until(
                    client, lambda ss: all(s["status"] == "interrupted" for s in ss)
                )
            assert {s["session"] for s in listed} == set(records)
            states = {
                s: (await client.open_session(listed_project(listed, s)))["session"]
                for s in records
            }
            check_survivors(records, states)
            for state in states.values():
                messages = state["messages"]
                assert [m["role"] for m in messages[:4]] == ["user", "assistant"] * 2
                stopped = [m for m in messages if m.get("stopped")]
                assert stopped, "the cut turn keeps its partial text as a stopped message"
                if policy == "auto":
                    # The resumed turn completed the reply: partial(s) + rest = 400 tokens.
                    tail = "".join(m.get("content") or "" for m in messages[3:])
                    assert len(tail.split()) == 400
            if policy == "manual":
                session = next(iter(records))
                await client.resume_session(session)
                await wait_until(
                    client,
                    lambda ss: next(s for s in ss if s["session"] == session)["status"] == "idle",
                )
        assert await stop_server(second) == 0
        log = second.stderr.read_text()
        resumed = [s for s in records if f"resuming the turn of session {s} " in log]
        # Every resumed turn says so in the log, at boot (auto) or when asked (manual).
        assert len(resumed) == (len(records) if policy == "auto" else 1), log
    finally:
        second.process.kill()


def listed_project(listed: list[JSON], session: str) -> str:
    project: str = next(s["project"] for s in listed if s["session"] == session)
    return project
