"""A session opened with a preset: what its turns send to a real OpenAI-compatible server on
loopback (model, temperature, max_tokens, the system prompt first), how explicit settings and
a second preset change it, that it all survives a restart, and which MCP servers it gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from greenroom.agent.openai import OpenAIProvider
from greenroom.presets import PROJECT_FILE, Preset
from greenroom.protocol import commands as cmd
from greenroom.protocol.errors import InvalidArgument, NotFound
from greenroom.runtime import Runtime
from tests.agent.fake_openai import FakeOpenAI, open_fake_openai, text_reply
from tests.agent.test_mcp import CAP, FAST, stdio
from tests.conftest import make_config, next_event, open_test_runtime, turn_ended

REVIEW = Preset(
    name="review",
    description="careful review",
    model="big-model",
    temperature=0.2,
    max_tokens=400,
    system_prompt="You review code. Be terse.",
    mcp_servers=(),
    tools={"delete_file": "deny", "write_file": "ask"},
)
QUICK = Preset(name="quick", temperature=1.5)


async def run_turn(runtime: Runtime, session: str, content: str) -> None:
    async with runtime.connect() as client:
        client.subscribe(session)
        await runtime.execute(cmd.SendMessage(session=session, content=content))
        await next_event(client, turn_ended(session), limit=CAP)


def sent(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [request.json for request in fake.received]


async def test_a_preset_sets_the_model_the_settings_and_the_system_prompt(
    tmp_path: Path,
) -> None:
    config = make_config(
        tmp_path, presets=(REVIEW, QUICK), system_prompt="The server's prompt.", max_tokens=999
    )
    with trio.fail_after(CAP * 2):
        async with open_fake_openai() as fake:
            fake.script(*(text_reply("ok") for _ in range(5)))
            provider = OpenAIProvider(
                base_url=fake.url, api_key="k", model="server-model", max_retries=0
            )
            try:
                async with open_test_runtime(config, provider=provider) as runtime:
                    view = await runtime.execute(cmd.OpenSession(project="p", preset="review"))
                    session = view.summary.session
                    summary = view.summary
                    assert (summary.preset, summary.model, summary.temperature) == (
                        "review", "big-model", 0.2,
                    )  # fmt: skip
                    assert summary.system_prompt == "You review code. Be terse."
                    assert summary.tools == {"delete_file": "deny", "write_file": "ask"}
                    assert summary.mcp_servers == ()
                    await run_turn(runtime, session, "look at main.py")
                    # An explicit setting wins over the preset's, and the rest stays.
                    again = await runtime.execute(
                        cmd.OpenSession(project="p", preset="review", temperature=0.7)
                    )
                    assert (again.summary.temperature, again.summary.model) == (0.7, "big-model")
                    await run_turn(runtime, session, "again")
                    # Another preset replaces all of the first: what it leaves unset is the
                    # server's again.
                    quick = (
                        await runtime.execute(cmd.OpenSession(project="p", preset="quick"))
                    ).summary
                    assert (quick.preset, quick.model, quick.temperature) == ("quick", None, 1.5)
                    assert (quick.system_prompt, quick.tools, quick.mcp_servers) == (
                        None, {}, None,
                    )  # fmt: skip
                    await run_turn(runtime, session, "quick now")
                    # Opened with no preset: the session keeps the one it has.
                    kept = (await runtime.execute(cmd.OpenSession(project="p"))).summary
                    assert kept.preset == "quick"
                    # A plain session of another project is untouched by all this.
                    plain = (await runtime.execute(cmd.OpenSession(project="other"))).summary
                    assert (plain.preset, plain.model, plain.system_prompt) == (None, None, None)
                    await run_turn(runtime, plain.session, "hi")
            finally:
                await provider.aclose()
    first, second, third, fourth = sent(fake)
    assert (first["model"], first["temperature"], first["max_tokens"]) == ("big-model", 0.2, 400)
    assert first["messages"][0] == {"role": "system", "content": "You review code. Be terse."}
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert (second["model"], second["temperature"]) == ("big-model", 0.7)
    assert (third["model"], third["temperature"], third["max_tokens"]) == (
        "server-model", 1.5, 999,
    )  # fmt: skip
    assert third["messages"][0] == {"role": "system", "content": "The server's prompt."}
    assert fourth["messages"][0] == {"role": "system", "content": "The server's prompt."}
    assert fourth["model"] == "server-model" and "temperature" not in fourth


async def test_a_presets_settings_survive_a_restart(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path, presets=(REVIEW,))
    async with open_test_runtime(config) as runtime:
        session = (
            await runtime.execute(cmd.OpenSession(project="p", preset="review"))
        ).summary.session
        await run_turn(runtime, session, "hello")
    # The preset is gone from the configuration: the session keeps what it was given.
    async with open_test_runtime(make_config(tmp_path)) as runtime:
        summary = (await runtime.get_state(session)).summary
        listed = {s.session: s for s in await runtime.execute(cmd.ListSessions())}[session]
    for each in (summary, listed):
        assert (each.preset, each.model, each.temperature, each.max_tokens) == (
            "review", "big-model", 0.2, 400,
        )  # fmt: skip
        assert each.system_prompt == "You review code. Be terse."
        assert each.tools == {"delete_file": "deny", "write_file": "ask"}
        assert each.mcp_servers == ()


async def test_unknown_and_unusable_presets_are_refused(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path, presets=(REVIEW,))
    async with open_test_runtime(config) as runtime:
        with pytest.raises(NotFound, match="no preset 'nope' \\(presets: review\\)"):
            await runtime.execute(cmd.OpenSession(project="p", preset="nope"))
        assert await runtime.execute(cmd.ListSessions()) == ()  # nothing was made of it
        folder = config.projects_root / "p"
        (folder / ".ai").mkdir(parents=True)
        (folder / PROJECT_FILE).write_text("[presets.review]\ntemperature = 'warm'\n")
        with pytest.raises(InvalidArgument, match="cannot use preset 'review'"):
            await runtime.execute(cmd.OpenSession(project="p", preset="review"))
        listing = await runtime.execute(cmd.ListPresets(project="p"))
        assert listing.error is not None and "temperature" in listing.error
        # The server goes on: the project opens without a preset.
        assert (await runtime.execute(cmd.OpenSession(project="p"))).summary.preset is None
        (folder / PROJECT_FILE).write_text("[presets.review]\nmodel = 'own'\n")
        summary = (await runtime.execute(cmd.OpenSession(project="p", preset="review"))).summary
        assert (summary.model, summary.temperature) == ("own", None)


async def test_a_preset_chooses_the_mcp_servers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Of the configured servers, a preset's session gets only those it names."""
    presets = (
        Preset(name="none", mcp_servers=()),
        Preset(name="demo", mcp_servers=("demo", "absent")),
    )
    config = make_config(
        tmp_path, mcp_timings=FAST, mcp_servers=(stdio(), stdio("other")), presets=presets
    )
    with trio.fail_after(CAP * 2):
        async with open_fake_openai() as fake:
            fake.script(*(text_reply("ok") for _ in range(4)))
            provider = OpenAIProvider(base_url=fake.url, api_key="k", model="m", max_retries=0)
            try:
                async with open_test_runtime(config, provider=provider) as runtime:
                    session = (
                        await runtime.execute(cmd.OpenSession(project="p", preset="none"))
                    ).summary.session
                    await run_turn(runtime, session, "one")
                    await runtime.execute(cmd.OpenSession(project="p", preset="demo"))
                    await run_turn(runtime, session, "two")
                    await run_turn(runtime, session, "two again")
                    plain = (await runtime.execute(cmd.OpenSession(project="q"))).summary.session
                    await run_turn(runtime, plain, "three")
            finally:
                await provider.aclose()

    def servers(body: dict[str, Any]) -> set[str]:
        return {
            tool["function"]["name"].split("__")[1]
            for tool in body["tools"]
            if tool["function"]["name"].startswith("mcp__")
        }

    none, demo, demo_again, everything = sent(fake)
    assert servers(none) == set()
    assert servers(demo) == servers(demo_again) == {"demo"}
    assert servers(everything) == {"demo", "other"}
    # The preset's server that is not configured is said once, not every turn.
    unknown = [r for r in caplog.records if "not configured" in r.getMessage()]
    assert len(unknown) == 1 and "absent" in unknown[0].getMessage()
