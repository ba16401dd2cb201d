"""greenroom chat asks (on a terminal) before a project's MCP servers start; a real server on
127.0.0.1 and a real MCP server."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import trio

from greenroom.cli.chat import Ask, open_chat
from greenroom.cli.prompt import one_message
from greenroom.transport.client import GreenroomClient, connect
from tests.agent.test_mcp import SERVER
from tests.transport.test_client import TOKEN, running_server


async def chat(
    client: GreenroomClient, content: str, out: io.StringIO, ask: Ask | None = None
) -> int:
    """``greenroom chat demo CONTENT``, on a terminal when ``ask`` is given."""
    return await one_message(await open_chat(client, "demo", out, ask=ask), content)


ASK = "call tool mcp__demo__add with {\"a\": 2, \"b\": 3} [[rate:inf]]"


def write_mcp_file(runtime_root: Path) -> None:
    folder = runtime_root / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"command": sys.executable, "args": [str(SERVER)], "env": {"KEY": "s3cret"}}
    (folder / ".mcp.json").write_text(json.dumps({"mcpServers": {"demo": entry}}))


@pytest.mark.parametrize("answer", [True, False])
async def test_chat_asks_before_starting_project_servers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answer: bool
) -> None:
    questions: list[str] = []

    async def ask(question: str) -> bool:
        questions.append(question)
        return answer

    with trio.fail_after(120):
        async with running_server(tmp_path) as (runtime, url, _), connect(url, TOKEN) as client:
            write_mcp_file(runtime.config.projects_root)
            out = io.StringIO()
            code = await chat(client, ASK, out, ask)
            again = await chat(client, ASK, io.StringIO(), ask)
    assert code == again == 0
    assert len(questions) == (1 if answer else 2)  # approved once, or asked each time
    assert "demo: " + sys.executable in questions[0] and "(sets KEY)" in questions[0]
    assert "s3cret" not in questions[0]
    if answer:
        assert "<- 5" in out.getvalue()
        assert "approved" in capsys.readouterr().err
    else:
        assert "no MCP server 'demo'" in out.getvalue()


async def test_chat_without_a_terminal_only_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(120):
        async with running_server(tmp_path) as (runtime, url, _), connect(url, TOKEN) as client:
            write_mcp_file(runtime.config.projects_root)
            assert await chat(client, "hello [[rate:inf]]", io.StringIO()) == 0
            assert (await client.mcp_config("demo"))["mcp"]["state"] == "untrusted"
    err = capsys.readouterr().err
    assert "is not approved, so its MCP servers do not start" in err
    assert "run greenroom chat on a terminal" in err
