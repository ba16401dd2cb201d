"""A tool call waiting for approval survives a kill -9 of the real ``greenroom serve``.

After the restart the session waits for the very same call (same id, same summary), the model
is not asked again, and approving it finishes the turn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from greenroom.transport.client import GreenroomClient, connect
from tests.e2e.harness import kill_server, start_server, stop_server

JSON = dict[str, Any]


async def summary_of(client: GreenroomClient, session: str, done: Any, limit: float = 60) -> JSON:
    """The session's summary once ``done`` holds for it (listed again at each change)."""
    with trio.fail_after(limit):
        while True:
            for summary in (await client.list_sessions())["sessions"]:
                if summary["session"] == session and done(summary):
                    found: JSON = summary
                    return found
            await trio.sleep(0.1)


@pytest.mark.parametrize("resume", ["auto", "manual"])
async def test_kill_9_keeps_the_pending_approval(tmp_path: Path, resume: str) -> None:
    first = await start_server(tmp_path, "--resume", resume)
    try:
        async with connect(first.url, first.token, reconnect=False) as client:
            session = (await client.open_session("keep"))["session"]["session"]
            target = first.data_dir / "projects" / "keep" / "notes.txt"
            target.write_text("precious")
            await client.subscribe(session)
            await client.send_message(session, "delete file notes.txt")
            with trio.fail_after(60):
                async for event in client.events():
                    if event["event"] == "approvalRequested":
                        break
            call = event["data"]["call"]
            before = (await client.open_session("keep"))["session"]
            assert before["approval"] == {"call": call, "tool": "delete_file"}
        await kill_server(first)
    finally:
        first.process.kill()

    second = await start_server(tmp_path, "--resume", resume)
    try:
        async with connect(second.url, second.token, reconnect=False) as client:
            waiting = await summary_of(
                client, session, lambda s: s["status"] == "running" and s["approval"] is not None
            )
            assert waiting["approval"] == {"call": call, "tool": "delete_file"}
            state = (await client.open_session("keep"))["session"]
            # The same conversation: the model was not asked again.
            assert state["messages"] == before["messages"]
            assert target.read_text() == "precious"
            await client.approve_tool_call(session, call, allow=True)
            done = await summary_of(client, session, lambda s: s["status"] == "idle")
            assert done["approval"] is None
            state = (await client.open_session("keep"))["session"]
        roles = [m["role"] for m in state["messages"]]
        assert roles == ["user", "assistant", "tool", "assistant"]
        assert state["messages"][2] == {
            "role": "tool", "content": "deleted notes.txt", "tool_call_id": call
        }  # fmt: skip
        assert not target.exists()
        assert await stop_server(second) == 0
    finally:
        second.process.kill()
