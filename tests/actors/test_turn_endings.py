"""How a turn ends and what it sends: a reply cut by the length limit (``truncated``), thinking
kept with its message, the session's own temperature and max_tokens, a resumed turn's log line.

Driven through the in-process runtime on MockClock, with a provider that plays a script.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from greenroom.actors.session import CUT_TOOL_CALL
from greenroom.agent.provider import (
    Chunk,
    CompletionRequest,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)
from greenroom.protocol import commands as cmd
from greenroom.protocol.chat import Message, Thinking, ToolCall
from greenroom.protocol.events import LoadingChanged, StreamingUpdate
from greenroom.runtime import Runtime
from tests.conftest import make_config, next_event, open_test_runtime, turn_ended


@attrs.define
class ScriptedProvider:
    """Plays one list of chunks per step, and records every request; a step of None streams
    one token and then waits forever (a turn to interrupt)."""

    steps: list[list[Chunk] | None]
    requests: list[CompletionRequest] = attrs.Factory(list)

    @property
    def name(self) -> str:
        return "scripted"

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        self.requests.append(request)
        step = self.steps.pop(0)
        if step is None:
            yield TextDelta(text="Half ")
            await trio.sleep_forever()
            return
        for chunk in step:
            await trio.sleep(0.01)
            yield chunk


async def run_turn(runtime: Runtime, session: str, content: str) -> LoadingChanged:
    async with runtime.connect() as client:
        await runtime.execute(cmd.SendMessage(session=session, content=content))
        event = await next_event(client, turn_ended(session))
    assert isinstance(event.data, LoadingChanged)
    return event.data


async def test_a_reply_cut_by_the_length_limit_ends_the_turn_truncated(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    provider = ScriptedProvider(
        [
            [TextDelta(text="The beginning of a"), Finish(reason="length")],
            [TextDelta(text="Fine."), Finish(reason="stop")],
        ]
    )
    async with open_test_runtime(make_config(tmp_path), provider=provider) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="p"))).summary.session
        async with runtime.connect() as client:
            await runtime.execute(cmd.SendMessage(session=session, content="write a lot"))
            assert (
                await runtime.execute(cmd.SendMessage(session=session, content="and then")) is True
            )  # queued
            first = await next_event(client, turn_ended(session))
            second = await next_event(client, turn_ended(session))
        state = await runtime.get_state(session)
    assert first.data == LoadingChanged(loading=False, reason="truncated")
    assert second.data == LoadingChanged(loading=False, reason="completed")  # the queue went on
    assert state.messages[1] == Message(role="assistant", content="The beginning of a")
    assert state.summary.status == "idle" and state.summary.error is None


async def test_the_simulated_provider_honours_a_session_max_tokens(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """What a UI can use to see a truncated turn offline: openSession with maxTokens."""
    async with open_test_runtime(make_config(tmp_path)) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="p", maxTokens=3))).summary.session
        assert (await run_turn(runtime, session, "tell me more")).reason == "truncated"
        state = await runtime.get_state(session)
    assert len((state.messages[-1].content or "").split()) == 3


async def test_a_tool_call_cut_by_the_length_limit_is_answered_not_run(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    cut = '{"path": "a.txt", "cont'
    provider = ScriptedProvider(
        [
            [
                TextDelta(text="Writing it."),
                ToolCallDelta(index=0, id="call_1", name="write_file", arguments=cut),
                Finish(reason="length"),
            ],
            [ReasoningDelta(text="thinking all the way"), Finish(reason="length")],
        ]
    )
    config = make_config(tmp_path)
    async with open_test_runtime(config, provider=provider) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="p"))).summary.session
        assert (await run_turn(runtime, session, "write a.txt")).reason == "truncated"
        # Nothing but reasoning before the limit: no empty message, still truncated.
        assert (await run_turn(runtime, session, "again")).reason == "truncated"
        state = await runtime.get_state(session)
    assert [m.role for m in state.messages] == ["user", "assistant", "tool", "user"]
    assert state.messages[1].tool_calls == (
        ToolCall(id="call_1", name="write_file", arguments=cut),
    )
    assert state.messages[2] == Message(role="tool", content=CUT_TOOL_CALL, tool_call_id="call_1")
    assert not (config.projects_root / "p" / "a.txt").exists()


async def test_thinking_is_kept_sent_back_and_survives_a_restart(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    thought = Thinking(text="I should list the files.", signature="c2ln")
    redacted = Thinking(data="EmwK")
    provider = ScriptedProvider(
        [
            [
                ReasoningDelta(text="I should list the files."),
                thought,
                redacted,
                ToolCallDelta(index=3, id="toolu_1", name="list_files", arguments="{}"),
                Finish(reason="tool_calls"),
            ],
            [TextDelta(text="There are none."), Finish(reason="stop")],
        ]
    )
    config = make_config(tmp_path)
    async with open_test_runtime(config, provider=provider) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="p"))).summary.session
        assert (await run_turn(runtime, session, "what is here?")).reason == "completed"
    second_request = provider.requests[1].messages
    assert second_request[1].thinking == (thought, redacted)
    assert second_request[1].tool_calls is not None

    async with open_test_runtime(config, provider=ScriptedProvider([])) as runtime:
        state = await runtime.get_state(session)
    assert state.messages[1].thinking == (thought, redacted)
    assert state.messages[3].thinking is None


async def test_a_session_may_set_its_own_temperature_and_max_tokens(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    reply: list[Chunk] = [TextDelta(text="ok"), Finish(reason="stop")]
    provider = ScriptedProvider([list(reply) for _ in range(4)])
    config = make_config(tmp_path, temperature=1.0, max_tokens=999)
    async with open_test_runtime(config, provider=provider) as runtime:
        own = (
            await runtime.execute(cmd.OpenSession(project="own", temperature=0.0, maxTokens=50))
        ).summary
        plain = (await runtime.execute(cmd.OpenSession(project="plain"))).summary
        assert (own.temperature, own.max_tokens) == (0.0, 50)
        assert (plain.temperature, plain.max_tokens) == (None, None)
        await run_turn(runtime, own.session, "hi")
        await run_turn(runtime, plain.session, "hi")
        # Opened again with one of them: that one changes, the other stays.
        again = (await runtime.execute(cmd.OpenSession(project="own", maxTokens=70))).summary
        assert (again.temperature, again.max_tokens) == (0.0, 70)
        await run_turn(runtime, own.session, "hi")
    async with open_test_runtime(config, provider=provider) as runtime:
        kept = (await runtime.get_state(own.session)).summary
        await run_turn(runtime, own.session, "after a restart")
    assert (kept.temperature, kept.max_tokens) == (0.0, 70)
    sent = [(r.temperature, r.max_tokens) for r in provider.requests]
    assert sent == [(0.0, 50), (1.0, 999), (0.0, 70), (0.0, 70)]


async def test_a_resumed_turn_is_logged_as_started(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="greenroom.session")
    config = make_config(tmp_path)
    stalling = ScriptedProvider([None])
    async with open_test_runtime(config, provider=stalling) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="p"))).summary.session
        async with runtime.connect() as client:
            client.subscribe(session)
            await runtime.execute(cmd.SendMessage(session=session, content="go"))
            await next_event(client, lambda e: isinstance(e.data, StreamingUpdate))
    assert "resuming" not in caplog.text

    provider = ScriptedProvider([[TextDelta(text="Done."), Finish(reason="stop")]])
    async with open_test_runtime(config, provider=provider) as runtime, runtime.connect() as c:
        c.subscribe(session)  # before looking, so that the end of the turn cannot be missed
        if (await runtime.get_state(session)).summary.status != "idle":
            await next_event(c, turn_ended(session))
    assert f"resuming the turn of session {session} (project p)" in caplog.text
    assert len(provider.requests) == 1
