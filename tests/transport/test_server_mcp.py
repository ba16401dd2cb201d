"""Approving a project's .mcp.json over a real websocket: mcpConfig, openSession's mcp field,
trustMcpConfig and its refusals; then a turn uses the approved server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

from tests.agent.test_mcp import SERVER, alive, wait_gone
from tests.transport.test_server_support import open_client, open_server, turn_ended


async def test_approve_a_project_mcp_file_over_the_wire(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with open_server(tmp_path) as running, open_client(running.address) as client:
            await client.next_item()  # welcome
            assert await client.call("createProject", project="blog") == {"project": "blog"}
            none = await client.call("mcpConfig", project="blog")
            assert none["mcp"]["state"] == "none" and none["mcp"]["hash"] is None
            assert await client.error("trustMcpConfig", project="blog", hash="0" * 64) == (
                "not_found"
            )

            folder = running.runtime.config.projects_root / "blog"
            entry = {"command": sys.executable, "args": [str(SERVER)], "env": {"KEY": "s3cret"}}
            (folder / ".mcp.json").write_text(json.dumps({"mcpServers": {"demo": entry}}))
            opened = await client.call("openSession", project="blog")
            mcp = opened["mcp"]
            assert mcp["state"] == "untrusted" and len(mcp["hash"]) == 64
            assert mcp["servers"] == [
                {
                    "name": "demo",
                    "type": "stdio",
                    "command": sys.executable,
                    "args": [str(SERVER)],
                    "env": ["KEY"],  # names only: a value may be a secret
                }
            ]
            assert "s3cret" not in json.dumps(opened)
            session = opened["session"]["session"]
            await client.call("subscribe", session=session)

            assert await client.error("trustMcpConfig", project="blog", hash="f" * 64) == (
                "conflict"
            )
            assert await client.error("trustMcpConfig", project="blog", hash="xyz") == (
                "invalid_argument"
            )
            trusted = await client.call("trustMcpConfig", project="blog", hash=mcp["hash"])
            assert trusted["mcp"]["state"] == "trusted"
            assert (await client.call("mcpConfig", project="blog"))["mcp"]["state"] == "trusted"

            await client.call(
                "sendMessage", session=session, content="call tool mcp__demo__pid [[rate:inf]]"
            )
            await client.event(turn_ended(session))
            state = (await client.call("openSession", project="blog"))["session"]
            pid = int(state["messages"][-2]["content"])
            assert alive(pid)

            (folder / ".mcp.json").write_text("{not json")
            invalid = (await client.call("mcpConfig", project="blog"))["mcp"]
            assert invalid["state"] == "invalid" and "not valid JSON" in invalid["error"]
            assert await client.error("trustMcpConfig", project="blog", hash=invalid["hash"]) == (
                "conflict"
            )

            # A deleted project's approval goes with it: the same file in a new project of the
            # same name waits for a new approval.
            (folder / ".mcp.json").write_text(json.dumps({"mcpServers": {"demo": entry}}))
            assert (await client.call("mcpConfig", project="blog"))["mcp"]["state"] == "trusted"
            assert await client.call("deleteProject", project="blog") == {}
            await wait_gone(pid)
            await client.call("createProject", project="blog")
            (folder / ".mcp.json").write_text(json.dumps({"mcpServers": {"demo": entry}}))
            assert (await client.call("mcpConfig", project="blog"))["mcp"]["state"] == (
                "untrusted"
            )
