"""The provider interface: what a model backend streams back for one completion step.

A provider turns a :class:`CompletionRequest` into an async stream of chunks. The session
actor consumes the stream inside the turn's cancel scope, so closing the stream (``aclose``) must
release whatever the provider holds (an HTTP response, say) promptly. A provider failure is a
:class:`~greenroom.protocol.errors.ProviderError`, raised from the stream; anything else is a bug.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Protocol

import attrs

from greenroom.protocol.chat import Message, Thinking


@attrs.frozen(kw_only=True)
class ToolSchema:
    """A tool offered to the model: ``parameters`` is a JSON schema object."""

    name: str
    description: str
    parameters: dict[str, Any]


@attrs.frozen(kw_only=True)
class CompletionRequest:
    """One step of a turn: the conversation so far and the tools the model may call.

    ``temperature`` and ``max_tokens`` (the reply's length limit) are sent when set; None
    leaves them to the server (Anthropic's API requires a limit: its provider has a default).
    """

    messages: tuple[Message, ...]
    tools: tuple[ToolSchema, ...] = ()
    model: str | None = None
    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@attrs.frozen(kw_only=True)
class TextDelta:
    """New assistant text."""

    text: str


@attrs.frozen(kw_only=True)
class ReasoningDelta:
    """New reasoning text, where the model shows it; never part of the committed message."""

    text: str


@attrs.frozen(kw_only=True)
class ToolCallDelta:
    """A piece of the tool call at ``index``: fields arrive in pieces and are concatenated.

    ``id`` and ``name`` may arrive in any chunk; ``arguments`` pieces are appended in order.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@attrs.frozen(kw_only=True)
class Finish:
    """The model finished the step: ``reason`` is ``stop``, ``tool_calls`` or ``length`` (cut
    by the length limit), in OpenAI's words whichever provider it came from."""

    reason: str


@attrs.frozen(kw_only=True)
class Usage:
    """Token usage of the step, and its cost where the server reports one."""

    prompt_tokens: int
    completion_tokens: int
    cost: float | None = None


Chunk = TextDelta | ReasoningDelta | ToolCallDelta | Thinking | Finish | Usage
"""A :class:`~greenroom.protocol.chat.Thinking` chunk is a whole thinking block, yielded when it
ends (its text also streams as ReasoningDelta); the session keeps it with the message."""


class Provider(Protocol):
    """A model backend. ``name`` is shown to users (``simulated`` says so wherever it shows)."""

    @property
    def name(self) -> str: ...

    def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        """Stream the chunks of one completion step; raise ProviderError on failure."""
        ...
