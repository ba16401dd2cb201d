"""End to end with the ``anthropic`` provider: the real ``greenroom serve`` as a subprocess,
talking HTTP to a server in this test process that speaks Anthropic's streamed Messages API.

A tool turn with thinking (sent back with its signature), a reply cut by max_tokens
(``truncated`` in loadingChanged and in another client's notification), the CLI's ``chat``
exiting 1 on a truncated reply, and a server that went away (``network``, naming its URL).
Every wait is bounded (fail_after) and the server process is killed in a finally.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from greenroom.transport.client import connect
from tests.agent.fake_anthropic import reply, text_block, text_reply, thinking_block, tool_block
from tests.agent.fake_openai import open_fake_openai
from tests.e2e.harness import start_server, stop_server
from tests.e2e.test_serve import open_subscribed, run_cli, text_of, turn_ended, until

KEY = "sk-ant-e2e-test-key-0123456789wxyz"


async def test_a_tool_turn_then_truncated_replies_against_an_anthropic_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)  # inherited by the server process
    monkeypatch.delenv("GREENROOM_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    arguments = {"path": "notes.txt", "content": "hello from claude\n"}
    async with open_fake_openai() as fake:
        fake.script(
            reply(
                thinking_block(0, "The user wants a file.", "c2lnLTE="),
                text_block(1, "Writing the file."),
                tool_block(2, "toolu_e2e", "write_file", arguments),
                stop="tool_use",
            ),
            text_reply("I wrote notes.txt for you."),
            reply(text_block(0, "Once upon a time, in a land far"), stop="max_tokens"),
            reply(text_block(0, "A very long answer that"), stop="max_tokens"),
        )
        flags = ("--provider", "anthropic", "--base-url", fake.url, "--model", "claude-test",
                 "--max-tokens", "64")  # fmt: skip
        server = await start_server(tmp_path, *flags, provider="anthropic")
        try:
            with trio.fail_after(30):
                async with (
                    connect(server.url, server.token) as client,
                    connect(server.url, server.token) as elsewhere,
                ):
                    await elsewhere.focus_project("other")
                    session = await open_subscribed(client, "notes")
                    await client.focus_project("notes")
                    await client.send_message(session, "please write notes.txt")
                    seen: list[dict[str, object]] = []
                    end = await until(client.events(), turn_ended(session), seen)
                    assert end["data"]["reason"] == "completed", end
                    assert text_of(seen).endswith("I wrote notes.txt for you.")

                    await client.send_message(session, "tell me a story")
                    end = await until(client.events(), turn_ended(session))
                    assert end["data"] == {"loading": False, "reason": "truncated", "error": None}
                    notes = elsewhere.events()
                    first_note = await until(notes, lambda e: e["event"] == "notification")
                    assert first_note["data"]["kind"] == "completed"
                    note = await until(notes, lambda e: e["event"] == "notification")
                    assert note["data"]["kind"] == "truncated"
                    assert "length limit" in note["data"]["title"]

                    state = (await client.open_session("notes"))["session"]
                    assert state["status"] == "idle" and state["maxTokens"] is None
                    assistant = state["messages"][1]
                    assert assistant["thinking"] == [
                        {"type": "thinking", "thinking": "The user wants a file.",
                         "signature": "c2lnLTE="}
                    ]  # fmt: skip

            chat = await run_cli(server, "chat", "notes", "explain it all")
            assert chat.returncode == 1
            assert chat.stdout.decode().startswith("A very long answer that")
            assert "turn truncated" in chat.stderr.decode()
            assert "length limit" in chat.stderr.decode()
            assert await stop_server(server) == 0
        finally:
            if server.process.returncode is None:
                server.process.kill()
                with trio.move_on_after(5):
                    await server.process.wait()

    assert (server.data_dir / "projects" / "notes" / "notes.txt").read_text() == arguments[
        "content"
    ]
    first, second, third, _ = fake.received
    assert first.path == "/v1/messages"
    assert first.headers["x-api-key"] == KEY and "authorization" not in first.headers
    assert first.json["max_tokens"] == 64 and first.json["tool_choice"] == {"type": "auto"}
    assert first.json["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "please write notes.txt"}]}
    ]
    assistant, results = second.json["messages"][1:]
    assert [block["type"] for block in assistant["content"]] == ["thinking", "text", "tool_use"]
    assert assistant["content"][0]["signature"] == "c2lnLTE="
    assert assistant["content"][2]["input"] == arguments
    assert results["role"] == "user"
    (result,) = results["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "toolu_e2e"
    assert "notes.txt" in result["content"]
    assert [m["role"] for m in third.json["messages"]] == ["user", "assistant", "user",
                                                          "assistant", "user"]  # fmt: skip
    assert KEY not in server.stderr.read_text()


async def test_a_server_that_went_away_is_named_by_its_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    async with open_fake_openai() as fake:
        url = fake.url
    # The fake is stopped: nothing listens on its port any more.
    flags = ("--provider", "anthropic", "--base-url", url, "--model", "claude-test")
    server = await start_server(tmp_path, *flags, provider="anthropic")
    try:
        chat = await run_cli(server, "chat", "p", "hello")
        assert chat.returncode == 1
        error = chat.stderr.decode()
        assert f"network: cannot reach the model server at {url}" in error
        assert KEY not in error
        assert await stop_server(server) == 0
    finally:
        if server.process.returncode is None:
            server.process.kill()
            with trio.move_on_after(5):
                await server.process.wait()
