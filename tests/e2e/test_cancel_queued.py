"""A queued message cancelled just before a kill -9 of the real server stays cancelled."""

from __future__ import annotations

from pathlib import Path

import trio

from greenroom.transport.client import connect
from tests.e2e.harness import Server, kill_server, start_server, stop_server


async def test_a_cancelled_queued_message_does_not_come_back_after_kill_9(
    server: Server, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with connect(server.url, server.token, reconnect=False) as client:
            session = (await client.open_session("blog"))["session"]["session"]
            await client.send_message(session, "busy [[stall]]")
            for text in ("keep me", "drop me", "and me"):
                assert await client.send_message(session, text) == {"queued": True}
            assert await client.cancel_queued(session, 1, "drop me") == {"removed": "drop me"}
            await kill_server(server)  # at once: the reply promised the removal is journaled

        again = await start_server(tmp_path, "--resume", "manual")
        try:
            async with connect(again.url, again.token, reconnect=False) as client:
                state = (await client.open_session("blog"))["session"]
                assert state["session"] == session
                assert state["queued"] == ["keep me", "and me"]
                users = [m["content"] for m in state["messages"] if m["role"] == "user"]
                assert users == ["busy [[stall]]"]
        finally:
            await stop_server(again)
