"""Tool approvals on the wire, over real sockets on 127.0.0.1: the event, the summary field,
the notification, ``approveToolCall`` and its errors, with the raw protocol and the Python
client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from greenroom.protocol.codec import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, Subprotocol
from greenroom.transport.client import CommandError, connect
from tests.transport.test_server_support import TOKEN, open_client, open_server, turn_ended

BOTH = pytest.mark.parametrize("subprotocol", [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK])


def asked(session: str) -> Any:
    return lambda e: e["session"] == session and e["event"] == "approvalRequested"


@BOTH
async def test_ask_allow_and_deny_over_the_wire(tmp_path: Path, subprotocol: Subprotocol) -> None:
    with trio.fail_after(30):
        async with (
            open_server(tmp_path) as running,
            open_client(running.address, subprotocol=subprotocol) as viewer,
            open_client(running.address, subprotocol=subprotocol) as elsewhere,
        ):
            await viewer.next_item()
            await elsewhere.next_item()
            await elsewhere.call("focusProject", project="other")
            state = (await viewer.call("openSession", project="blog"))["session"]
            session = state["session"]
            assert state["approval"] is None
            folder = running.runtime.config.projects_root / "blog"
            (folder / "a.txt").write_text("a")
            (folder / "b.txt").write_text("b")
            await viewer.call("focusProject", project="blog")
            await viewer.call("subscribe", session=session)

            await viewer.call("sendMessage", session=session, content="delete file a.txt")
            request = await viewer.event(asked(session))
            call = request["data"]["call"]
            assert request["data"] == {
                "call": call, "tool": "delete_file", "arguments": '{"path": "a.txt"}'
            }  # fmt: skip
            updated = await viewer.event(
                lambda e: e["event"] == "sessionUpdated" and e["data"]["approval"] is not None
            )
            assert updated["data"]["approval"] == {"call": call, "tool": "delete_file"}
            assert updated["data"]["status"] == "running"
            listed = (await elsewhere.call("listSessions"))["sessions"]
            assert listed[0]["approval"] == {"call": call, "tool": "delete_file"}
            told = await elsewhere.event(lambda e: e["event"] == "notification")
            assert told["data"]["kind"] == "approval" and told["data"]["session"] == session

            # Errors, and nothing lost by them.
            assert await viewer.error(
                "approveToolCall", session="s-nope", call=call, allow=True
            ) == "not_found"
            assert await viewer.error(
                "approveToolCall", session=session, call="call_other", allow=True
            ) == "not_found"
            raw = {"id": 99, "op": "approveToolCall", "session": session, "call": call,
                   "allow": "yes"}  # fmt: skip
            await viewer.ws.send_message(viewer.codec._serialize(raw))
            reply = await viewer.reply(99)
            assert reply["error"]["code"] == "bad_request" and "allow" in reply["error"]["message"]
            assert (folder / "a.txt").exists()

            allowed = await viewer.call("approveToolCall", session=session, call=call, allow=True)
            assert allowed == {}
            assert await viewer.error(
                "approveToolCall", session=session, call=call, allow=True
            ) == "conflict"
            assert (await viewer.event(turn_ended(session)))["data"]["reason"] == "completed"
            assert not (folder / "a.txt").exists()

            await viewer.call("sendMessage", session=session, content="delete file b.txt")
            call = (await viewer.event(asked(session)))["data"]["call"]
            result = await viewer.call(
                "approveToolCall", session=session, call=call, allow=False, reason="keep b"
            )
            assert result == {}
            await viewer.event(turn_ended(session))
            state = (await viewer.call("openSession", project="blog"))["session"]
            assert (folder / "b.txt").exists()
            assert state["messages"][-2] == {
                "role": "tool",
                "content": "error: not run: the user denied this call: keep b",
                "tool_call_id": call,
            }
            assert state["approval"] is None and state["status"] == "idle"


async def test_the_python_client_approves(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_server(tmp_path) as running:
            url = f"ws://{running.address.host}:{running.address.port}/ws"
            async with connect(url, TOKEN, reconnect=False) as client:
                session = (await client.open_session("py"))["session"]["session"]
                (running.runtime.config.projects_root / "py" / "x.txt").write_text("x")
                await client.subscribe(session)
                await client.send_message(session, "delete file x.txt")
                events = client.events()
                async for event in events:
                    if event["event"] == "approvalRequested":
                        break
                call = event["data"]["call"]
                with pytest.raises(CommandError) as caught:
                    await client.approve_tool_call(session, "nope", allow=True)
                assert caught.value.code == "not_found"
                await client.approve_tool_call(session, call, allow=False, reason="no thanks")
                async for event in events:
                    if turn_ended(session)(event):
                        break
                state = (await client.open_session("py"))["session"]
    assert state["messages"][2]["content"].endswith(": no thanks")
