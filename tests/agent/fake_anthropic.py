"""Replies in the shape of Anthropic's streamed Messages API, for the scripted HTTP server of
tests/agent/fake_openai.py (which serves any scripted bytes: only the replies differ).

Each event goes out as ``event: TYPE`` and ``data: JSON``, as the API sends them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from typing import Any

from tests.agent.fake_openai import Reply

JSON = dict[str, Any]


def events(objs: Iterable[JSON | str], *, newline: str = "\n") -> tuple[bytes, ...]:
    """Server-sent events, one part per event; a str is sent as the data verbatim."""
    parts: list[bytes] = []
    for obj in objs:
        kind = "message" if isinstance(obj, str) else obj["type"]
        data = obj if isinstance(obj, str) else json.dumps(obj)
        parts.append(f"event: {kind}{newline}data: {data}{newline}{newline}".encode())
    return tuple(parts)


def message_start(input_tokens: int = 12) -> JSON:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        },
    }


def block_start(index: int, block: JSON) -> JSON:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **fields: Any) -> JSON:
    return {"type": "content_block_delta", "index": index, "delta": fields}


def block_stop(index: int) -> JSON:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, output_tokens: int = 7) -> JSON:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }


MESSAGE_STOP: JSON = {"type": "message_stop"}
PING: JSON = {"type": "ping"}


def text_block(index: int, text: str, pieces: int = 3) -> list[JSON]:
    size = len(text)
    bounds = [size * i // pieces for i in range(pieces + 1)]
    out = [block_start(index, {"type": "text", "text": ""})]
    out += [
        delta(index, type="text_delta", text=text[a:b])
        for a, b in itertools.pairwise(bounds)
        if b > a
    ]
    return [*out, block_stop(index)]


def tool_block(index: int, call_id: str, name: str, arguments: JSON, pieces: int = 3) -> list[JSON]:
    text = json.dumps(arguments)
    size = len(text)
    bounds = [size * i // pieces for i in range(pieces + 1)]
    out = [block_start(index, {"type": "tool_use", "id": call_id, "name": name, "input": {}})]
    out += [
        delta(index, type="input_json_delta", partial_json=text[a:b])
        for a, b in itertools.pairwise(bounds)
    ]
    return [*out, block_stop(index)]


def thinking_block(index: int, thinking: str, signature: str) -> list[JSON]:
    half = len(thinking) // 2
    return [
        block_start(index, {"type": "thinking", "thinking": ""}),
        delta(index, type="thinking_delta", thinking=thinking[:half]),
        delta(index, type="thinking_delta", thinking=thinking[half:]),
        delta(index, type="signature_delta", signature=signature),
        block_stop(index),
    ]


def reply(*blocks: list[JSON], stop: str = "end_turn", **extra: Any) -> Reply:
    """A whole streamed message: its blocks, the stop reason, message_stop."""
    objs: list[JSON] = [message_start(), PING]
    for block in blocks:
        objs += block
    objs += [message_delta(stop), MESSAGE_STOP]
    return Reply(parts=events(objs), **extra)


def text_reply(text: str, **extra: Any) -> Reply:
    return reply(text_block(0, text), **extra)


def error_reply(status: int, type_: str, message: str, **extra: Any) -> Reply:
    body = json.dumps({"type": "error", "error": {"type": type_, "message": message}})
    headers = (("content-type", "application/json"), *extra.pop("headers", ()))
    return Reply(status=status, headers=headers, parts=(body.encode(),), **extra)


def error_event(type_: str, message: str) -> JSON:
    return {"type": "error", "error": {"type": type_, "message": message}}
