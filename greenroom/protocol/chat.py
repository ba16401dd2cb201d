"""Chat messages in the OpenAI chat-completions shape, as frozen value classes, and the JSON
shape of their thinking blocks (Anthropic's), which the wire and the history files share."""

from __future__ import annotations

from typing import Any, Literal

import attrs

Role = Literal["system", "user", "assistant", "tool"]


def _none_if_empty(calls: tuple[ToolCall, ...] | None) -> tuple[ToolCall, ...] | None:
    return calls or None


@attrs.frozen(kw_only=True)
class ToolCall:
    """One function call the model asked for; ``arguments`` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str


@attrs.frozen(kw_only=True)
class Thinking:
    """One block of the model's thinking, kept with the message so that it can be sent back.

    Anthropic requires the thinking that led to a tool call to come back unmodified with it,
    proved by ``signature``; a redacted block carries only its encrypted ``data``. Providers
    that do not use it (openai) leave it out of their requests.
    """

    text: str = ""
    signature: str = ""
    data: str | None = None  # a redacted_thinking block's, instead of text and signature


@attrs.frozen(kw_only=True)
class Message:
    """One chat message.

    ``stopped`` marks an assistant message whose generation was cut short (by
    ``stopGeneration``, a failure or an interruption); its content is what had streamed.
    ``thinking`` holds an assistant message's thinking blocks, in the order they came.
    """

    role: Role
    content: str | None = None
    # No calls is None, never (): one message, one form (and OpenAI refuses an empty list).
    tool_calls: tuple[ToolCall, ...] | None = attrs.field(default=None, converter=_none_if_empty)
    tool_call_id: str | None = None
    stopped: bool = False
    thinking: tuple[Thinking, ...] | None = None


def thinking_to_json(block: Thinking) -> dict[str, Any]:
    """A thinking block in Anthropic's shape (``thinking`` or ``redacted_thinking``)."""
    if block.data is not None:
        return {"type": "redacted_thinking", "data": block.data}
    return {"type": "thinking", "thinking": block.text, "signature": block.signature}


def thinking_from_json(value: object) -> tuple[Thinking, ...] | None:
    """The thinking blocks of a message, tolerantly: a block that is not one is skipped (it
    could not be sent back anyway)."""
    if not isinstance(value, list):
        return None
    blocks: list[Thinking] = []
    for item in value:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "redacted_thinking" and isinstance(item.get("data"), str):
            blocks.append(Thinking(data=item["data"]))
        elif isinstance(item.get("thinking"), str) and isinstance(item.get("signature"), str):
            blocks.append(Thinking(text=item["thinking"], signature=item["signature"]))
    return tuple(blocks) or None


def tool_call_to_json(call: ToolCall) -> dict[str, Any]:
    """A tool call in the OpenAI shape."""
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def message_to_json(message: Message, *, ours: bool = True) -> dict[str, Any]:
    """``message`` in the OpenAI chat-completions shape: the one encoding of a message, for the
    wire, the history files and the OpenAI-compatible provider's requests. ``ours``: with
    greenroom's own fields, ``stopped`` (when true) and ``thinking`` (when there is some),
    which a provider request leaves out."""
    obj: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        obj["tool_calls"] = [tool_call_to_json(call) for call in message.tool_calls]
    if message.tool_call_id is not None:
        obj["tool_call_id"] = message.tool_call_id
    if ours:
        if message.stopped:
            obj["stopped"] = True
        if message.thinking:
            obj["thinking"] = [thinking_to_json(block) for block in message.thinking]
    return obj
