"""``greenroom chat`` as a user drives it: Ctrl-C (a real SIGINT), the interactive prompt on a
pseudo-terminal, and a server killed and restarted under a running chat."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from greenroom.transport.client import connect
from tests.e2e.harness import (
    Server,
    kill_server,
    open_cli,
    open_tty_cli,
    run_cli,
    start_server,
    stop_server,
)

JSON = dict[str, Any]
SLOW = "[[tokens:3000]] [[rate:40]] a long story"


async def state(server: Server, project: str) -> JSON:
    async with connect(server.url, server.token) as client:
        result: JSON = (await client.open_session(project))["session"]
    return result


async def resumed(server: Server, project: str) -> None:
    """Wait until the project's session runs a turn."""
    async with connect(server.url, server.token) as client:
        now = (await client.open_session(project))["session"]
        if now["loading"]:
            return
        await client.subscribe(now["session"], since=now["seq"])
        with trio.fail_after(30):
            async for event in client.events():
                if event["event"] == "loadingChanged" and event["data"]["loading"]:
                    return


async def test_ctrl_c_stops_the_turn_and_says_so(server: Server) -> None:
    async with open_cli(server, "chat", "demo", SLOW) as cli:
        await cli.out.shows(" ")  # a few words of the reply
        cli.process.send_signal(signal.SIGINT)
        assert await cli.wait() == 130
    assert "stopping the turn" in cli.err.text
    assert "turn stopped" in cli.err.text
    assert "Traceback" not in cli.err.text
    after = await state(server, "demo")
    assert after["status"] == "idle" and not after["loading"]
    assert after["messages"][-1].get("stopped") is True


async def test_a_second_ctrl_c_leaves_the_turn_running(server: Server, tmp_path: Path) -> None:
    """The server is down, so the stop cannot reach it: the second Ctrl-C leaves at once and
    says how to stop the turn later, and the turn goes on once the server is back."""
    port = server.url.rsplit(":", 1)[1].split("/")[0]
    async with open_cli(server, "chat", "demo", SLOW) as cli:
        await cli.out.shows(" ")
        await kill_server(server)
        cli.process.send_signal(signal.SIGINT)
        await cli.err.shows("stopping the turn")
        cli.process.send_signal(signal.SIGINT)
        assert await cli.wait() == 130
    assert "`greenroom stop demo` stops it" in cli.err.text
    back = await start_server(tmp_path, "--port", port)
    try:
        await resumed(back, "demo")  # the interrupted turn goes on (policy auto)
        done = await run_cli(back, "stop", "demo")
        assert done.returncode == 0, done.stderr
        assert not (await state(back, "demo"))["loading"]
    finally:
        await kill_server(back)


@pytest.mark.parametrize(
    ("policy", "down"),
    [("auto", "kill"), ("manual", "kill"), ("auto", "term"), ("manual", "term")],
)
async def test_chat_follows_the_turn_across_a_server_restart(
    tmp_path: Path, policy: str, down: str
) -> None:
    """kill -9 (or SIGTERM) mid-reply, a new server on the same folder and port: the chat goes
    on to the end of the resumed turn (the server resumes it under auto; the chat asks under
    manual)."""
    server = await start_server(tmp_path, "--resume", policy)
    port = server.url.rsplit(":", 1)[1].split("/")[0]
    back: Server | None = None
    try:
        async with open_cli(server, "chat", "demo", "[[tokens:200]] [[rate:40]] go") as cli:
            await cli.out.shows(" ")
            if down == "kill":
                await kill_server(server)
            else:
                assert await stop_server(server) == 0
            back = await start_server(tmp_path, "--port", port, "--resume", policy)
            assert await cli.wait() == 0, cli.err.text
        final = await state(back, "demo")
        assert final["status"] == "idle"
        assert cli.out.text.endswith(final["messages"][-1]["content"] + "\n")
        err = cli.err.text
        assert "turn interrupted" not in err
        assert "(the server restarted; following the resumed turn)" in err
        assert "INFO" not in err, "only warnings are logged by default"
    finally:
        for running in (server, back):
            if running is not None:
                await kill_server(running)


async def test_the_prompt_keeps_the_session(server: Server) -> None:
    async with open_tty_cli(server, "chat", "demo") as cli:
        end = await cli.out.shows(">>> ")
        await cli.type("hello\n")
        end = await cli.out.shows(">>> ", after=end)
        await cli.type("[[tokens:5]] second\n")
        end = await cli.out.shows(">>> ", after=end)
        # Ctrl-C at the prompt only says how to leave.
        cli.process.send_signal(signal.SIGINT)
        end = await cli.out.shows("/bye leaves", after=end)
        # Ctrl-C during a reply stops it, and the prompt comes back.
        await cli.type(SLOW + "\n")
        reply = await cli.out.shows(" ", after=await cli.out.shows(SLOW + "\r\n", after=end))
        await cli.out.shows(" ", after=reply + 20)
        cli.process.send_signal(signal.SIGINT)
        end = await cli.out.shows("stopping the turn", after=end)
        end = await cli.out.shows(">>> ", after=end)
        await cli.type("/bye\n")
        assert await cli.wait() == 0
    assert "created project demo" in cli.out.text
    after = await state(server, "demo")
    users = [m["content"] for m in after["messages"] if m["role"] == "user"]
    assert users == ["hello", "[[tokens:5]] second", SLOW]
    assert after["messages"][-1].get("stopped") is True
    done = await run_cli(server, "sessions", "--json")
    assert len(json.loads(done.stdout)) == 1, "one session for the whole prompt"


async def test_ctrl_d_leaves_the_prompt(server: Server) -> None:
    async with open_tty_cli(server, "chat", "demo") as cli:
        await cli.out.shows(">>> ")
        await cli.type("\x04")  # Ctrl-D on an empty line: end of input
        assert await cli.wait() == 0


async def test_delete_project_asks_on_a_terminal(server: Server) -> None:
    assert (await run_cli(server, "chat", "blog", "hi")).returncode == 0
    folder = server.data_dir / "projects" / "blog"
    async with open_tty_cli(server, "delete", "blog", "--project") as cli:
        await cli.out.shows("[y/N] ")
        await cli.type("n\n")
        assert await cli.wait() == 2
    assert "not deleted" in cli.out.text and folder.is_dir()
    async with open_tty_cli(server, "delete", "blog", "--project") as cli:
        await cli.out.shows("[y/N] ")
        await cli.type("y\n")
        assert await cli.wait() == 0
    assert "deleted project blog" in cli.out.text and not folder.exists()


async def test_a_refused_message_keeps_the_prompt(tmp_path: Path) -> None:
    server = await start_server(tmp_path, "--max-message-chars", "20")
    try:
        async with open_tty_cli(server, "chat", "demo") as cli:
            end = await cli.out.shows(">>> ")
            await cli.type("x" * 30 + "\n")
            end = await cli.out.shows("greenroom: too_large:", after=end)
            end = await cli.out.shows(">>> ", after=end)
            await cli.type("[[tokens:2]] short\n")
            end = await cli.out.shows(">>> ", after=end)
            await cli.type("/bye\n")
            assert await cli.wait() == 0
        users = [m["content"] for m in (await state(server, "demo"))["messages"]]
        assert users[0] == "[[tokens:2]] short"
    finally:
        await kill_server(server)


async def test_log_lines_never_land_in_a_reply_line(server: Server) -> None:
    """With -v the client logs every frame it receives, in the middle of a reply: on the
    terminal, each log line starts a line of its own."""
    args = ("-v", "chat", "demo", "[[tokens:40]] [[rate:40]] go")
    async with open_tty_cli(server, *args) as cli:
        assert await cli.wait() == 0
    logged = [line for line in cli.out.text.split("\r\n") if " DEBUG " in line]
    assert len(logged) > 40, "a log line for every frame"
    for line in logged:
        prefix = line[: line.index(" DEBUG ")]
        assert not re.search("[a-z]", prefix), f"a log line in a reply line: {line!r}"
    reply = (await state(server, "demo"))["messages"][-1]["content"]
    shown = " ".join(line for line in cli.out.text.split("\r\n") if " DEBUG " not in line)
    assert " ".join(reply.split()) in " ".join(shown.split())
