"""Chat messages in the OpenAI chat-completions shape, as frozen value classes."""

from __future__ import annotations

from typing import Literal

import attrs

Role = Literal["system", "user", "assistant", "tool"]


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
    tool_calls: tuple[ToolCall, ...] | None = None
    tool_call_id: str | None = None
    stopped: bool = False
    thinking: tuple[Thinking, ...] | None = None
