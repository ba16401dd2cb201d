"""The real ``greenroom serve`` with an MCP server configured in config.toml, driven by the
real ``greenroom chat``: the settings, the session, the server process and the CLI together."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

from tests.agent.test_mcp import SERVER, alive, wait_gone
from tests.e2e.harness import start_server, stop_server
from tests.e2e.test_serve import run_cli


async def test_a_global_mcp_server_through_serve_and_chat(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text(
        f"[mcp_servers.demo]\ncommand = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(str(SERVER))}]\n"
    )
    server = await start_server(tmp_path)
    try:
        ask = 'call tool mcp__demo__add with {"a": 2, "b": 3}'
        done = await run_cli(server, "chat", "demo", ask)
        assert done.returncode == 0, done.stderr
        assert b"-> mcp__demo__add" in done.stdout and b"<- 5" in done.stdout
        assert b"mcp__demo__add answered: 5" in done.stdout
        pids = await run_cli(server, "chat", "demo", "call tool mcp__demo__pid")
        pid = int(pids.stdout.split(b"<- ", 1)[1].split(b"\n", 1)[0])
        assert alive(pid)
        assert await stop_server(server) == 0
        with trio.fail_after(30):
            await wait_gone(pid)  # stopped with greenroom
    finally:
        if server.process.returncode is None:
            server.process.kill()
            with trio.move_on_after(5):
                await server.process.wait()
