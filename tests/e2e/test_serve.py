"""End to end: the real ``greenroom serve`` as a subprocess, driven by the CLI and the client.

Every wait is bounded (fail_after) and every process is killed in a finally.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from greenroom.transport.client import GreenroomClient, HandshakeRefused, connect
from tests.e2e.harness import REPO, WAIT, Server, start_server, stop_server

JSON = dict[str, Any]


async def run_cli(server: Server, *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(WAIT):
        return await trio.run_process(
            [sys.executable, "-m", "greenroom", *args, "--config-dir", str(server.config_dir)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=REPO,
        )


async def until(events: Any, match: Callable[[JSON], bool], into: list[JSON] | None = None) -> JSON:
    async for event in events:
        if into is not None:
            into.append(event)
        if match(event):
            return event
    raise AssertionError("the event stream ended")


def text_of(events: list[JSON]) -> str:
    text = ""
    for e in events:
        if e["event"] == "streamingUpdate":
            text = text[: e["data"]["offset"]] + e["data"]["delta"]
    return text


def turn_ended(session: str) -> Callable[[JSON], bool]:
    return lambda e: (
        e["event"] == "loadingChanged" and e["session"] == session and not e["data"]["loading"]
    )


async def open_subscribed(client: GreenroomClient, project: str) -> str:
    session: str = (await client.open_session(project))["session"]["session"]
    await client.subscribe(session)
    return session


async def test_discovery_file_and_chat(server: Server) -> None:
    info = json.loads((server.config_dir / "server.json").read_text())
    ui = server.url.removeprefix("ws://").removesuffix("/ws")
    assert info == {
        "url": server.url,
        "ui": f"http://{ui}/",
        "pid": server.process.pid,
        "port": info["port"],
    }
    assert server.url == f"ws://127.0.0.1:{info['port']}/ws"
    assert oct((server.config_dir / "server.json").stat().st_mode & 0o777) == oct(0o600)

    done = await run_cli(server, "chat", "demo", "hello")
    assert done.returncode == 0, done.stderr
    printed = done.stdout.decode()
    assert printed.endswith(".\n") and len(printed.split()) >= 5

    with trio.fail_after(WAIT):
        async with connect(server.url, server.token) as client:
            state = (await client.open_session("demo"))["session"]
    assert [m["role"] for m in state["messages"]] == ["user", "assistant"]
    assert state["messages"][1]["content"] == printed.rstrip("\n")

    tool = await run_cli(server, "chat", "demo", "create file notes.txt with hi there")
    assert tool.returncode == 0, tool.stderr
    assert "-> write_file(" in tool.stdout.decode()
    assert (server.data_dir / "projects" / "demo" / "notes.txt").read_text() == "hi there"

    failed = await run_cli(server, "chat", "demo", "[[fail:quota]] please")
    assert failed.returncode == 1
    assert "quota" in failed.stderr.decode()

    listed = await run_cli(server, "sessions")
    assert listed.returncode == 0
    assert "demo" in listed.stdout.decode() and "failed" in listed.stdout.decode()


async def test_notification_for_the_project_not_in_view(server: Server) -> None:
    with trio.fail_after(WAIT):
        async with connect(server.url, server.token) as client:
            blog = await open_subscribed(client, "blog")
            await open_subscribed(client, "shop")
            await client.focus_project("shop")
            await client.send_message(blog, "write me a post")
            seen: list[JSON] = []
            note = await until(client.events(), lambda e: e["event"] == "notification", seen)
            assert note["session"] is None and note["seq"] is None
            assert note["data"]["kind"] == "completed"
            assert note["data"]["session"] == blog and note["data"]["project"] == "blog"
            assert any(e["event"] == "streamingUpdate" and e["session"] == blog for e in seen)


async def test_stop_mid_stream(server: Server) -> None:
    with trio.fail_after(WAIT):
        async with connect(server.url, server.token) as client:
            session = await open_subscribed(client, "long")
            await client.send_message(session, "[[tokens:2000]] go on")
            events = client.events()
            await until(events, lambda e: e["event"] == "streamingUpdate")
            assert await client.stop_generation(session) == {"discarded": []}
            end = await until(events, turn_ended(session))
            assert end["data"]["reason"] == "stopped"
            state = (await client.open_session("long"))["session"]
            last = state["messages"][-1]
            assert last["role"] == "assistant" and last.get("stopped") is True
            assert state["status"] == "idle" and not state["loading"]


async def test_stop_from_the_command_line(server: Server) -> None:
    with trio.fail_after(WAIT):
        async with connect(server.url, server.token) as client:
            session = await open_subscribed(client, "cli")
            await client.send_message(session, "[[tokens:2000]] go on")
            events = client.events()
            await until(events, lambda e: e["event"] == "streamingUpdate")
            stopped = await run_cli(server, "stop", session)
            assert stopped.returncode == 0, stopped.stderr
            end = await until(events, turn_ended(session))
            assert end["data"]["reason"] == "stopped"


async def test_reconnect_with_since_gets_exactly_the_missed_events(server: Server) -> None:
    with trio.fail_after(WAIT):
        async with connect(server.url, server.token) as watcher:
            session = await open_subscribed(watcher, "resume")
            everything: list[JSON] = []
            async with connect(server.url, server.token) as first:
                await first.subscribe(session)
                await watcher.send_message(session, "[[tokens:100]] a story")
                before: list[JSON] = []
                await until(
                    first.events(),
                    lambda e: e["event"] == "streamingUpdate" and e["data"]["offset"] > 20,
                    before,
                )
            last = max(e["seq"] for e in before if e["session"] == session)
            await until(watcher.events(), turn_ended(session), everything)
            async with connect(server.url, server.token) as second:
                assert (await second.subscribe(session, since=last))["seq"] >= last
                after: list[JSON] = []
                await until(second.events(), turn_ended(session), after)
    mine = [e for e in before + after if e["session"] == session]
    theirs = [e for e in everything if e["session"] == session and e["seq"] >= mine[0]["seq"]]
    seqs = [e["seq"] for e in mine]
    assert seqs == sorted(set(seqs))  # no duplicate (merged deltas may skip seqs)
    # The same as a client that never left: the same events, the same streamed text.
    assert text_of(mine) == text_of(theirs) != ""
    assert [e for e in mine if e["event"] != "streamingUpdate"] == [
        e for e in theirs if e["event"] != "streamingUpdate"
    ]
    assert any(e["event"] == "streamingUpdate" for e in after)  # the missed text, replayed


async def test_handshake_checks(server: Server) -> None:
    with trio.fail_after(WAIT):
        with pytest.raises(HandshakeRefused) as refused:
            async with connect(server.url):
                pass
        assert refused.value.status == 401
        with pytest.raises(HandshakeRefused) as refused:
            async with connect(server.url, server.token, origin="https://evil.example"):
                pass
        assert refused.value.status == 403
        async with connect(server.url, server.token, origin="http://localhost:3000") as client:
            assert await client.ping() == {}


async def test_sigterm_exits_zero_and_the_sessions_survive(server: Server, tmp_path: Path) -> None:
    with trio.fail_after(WAIT):
        async with connect(server.url, server.token) as client:
            session = await open_subscribed(client, "keep")
            await client.send_message(session, "remember this")
            await until(client.events(), turn_ended(session))
            await client.send_message(session, "[[tokens:2000]] and keep going")
            await until(client.events(), lambda e: e["event"] == "streamingUpdate")
            assert await stop_server(server) == 0
    assert not (server.config_dir / "server.json").exists()
    log = server.stderr.read_text()
    assert "SIGTERM received" in log and f"session {session} keep: created" in log

    again = await start_server(tmp_path)
    try:
        with trio.fail_after(WAIT):
            async with connect(again.url, again.token) as client:
                assert again.token == server.token
                state = (await client.open_session("keep"))["session"]
                assert state["session"] == session
                contents = [m["content"] for m in state["messages"]]
                assert contents[:2][0] == "remember this"
                assert "[[tokens:2000]] and keep going" in contents
        assert await stop_server(again, signal.SIGINT) == 0
    finally:
        if again.process.returncode is None:
            again.process.kill()


async def start_cli(server: Server, *args: str) -> trio.Process:
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "greenroom", *args, "--config-dir", str(server.config_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )


async def read_until(stream: trio.abc.ReceiveStream, needle: bytes) -> bytes:
    seen = b""
    while needle not in seen:
        chunk = await stream.receive_some(4096)
        assert chunk, f"closed before {needle!r}: {seen!r}"
        seen += chunk
    return seen


async def test_watch_without_a_terminal(server: Server) -> None:
    process = await start_cli(server, "watch")
    try:
        assert process.stdout is not None
        with trio.fail_after(WAIT):
            await read_until(process.stdout, b"SESSION")
            done = await run_cli(server, "chat", "watched", "hello")
            assert done.returncode == 0
            seen = await read_until(process.stdout, b"watched: turn completed")
            assert b"watched: created" in seen and b"watched: turn started" in seen
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()


def test_python_dash_m_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "greenroom", "--help"],
        capture_output=True,
        timeout=30,
        cwd=REPO,
        env={**os.environ},
        check=False,
    )
    assert done.returncode == 0
    assert b"serve" in done.stdout and b"chat" in done.stdout
