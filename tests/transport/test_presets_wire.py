"""Presets over a real websocket: listPresets, openSession with a preset, their errors, and
what a summary shows of a preset; then the same through the Python client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from greenroom.config import SimulatedConfig
from greenroom.presets import PROJECT_FILE, Preset
from greenroom.transport.client import CommandError, connect
from greenroom.transport.server import Server, ServerAddress, ServerSettings
from tests.conftest import make_config, open_test_runtime
from tests.transport.test_server_support import TOKEN, open_client

LONG_PROMPT = "Review with care. " * 30
REVIEW = Preset(
    name="review",
    description="careful review",
    model="big-model",
    temperature=0.2,
    system_prompt=LONG_PROMPT,
    mcp_servers=("github",),
    tools={"delete_file": "deny"},
)


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[tuple[ServerAddress, Path]]:
    """A server whose configuration has presets; yields its address and projects folder."""
    config = make_config(
        tmp_path,
        presets=(REVIEW, Preset(name="quick", temperature=1.0)),
        simulated=SimulatedConfig(seed=1, tokens_per_second=200, reply_tokens=5),
    )
    async with open_test_runtime(config) as runtime, trio.open_nursery() as nursery:
        server = Server(
            runtime=runtime, settings=ServerSettings(host="127.0.0.1", port=0, token=TOKEN)
        )
        address = await nursery.start(server.run)
        yield address, config.projects_root
        nursery.cancel_scope.cancel()


async def test_list_presets_and_open_a_session_with_one(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with serving(tmp_path) as (address, projects), open_client(address) as client:
            await client.next_item()  # welcome
            listed = await client.call("listPresets")
            assert listed["error"] is None
            review, quick = listed["presets"]
            assert review == {
                "name": "review",
                "source": "global",
                "description": "careful review",
                "model": "big-model",
                "temperature": 0.2,
                "maxTokens": None,
                "systemPrompt": LONG_PROMPT[:200],  # cut short in a listing
                "mcpServers": ["github"],
                "tools": {"delete_file": "deny"},
            }
            assert (quick["name"], quick["temperature"], quick["mcpServers"]) == (
                "quick", 1.0, None,
            )  # fmt: skip

            # A project's own presets file: its presets join, replacing same-named ones.
            (projects / "blog" / ".ai").mkdir(parents=True)
            (projects / "blog" / PROJECT_FILE).write_text(
                '[presets.quick]\nmodel = "small"\n\n[presets.docs]\ndescription = "docs"\n'
            )
            own = await client.call("listPresets", project="blog")
            assert [(p["name"], p["source"]) for p in own["presets"]] == [
                ("review", "global"), ("quick", "project"), ("docs", "project"),
            ]  # fmt: skip
            assert own["presets"][1]["model"] == "small"

            opened = (await client.call("openSession", project="blog", preset="review"))[
                "session"
            ]
            assert (opened["preset"], opened["model"], opened["temperature"]) == (
                "review", "big-model", 0.2,
            )  # fmt: skip
            # The state has all of the preset, the system prompt whole.
            assert opened["systemPrompt"] == LONG_PROMPT
            assert (opened["mcpServers"], opened["tools"]) == (["github"], {"delete_file": "deny"})
            created = await client.event(lambda e: e["event"] == "sessionCreated")
            summary = created["data"]
            assert summary["preset"] == "review" and summary["model"] == "big-model"
            assert not {"systemPrompt", "mcpServers", "tools"} & set(summary)
            sessions = (await client.call("listSessions"))["sessions"]
            assert [s["preset"] for s in sessions] == ["review"]

            # Explicit fields win over the preset's; a project preset is used by name.
            again = (
                await client.call(
                    "openSession", project="blog", preset="quick", temperature=0.5
                )
            )["session"]
            assert (again["preset"], again["model"], again["temperature"]) == (
                "quick", "small", 0.5,
            )  # fmt: skip
            assert again["systemPrompt"] is None and again["tools"] == {}
            updated = await client.event(
                lambda e: e["event"] == "sessionUpdated" and e["data"]["preset"] == "quick"
            )
            assert updated["data"]["temperature"] == 0.5


async def test_preset_errors(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with serving(tmp_path) as (address, projects), open_client(address) as client:
            await client.next_item()  # welcome
            assert await client.error("openSession", project="blog", preset="nope") == "not_found"
            reply = await client.reply(
                await client.send("openSession", project="blog", preset="nope")
            )
            assert reply["error"]["message"] == "no preset 'nope' (presets: review, quick)"
            assert await client.error("openSession", project="blog", preset="-x") == (
                "invalid_argument"
            )
            assert await client.error("openSession", project="blog", preset="a" * 65) == (
                "invalid_argument"
            )
            assert await client.error("openSession", project="blog", preset=5) == "bad_request"
            assert await client.error("listPresets", project="../etc") == "invalid_argument"
            assert await client.error("listPresets", project=7) == "bad_request"
            # None of it made a session.
            assert (await client.call("listSessions"))["sessions"] == []

            (projects / "blog" / ".ai").mkdir(parents=True)
            (projects / "blog" / PROJECT_FILE).write_text("[presets.quick]\ncolour = 'red'\n")
            broken = await client.call("listPresets", project="blog")
            assert broken["error"].startswith(".ai/presets.toml: preset 'quick': unknown key")
            assert [p["name"] for p in broken["presets"]] == ["review", "quick"]
            reply = await client.reply(
                await client.send("openSession", project="blog", preset="review")
            )
            assert reply["error"]["code"] == "invalid_argument"
            assert "unknown key 'colour'" in reply["error"]["message"]
            # The server is fine: the project opens without a preset.
            plain = (await client.call("openSession", project="blog"))["session"]
            assert plain["preset"] is None


async def test_the_python_client(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with serving(tmp_path) as (address, _):
            url = f"ws://127.0.0.1:{address.port}/ws"
            async with connect(url, TOKEN) as client:
                listed = await client.list_presets()
                assert [p["name"] for p in listed["presets"]] == ["review", "quick"]
                assert (await client.list_presets("blog"))["error"] is None
                opened = await client.open_session("blog", preset="quick", max_tokens=9)
                state = opened["session"]
                assert (state["preset"], state["temperature"], state["maxTokens"]) == (
                    "quick", 1.0, 9,
                )  # fmt: skip
                try:
                    await client.open_session("blog", preset="missing")
                except CommandError as error:
                    assert error.code == "not_found"
                else:
                    raise AssertionError("an unknown preset was accepted")
