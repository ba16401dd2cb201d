"""MCP tools against real MCP servers written with the SDK: a stdio server run as a
subprocess, and a streamable HTTP server on 127.0.0.1; supervision, failures, approval, and a
turn where the model calls one.

These tests run on the real clock (real processes answer in real time), every wait capped
with a generous ``fail_after``; every process they start is stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from greenroom.agent.mcp.config import McpServer, McpTimings, parse_project_file, parse_server
from greenroom.agent.mcp.hub import McpHub, McpRegistry, open_mcp_hub
from greenroom.protocol import commands as cmd
from greenroom.protocol.errors import Conflict, ToolError
from greenroom.protocol.events import ApprovalRequested
from tests.conftest import make_config, next_event, open_test_runtime, turn_ended

SERVER = Path(__file__).parent / "mcp_servers" / "demo_server.py"
CAP = 60
FAST = McpTimings(
    start=30.0, call=30.0, ping_every=30.0, ping=10.0, retry_after=0.5,
    max_restarts=3, period=30.0, backoff_initial=0.05, backoff_max=0.2, shutdown=5.0,
)  # fmt: skip


def stdio(name: str = "demo", **extra: object) -> McpServer:
    entry = {"command": sys.executable, "args": [str(SERVER)], **extra}
    return parse_server(name, entry, where="test", source="global")


@asynccontextmanager
async def hub_for(
    tmp_path: Path, *servers: McpServer, timings: McpTimings = FAST
) -> AsyncIterator[McpHub]:
    project = tmp_path / "projects" / "p"
    project.mkdir(parents=True, exist_ok=True)
    registry = McpRegistry(
        data_dir=tmp_path / "data",
        projects_root=tmp_path / "projects",
        servers=servers,
        timings=timings,
    )
    await registry.load()
    async with open_mcp_hub(registry, "p", project) as hub:
        yield hub


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: the SDK reaps it, but give it the benefit of the doubt.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


async def wait_gone(pid: int) -> None:
    with trio.fail_after(CAP):
        while alive(pid):  # noqa: ASYNC110 - another process: no event to wait on
            await trio.sleep(0.05)


# --- stdio -----------------------------------------------------------------------------------


async def test_stdio_server_tools_calls_and_stop(tmp_path: Path) -> None:
    with trio.fail_after(CAP):
        async with hub_for(tmp_path, stdio()) as hub:
            tools = {tool.name: tool for tool in await hub.tools()}
            assert set(tools) == {
                "mcp__demo__add",
                "mcp__demo__pid",
                "mcp__demo__cwd",
                "mcp__demo__picture",
                "mcp__demo__hang",
                "mcp__demo__boom",
                "mcp__demo__erase",
                "mcp__demo__peek",
            }
            # Only a tool marked destructive (and not read-only) is: it asks by default.
            assert [name for name in tools if hub.destructive(name)] == ["mcp__demo__erase"]
            add = tools["mcp__demo__add"]
            assert add.description == "Add two numbers."
            assert add.parameters["required"] == ["a", "b"]
            assert add.parameters["properties"]["a"]["type"] == "integer"
            assert await hub.call("mcp__demo__add", '{"a": 2, "b": 40}') == "42"
            assert await hub.call("mcp__demo__cwd", "") == str((tmp_path / "projects/p").resolve())
            picture = await hub.call("mcp__demo__picture", "{}")
            assert picture.startswith("a picture:\n[image image/png, 100 bytes, not shown]")
            with pytest.raises(ToolError, match="Error executing tool boom"):
                await hub.call("mcp__demo__boom", "{}")
            with pytest.raises(ToolError, match="has no tool 'mcp__demo__nope'"):
                await hub.call("mcp__demo__nope", "{}")
            with pytest.raises(ToolError, match="no MCP server 'other'"):
                await hub.call("mcp__other__x", "{}")
            with pytest.raises(ToolError, match="not valid JSON"):
                await hub.call("mcp__demo__add", "{nope")
            pid = int(await hub.call("mcp__demo__pid", "{}"))
            assert alive(pid)
        await wait_gone(pid)  # stopped with the hub (the session)


async def test_a_dead_server_is_a_tool_error_then_restarted(tmp_path: Path) -> None:
    with trio.fail_after(CAP):
        async with hub_for(tmp_path, stdio()) as hub:
            await hub.tools()
            first = int(await hub.call("mcp__demo__pid", "{}"))
            os.kill(first, signal.SIGKILL)
            await wait_gone(first)
            with pytest.raises(ToolError, match="MCP server 'demo'"):
                await hub.call("mcp__demo__pid", "{}")
            while hub.statuses()["demo"][0] != "running":  # noqa: ASYNC110 - a restart
                await trio.sleep(0.05)
            second = int(await hub.call("mcp__demo__pid", "{}"))
            assert second != first
            assert await hub.call("mcp__demo__add", '{"a": 1, "b": 1}') == "2"
        await wait_gone(second)


async def test_a_call_that_is_not_answered_is_a_tool_error(tmp_path: Path) -> None:
    timings = attrs.evolve(FAST, call=3.0)  # the hang's bound, and the next call's
    with trio.fail_after(CAP):
        async with hub_for(tmp_path, stdio(), timings=timings) as hub:
            await hub.tools()
            with pytest.raises(ToolError, match=r"'demo' failed: it did not answer within 3 s"):
                await hub.call("mcp__demo__hang", "{}")
            # The server still answers pings, so it is not restarted; other calls go on.
            while hub.statuses()["demo"][0] != "running":  # noqa: ASYNC110 - the ping
                await trio.sleep(0.05)
            assert await hub.call("mcp__demo__add", '{"a": 1, "b": 1}') == "2"


async def test_a_server_that_cannot_start_never_fails_the_hub(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = parse_server(
        "broken", {"command": str(tmp_path / "no-such-program")}, where="t", source="global"
    )
    with trio.fail_after(CAP):
        async with hub_for(tmp_path, broken, stdio()) as hub:
            names = {tool.name for tool in await hub.tools()}
            assert "mcp__demo__add" in names
            assert not any(name.startswith("mcp__broken__") for name in names)
            with pytest.raises(ToolError, match="MCP server 'broken' is not available") as info:
                await hub.call("mcp__broken__anything", "{}")
            assert "cannot run '" in info.value.message
            assert "no-such-program': No such file or directory" in info.value.message
            # It is given up after its restarts, and tried again later: still no crash.
            while hub.statuses()["broken"][0] != "failed":  # noqa: ASYNC110 - restarts
                await trio.sleep(0.05)
            assert "given up" in (hub.statuses()["broken"][1] or "")
            await trio.sleep(FAST.retry_after)
            await hub.tools()
            assert await hub.call("mcp__demo__add", '{"a": 1, "b": 2}') == "3"
    assert any("MCP server broken" in record.getMessage() for record in caplog.records)


# --- streamable HTTP -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def http_server() -> AsyncIterator[str]:
    port = free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - a quick spawn, stopped in finally
        [sys.executable, str(SERVER), "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(CAP):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                except OSError:
                    assert process.poll() is None, "the HTTP MCP server exited"
                    await trio.sleep(0.1)
                    continue
                await stream.aclose()
                break
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# The SDK's streamable HTTP client leaves httpx2's response generators to the garbage
# collector when a session ends (their ResourceWarning is the SDK's, not greenroom's).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_streamable_http_server(tmp_path: Path) -> None:
    async with http_server() as url:
        server = parse_server("web", {"type": "http", "url": url}, where="t", source="global")
        with trio.fail_after(CAP):
            async with hub_for(tmp_path, server) as hub:
                names = {tool.name for tool in await hub.tools()}
                assert "mcp__web__add" in names
                assert await hub.call("mcp__web__add", '{"a": 20, "b": 22}') == "42"
                with pytest.raises(ToolError, match="Error executing tool boom"):
                    await hub.call("mcp__web__boom", "{}")


async def test_unreachable_http_server_is_a_tool_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    server = parse_server("gone", {"type": "http", "url": url}, where="t", source="global")
    with trio.fail_after(CAP):
        async with hub_for(tmp_path, server) as hub:
            assert await hub.tools() == ()
            with pytest.raises(ToolError, match="MCP server 'gone' is not available"):
                await hub.call("mcp__gone__add", "{}")


# --- approval and a real turn ----------------------------------------------------------------


def project_file(servers: dict[str, object]) -> bytes:
    return json.dumps({"mcpServers": servers}).encode()


async def test_a_turn_calls_an_approved_project_server(tmp_path: Path) -> None:
    config = make_config(tmp_path, mcp_timings=FAST)
    folder = config.projects_root / "p"
    folder.mkdir(parents=True)
    data = project_file({"demo": {"command": sys.executable, "args": [str(SERVER)]}})
    (folder / ".mcp.json").write_bytes(data)
    digest = parse_project_file(data).hash
    with trio.fail_after(CAP * 2):
        async with open_test_runtime(config) as runtime, runtime.connect() as client:
            status = await runtime.execute(cmd.McpConfig(project="p"))
            assert (status.state, status.hash) == ("untrusted", digest)
            view = await runtime.execute(cmd.OpenSession(project="p"))
            session = view.summary.session
            client.subscribe(session)
            ask = 'call tool mcp__demo__add with {"a": 1, "b": 2} [[rate:inf]]'

            await runtime.execute(cmd.SendMessage(session=session, content=ask))
            await next_event(client, turn_ended(session), limit=CAP)
            messages = (await runtime.get_state(session)).messages
            assert messages[-2].content is not None
            assert "no MCP server 'demo'" in messages[-2].content  # not approved: not started

            with pytest.raises(Conflict, match="has changed"):
                await runtime.execute(cmd.TrustMcpConfig(project="p", hash="0" * 64))
            trusted = await runtime.execute(cmd.TrustMcpConfig(project="p", hash=digest))
            assert trusted.state == "trusted"
            assert json.loads((config.data_dir / "mcp-trust.json").read_text()) == {
                "projects": {"p": digest}
            }

            await runtime.execute(cmd.SendMessage(session=session, content=ask))
            await next_event(client, turn_ended(session), limit=CAP)
            messages = (await runtime.get_state(session)).messages
            assert messages[-2].role == "tool" and messages[-2].content == "3"
            assert messages[-1].content == "mcp__demo__add answered: 3"

            await runtime.execute(
                cmd.SendMessage(session=session, content="call tool mcp__demo__pid [[rate:inf]]")
            )
            await next_event(client, turn_ended(session), limit=CAP)
            pid = int((await runtime.get_state(session)).messages[-2].content or "")
            assert alive(pid)

            # A changed file is no longer approved: its server stops at the next turn.
            (folder / ".mcp.json").write_bytes(data + b"\n")
            assert (await runtime.execute(cmd.McpConfig(project="p"))).state == "untrusted"
            await runtime.execute(cmd.SendMessage(session=session, content=ask))
            await next_event(client, turn_ended(session), limit=CAP)
            messages = (await runtime.get_state(session)).messages
            assert "no MCP server 'demo'" in (messages[-2].content or "")
            await wait_gone(pid)


async def test_global_server_stops_with_the_session(tmp_path: Path) -> None:
    config = make_config(tmp_path, mcp_timings=FAST, mcp_servers=(stdio(),), idle_unload_after=0.5)
    with trio.fail_after(CAP * 2):
        async with open_test_runtime(config) as runtime, runtime.connect() as client:
            session = (await runtime.execute(cmd.OpenSession(project="p"))).summary.session
            client.subscribe(session)
            await runtime.execute(
                cmd.SendMessage(session=session, content="call tool mcp__demo__pid [[rate:inf]]")
            )
            await next_event(client, turn_ended(session), limit=CAP)
            pid = int((await runtime.get_state(session)).messages[-2].content or "")
            assert alive(pid)
            await runtime.execute(cmd.DeleteSession(session=session))
            await wait_gone(pid)

            # Unloaded as idle: its servers stop too.
            session = (await runtime.execute(cmd.OpenSession(project="idle"))).summary.session
            client.subscribe(session)
            await runtime.execute(
                cmd.SendMessage(session=session, content="call tool mcp__demo__pid [[rate:inf]]")
            )
            await next_event(client, turn_ended(session), limit=CAP)
            pid = int((await runtime.get_state(session)).messages[-2].content or "")
            client.unsubscribe(session)
            await wait_gone(pid)
            # Unloaded, not deleted (the mirror lets go of it just after the actor ends).
            while session in runtime.mirror.sessions:  # noqa: ASYNC110 - the sweep's last step
                await trio.sleep(0.05)
            assert session in runtime.mirror.dormant

            session = (await runtime.execute(cmd.OpenSession(project="q"))).summary.session
            client.subscribe(session)
            await runtime.execute(
                cmd.SendMessage(session=session, content="call tool mcp__demo__pid [[rate:inf]]")
            )
            await next_event(client, turn_ended(session), limit=CAP)
            pid = int((await runtime.get_state(session)).messages[-2].content or "")
        await wait_gone(pid)  # stopped with the runtime


async def test_a_model_behind_the_openai_api_calls_an_mcp_tool(tmp_path: Path) -> None:
    """The OpenAI-compatible provider offers the MCP tool with its schema, and the call's
    result goes back as the tool message."""
    from greenroom.agent.openai import OpenAIProvider
    from tests.agent.fake_openai import Reply, chunk, open_fake_openai, sse, text_reply, tool_delta

    config = make_config(tmp_path, mcp_timings=FAST, mcp_servers=(stdio(),))
    call = [
        chunk(tool_calls=[tool_delta(0, id="call_1", name="mcp__demo__add", arguments='{"a": ')]),
        chunk(tool_calls=[tool_delta(0, arguments='5, "b": 6}')]),
        chunk(finish="tool_calls"),
    ]
    with trio.fail_after(CAP * 2):
        async with open_fake_openai() as fake:
            fake.script(Reply(parts=sse(call)), text_reply("It is 11."))
            provider = OpenAIProvider(base_url=fake.url, api_key="k", model="m", max_retries=0)
            try:
                async with (
                    open_test_runtime(config, provider=provider) as runtime,
                    runtime.connect() as client,
                ):
                    session = (await runtime.execute(cmd.OpenSession(project="p"))).summary.session
                    client.subscribe(session)
                    await runtime.execute(
                        cmd.SendMessage(session=session, content="what is 5 + 6?")
                    )
                    await next_event(client, turn_ended(session), limit=CAP)
                    messages = (await runtime.get_state(session)).messages
            finally:
                await provider.aclose()
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[2].content == "11"
    assert messages[3].content == "It is 11."
    first, second = (request.json for request in fake.received)
    offered = {tool["function"]["name"]: tool["function"] for tool in first["tools"]}
    assert offered["mcp__demo__add"]["parameters"]["required"] == ["a", "b"]
    assert "read_file" in offered
    assert second["messages"][-1] == {"role": "tool", "content": "11", "tool_call_id": "call_1"}


async def test_a_destructive_mcp_tool_asks_first(tmp_path: Path) -> None:
    config = make_config(tmp_path, mcp_timings=FAST, mcp_servers=(stdio(),))
    with trio.fail_after(CAP * 2):
        async with open_test_runtime(config) as runtime, runtime.connect() as client:
            session = (await runtime.execute(cmd.OpenSession(project="p"))).summary.session
            client.subscribe(session)
            await runtime.execute(
                cmd.SendMessage(
                    session=session, content='call tool mcp__demo__add with {"a": 1, "b": 2}'
                )
            )
            await next_event(client, turn_ended(session), limit=CAP)
            assert (await runtime.get_state(session)).messages[-2].content == "3"  # no asking
            await runtime.execute(
                cmd.SendMessage(
                    session=session, content='call tool mcp__demo__erase with {"name": "x"}'
                )
            )
            asked = await next_event(client, lambda e: e.name == "approvalRequested", limit=CAP)
            assert isinstance(asked.data, ApprovalRequested)
            assert asked.data.tool == "mcp__demo__erase"
            await runtime.execute(
                cmd.ApproveToolCall(session=session, call=asked.data.call, allow=True)
            )
            await next_event(client, turn_ended(session), limit=CAP)
            assert (await runtime.get_state(session)).messages[-2].content == "erased x"
