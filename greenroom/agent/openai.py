"""The ``openai`` provider: any OpenAI-compatible chat-completions endpoint, streamed.

OpenAI, OpenRouter, Ollama, vLLM, Azure OpenAI and the llama.cpp server all speak it. One step
is one ``POST {base_url}/chat/completions`` with ``stream: true``; the reply is server-sent
events, each a JSON chunk, decoded by :mod:`greenroom.agent.sse` and mapped to greenroom's
chunks by :class:`ChunkMapper` (sans-IO, like the decoder). Usage and the finish reason are
held back and yielded last (usage, then finish), so that the stream can be checked whole: one
that ends with no finish reason, or finishes with neither text nor a tool call (other than one
cut by the length limit), is a ``bad_response``.

The HTTP side (retries before the first chunk, errors, timeouts, the key) is
:class:`~greenroom.agent.streaming.StreamingProvider`'s, shared with the Anthropic provider.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Final

from greenroom.agent.provider import (
    Chunk,
    CompletionRequest,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from greenroom.agent.sse import ServerSentEvent
from greenroom.agent.streaming import (
    EventMapper,
    StreamingProvider,
    classify_error,
    event_json,
)
from greenroom.protocol.chat import message_to_json
from greenroom.protocol.errors import ProviderError

__all__ = ["DEFAULT_BASE_URL", "ChunkMapper", "OpenAIProvider", "classify_error", "request_body"]

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"


def request_body(request: CompletionRequest, model: str) -> dict[str, Any]:
    """The JSON body of one streamed chat-completions request."""
    messages: list[dict[str, Any]] = []
    if request.system_prompt:
        messages.append({"role": "system", "content": request.system_prompt})
    for message in request.messages:
        if message.role == "assistant" and not message.content and not message.tool_calls:
            continue  # a step stopped before its first token: servers refuse an empty message
        messages.append(message_to_json(message, ours=False))
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
        # Sent explicitly: some servers (llama-cpp-python) offer no tools without it.
        body["tool_choice"] = "auto"
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    return body


class ChunkMapper:
    """Maps decoded chat-completion chunks to greenroom chunks, and checks the whole stream."""

    def __init__(self, *, model: str, secret: str | None = None) -> None:
        self._model = model
        self._secret = secret
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._text = False
        self._names: dict[int, bool] = {}
        self._done = False

    @property
    def done(self) -> bool:
        """Whether ``[DONE]`` was seen."""
        return self._done

    def feed_event(self, event: ServerSentEvent) -> list[Chunk]:
        """The chunks to yield now for one server-sent event."""
        if event.data.strip() == "[DONE]":
            self._done = True
            return []
        return self.feed(event_json(event, self._secret))

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
        if not self._text and not self._names and self._finish != "length":
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

    return Usage(
        prompt_tokens=count("prompt_tokens"),
        completion_tokens=count("completion_tokens"),
        cost=_cost(usage.get("cost")),
    )


def _cost(value: object) -> float | None:
    """A usage's cost, when it is a finite number (an integer too large for a float is not)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        cost = float(value)
    except OverflowError:
        return None
    return cost if math.isfinite(cost) else None


class OpenAIProvider(StreamingProvider):
    """An OpenAI-compatible chat-completions endpoint, streamed (see :class:`StreamingProvider`
    for the options). The key goes as a bearer token unless ``api_key_header`` says otherwise."""

    PATH: ClassVar[str] = "/chat/completions"
    KEY_HEADER: ClassVar[str] = "Authorization"
    KEY_HINT: ClassVar[str] = "GREENROOM_API_KEY / api_key"

    @property
    def name(self) -> str:
        """``openai``: the protocol, whichever server speaks it."""
        return "openai"

    def _body(self, request: CompletionRequest, model: str) -> dict[str, Any]:
        return request_body(request, model)

    def _mapper(self, model: str) -> EventMapper:
        return ChunkMapper(model=model, secret=self._api_key)
