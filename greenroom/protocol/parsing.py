"""A client frame's bytes to the object it holds, with every check on hostile input.

:func:`parse_frame` is where a peer's bytes enter: it never raises for bad input, it returns
the :class:`~greenroom.protocol.frames.ErrorReply` that docs/protocol.md names instead.
Decisions the protocol leaves open, made here:

- A frame over the connection's size limit is ``too_large``; a text frame on the msgpack
  subprotocol (or a binary one on JSON) is ``bad_frame``.
- Nesting deeper than :data:`MAX_DEPTH` anywhere in a frame is ``bad_frame``, checked before
  (JSON) or right after (msgpack, whose unpacker has its own fixed stack) parsing, so that no
  parser ever recurses deeply.
- What orjson refuses but JSON allows (lone surrogate escapes, integers past 64 bits, NaN) is
  parsed all the same, so that the command decoder gives it the error its field deserves.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs, no py.typed
import orjson

from greenroom.protocol.frames import ErrorReply

MAX_FRAME_BYTES: Final = 1 << 20
"""Default frame size limit; the server closes with 1009 above it, decode says too_large."""
MAX_DEPTH: Final = 32
"""Deepest nesting of arrays and objects a client frame may have."""

# A JSON string, or an unterminated one up to the end: it always matches, so scanning is
# linear even on hostile input (no backtracking on a string that never closes).
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")
SURROGATE = re.compile("[\ud800-\udfff]")
"""A lone surrogate: a ``\\ud800`` escape makes one, and no UTF-8 can carry it."""


def _nesting_error(text: str) -> str | None:
    """Why ``text`` is refused before parsing (too deep, or brackets that cannot balance)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    # Only the brackets outside strings, all of one kind: valid JSON balances them.
    outside = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass")
    brackets = outside.translate(_SQUARE, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH):
        if not brackets:
            return None
        shorter = brackets.replace(b"[]", b"")  # one level of innermost pairs per pass
        if len(shorter) == len(brackets):
            return "frame is not valid JSON"  # "]]..[[": no valid JSON looks like that
        brackets = shorter
    return f"frame nested deeper than {MAX_DEPTH} levels" if brackets else None


def _children(level: list[Any]) -> list[Any]:
    return [
        child
        for value in level
        for child in (value.values() if type(value) is dict else value)
        if type(child) is list or type(child) is dict
    ]


def _too_deep(obj: object) -> bool:
    """Whether a parsed value nests deeper than MAX_DEPTH (level by level, no recursion)."""
    level: list[Any] = [obj]
    for _ in range(MAX_DEPTH - 1):
        # Empty containers end their branch: only non-empty ones can hold a deeper level.
        level = [child for child in _children(level) if child]
        if not level:
            return False
    return bool(_children(level))  # containers at level MAX_DEPTH + 1


def is_text(value: str) -> bool:
    """Whether ``value`` is valid Unicode text (no lone surrogates)."""
    return value.isascii() or SURROGATE.search(value) is None


def _bad_frame(message: str) -> ErrorReply:
    return ErrorReply(re=None, code="bad_frame", message=message)


def parse_frame(
    frame: str | bytes, *, binary: bool, max_frame_bytes: int
) -> dict[Any, Any] | ErrorReply:
    """The object of one client frame (``binary``: msgpack, else JSON), or the error reply it
    deserves. Never raises."""
    if isinstance(frame, str):
        if binary:
            return _bad_frame("expected a binary frame (greenroom.v1.msgpack)")
        size = len(frame)
        if size <= max_frame_bytes < 4 * size:
            size = len(frame.encode("utf-8", "surrogatepass"))
    else:
        if not binary:
            return _bad_frame("expected a text frame (greenroom.v1.json)")
        size = len(frame)
    if size > max_frame_bytes:
        return ErrorReply(re=None, code="too_large", message=f"frame over {max_frame_bytes} bytes")
    obj: object
    if isinstance(frame, str):
        error = _nesting_error(frame)
        if error is not None:
            return _bad_frame(error)
        try:
            obj = orjson.loads(frame)
        except orjson.JSONDecodeError:
            # What orjson refuses but JSON allows (lone surrogate escapes, integers past 64
            # bits; NaN too) is read as before, so that it gets the error its field
            # deserves, with the command's id, rather than bad_frame.
            try:
                obj = json.loads(frame)
            except (ValueError, RecursionError):
                return _bad_frame("frame is not valid JSON")
    else:
        try:
            obj = msgpack.unpackb(frame, raw=False, strict_map_key=True)
        except Exception:  # msgpack reports bad input with many exception types
            return _bad_frame("frame is not valid msgpack")
        if isinstance(obj, dict) and _too_deep(obj):
            return _bad_frame(f"frame nested deeper than {MAX_DEPTH} levels")
    if not isinstance(obj, dict):
        kind = "a msgpack map" if binary else "a JSON object"
        return _bad_frame(f"a frame must be {kind}")
    return obj
