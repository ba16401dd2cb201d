"""The ``anthropic`` provider against a real HTTP server on 127.0.0.1 speaking Anthropic's
streamed Messages API (tests/agent/fake_anthropic.py on the server of fake_openai.py).

These run on the real clock (a socket's bytes in flight are invisible to an autojump clock),
each bounded by ``fail_after``; backoff sleeps are injected and recorded, never slept.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import httpx2
import pytest
import trio

from greenroom.agent.anthropic import (
    API_VERSION,
    DEFAULT_MAX_TOKENS,
    AnthropicProvider,
    request_body,
)
from greenroom.agent.provider import (
    Chunk,
    CompletionRequest,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from greenroom.agent.tools import TOOLS
from greenroom.protocol.chat import Message, Thinking, ToolCall
from greenroom.protocol.errors import ProviderError
from tests.agent.fake_anthropic import (
    MESSAGE_STOP,
    PING,
    block_start,
    block_stop,
    delta,
    error_event,
    error_reply,
    events,
    message_delta,
    message_start,
    reply,
    text_block,
    text_reply,
    thinking_block,
    tool_block,
)
from tests.agent.fake_openai import FakeOpenAI, Reply, open_fake_openai

KEY = "sk-ant-test-0123456789abcdefSECRET"
LIMIT = 2.0
HELLO = CompletionRequest(messages=(Message(role="user", content="hello"),))


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with open_fake_openai() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient() as http:
        yield http


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(
    fake: FakeOpenAI, client: httpx2.AsyncClient, sleeps: list[float]
) -> Callable[..., AnthropicProvider]:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await trio.lowlevel.checkpoint()

    def build(**changes: Any) -> AnthropicProvider:
        options: dict[str, Any] = {
            "base_url": fake.url,
            "api_key": KEY,
            "model": "claude-test",
            "client": client,
            "read_timeout": 1.0,
            "sleep": sleep,
        }
        options.update(changes)
        return AnthropicProvider(**options)

    return build


async def collect(provider: AnthropicProvider, request: CompletionRequest = HELLO) -> list[Chunk]:
    with trio.fail_after(LIMIT):
        async with aclosing(provider.stream(request)) as chunks:
            return [c async for c in chunks]


async def failure(
    provider: AnthropicProvider, request: CompletionRequest = HELLO
) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await collect(provider, request)
    assert KEY not in caught.value.message and KEY not in str(caught.value)
    return caught.value


def text(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def calls(chunks: list[Chunk]) -> dict[int, dict[str, str]]:
    built: dict[int, dict[str, str]] = {}
    for c in chunks:
        if isinstance(c, ToolCallDelta):
            call = built.setdefault(c.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += c.id or ""
            call["name"] += c.name or ""
            call["arguments"] += c.arguments
    return built


async def test_text_and_the_request_in_anthropic_shape(
    fake: FakeOpenAI, make: Callable[..., AnthropicProvider]
) -> None:
    fake.script(text_reply("Hello there, how can I help?"))
    signed = Thinking(text="I should write it.", signature="sig-1")
    request = CompletionRequest(
        messages=(
            Message(role="user", content="make two files"),
            Message(
                role="assistant",
                content="Writing them.",
                tool_calls=(
                    ToolCall(id="toolu_1", name="write_file", arguments='{"path":"a"}'),
                    ToolCall(id="toolu_2", name="list_files", arguments=""),
                ),
                thinking=(signed, Thinking(data="opaque"), Thinking(text="unsigned")),
            ),
            Message(role="tool", content="ok", tool_call_id="toolu_1"),
            Message(role="tool", content="a", tool_call_id="toolu_2"),
            Message(role="assistant", content="Half a repl", stopped=True),
            Message(role="user", content="go on"),
            Message(role="assistant", content="Cut by a st", stopped=True),
        ),
        tools=TOOLS,
        system_prompt="Be brief.",
    )
    chunks = await collect(make(), request)
    assert text(chunks) == "Hello there, how can I help?"
    assert chunks[-2:] == [Usage(prompt_tokens=12, completion_tokens=7), Finish(reason="stop")]

    (received,) = fake.received
    assert (received.method, received.path) == ("POST", "/v1/messages")
    assert received.headers["x-api-key"] == KEY and "authorization" not in received.headers
    assert received.headers["anthropic-version"] == API_VERSION
    body = received.json
    assert body["model"] == "claude-test" and body["stream"] is True
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS  # the API requires one
    assert body["system"] == "Be brief."
    assert "temperature" not in body
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "make two files"}]},
        {
            "role": "assistant",
            "content": [
                # thinking first, unmodified; an unsigned block is not sent
                {"type": "thinking", "thinking": "I should write it.", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Writing them."},
                {"type": "tool_use", "id": "toolu_1", "name": "write_file",
                 "input": {"path": "a"}},
                {"type": "tool_use", "id": "toolu_2", "name": "list_files", "input": {}},
            ],
        },
        {
            "role": "user",  # the results of one step in one message
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "a"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Half a repl"}]},
        {"role": "user", "content": [{"type": "text", "text": "go on"}]},
        # the stopped reply last is left out: it would be a prefill
    ]  # fmt: skip
    assert body["tool_choice"] == {"type": "auto"}
    assert body["tools"][0] == {
        "name": TOOLS[0].name,
        "description": TOOLS[0].description,
        "input_schema": TOOLS[0].parameters,
    }


async def test_settings_reach_the_request(
    fake: FakeOpenAI, make: Callable[..., AnthropicProvider]
) -> None:
    fake.script(text_reply("ok"))
    provider = make(
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
        extra_body={"thinking": {"type": "enabled", "budget_tokens": 1024}},
        query={"beta": "true"},
        api_key_header="Authorization",
    )
    request = CompletionRequest(messages=HELLO.messages, temperature=0.5, max_tokens=2048)
    await collect(provider, request)
    (received,) = fake.received
    assert received.path == "/v1/messages?beta=true"
    assert received.headers["authorization"] == f"Bearer {KEY}"
    assert received.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    body = received.json
    assert (body["temperature"], body["max_tokens"]) == (0.5, 2048)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert "tools" not in body and "tool_choice" not in body


async def test_a_tool_call_streamed_as_input_json_deltas(
    fake: FakeOpenAI, make: Callable[..., AnthropicProvider]
) -> None:
    arguments = {"path": "notes.txt", "content": "hi there\n"}
    fake.script(
        reply(
            text_block(0, "Writing it."),
            tool_block(1, "toolu_abc", "write_file", arguments, pieces=5),
            tool_block(2, "toolu_def", "list_files", {}),
            stop="tool_use",
        )
    )
    chunks = await collect(make())
    assert calls(chunks) == {
        1: {"id": "toolu_abc", "name": "write_file", "arguments": json.dumps(arguments)},
        2: {"id": "toolu_def", "name": "list_files", "arguments": "{}"},
    }
    assert text(chunks) == "Writing it."
    assert chunks[-1] == Finish(reason="tool_calls")


async def test_thinking_blocks_come_back_whole_with_their_signature(
    fake: FakeOpenAI, make: Callable[..., AnthropicProvider]
) -> None:
    redacted = [
        block_start(1, {"type": "redacted_thinking", "data": "EmwKAhgB"}),
        block_stop(1),
    ]
    fake.script(
        reply(
            thinking_block(0, "Let me think about this.", "c2lnbmF0dXJl"),
            redacted,
            tool_block(2, "toolu_1", "list_files", {}),
            stop="tool_use",
        )
    )
    chunks = await collect(make())
    assert [c.text for c in chunks if isinstance(c, ReasoningDelta)] == [
        "Let me think",
        " about this.",
    ]
    thinking = [c for c in chunks if isinstance(c, Thinking)]
    assert thinking == [
        Thinking(text="Let me think about this.", signature="c2lnbmF0dXJl"),
        Thinking(data="EmwKAhgB"),
    ]
    assert text(chunks) == "" and chunks[-1] == Finish(reason="tool_calls")


async def test_the_max_tokens_stop_is_length(
    fake: FakeOpenAI, make: Callable[..., AnthropicProvider]
) -> None:
    fake.script(
        reply(text_block(0, "The beginning of a long"), stop="max_tokens"),
        # The whole budget spent thinking: no text, but a stop reason all the same.
        reply(thinking_block(0, "hmm", "sig"), stop="max_tokens"),
    )
    assert (await collect(make()))[-1] == Finish(reason="length")
    assert (await collect(make()))[-1] == Finish(reason="length")


async def test_pings_crlf_and_a_stream_closed_without_message_stop(
    fake: FakeOpenAI, make: Callable[..., AnthropicProvider]
) -> None:
    objs = [message_start(), PING, *text_block(0, "one two"), PING, message_delta("end_turn")]
    fake.script(
        Reply(parts=events([*objs, MESSAGE_STOP], newline="\r\n")),
        Reply(parts=events(objs)),
    )
    assert text(await collect(make())) == "one two"
    assert text(await collect(make())) == "one two"
    assert fake.connections == 1  # message_stop and the end of the body: the connection reused


ERRORS = [
    (401, "authentication_error", "invalid x-api-key " + KEY, "auth"),
    (403, "permission_error", "not allowed", "auth"),
    (400, "invalid_request_error", "Your credit balance is too low to access the API", "quota"),
    (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum",
     "context_length"),
    (404, "not_found_error", "model: claude-test", "model_not_found"),
    (400, "invalid_request_error", "messages: text content blocks must be non-empty",
     "bad_request"),
    (413, "request_too_large", "Request exceeds the maximum allowed size", "bad_request"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "type_", "message", "kind"), ERRORS)
async def test_error_statuses(
    fake: FakeOpenAI,
    make: Callable[..., AnthropicProvider],
    sleeps: list[float],
    status: int,
    type_: str,
    message: str,
    kind: str,
) -> None:
    fake.script(error_reply(status, type_, message))
    error = await failure(make())
    assert error.kind == kind
    assert len(fake.received) == 1 and sleeps == []  # none of these is retried
    assert "the server said" in error.message
    if kind == "auth":
        assert "ANTHROPIC_API_KEY" in error.message
    if KEY in message:
        assert "***" in error.message  # the server echoed the key: it is hidden


async def test_overloaded_529_and_rate_limits_are_retried(
    fake: FakeOpenAI, make: Callable[..., AnthropicProvider], sleeps: list[float]
) -> None:
    fake.script(
        error_reply(529, "overloaded_error", "Overloaded"),
        error_reply(429, "rate_limit_error", "slow down", headers=(("retry-after", "4"),)),
        error_reply(500, "api_error", "Internal server error"),
        text_reply("finally"),
    )
    assert text(await collect(make())) == "finally"
    assert len(fake.received) == 4 and len(sleeps) == 3 and sleeps[1] == 4.0


async def test_overloaded_given_up_says_so(
    fake: FakeOpenAI, make: Callable[..., AnthropicProvider]
) -> None:
    fake.script(error_reply(529, "overloaded_error", "Overloaded"))
    error = await failure(make(max_retries=0))
    assert error.kind == "server" and "overloaded (HTTP 529)" in error.message


async def test_an_error_event_before_the_first_token_is_retried(
    fake: FakeOpenAI, make: Callable[..., AnthropicProvider], sleeps: list[float]
) -> None:
    fake.script(
        Reply(parts=events([message_start(), PING, error_event("overloaded_error", "Overloaded")])),
        text_reply("second time"),
    )
    assert text(await collect(make())) == "second time"
    assert len(sleeps) == 1


async def test_an_error_event_after_the_first_token_ends_the_step(
    fake: FakeOpenAI, make: Callable[..., AnthropicProvider], sleeps: list[float]
) -> None:
    objs = [
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="partial"),
        error_event("overloaded_error", "Overloaded"),
    ]
    fake.script(Reply(parts=events(objs)), text_reply("never"))
    seen: list[Chunk] = []
    with pytest.raises(ProviderError) as caught, trio.fail_after(LIMIT):
        async with aclosing(make().stream(HELLO)) as chunks:
            async for c in chunks:
                seen.append(c)
    assert caught.value.kind == "server" and "overloaded" in caught.value.message
    assert text(seen) == "partial" and sleeps == [] and len(fake.received) == 1


async def test_cut_mid_reply_is_disconnected_and_not_retried(
    fake: FakeOpenAI, make: Callable[..., AnthropicProvider], sleeps: list[float]
) -> None:
    objs = [message_start(), *text_block(0, "Hello, world")[:-1]]
    fake.script(Reply(parts=events(objs), cut=True), text_reply("never"))
    seen: list[Chunk] = []
    with pytest.raises(ProviderError) as caught, trio.fail_after(LIMIT):
        async with aclosing(make().stream(HELLO)) as chunks:
            async for c in chunks:
                seen.append(c)
    assert caught.value.kind == "disconnected" and fake.url in caught.value.message
    assert text(seen) == "Hello, world" and sleeps == []


@pytest.mark.parametrize(
    ("objs", "expected"),
    [
        ([message_start(), *text_block(0, "a")], "stop reason"),
        ([message_start(), message_delta("end_turn")], "no text"),
        ([message_start(), "{not json"], "not JSON"),
        ([message_start(), block_start(0, {"type": "tool_use", "id": "t", "input": {}})],
         "no name"),
        ([message_start(), delta(3, type="input_json_delta", partial_json="{")], "no tool call"),
        ([message_start(), {"type": "content_block_stop"}], "no block index"),
    ],
)  # fmt: skip
async def test_bad_responses(
    fake: FakeOpenAI,
    make: Callable[..., AnthropicProvider],
    objs: list[dict[str, Any] | str],
    expected: str,
) -> None:
    fake.script(Reply(parts=events(objs)))
    error = await failure(make())
    assert error.kind == "bad_response" and expected in error.message


async def test_cancelling_the_turn_closes_the_connection(
    fake: FakeOpenAI, make: Callable[..., AnthropicProvider]
) -> None:
    objs = [message_start(), *text_block(0, "first ", pieces=1)[:-1]]
    fake.script(Reply(parts=events(objs), stall=True))
    with trio.fail_after(LIMIT):
        with trio.CancelScope() as turn:
            async with aclosing(make().stream(HELLO)) as chunks:
                async for _ in chunks:
                    turn.cancel()
        assert turn.cancelled_caught
        await fake.disconnected.wait()


async def test_the_key_is_in_no_repr(fake: FakeOpenAI) -> None:
    provider = AnthropicProvider(base_url=fake.url, api_key=KEY, model="m", max_retries=0)
    try:
        assert KEY not in repr(provider) and "key=set" in repr(provider)
        assert provider.name == "anthropic"
    finally:
        await provider.aclose()


def test_tool_call_arguments_that_are_no_object_go_as_an_empty_input() -> None:
    """A call in the history whose arguments are not a JSON object (the model's mistake,
    answered with an error then), nested past what Python parses included: ``{}``."""
    for arguments in ("not json", "[1, 2]", "[" * 5000):
        call = ToolCall(id="c1", name="read_file", arguments=arguments)
        request = CompletionRequest(
            messages=(
                Message(role="user", content="hi"),
                Message(role="assistant", content=None, tool_calls=(call,)),
                Message(role="tool", content="an error", tool_call_id="c1"),
            )
        )
        body = request_body(request, "claude")
        uses = [b for m in body["messages"] for b in m["content"] if b.get("type") == "tool_use"]
        assert [u["input"] for u in uses] == [{}]
