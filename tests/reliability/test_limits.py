"""Every limit, reached over a real websocket: a clear error, never a crash or a silent drop.

Each test sets its limit low, reaches it, checks the error (``limit_reached``, ``too_large``,
HTTP 503, close 1009), then checks that the server still serves: the same client (or another
one) goes on, and freeing the resource makes room again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket

from greenroom.config import Limits
from tests.reliability.support import open_server
from tests.transport.test_server_support import WireClient, open_client, turn_ended

LONG = "[[tokens:400]] [[rate:20]]"  # 20 s of streaming: long enough to hit limits under


async def open_project(client: WireClient, project: str) -> str:
    session: str = (await client.call("openSession", project=project))["session"]["session"]
    return session


async def test_max_connections_refuses_with_503_then_makes_room(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_server(tmp_path, settings={"max_connections": 2}) as running:
            async with open_client(running.address) as one, open_client(running.address) as two:
                await one.next_item()
                await two.next_item()
                with pytest.RaisesGroup(
                    trio_websocket.ConnectionRejected, flatten_subgroups=True
                ) as refused:
                    async with open_client(running.address):
                        pass
                rejected = refused.value.exceptions[0]
                assert isinstance(rejected, trio_websocket.ConnectionRejected)
                assert rejected.status_code == 503
                assert b"2 connections" in (rejected.body or b"")
                assert await one.call("ping") == {}
            # Both closed: a new client gets in (the count went back down).
            with trio.fail_after(5):
                while running.server.statistics().connections:  # noqa: ASYNC110 - polling the server
                    await trio.sleep(0.01)
            async with open_client(running.address) as three:
                await three.next_item()
                assert (await three.call("stats"))["connections"] == 1


async def test_max_sessions_is_limit_reached_and_deleting_makes_room(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with (
            open_server(tmp_path, limits=Limits(max_sessions=3)) as running,
            open_client(running.address) as client,
        ):
            await client.next_item()
            sessions = [await open_project(client, f"p{i}") for i in range(3)]
            assert await client.error("openSession", project="p3") == "limit_reached"
            assert await open_project(client, "p0") == sessions[0]  # reuse is no new session
            await client.call("deleteSession", session=sessions[1])
            await open_project(client, "p3")
            assert len((await client.call("listSessions"))["sessions"]) == 3


async def test_max_message_chars_is_too_large_and_the_session_goes_on(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with (
            open_server(tmp_path, limits=Limits(max_message_chars=1000)) as running,
            open_client(running.address) as client,
        ):
            await client.next_item()
            session = await open_project(client, "long")
            await client.call("subscribe", session=session)
            assert await client.error("sendMessage", session=session, content="x" * 1001) == (
                "too_large"
            )
            state = (await client.call("openSession", project="long"))["session"]
            assert state["status"] == "idle" and state["messages"] == []
            await client.call("sendMessage", session=session, content="y" * 1000)
            await client.event(turn_ended(session))
            state = (await client.call("openSession", project="long"))["session"]
            assert [m["role"] for m in state["messages"]] == ["user", "assistant"]


async def test_max_queued_messages_is_limit_reached_and_nothing_is_dropped(
    tmp_path: Path,
) -> None:
    with trio.fail_after(20):
        async with (
            open_server(tmp_path, limits=Limits(max_queued_messages=2)) as running,
            open_client(running.address) as client,
        ):
            await client.next_item()
            session = await open_project(client, "queue")
            assert await client.call("sendMessage", session=session, content="[[stall]]") == {
                "queued": False
            }
            for text in ("one", "two"):
                assert await client.call("sendMessage", session=session, content=text) == {
                    "queued": True
                }
            assert await client.error("sendMessage", session=session, content="three") == (
                "limit_reached"
            )
            state = (await client.call("openSession", project="queue"))["session"]
            assert state["queued"] == ["one", "two"]  # the refused one is not in, nor lost
            stopped = await client.call("stopGeneration", session=session)
            assert stopped == {"discarded": ["one", "two"]}


async def test_max_frame_bytes_closes_with_1009_and_others_go_on(tmp_path: Path) -> None:
    limit = 64 * 1024
    with trio.fail_after(20):
        async with (
            open_server(tmp_path, settings={"max_frame_bytes": limit}) as running,
            open_client(running.address) as bystander,
            open_client(running.address) as client,
        ):
            await bystander.next_item()
            await client.next_item()
            fits = '{"id": 1, "op": "nope", "x": "' + "x" * (limit - 100) + '"}'
            await client.ws.send_message(fits)
            assert (await client.reply(1))["error"]["code"] == "unknown_op"
            over = '{"id": 2, "op": "ping", "x": "' + "\u00e9" * (limit // 2) + '"}'
            assert len(over) < limit < len(over.encode())  # over in bytes, not in characters
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await client.ws.send_message(over)
                await client.reply(2)
            assert closed.value.reason.code == 1009
            assert await bystander.call("ping") == {}


async def test_max_concurrent_turns_makes_turns_wait_and_says_so(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with (
            open_server(tmp_path, limits=Limits(max_concurrent_turns=2)) as running,
            open_client(running.address) as client,
        ):
            await client.next_item()
            sessions = [await open_project(client, f"t{i}") for i in range(4)]
            for session in sessions:
                await client.call("sendMessage", session=session, content=LONG)

            async def summaries() -> dict[str, dict[str, Any]]:
                listed = (await client.call("listSessions"))["sessions"]
                return {s["session"]: s for s in listed}

            while True:
                now = await summaries()
                if all(s["loading"] for s in now.values()):
                    break
                await trio.sleep(0.05)
            waiting = [s for s in sessions if now[s]["waiting"]]
            streaming = [s for s in sessions if not now[s]["waiting"]]
            assert len(waiting) == 2 and len(streaming) == 2, now
            await client.call("stopGeneration", session=streaming[0])
            while sum(s["waiting"] for s in (await summaries()).values()) != 1:  # noqa: ASYNC110 - polling the server
                await trio.sleep(0.05)
            await client.call("stopAll")
            while any(s["loading"] for s in (await summaries()).values()):  # noqa: ASYNC110 - polling the server
                await trio.sleep(0.05)
