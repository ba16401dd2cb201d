"""End to end with the ``openai`` provider: the real ``greenroom serve`` as a subprocess, talking
HTTP to the fake chat-completions server running in this test process.

Every wait is bounded (fail_after) and the server process is killed in a finally.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from greenroom.transport.client import connect
from tests.agent.fake_openai import (
    Reply,
    chunk,
    error_reply,
    open_fake_openai,
    sse,
    text_reply,
    tool_delta,
    usage,
)
from tests.e2e.harness import start_server, stop_server
from tests.e2e.test_serve import open_subscribed, text_of, turn_ended, until

KEY = "sk-e2e-test-key-0123456789wxyz"


def write_file_call(path: str, content: str) -> Reply:
    arguments = json.dumps({"path": path, "content": content})
    half = len(arguments) // 2
    return Reply(
        parts=sse(
            [
                chunk(content="Writing the file."),
                chunk(tool_calls=[tool_delta(0, id="call_e2e", name="write_file", arguments="")]),
                chunk(tool_calls=[tool_delta(0, arguments=arguments[:half])]),
                chunk(tool_calls=[tool_delta(0, arguments=arguments[half:])]),
                chunk(finish="tool_calls"),
                chunk(no_choices=True, usage=usage(cost=0.0001)),
            ]
        )
    )


async def test_a_tool_turn_against_an_openai_compatible_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENROOM_API_KEY", KEY)  # inherited by the server process
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with open_fake_openai() as fake:
        fake.script(
            write_file_call("notes.txt", "hello from the model\n"),
            text_reply("I wrote notes.txt for you.", pieces=4),
            error_reply(401, f"Incorrect API key provided: {KEY}", "invalid_request_error", None),
        )
        flags = ("--provider", "openai", "--base-url", fake.url, "--model", "test-model")
        server = await start_server(tmp_path, *flags, provider="openai")
        try:
            with trio.fail_after(20):
                async with connect(server.url, server.token) as client:
                    session = await open_subscribed(client, "notes")
                    await client.send_message(session, "please write notes.txt")
                    seen: list[dict[str, object]] = []
                    end = await until(client.events(), turn_ended(session), seen)
                    assert end["data"]["reason"] == "completed", end
                    assert text_of(seen).endswith("I wrote notes.txt for you.")

                    await client.send_message(session, "again")
                    end = await until(client.events(), turn_ended(session))
                    assert end["data"]["reason"] == "failed"
                    error = end["data"]["error"]
                    assert error.startswith("auth: the API key was refused") and KEY not in error
            assert await stop_server(server) == 0
        finally:
            if server.process.returncode is None:
                server.process.kill()
                with trio.move_on_after(5):
                    await server.process.wait()

    project = server.data_dir / "projects" / "notes"
    assert (project / "notes.txt").read_text() == "hello from the model\n"

    first, second, third = fake.received
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.json["model"] == "test-model" and first.json["stream"] is True
    assert first.json["messages"] == [{"role": "user", "content": "please write notes.txt"}]
    assert "write_file" in [t["function"]["name"] for t in first.json["tools"]]
    roles = [m["role"] for m in second.json["messages"]]
    assert roles == ["user", "assistant", "tool"]
    assert second.json["messages"][1]["tool_calls"][0]["id"] == "call_e2e"
    assert second.json["messages"][2]["tool_call_id"] == "call_e2e"
    assert all("stopped" not in m for m in third.json["messages"])
    log = server.stderr.read_text()
    assert KEY not in log
