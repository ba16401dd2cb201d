"""The ``openai`` provider against a real HTTP server on 127.0.0.1 (tests/agent/fake_openai.py).

These run on the real clock (a socket's bytes in flight are invisible to an autojump clock),
each bounded by ``fail_after``; backoff sleeps are injected and recorded, never slept.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import httpx2
import pytest
import trio

from greenroom.agent.openai import OpenAIProvider, classify_error
from greenroom.agent.provider import (
    Chunk,
    CompletionRequest,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolSchema,
    Usage,
)
from greenroom.agent.streaming import public_url
from greenroom.agent.tools import TOOLS
from greenroom.protocol.chat import Message, ToolCall
from greenroom.protocol.errors import ProviderError
from tests.agent.fake_openai import (
    FakeOpenAI,
    Reply,
    chunk,
    error_reply,
    open_fake_openai,
    sse,
    text_reply,
    tool_delta,
    usage,
)

KEY = "sk-test-0123456789abcdefSECRET"
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
) -> Callable[..., OpenAIProvider]:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await trio.lowlevel.checkpoint()

    def build(**changes: Any) -> OpenAIProvider:
        options: dict[str, Any] = {
            "base_url": fake.url,
            "api_key": KEY,
            "model": "test-model",
            "client": client,
            "read_timeout": 1.0,
            "sleep": sleep,
        }
        options.update(changes)
        return OpenAIProvider(**options)

    return build


async def collect(provider: OpenAIProvider, request: CompletionRequest = HELLO) -> list[Chunk]:
    with trio.fail_after(LIMIT):
        async with aclosing(provider.stream(request)) as chunks:
            return [c async for c in chunks]


async def failure(provider: OpenAIProvider, request: CompletionRequest = HELLO) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await collect(provider, request)
    assert KEY not in caught.value.message and KEY not in str(caught.value)
    return caught.value


def text(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def calls(chunks: list[Chunk]) -> dict[int, dict[str, str]]:
    """The tool calls assembled by index, the way the session assembles them."""
    built: dict[int, dict[str, str]] = {}
    for c in chunks:
        if isinstance(c, ToolCallDelta):
            call = built.setdefault(c.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += c.id or ""
            call["name"] += c.name or ""
            call["arguments"] += c.arguments
    return built


async def test_text_in_many_chunks_and_the_request(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    fake.script(text_reply("Hello there, how can I help you today?", pieces=9))
    request = CompletionRequest(
        messages=(
            Message(role="user", content="make a file"),
            Message(
                role="assistant",
                content=None,
                tool_calls=(ToolCall(id="call_1", name="write_file", arguments='{"path":"a"}'),),
            ),
            Message(role="tool", content="ok", tool_call_id="call_1"),
            Message(role="assistant", content="Half a repl", stopped=True),
            Message(role="assistant", content=None, stopped=True),
            Message(role="user", content="go on"),
        ),
        tools=TOOLS,
        system_prompt="Be brief.",
    )
    chunks = await collect(make(), request)
    assert text(chunks) == "Hello there, how can I help you today?"
    assert len([c for c in chunks if isinstance(c, TextDelta)]) == 9
    assert chunks[-2:] == [Usage(prompt_tokens=10, completion_tokens=5), Finish(reason="stop")]

    (received,) = fake.received
    assert (received.method, received.path) == ("POST", "/v1/chat/completions")
    assert received.headers["authorization"] == f"Bearer {KEY}"
    body = received.json
    assert body["model"] == "test-model"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "make a file"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "write_file", "arguments": '{"path":"a"}'},
                }
            ],
        },
        {"role": "tool", "content": "ok", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "Half a repl"},  # no "stopped"; the empty one dropped
        {"role": "user", "content": "go on"},
    ]
    assert body["tool_choice"] == "auto"  # llama-cpp-python offers no tools without it
    assert "temperature" not in body and "max_tokens" not in body
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": TOOLS[0].name,
            "description": TOOLS[0].description,
            "parameters": TOOLS[0].parameters,
        },
    }
    assert len(body["tools"]) == len(TOOLS)


async def test_the_request_model_wins_and_no_key_means_no_header(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    fake.script(text_reply("ok"))
    tool = ToolSchema(name="t", description="d", parameters={"type": "object"})
    request = CompletionRequest(messages=HELLO.messages, tools=(tool,), model="other-model")
    await collect(make(api_key=None), request)
    (received,) = fake.received
    assert received.json["model"] == "other-model"
    assert "authorization" not in received.headers
    assert received.json["messages"] == [{"role": "user", "content": "hello"}]


async def test_no_tools_means_no_tool_choice(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    fake.script(text_reply("ok"))
    await collect(make())
    assert "tools" not in fake.received[0].json and "tool_choice" not in fake.received[0].json


async def test_a_reply_cut_by_the_length_limit(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    fake.script(
        Reply(parts=sse([chunk(content="The begin"), chunk(finish="length")])),
        # A reasoning model may spend the whole limit thinking: no text, still a finish.
        Reply(parts=sse([chunk(reasoning="hmm"), chunk(finish="length")])),
    )
    assert (await collect(make()))[-1] == Finish(reason="length")
    assert (await collect(make()))[-1] == Finish(reason="length")


async def test_settings_reach_the_request_azure_style(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    """Azure OpenAI: the key in ``api-key``, ``api-version`` in the query, a deployment URL."""
    fake.script(text_reply("ok"))
    provider = make(
        base_url=fake.url + "/deployments/gpt?keep=1",
        api_key_header="api-key",
        query={"api-version": "2024-10-21"},
        extra_headers={"X-Title": "greenroom", "Accept": "text/event-stream"},
        extra_body={"seed": 7, "stream_options": {"include_usage": False}},
    )
    request = CompletionRequest(messages=HELLO.messages, temperature=0.25, max_tokens=300)
    await collect(provider, request)
    (received,) = fake.received
    path, _, query = received.path.partition("?")
    assert path == "/v1/deployments/gpt/chat/completions"
    assert sorted(query.split("&")) == ["api-version=2024-10-21", "keep=1"]
    assert received.headers["api-key"] == KEY and "authorization" not in received.headers
    assert received.headers["x-title"] == "greenroom"
    body = received.json
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.25, 300, 7)
    assert body["stream_options"] == {"include_usage": False}  # extra_body wins


async def test_a_key_header_named_authorization_is_a_bearer_token(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    fake.script(text_reply("ok"))
    await collect(make(api_key_header="authorization"))
    assert fake.received[0].headers["authorization"] == f"Bearer {KEY}"


async def test_the_url_in_errors_has_no_credentials(
    make: Callable[..., OpenAIProvider], sleeps: list[float]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://user:{KEY}@127.0.0.1:{port}/v1?key={KEY}"
    error = await failure(make(base_url=base, max_retries=0))
    assert f"at http://127.0.0.1:{port}/v1 " in error.message
    assert KEY not in repr(make(base_url=base))
    assert public_url(f"https://u:{KEY}@[::1]:8443/v1/?k={KEY}") == "https://[::1]:8443/v1"


async def test_tool_call_split_mid_json_with_id_and_name_first(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    arguments = json.dumps({"path": "notes.txt", "content": "hi there\n"})
    pieces = [arguments[i : i + 4] for i in range(0, len(arguments), 4)]
    objs = [chunk(content="Writing it.")]
    objs.append(chunk(tool_calls=[tool_delta(0, id="call_abc", name="write_file", arguments="")]))
    objs += [chunk(tool_calls=[tool_delta(0, arguments=p)]) for p in pieces]
    objs += [chunk(finish="tool_calls"), chunk(no_choices=True, usage=usage(cost=0.0012))]
    fake.script(Reply(parts=sse(objs)))
    chunks = await collect(make())
    assert calls(chunks) == {0: {"id": "call_abc", "name": "write_file", "arguments": arguments}}
    assert chunks[-2:] == [
        Usage(prompt_tokens=10, completion_tokens=5, cost=0.0012),
        Finish(reason="tool_calls"),
    ]


async def test_tool_call_whose_id_and_name_arrive_late_and_in_pieces(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    objs = [
        chunk(tool_calls=[tool_delta(0, arguments='{"pa')]),
        chunk(tool_calls=[tool_delta(0, name="read_", arguments='th": ')]),
        chunk(tool_calls=[tool_delta(0, id="call_late", name="file", arguments='"a.txt"}')]),
        chunk(finish="tool_calls"),
    ]
    fake.script(Reply(parts=sse(objs)))
    chunks = await collect(make())
    assert calls(chunks) == {
        0: {"id": "call_late", "name": "read_file", "arguments": '{"path": "a.txt"}'}
    }
    assert chunks[-1] == Finish(reason="tool_calls")  # no usage: none was sent


async def test_parallel_tool_calls_interleaved(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    objs = [
        chunk(tool_calls=[tool_delta(0, id="call_0", name="read_file", arguments="")]),
        chunk(tool_calls=[tool_delta(1, id="call_1", name="list_files", arguments="")]),
        chunk(tool_calls=[tool_delta(0, arguments='{"path":')]),
        chunk(tool_calls=[tool_delta(1, arguments="{}")]),
        chunk(tool_calls=[tool_delta(0, arguments='"x"}')]),
        chunk(finish="tool_calls", usage=usage()),
    ]
    fake.script(Reply(parts=sse(objs)))
    chunks = await collect(make())
    assert calls(chunks) == {
        0: {"id": "call_0", "name": "read_file", "arguments": '{"path":"x"}'},
        1: {"id": "call_1", "name": "list_files", "arguments": "{}"},
    }


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
async def test_reasoning_deltas(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider], key: str
) -> None:
    objs = [
        chunk(reasoning="Let me ", reasoning_key=key),
        chunk(reasoning="think.", reasoning_key=key),
        chunk(content="Answer."),
        chunk(finish="stop"),
    ]
    fake.script(Reply(parts=sse(objs)))
    chunks = await collect(make())
    assert [c.text for c in chunks if isinstance(c, ReasoningDelta)] == ["Let me ", "think."]
    assert text(chunks) == "Answer."


async def test_comments_crlf_and_no_done(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    objs = [chunk(content="one "), chunk(content="two"), chunk(finish="stop")]
    fake.script(
        Reply(parts=sse(objs, newline="\r\n", comments=True)),
        Reply(parts=sse(objs, done=False)),  # ended by closing the body, no [DONE]
    )
    assert text(await collect(make())) == "one two"
    assert text(await collect(make())) == "one two"
    assert fake.connections == 1  # the body was read to its end: the connection was reused


ERRORS = [
    (401, "Incorrect API key provided: " + KEY, "invalid_request_error", "invalid_api_key", "auth"),
    (403, "forbidden", "permission_error", None, "auth"),
    (402, "Insufficient credits", "payment_required", None, "quota"),
    (429, "You exceeded your current quota", "insufficient_quota", "insufficient_quota", "quota"),
    (404, "The model does not exist", "invalid_request_error", "model_not_found",
     "model_not_found"),
    (400, "maximum context length is 8192", "invalid_request_error", "context_length_exceeded",
     "context_length"),
    (400, "Invalid schema for function", "invalid_request_error", None, "bad_request"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "message", "type_", "code", "kind"), ERRORS)
async def test_error_statuses(
    fake: FakeOpenAI,
    make: Callable[..., OpenAIProvider],
    sleeps: list[float],
    status: int,
    message: str,
    type_: str,
    code: str | None,
    kind: str,
) -> None:
    fake.script(error_reply(status, message, type_, code))
    error = await failure(make())
    assert error.kind == kind
    assert len(fake.received) == 1 and sleeps == []  # none of these is retried
    assert "the server said" in error.message
    if kind == "model_not_found":
        assert "'test-model'" in error.message
    if kind == "auth":
        assert "GREENROOM_API_KEY" in error.message


async def test_rate_limit_retried_honouring_retry_after_then_success(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider], sleeps: list[float]
) -> None:
    fake.script(
        error_reply(429, "Rate limit reached", "requests", "rate_limit_exceeded",
                    headers=(("retry-after", "7"),)),
        error_reply(429, "Rate limit reached", "requests", None, headers=(("retry-after", "999"),)),
        text_reply("finally"),
    )  # fmt: skip
    assert text(await collect(make())) == "finally"
    assert sleeps == [7.0, 30.0]  # the second capped
    assert len(fake.received) == 3


async def test_server_errors_retried_with_growing_backoff_until_given_up(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider], sleeps: list[float]
) -> None:
    fake.script(*(error_reply(503, "overloaded", "server_error") for _ in range(3)))
    error = await failure(make(max_retries=2))
    assert error.kind == "server" and "HTTP 503" in error.message and "overloaded" in error.message
    assert len(fake.received) == 3 and len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # jittered, doubling


async def test_rate_limit_given_up_carries_retry_after(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider], sleeps: list[float]
) -> None:
    fake.script(error_reply(429, "slow down", "requests", None, headers=(("retry-after", "3"),)))
    error = await failure(make(max_retries=0))
    assert error.kind == "rate_limit" and error.retry_after == 3.0 and sleeps == []


async def test_connection_refused_is_network_after_retries(
    make: Callable[..., OpenAIProvider], sleeps: list[float]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await failure(make(base_url=f"http://127.0.0.1:{port}/v1", max_retries=2))
    assert error.kind == "network" and "cannot reach" in error.message
    assert f"http://127.0.0.1:{port}/v1" in error.message
    assert len(sleeps) == 2


async def test_cut_mid_stream_is_disconnected_and_not_retried(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider], sleeps: list[float]
) -> None:
    fake.script(Reply(parts=sse([chunk(content="Hello, "), chunk(content="wor")], done=False),
                      cut=True), text_reply("never"))  # fmt: skip
    seen: list[Chunk] = []
    with pytest.raises(ProviderError) as caught, trio.fail_after(LIMIT):
        async with aclosing(make().stream(HELLO)) as chunks:
            async for c in chunks:
                seen.append(c)
    assert caught.value.kind == "disconnected"
    assert "broke before the reply was complete" in caught.value.message
    assert fake.url in caught.value.message
    assert text(seen) == "Hello, wor"
    assert len(fake.received) == 1 and sleeps == []


async def test_cut_before_any_chunk_is_retried(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider], sleeps: list[float]
) -> None:
    fake.script(Reply(parts=(b": hello\n\n",), cut=True), text_reply("second time"))
    assert text(await collect(make())) == "second time"
    assert len(sleeps) == 1


async def test_a_stalled_server_times_out(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider], sleeps: list[float]
) -> None:
    fake.script(Reply(stall=True))
    error = await failure(make(read_timeout=0.2))
    assert error.kind == "timeout" and sleeps == []


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(parts=sse([chunk(content="a"), "{not json", chunk(finish="stop")])), "not JSON"),
        (Reply(parts=sse([chunk(content="a"), chunk(content="b")])), "finish reason"),
        (Reply(parts=sse([chunk(content="a")], done=False)), "finish reason"),
        (Reply(parts=sse([chunk(reasoning="hmm"), chunk(finish="stop")])), "no text"),
        (Reply(parts=sse([chunk(content=""), chunk(finish="stop")])), "no text"),
        (Reply(parts=sse([chunk(tool_calls=[tool_delta(0, id="c", arguments="{}")]),
                          chunk(finish="tool_calls")])), "no function name"),
        (Reply(parts=sse(["[1, 2]"])), "not a JSON object"),
        # Nested past what Python's parser takes: a RecursionError, not a crash.
        (Reply(parts=sse([chunk(content="a"), "[" * 5000, chunk(finish="stop")])), "not JSON"),
    ],
)  # fmt: skip
async def test_bad_responses(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider], reply: Reply, expected: str
) -> None:
    fake.script(reply)
    error = await failure(make())
    assert error.kind == "bad_response" and expected in error.message


async def test_an_error_body_nested_past_the_parser_is_a_server_error(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    fake.script(*[Reply(status=500, parts=(b"[" * 5000,))] * 5)
    error = await failure(make())
    assert error.kind == "server"


async def test_a_cost_too_large_for_a_float_is_no_cost(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    huge = chunk(no_choices=True, usage={**usage(), "cost": 10**400})  # an integer in JSON
    fake.script(Reply(parts=sse([chunk(content="hi"), chunk(finish="stop"), huge])))
    chunks = await collect(make())
    assert Usage(prompt_tokens=10, completion_tokens=5, cost=None) in chunks


async def test_an_error_inside_the_stream(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    error_chunk = {"error": {"message": "Provider returned error", "code": 502}}
    fake.script(Reply(parts=sse([chunk(content="partial"), error_chunk])))
    error = await failure(make())
    assert error.kind == "server" and "Provider returned error" in error.message


def test_classify_error_without_an_http_status() -> None:
    limited = classify_error(None, {"error": {"message": "slow down", "code": 429}}, model="m")
    assert limited.kind == "rate_limit" and "HTTP 429" in limited.message
    plain = classify_error(None, {"error": "boom"}, model="m")
    assert plain.kind == "server" and "boom" in plain.message
    text = classify_error(502, "<html>Bad Gateway</html>", model="m")
    assert text.kind == "server" and "Bad Gateway" in text.message
    ollama = classify_error(404, {"error": "model 'llama9' not found"}, model="llama9")
    assert ollama.kind == "model_not_found" and "'llama9'" in ollama.message


async def test_aclose_mid_stream_closes_the_connection(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    fake.script(Reply(parts=sse([chunk(content="first ")], done=False), stall=True))
    with trio.fail_after(LIMIT):
        stream = make().stream(HELLO)
        assert await stream.__anext__() == TextDelta(text="first ")
        await stream.aclose()
        await fake.disconnected.wait()
    assert fake.disconnects == 1


async def test_cancelling_the_turn_closes_the_connection(
    fake: FakeOpenAI, make: Callable[..., OpenAIProvider]
) -> None:
    """What stop_generation does: the turn's scope is cancelled while the stream waits."""
    fake.script(Reply(parts=sse([chunk(content="first ")], done=False), stall=True))
    seen: list[Chunk] = []
    with trio.fail_after(LIMIT):
        with trio.CancelScope() as turn:
            async with aclosing(make().stream(HELLO)) as chunks:
                async for c in chunks:
                    seen.append(c)
                    turn.cancel()
        assert turn.cancelled_caught
        await fake.disconnected.wait()
    assert seen == [TextDelta(text="first ")]


async def test_the_key_is_in_no_repr_or_error(fake: FakeOpenAI) -> None:
    provider = OpenAIProvider(base_url=fake.url, api_key=KEY, model="m", max_retries=0)
    try:
        assert KEY not in repr(provider) and "key=set" in repr(provider)
        fake.script(error_reply(401, f"Incorrect API key provided: {KEY}.", "auth", None))
        error = await failure(provider)
        assert "***" in error.message
    finally:
        await provider.aclose()  # the client it made for itself


def test_bad_settings_are_refused() -> None:
    with pytest.raises(Exception, match="base_url"):
        OpenAIProvider(base_url="localhost:11434", api_key=None, model="m")
    with pytest.raises(Exception, match="needs a model"):
        OpenAIProvider(base_url="http://localhost", api_key=None, model="")
