"""The ``anthropic`` provider: Anthropic's Messages API, streamed.

One step is one ``POST {base_url}/messages`` with ``stream: true``. The reply is server-sent
events (``message_start``, then per content block ``content_block_start``, its
``content_block_delta`` events and ``content_block_stop``, then ``message_delta`` with the stop
reason and ``message_stop``; ``ping`` and ``error`` may come at any point), mapped to greenroom's
chunks by :class:`EventMapper`, sans-IO like the OpenAI provider's :class:`ChunkMapper`.

Greenroom keeps its conversation in the chat-completions shape; :func:`request_body` turns it
into Anthropic's: the system prompt apart, an assistant message as content blocks (its
thinking first, then its text, then its ``tool_use`` calls), tool results as ``tool_result``
blocks in a user message, consecutive messages of one role joined. Thinking blocks are kept
with the message that produced them, signature and all, and sent back unmodified, as the API
requires when the model thought before a tool call. Stop reasons are given in OpenAI's words
(``end_turn`` -> ``stop``, ``tool_use`` -> ``tool_calls``, ``max_tokens`` -> ``length``), so
that the session reads every provider alike.

Raw HTTP rather than the official SDK: the SDK would be a new runtime dependency with its own
retry policy, timeouts and exception tree, while greenroom's (retries only before the first
token, the error kinds a UI explains, prompt closing of the connection on stop) already live in
:class:`~greenroom.agent.streaming.StreamingProvider`, shared with the OpenAI provider and
tested there. What is Anthropic's own is the sans-IO mapping below.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Final

import attrs

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
from greenroom.agent.streaming import StreamingProvider, classify_error, event_json
from greenroom.protocol.chat import Message, Thinking
from greenroom.protocol.errors import ProviderError

__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "AnthropicProvider", "EventMapper", "request_body"]

DEFAULT_BASE_URL: Final = "https://api.anthropic.com/v1"
API_VERSION: Final = "2023-06-01"
DEFAULT_MAX_TOKENS: Final = 8192
"""The reply's length limit when none is set: the Messages API requires one."""
KEY_HINT: Final = "ANTHROPIC_API_KEY / GREENROOM_API_KEY / api_key"

STOP_REASONS: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "stop",
    "pause_turn": "stop",
}


def _tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's input object: the API wants an object, and a call whose arguments were
    not one was answered with an error already, so ``{}`` stands in for it."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _thinking_block(thinking: Thinking) -> dict[str, Any] | None:
    if thinking.data is not None:
        return {"type": "redacted_thinking", "data": thinking.data}
    if not thinking.signature:
        return None  # the API refuses an unsigned block; one cut short has no signature
    return {"type": "thinking", "thinking": thinking.text, "signature": thinking.signature}


def _blocks(message: Message) -> list[dict[str, Any]]:
    """The content blocks of one greenroom message."""
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": message.content or "",
            }
        ]
    blocks: list[dict[str, Any]] = []
    if message.role == "assistant":
        blocks += filter(None, map(_thinking_block, message.thinking or ()))
    if message.content:  # the API refuses empty text blocks
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls or ():
        tool_input = _tool_input(call.arguments)
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input})
    return blocks


def request_body(request: CompletionRequest, model: str) -> dict[str, Any]:
    """The JSON body of one streamed Messages API request."""
    history = list(request.messages)
    # A stopped reply last (a resumed turn) is left out: sent last, an assistant message is a
    # prefill the model would continue, which thinking models refuse; it is answered anew.
    while history and history[-1].role == "assistant" and history[-1].stopped:
        history.pop()
    messages: list[dict[str, Any]] = []
    for message in history:
        if message.role == "system":
            continue  # the system prompt goes apart, below
        blocks = _blocks(message)
        if not blocks:
            continue
        role = "assistant" if message.role == "assistant" else "user"
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)  # tool results of one step share a message
        else:
            messages.append({"role": role, "content": blocks})
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages,
        "stream": True,
    }
    if request.system_prompt:
        body["system"] = request.system_prompt
    if request.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
        body["tool_choice"] = {"type": "auto"}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


@attrs.define(eq=False)
class _ThinkingBuilder:
    text: list[str] = attrs.Factory(list)
    signature: list[str] = attrs.Factory(list)
    data: str | None = None

    def build(self) -> Thinking:
        if self.data is not None:
            return Thinking(data=self.data)
        return Thinking(text="".join(self.text), signature="".join(self.signature))


def _count(usage: object, *keys: str) -> int | None:
    if not isinstance(usage, dict):
        return None
    values = [usage.get(key) for key in keys]
    counted = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
    return sum(counted) if counted else None


class EventMapper:
    """Maps the Messages API's stream events to greenroom chunks, and checks the whole stream.

    Content blocks are kept apart by their ``index``, which is also the index of the tool
    calls it yields. Event types it does not know are ignored, as the API's versioning policy
    asks of clients.
    """

    def __init__(self, *, model: str, secret: str | None = None) -> None:
        self._model = model
        self._secret = secret
        self._stop: str | None = None
        self._prompt_tokens: int | None = None
        self._completion_tokens: int | None = None
        self._thinking: dict[int, _ThinkingBuilder] = {}
        self._tools: set[int] = set()
        self._text = False
        self._done = False

    @property
    def done(self) -> bool:
        """Whether ``message_stop`` was seen."""
        return self._done

    def feed_event(self, event: ServerSentEvent) -> list[Chunk]:
        """The chunks to yield now for one server-sent event."""
        obj = event_json(event, self._secret)
        if not isinstance(obj, dict):
            raise ProviderError("bad_response", "a stream event is not a JSON object")
        kind = obj.get("type", event.event)
        match kind:
            case "error":
                raise classify_error(
                    None, obj, model=self._model, secret=self._secret, key_hint=KEY_HINT
                )
            case "message_start":
                message = obj.get("message")
                self._usage(message.get("usage") if isinstance(message, dict) else None)
            case "content_block_start":
                return self._start(self._index(obj), obj.get("content_block"))
            case "content_block_delta":
                return self._delta(self._index(obj), obj.get("delta"))
            case "content_block_stop":
                builder = self._thinking.pop(self._index(obj), None)
                return [] if builder is None else [builder.build()]
            case "message_delta":
                delta = obj.get("delta")
                reason = delta.get("stop_reason") if isinstance(delta, dict) else None
                if isinstance(reason, str) and reason:
                    self._stop = reason
                self._usage(obj.get("usage"))
            case "message_stop":
                self._done = True
        return []  # ping, and event types added after this was written

    @staticmethod
    def _index(obj: dict[str, Any]) -> int:
        index = obj.get("index")
        if type(index) is not int:
            raise ProviderError("bad_response", f"a {obj.get('type')} event has no block index")
        return index

    def _usage(self, usage: object) -> None:
        prompt = _count(
            usage, "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"
        )
        if prompt is not None:
            self._prompt_tokens = prompt
        completion = _count(usage, "output_tokens")  # cumulative: the last one counts
        if completion is not None:
            self._completion_tokens = completion

    def _answer(self, text: object) -> list[Chunk]:
        """The chunk of a piece of answer text; none for an empty or missing one."""
        if not isinstance(text, str) or not text:
            return []
        self._text = True
        return [TextDelta(text=text)]

    def _start(self, index: int, block: object) -> list[Chunk]:
        if not isinstance(block, dict):
            raise ProviderError("bad_response", f"content block {index} has no content_block")
        match block.get("type"):
            case "text":
                return self._answer(block.get("text"))
            case "tool_use":
                name, call_id = block.get("name"), block.get("id")
                if not isinstance(name, str) or not name:
                    raise ProviderError(
                        "bad_response", f"the model sent tool call {index} with no name"
                    )
                self._tools.add(index)
                start = block.get("input")
                # The input streams as input_json_delta; a server that sends it whole here
                # sends no deltas.
                arguments = json.dumps(start) if isinstance(start, dict) and start else ""
                return [
                    ToolCallDelta(
                        index=index,
                        id=call_id if isinstance(call_id, str) and call_id else None,
                        name=name,
                        arguments=arguments,
                    )
                ]
            case "thinking":
                self._thinking[index] = builder = _ThinkingBuilder()
                text = block.get("thinking")
                if isinstance(text, str) and text:
                    builder.text.append(text)
                    return [ReasoningDelta(text=text)]
            case "redacted_thinking":
                data = block.get("data")
                self._thinking[index] = _ThinkingBuilder(data=data if isinstance(data, str) else "")
        return []

    def _delta(self, index: int, delta: object) -> list[Chunk]:
        if not isinstance(delta, dict):
            return []
        match delta.get("type"):
            case "text_delta":
                return self._answer(delta.get("text"))
            case "input_json_delta":
                piece = delta.get("partial_json")
                if index not in self._tools:
                    raise ProviderError(
                        "bad_response", f"tool input for block {index}, which is no tool call"
                    )
                if isinstance(piece, str) and piece:
                    return [ToolCallDelta(index=index, arguments=piece)]
            case "thinking_delta":
                text = delta.get("thinking")
                builder = self._thinking.get(index)
                if isinstance(text, str) and text and builder is not None:
                    builder.text.append(text)
                    return [ReasoningDelta(text=text)]
            case "signature_delta":
                signature = delta.get("signature")
                builder = self._thinking.get(index)
                if isinstance(signature, str) and builder is not None:
                    builder.signature.append(signature)
        return []

    def end(self) -> list[Chunk]:
        """The chunks that close a complete stream (usage, then finish), or a bad_response."""
        if self._stop is None:
            raise ProviderError(
                "bad_response", "the model's stream ended before a stop reason: try again"
            )
        reason = STOP_REASONS.get(self._stop, self._stop)
        if not self._text and not self._tools and reason != "length":
            raise ProviderError(
                "bad_response",
                f"the model finished ({self._stop}) with no text and no tool call: try again",
            )
        tail: list[Chunk] = []
        if self._prompt_tokens is not None or self._completion_tokens is not None:
            tail.append(
                Usage(
                    prompt_tokens=self._prompt_tokens or 0,
                    completion_tokens=self._completion_tokens or 0,
                )
            )
        return [*tail, Finish(reason=reason)]


class AnthropicProvider(StreamingProvider):
    """Anthropic's Messages API, streamed (see :class:`StreamingProvider` for the options).
    The key goes in ``x-api-key`` unless ``api_key_header`` says otherwise."""

    PATH: ClassVar[str] = "/messages"
    KEY_HEADER: ClassVar[str] = "x-api-key"
    KEY_HINT: ClassVar[str] = KEY_HINT

    @property
    def name(self) -> str:
        return "anthropic"

    def _dialect_headers(self) -> dict[str, str]:
        return {"anthropic-version": API_VERSION}

    def _body(self, request: CompletionRequest, model: str) -> dict[str, Any]:
        return request_body(request, model)

    def _mapper(self, model: str) -> EventMapper:
        return EventMapper(model=model, secret=self._api_key)
