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
class Message:
    """One chat message.

    ``stopped`` marks an assistant message whose generation was cut short (by
    ``stopGeneration``, a failure or an interruption); its content is what had streamed.
    """

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] | None = None
    tool_call_id: str | None = None
    stopped: bool = False
