"""The real ``greenroom serve``: one server per data folder, and notifications kept for later.

Every wait is bounded and every process is stopped in a finally.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from greenroom.transport.client import connect
from tests.e2e.harness import REPO, WAIT, Server, logged, stop_server

JSON = dict[str, Any]


def history_bytes(server: Server) -> dict[str, bytes]:
    folder = server.data_dir / "projects"
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.jsonl")}


async def wait_idle(client: Any) -> None:
    with trio.fail_after(30):
        while any(s["loading"] for s in (await client.list_sessions())["sessions"]):  # noqa: ASYNC110 - polling the server
            await trio.sleep(0.05)


async def test_a_second_server_on_the_same_folder_exits_and_touches_nothing(
    server: Server, tmp_path: Path
) -> None:
    async with connect(server.url, server.token, reconnect=False) as client:
        session = (await client.open_session("locked"))["session"]["session"]
        await client.send_message(session, "hello [[tokens:20]] [[rate:200]]")
        await wait_idle(client)
        # A turn that is running while the second server starts: it must not be stopped,
        # nor its partial text appended by anyone else.
        await client.send_message(session, "long [[tokens:100]] [[rate:100]]")
        before = history_bytes(server)
        with trio.fail_after(WAIT):
            second = await trio.run_process(
                [sys.executable, "-m", "greenroom", "serve", "--port", "0",
                 "--data-dir", str(server.data_dir),
                 "--config-dir", str(tmp_path / "other-config")],
                cwd=REPO, capture_stdout=True, capture_stderr=True, check=False,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        assert second.returncode != 0
        message = second.stderr.decode()
        assert f"pid {server.process.pid}" in message and server.url in message, message
        assert second.stdout == b""  # it never said it was serving
        await wait_idle(client)
        state = (await client.open_session("locked"))["session"]
        assert [m["role"] for m in state["messages"]] == ["user", "assistant"] * 2
        assert not any(m.get("stopped") for m in state["messages"])  # the turn ran through
    assert await stop_server(server) == 0
    # The first server alone wrote the history, appending only (it may have written some of
    # it while the second one ran): the two turns, and no stopped fragment from the second.
    after = history_bytes(server)
    assert len(after) == 1 and before.keys() <= after.keys()
    for name, text in after.items():
        assert text.startswith(before.get(name, b""))
        lines = [json.loads(line) for line in text.splitlines()]
        assert [m["role"] for m in lines] == ["user", "assistant"] * 2, lines
        assert not any(m.get("stopped") for m in lines)


async def test_a_notification_made_while_nobody_is_connected_is_kept(server: Server) -> None:
    # The serve command's own log watcher is running all along: it must not count as a
    # client that received the notification.
    async with connect(server.url, server.token, reconnect=False) as client:
        session = (await client.open_session("away"))["session"]["session"]
        await client.send_message(session, "bye [[tokens:30]] [[rate:30]]")
    # The client left with a close frame; the turn ends about a second later.
    await logged(server, f"session {session} away: turn completed")
    async with connect(server.url, server.token, reconnect=False) as client:
        notes = [n["data"] for n in client.welcome["notifications"]]
        assert [(n["session"], n["kind"]) for n in notes] == [(session, "completed")]
        assert (await client.stats())["clients"] == 1
    assert await stop_server(server) == 0


# A client process that starts a turn elsewhere and then is killed: the kernel closes its
# socket, so the server sees the stream end without a closing handshake.
DROPPED_CLIENT = """
import sys, trio
from greenroom.transport.client import connect

async def main(url, token, session):
    async with connect(url, token, reconnect=False) as client:
        await client.focus_project("elsewhere")
        await client.send_message(session, "while away [[tokens:40]] [[rate:20]]")
        print("sent", flush=True)
        await trio.sleep_forever()

trio.run(main, *sys.argv[1:])
"""


async def test_a_client_gone_without_a_close_frame_does_not_count(server: Server) -> None:
    async with connect(server.url, server.token, reconnect=False) as client:
        session = (await client.open_session("dropped"))["session"]["session"]
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", DROPPED_CLIENT, server.url, server.token, session],
        cwd=REPO, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        with trio.fail_after(WAIT):
            assert (await process.stdout.receive_some(100)).startswith(b"sent")
    finally:
        process.kill()
        with trio.CancelScope(shield=True), trio.fail_after(10):
            await process.wait()
            await process.stdout.aclose() if process.stdout else None
    # The turn (2 s) ends while only the dead client had connected.
    await logged(server, f"session {session} dropped: turn completed")
    async with connect(server.url, server.token, reconnect=False) as client:
        notes = [n["data"] for n in client.welcome["notifications"]]
        assert [(n["session"], n["kind"]) for n in notes] == [(session, "completed")]
    assert await stop_server(server) == 0
