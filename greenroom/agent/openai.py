"""The ``openai`` provider: any OpenAI-compatible chat-completions endpoint, streamed.

OpenAI, OpenRouter, Ollama, vLLM and the llama.cpp server all speak it. One step is one
``POST {base_url}/chat/completions`` with ``stream: true``; the reply is server-sent events,
each a JSON chunk, decoded by :mod:`greenroom.agent.sse` and mapped to greenroom's chunks by
:class:`ChunkMapper` (sans-IO, like the decoder). Usage and the finish reason are held back and
yielded last (usage, then finish), so that the stream can be checked whole: one that ends with
no finish reason, or finishes with neither text nor a tool call, is a ``bad_response``.

Failures are :class:`~greenroom.errors.ProviderError` with a ``kind`` a UI can explain (see
:func:`classify_error`). 429, 5xx and network failures are retried with jittered exponential
backoff (honouring ``Retry-After``), but only while nothing has been yielded: after the first
chunk the session has shown text, and a retry would show it twice.

The API key is sent as a bearer token and appears nowhere else: not in reprs, logs or error
messages (a server that echoes it has it replaced by ``***``).

HTTP is httpx2, the maintained successor of httpx (the same API under a new name, on anyio,
so it runs on trio); the OpenAI and Anthropic SDKs moved to it too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any, Final

import httpx2
import trio

from greenroom.agent.chat import Message
from greenroom.agent.provider import (
    Chunk,
    CompletionRequest,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from greenroom.agent.sse import SSEDecoder, SSEError
from greenroom.errors import InvalidArgument, ProviderError
from greenroom.supervisor.backoff import Backoff

logger = logging.getLogger("greenroom.agent.openai")

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
RETRYABLE: Final = frozenset({"rate_limit", "server", "network"})
CLOSE_TIMEOUT: Final = 2.0
"""Seconds that closing a response may take: it runs shielded, so it must be bounded."""
DRAIN_TIMEOUT: Final = 0.5
"""Seconds to read what follows ``[DONE]`` (the end of the body) to keep the connection."""
MAX_ERROR_BODY: Final = 64 * 1024
QUOTED_CHARS: Final = 300


def _quote(text: str, secret: str | None) -> str:
    """A server's message as shown to users: one line, truncated, never the key."""
    text = " ".join(text.split())
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= QUOTED_CHARS else text[: QUOTED_CHARS - 3] + "..."


def _wire_message(message: Message) -> dict[str, Any]:
    """The chat-completions form of ``message``; ``stopped`` is greenroom's own and not sent."""
    obj: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        obj["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        obj["tool_call_id"] = message.tool_call_id
    return obj


def request_body(request: CompletionRequest, model: str) -> dict[str, Any]:
    """The JSON body of one streamed chat-completions request."""
    messages: list[dict[str, Any]] = []
    if request.system_prompt:
        messages.append({"role": "system", "content": request.system_prompt})
    for message in request.messages:
        if message.role == "assistant" and not message.content and not message.tool_calls:
            continue  # a step stopped before its first token: servers refuse an empty message
        messages.append(_wire_message(message))
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in request.tools
        ]
    return body


def _error_fields(body: object) -> tuple[str, str]:
    """(message, code and type, lowercased) of an error body, in OpenAI's or Ollama's shape."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error, ""
    if not isinstance(error, dict):
        return "", ""
    message = error.get("message")
    tags = " ".join(str(error.get(key) or "") for key in ("code", "type")).lower()
    return (message if isinstance(message, str) else ""), tags


def classify_error(
    status: int | None, body: object, *, model: str, secret: str | None = None
) -> ProviderError:
    """The ProviderError for an HTTP error status (or, with ``status`` None, an error chunk
    sent in the stream) and its parsed JSON body (or its text)."""
    message, tags = _error_fields(body)
    if status is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
        # OpenRouter's in-stream errors carry the upstream HTTP status as a numeric code.
        code_value = body["error"].get("code")
        if isinstance(code_value, int) and 400 <= code_value <= 599:
            status = code_value
    if not message and isinstance(body, str):
        message = body
    said = f" (the server said: {_quote(message, secret)})" if message.strip() else ""
    lowered = message.lower()
    code = f"HTTP {status}" if status is not None else "an error in the stream"
    if status == 402 or "insufficient_quota" in tags or "insufficient_quota" in lowered:
        return ProviderError("quota", f"the account is out of quota or credits{said}")
    if "context_length" in tags or "context length" in lowered or "context window" in lowered:
        return ProviderError(
            "context_length",
            f"the conversation is too long for model {model!r}: start a new chat{said}",
        )
    if status == 404 or "model_not_found" in tags:
        return ProviderError(
            "model_not_found",
            f"model {model!r} was not found: check the model name and base_url{said}",
        )
    if status in (401, 403):
        return ProviderError(
            "auth", f"the API key was refused: check GREENROOM_API_KEY / api_key{said}"
        )
    if status == 429 or "rate_limit" in tags:
        return ProviderError("rate_limit", f"rate limited ({code}): try again later{said}")
    if status is None or status >= 500:
        return ProviderError("server", f"the model server failed ({code}){said}")
    return ProviderError("bad_request", f"the model server refused the request ({code}){said}")


def _retry_after(headers: httpx2.Headers) -> float | None:
    """Seconds the server asks to wait (``retry-after-ms`` or ``Retry-After`` in seconds)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            continue  # an HTTP date: rare from model servers; the backoff is used instead
        if value >= 0:
            return value
    return None


class ChunkMapper:
    """Maps decoded chat-completion chunks to greenroom chunks, and checks the whole stream."""

    def __init__(self, *, model: str, secret: str | None = None) -> None:
        self._model = model
        self._secret = secret
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._text = False
        self._names: dict[int, bool] = {}

    def feed(self, obj: object) -> list[Chunk]:
        """The chunks to yield now for one decoded JSON chunk."""
        if not isinstance(obj, dict):
            raise ProviderError("bad_response", "a stream chunk is not a JSON object")
        if "error" in obj:  # OpenRouter and others report failures inside a 200 stream
            raise classify_error(None, obj, model=self._model, secret=self._secret)
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self._usage = _usage(usage)
        choices = obj.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return []
        choice = choices[0]
        out: list[Chunk] = []
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key in ("reasoning_content", "reasoning"):
                if isinstance(reasoning := delta.get(key), str) and reasoning:
                    out.append(ReasoningDelta(text=reasoning))
                    break
            if isinstance(content := delta.get("content"), str) and content:
                self._text = True
                out.append(TextDelta(text=content))
            calls = delta.get("tool_calls")
            for position, call in enumerate(calls if isinstance(calls, list) else ()):
                if isinstance(call, dict):
                    out.append(self._tool_call(position, call))
        if isinstance(reason := choice.get("finish_reason"), str) and reason:
            self._finish = reason
        return out

    def _tool_call(self, position: int, call: dict[str, Any]) -> ToolCallDelta:
        index = call.get("index")
        index = index if isinstance(index, int) else position  # some servers leave it out
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        name, arguments, call_id = function.get("name"), function.get("arguments"), call.get("id")
        name = name if isinstance(name, str) and name else None
        self._names[index] = self._names.get(index, False) or name is not None
        return ToolCallDelta(
            index=index,
            id=call_id if isinstance(call_id, str) and call_id else None,
            name=name,
            arguments=arguments if isinstance(arguments, str) else "",
        )

    def end(self) -> list[Chunk]:
        """The chunks that close a complete stream (usage, then finish), or a bad_response."""
        if self._finish is None:
            raise ProviderError(
                "bad_response", "the model's stream ended before a finish reason: try again"
            )
        nameless = [index for index, named in sorted(self._names.items()) if not named]
        if nameless:
            raise ProviderError(
                "bad_response", f"the model sent tool call {nameless[0]} with no function name"
            )
        if not self._text and not self._names:
            raise ProviderError(
                "bad_response",
                f"the model finished ({self._finish}) with no text and no tool call: try again",
            )
        tail: list[Chunk] = [] if self._usage is None else [self._usage]
        return [*tail, Finish(reason=self._finish)]


def _usage(usage: dict[str, Any]) -> Usage:
    def count(key: str) -> int:
        value = usage.get(key)
        return value if isinstance(value, int) and value >= 0 else 0

    cost = usage.get("cost")
    return Usage(
        prompt_tokens=count("prompt_tokens"),
        completion_tokens=count("completion_tokens"),
        cost=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
    )


@asynccontextmanager
async def _map_exceptions() -> AsyncIterator[None]:
    """httpx2's exceptions, turned into ProviderError once, at the I/O boundary."""
    try:
        yield
    except httpx2.TimeoutException as error:
        what = f"the model server did not answer in time ({type(error).__name__})"
        raise ProviderError("timeout", what) from None
    except httpx2.HTTPError as error:
        what = type(error).__name__
        raise ProviderError("network", f"cannot reach the model server ({what})") from None


class OpenAIProvider:
    """An OpenAI-compatible chat-completions endpoint, streamed.

    ``client`` is used as given (its owner closes it); without one the provider makes its own
    on first use, closed by :meth:`aclose`. ``sleep`` is how backoff waits (injectable for
    tests); ``rng`` draws the jitter.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        client: httpx2.AsyncClient | None = None,
        max_retries: int = 3,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        rng: random.Random | None = None,
        backoff: Backoff = Backoff(initial=0.5, maximum=8.0),  # noqa: B008 (frozen, shared)
        max_retry_after: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidArgument(f"bad base_url {base_url!r}: give an http:// or https:// URL")
        if not model:
            raise InvalidArgument("the openai provider needs a model: set model or --model")
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._base_url = base_url
        self._api_key = api_key or None
        self._model = model
        self._client = client
        self._owns_client = client is None
        self._max_retries = max_retries
        self._timeout = httpx2.Timeout(
            connect=connect_timeout, read=read_timeout, write=connect_timeout, pool=connect_timeout
        )
        self._rng = rng or random.Random()
        self._backoff = backoff
        self._max_retry_after = max_retry_after
        self._sleep = sleep

    @property
    def name(self) -> str:
        """``openai``: the protocol, whichever server speaks it."""
        return "openai"

    @property
    def model(self) -> str:
        return self._model

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"OpenAIProvider(base_url={self._base_url!r}, model={self._model!r}, key={key})"

    async def aclose(self) -> None:
        """Close the HTTP client the provider made (not one it was given)."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await client.aclose()

    def _http(self) -> httpx2.AsyncClient:
        if self._client is None:
            # No connection cap: every running turn holds one streaming response, and
            # greenroom.config's max_concurrent_turns is what bounds them.
            limits = httpx2.Limits(max_connections=None, max_keepalive_connections=32)
            self._client = httpx2.AsyncClient(limits=limits, timeout=self._timeout)
        return self._client

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        """Stream one step; retry before the first chunk; raise ProviderError on failure."""
        model = request.model or self._model
        body = request_body(request, model)
        yielded = False
        attempt = 0
        while True:
            try:
                async with _map_exceptions(), self._response(body, model) as response:
                    mapper = ChunkMapper(model=model, secret=self._api_key)
                    async with aclosing(self._chunks(response, mapper)) as chunks:
                        async for chunk in chunks:
                            yielded = True
                            yield chunk
                return
            except ProviderError as failure:
                attempt += 1
                if yielded or failure.kind not in RETRYABLE or attempt > self._max_retries:
                    raise
                delay = self._backoff.delay(attempt, self._rng)
                if failure.retry_after is not None:
                    delay = min(failure.retry_after, self._max_retry_after)
                logger.warning(
                    "%s: %s; retry %d of %d in %.2fs",
                    failure.kind, failure.message, attempt, self._max_retries, delay,
                )  # fmt: skip
            await self._sleep(delay)

    @asynccontextmanager
    async def _response(self, body: dict[str, Any], model: str) -> AsyncIterator[httpx2.Response]:
        """A streaming response with a 2xx status; an error status raises ProviderError."""
        client = self._http()
        headers = {"Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        http_request = client.build_request(
            "POST", self._url, json=body, headers=headers, timeout=self._timeout
        )
        response = await client.send(http_request, stream=True)
        try:
            if response.status_code >= 300:
                raise await self._error(response, model)
            yield response
        finally:
            # Shielded so that a stop (the turn's scope cancelled) still closes the connection
            # at once, and bounded because the shield would otherwise hold the stop up.
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await response.aclose()

    async def _error(self, response: httpx2.Response, model: str) -> ProviderError:
        raw = bytearray()
        body_bytes = response.aiter_bytes()
        try:
            with trio.move_on_after(self._timeout.read or CLOSE_TIMEOUT):
                async for piece in body_bytes:
                    raw += piece
                    if len(raw) >= MAX_ERROR_BODY:
                        break
        finally:
            await _close(response, body_bytes)
        text = raw[:MAX_ERROR_BODY].decode("utf-8", errors="replace")
        try:
            body: object = json.loads(text)
        except ValueError:
            body = text
        error = classify_error(response.status_code, body, model=model, secret=self._api_key)
        retry_after = _retry_after(response.headers)
        if retry_after is not None:
            error.retry_after = retry_after
        return error

    async def _chunks(
        self, response: httpx2.Response, mapper: ChunkMapper
    ) -> AsyncGenerator[Chunk, None]:
        decoder = SSEDecoder()
        body = response.aiter_bytes()
        done = False
        try:
            async for data in body:
                try:
                    events = decoder.feed(data)
                except SSEError as error:
                    raise ProviderError("bad_response", str(error)) from None
                for event in events:
                    if event.data.strip() == "[DONE]":
                        done = True
                        break
                    try:
                        obj = json.loads(event.data)
                    except ValueError:
                        quoted = _quote(event.data, self._api_key)
                        raise ProviderError(
                            "bad_response",
                            f"the model server sent a chunk that is not JSON: {quoted}",
                        ) from None
                    for chunk in mapper.feed(obj):
                        yield chunk
                if done:
                    break
        finally:
            await _close(response, body, drain=done)
        for chunk in mapper.end():  # also when a server closes the stream without [DONE]
            yield chunk


async def _close(
    response: httpx2.Response, body: AsyncIterator[bytes], *, drain: bool = False
) -> None:
    """Close ``response`` and run its body iterator to the end, shielded and bounded.

    ``drain``: read the rest of the body first (after ``[DONE]`` it is only the end of the
    chunked body), which lets the connection go back to the pool. Otherwise closing the
    response closes the connection, at once. The iterator is then run to its end either way:
    httpx2's body iterators (as httpx's were) are async generators nested deep, and one abandoned
    mid-way is finalized later by trio with a ResourceWarning; run on, they end with an error.
    """
    if drain:
        with trio.move_on_after(DRAIN_TIMEOUT, shield=True), contextlib.suppress(Exception):
            async for _ in body:
                pass
    with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
        await response.aclose()
        with contextlib.suppress(Exception):
            async for _ in body:
                pass
