"""Tool paths built to escape the project, sent as chat messages over a real websocket.

The simulated provider turns ``create file X with Y`` into a ``write_file`` call (and ``read
file``/``delete file`` likewise), so these messages make the real generation loop run the real
tools with hostile paths. Afterwards nothing was written, read or deleted outside the project:
every file that carries the marker content is inside the project's real folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio

from tests.reliability.support import open_server
from tests.transport.test_server_support import WireClient, open_client, turn_ended

OUTSIDE_LINKS = {"out": "../../outside", "dangling": "../../outside/nothing-yet"}

#: Paths that leave the project: each must be refused by the tool.
ESCAPING = [
    "../../x1",
    "../x2",
    "a/../../x3",
    "/tmp/greenroom-escape-x4",
    "out/x5",
    "out/../x6",
    "dangling",
    "./../x8",
    "x9\x00/../../../x9",
    "a" * 300,
    ".ai/history/x11",
]
#: Paths that look like escapes but are plain names inside the project: allowed, stay inside.
INSIDE = [
    "%2e%2e/y1",
    "\uff0e\uff0e/y2",
    "\u2024\u2024/y3",
    "..\\..\\y4",
    "\u202e../y5",
    "cafe\u0301/y6",
    "a/b/../y7",
]


async def run_turn(client: WireClient, session: str, content: str) -> list[dict[str, Any]]:
    """Send ``content`` and return the messages the turn added. A call that asks for approval
    (delete_file) is allowed: confinement alone must stop it."""
    added: list[dict[str, Any]] = []
    await client.call("sendMessage", session=session, content=content)
    while True:
        event = await client.event(lambda e: e["session"] == session)
        if event["event"] == "approvalRequested":
            call = event["data"]["call"]
            await client.call("approveToolCall", session=session, call=call, allow=True)
        if event["event"] == "messageAdded":
            added.append(event["data"]["message"])
        if turn_ended(session)(event):
            return added


async def test_tool_paths_that_escape_are_refused_and_nothing_leaves_the_project(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("the-secret-content")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    with trio.fail_after(60):
        async with open_server(tmp_path) as running, open_client(running.address) as client:
            await client.next_item()
            session = (await client.call("openSession", project="tools"))["session"]["session"]
            await client.call("subscribe", session=session)
            project = tmp_path / "projects" / "tools"
            for name, target in OUTSIDE_LINKS.items():
                (project / name).symlink_to(target)
            for i, path in enumerate(ESCAPING):
                added = await run_turn(client, session, f"create file {path} with MARK-{i}")
                results = [m for m in added if m["role"] == "tool"]
                assert len(results) == 1, (path, added)
                assert results[0]["content"].lower().startswith("error"), (path, results)
            for i, path in enumerate(INSIDE):
                added = await run_turn(client, session, f"create file {path} with MARK-in-{i}")
                results = [m for m in added if m["role"] == "tool"]
                assert not results[0]["content"].lower().startswith("error"), (path, results)
            for path in ("../../outside/secret.txt", "out/secret.txt", "/etc/hostname"):
                added = await run_turn(client, session, f"read file {path}")
                shown = " ".join(m.get("content") or "" for m in added)
                assert "the-secret-content" not in shown
                assert "error" in shown.lower()
            for path in ("../../victim.txt", "out/secret.txt", "out"):
                await run_turn(client, session, f"delete file {path}")
    assert victim.read_text() == "keep me"
    assert secret.read_text() == "the-secret-content"
    assert not Path("/tmp/greenroom-escape-x4").exists()
    real_project = Path(os.path.realpath(project))
    marked = [
        Path(folder) / name
        for folder, _, names in os.walk(tmp_path)
        for name in names
        if not (Path(folder) / name).is_symlink()
        and "MARK-" in (Path(folder) / name).read_text(errors="replace")
        and "sessions" not in folder  # the server's own records of the turns
        and "journal" not in folder
        and ".ai" not in folder
    ]
    assert len(marked) == len(INSIDE), marked
    for path in marked:
        assert Path(os.path.realpath(path)).is_relative_to(real_project), path
