"""``greenroom chat`` and ``greenroom approve`` with tool calls that wait for approval: asked on
a pseudo-terminal (one message, and the interactive prompt), explained without one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from greenroom.transport.client import connect
from tests.e2e.harness import Server, open_cli, open_tty_cli, run_cli

JSON = dict[str, Any]
QUESTION = "allow delete_file? [y/N, or a reason to deny] "


def notes(server: Server, project: str = "demo") -> Path:
    path = server.data_dir / "projects" / project / "notes.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("precious")
    return path


async def messages(server: Server, project: str = "demo") -> list[JSON]:
    async with connect(server.url, server.token) as client:
        found: list[JSON] = (await client.open_session(project))["session"]["messages"]
    return found


@pytest.mark.parametrize(
    ("typed", "tool_result"),
    [
        ("y", "deleted notes.txt"),
        ("n", "error: not run: the user denied this call"),
        ("my shopping list", "error: not run: the user denied this call: my shopping list"),
    ],
)
async def test_chat_asks_on_a_terminal(server: Server, typed: str, tool_result: str) -> None:
    target = notes(server)
    async with open_tty_cli(server, "chat", "demo", "delete file notes.txt") as cli:
        await cli.out.shows(QUESTION)
        await cli.type(typed + "\n")
        assert await cli.wait() == 0, cli.out.text
    assert ("allowed delete_file" if typed == "y" else "denied delete_file") in cli.out.text
    assert target.exists() == (typed != "y")
    tool = (await messages(server))[2]
    assert tool["role"] == "tool" and tool["content"] == tool_result


async def test_the_prompt_asks_and_keeps_the_session(server: Server) -> None:
    target = notes(server)
    async with open_tty_cli(server, "chat", "demo") as cli:
        end = await cli.out.shows(">>> ")
        await cli.type("delete file notes.txt\n")
        end = await cli.out.shows(QUESTION, after=end)
        await cli.type("not today\n")
        end = await cli.out.shows("denied delete_file", after=end)
        end = await cli.out.shows(">>> ", after=end)
        await cli.type("delete file notes.txt\n")
        end = await cli.out.shows(QUESTION, after=end)
        await cli.type("yes\n")
        end = await cli.out.shows(">>> ", after=end)
        await cli.type("/bye\n")
        assert await cli.wait() == 0
    assert not target.exists()
    results = [m["content"] for m in await messages(server) if m["role"] == "tool"]
    assert results == ["error: not run: the user denied this call: not today", "deleted notes.txt"]


async def test_without_a_terminal_chat_says_how_to_approve(server: Server) -> None:
    target = notes(server)
    async with open_cli(server, "chat", "demo", "delete file notes.txt") as cli:
        await cli.err.shows("delete_file waits for approval (call ")
        await cli.err.shows("`greenroom approve demo` allows it")
        assert target.exists()
        approved = await run_cli(server, "approve", "demo")
        assert approved.returncode == 0, approved.stderr
        assert approved.stdout.decode().startswith("allowed delete_file (call_")
        assert await cli.wait() == 0, cli.err.text
    assert not target.exists()
    # Nothing waits any more: approving again is a clear error.
    again = await run_cli(server, "approve", "demo", "--deny")
    assert again.returncode != 0 and b"not waiting for an approval" in again.stderr
    misused = await run_cli(server, "approve", "demo", "--reason", "x")
    assert misused.returncode == 2 and b"--reason goes with --deny" in misused.stderr


async def test_approve_deny_with_a_reason(server: Server) -> None:
    target = notes(server)
    async with open_cli(server, "chat", "demo", "delete file notes.txt") as cli:
        await cli.err.shows("waits for approval")
        denied = await run_cli(server, "approve", "demo", "--deny", "--reason", "no", "--json")
        assert denied.returncode == 0, denied.stderr
        assert b'"allow": false' in denied.stdout
        assert await cli.wait() == 0
    assert target.exists()
    assert (await messages(server))[2]["content"] == "error: not run: the user denied this call: no"
