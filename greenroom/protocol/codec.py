"""The sans-IO wire codec: client frames -> commands, replies and events -> server frames.

It knows nothing of sockets, tasks or clocks (and never imports trio): the connection hands it
one frame at a time and sends what it returns. :meth:`Codec.decode` is the single point where
peer bytes enter; it never raises for bad input, it returns the exact :class:`ErrorReply` that
docs/protocol.md names instead. JSON goes out through orjson, msgpack through one kept packer;
each event and summary is encoded once per format for every connection (protocol/encodings.py).

The codec stands on the modules that hold each part of the contract, and names again what
they define, so that ``greenroom.protocol.codec`` is the one place to import the wire from:

- ``frames``: the subprotocols and the frames' objects (:class:`Incoming`, :class:`Reply`,
  :class:`ErrorReply`, :class:`Welcome`).
- ``parsing``: a frame's bytes to an object, with every check on hostile input.
- ``decoding``: that object to a command, every field checked.
- ``replies``: each command's result, and what the server sends as plain objects.

Decisions the protocol leaves open, made here (the others where they are made):

- The first frame is the ``welcome`` event, which belongs to no session (:class:`Welcome`).
- Outgoing text with lone surrogates (a provider can send ``\\ud800``) has them replaced by
  U+FFFD rather than failing the whole batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, cast

import attrs
import msgpack  # type: ignore[import-untyped]  # no stubs, no py.typed
import orjson

from greenroom.protocol.commands import Command, command_to_wire
from greenroom.protocol.convert import summary_to_wire
from greenroom.protocol.decoding import command_from_wire
from greenroom.protocol.encodings import (
    JSON_SUMMARIES,
    MSGPACK_SUMMARIES,
    EventEncodings,
    Fragments,
)
from greenroom.protocol.events import Event, Summary
from greenroom.protocol.frames import (
    PROTOCOL_VERSION,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    SUBPROTOCOLS,
    ErrorReply,
    Incoming,
    Outgoing,
    Reply,
    Subprotocol,
    Welcome,
    choose_subprotocol,
)
from greenroom.protocol.parsing import MAX_DEPTH, MAX_FRAME_BYTES, SURROGATE, parse_frame
from greenroom.protocol.replies import (
    RESULTS,
    Summaries,
    cancel_queued_result,
    empty_result,
    mcp_result,
    presets_result,
    project_result,
    projects_result,
    reply_to_wire,
    result_to_wire,
    send_message_result,
    session_result,
    sessions_result,
    state_to_wire,
    stats_result,
    stop_all_result,
    stop_generation_result,
    subscribe_result,
    to_wire,
    welcome_to_wire,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "RESULTS",
    "SUBPROTOCOLS",
    "SUBPROTOCOL_JSON",
    "SUBPROTOCOL_MSGPACK",
    "Codec",
    "ErrorReply",
    "Incoming",
    "Outgoing",
    "Reply",
    "Subprotocol",
    "Summaries",
    "Welcome",
    "cancel_queued_result",
    "choose_subprotocol",
    "command_from_wire",
    "empty_result",
    "mcp_result",
    "presets_result",
    "project_result",
    "projects_result",
    "result_to_wire",
    "send_message_result",
    "session_result",
    "sessions_result",
    "state_to_wire",
    "stats_result",
    "stop_all_result",
    "stop_generation_result",
    "subscribe_result",
    "to_wire",
]


def _scrub(value: Any) -> Any:
    """``value`` with lone surrogates replaced by U+FFFD (the rare, slow path)."""
    if isinstance(value, str):
        return SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _dumps(payload: Any) -> str:
    """``payload`` as compact JSON text, through orjson (NaN and the infinities are ``null``,
    which is valid JSON; the standard library would write ``NaN``). orjson refuses lone
    surrogates, so those are replaced by U+FFFD and it is tried again; integers past 64 bits,
    which nothing greenroom sends holds, take the standard library's path."""
    try:
        return orjson.dumps(payload).decode()
    except orjson.JSONEncodeError:
        payload = _scrub(payload)
    try:
        return orjson.dumps(payload).decode()
    except orjson.JSONEncodeError:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _byte_length(encoded: str | bytes) -> int:
    """The length in bytes of a frame's piece (text goes out as UTF-8)."""
    if isinstance(encoded, bytes) or encoded.isascii():
        return len(encoded)
    return len(encoded.encode("utf-8", "surrogatepass"))


@attrs.frozen
class _Encoded:
    """A value already encoded in the codec's format, as the parts that the frame is joined
    from. Kept in parts rather than joined on its own: a listing of 100,000 summaries is some
    20 MB, and every extra copy of it showed in the profile."""

    parts: list[Any]  # all str (JSON) or all bytes (msgpack)


# -- the codec ------------------------------------------------------------------------------


class Codec:
    """Frames of one connection, in the subprotocol chosen at the handshake."""

    def __init__(
        self,
        subprotocol: Subprotocol,
        *,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        encodings: EventEncodings | None = None,
    ):
        if subprotocol not in SUBPROTOCOLS:
            raise ValueError(f"unknown subprotocol {subprotocol!r}")
        self.subprotocol: Final = subprotocol
        self.binary: Final = subprotocol == SUBPROTOCOL_MSGPACK
        self.max_frame_bytes: Final = max_frame_bytes
        self._packer = msgpack.Packer(autoreset=True, use_bin_type=True)
        self._events: Fragments | None = None
        if encodings is not None:
            self._events = encodings.msgpack if self.binary else encodings.json

    # server side

    def decode(self, frame: str | bytes) -> Incoming | ErrorReply:
        """One client frame as a command, or as the error reply it deserves. Never raises."""
        parsed = parse_frame(frame, binary=self.binary, max_frame_bytes=self.max_frame_bytes)
        if isinstance(parsed, ErrorReply):
            return parsed
        return command_from_wire(parsed)

    def encode(self, items: Sequence[Outgoing]) -> str | bytes:
        """One frame: an object for one item, an array (a batch, in order) for several.

        A batch is built from the items' own encodings, joined: an array in either format is
        its elements one after the other. So an event, which goes to every connection, is
        encoded once (see :class:`EventEncodings`) and its text reused in every batch.
        """
        if not items:
            raise ValueError("nothing to encode")
        return self._join([self._part(item) for item in items])

    def encode_with(
        self, items: Sequence[Outgoing], events: Sequence[Event], budget: int
    ) -> tuple[str | bytes, int]:
        """One frame of ``items`` followed by as many of ``events`` as fit in about
        ``budget`` bytes (at least one item in all), and how many of ``events`` it carries:
        a connection's frame of live events, measured as it is joined."""
        memo = self._events
        if memo is not None and not items:
            shared = memo.frame_of(events, budget)
            if shared is not None:
                return shared
        parts = [self._part(item) for item in items]
        encode = self._event
        encoded = memo.of_all(events, encode) if memo is not None else map(encode, events)
        used = 0
        taken = 0
        for piece in encoded:
            used += _byte_length(piece)
            if used > budget and parts:
                break
            parts.append(piece)
            taken += 1
        if not parts:
            raise ValueError("nothing to encode")
        frame = self._join(parts)
        if memo is not None and not items:
            memo.keep_frame(events, budget, frame, taken)
        return frame, taken

    def _part(self, item: Outgoing) -> str | bytes:
        events = self._events
        if events is not None and type(item) is Event:
            return events.of(item, self._event)
        return self._encode_one(item)

    def _join(self, parts: list[Any]) -> str | bytes:
        if len(parts) == 1:
            return cast(str | bytes, parts[0])
        if self.binary:
            header: bytes = self._packer.pack_array_header(len(parts))
            return header + b"".join(cast(list[bytes], parts))
        return "[" + ",".join(cast(list[str], parts)) + "]"

    def event_bytes(self, event: Event) -> int:
        """What ``event`` takes in a frame, in bytes (its shared encoding, made if new)."""
        events = self._events
        encoded = events.of(event, self._event) if events is not None else self._event(event)
        return _byte_length(encoded)

    def delta_bytes(self, delta: str) -> int:
        """At least what ``delta`` adds to a frame when merged into a queued update's text."""
        if self.binary:
            return len(delta.encode("utf-8", "surrogatepass")) + 4  # a longer str header
        try:  # orjson's output is the UTF-8 that goes out: its length, with no round trip
            return len(orjson.dumps(delta)) - 2  # the quotes are there already
        except orjson.JSONEncodeError:  # lone surrogates, which go out as U+FFFD
            return _byte_length(_dumps(delta)) - 2

    # client side (the Python client and the tests)

    def encode_command(self, id: int | str, command: Command[Any]) -> str | bytes:
        """The frame a client sends for ``command``."""
        return self._serialize(command_to_wire(id, command))

    def decode_server(self, frame: str | bytes) -> list[dict[str, Any]]:
        """The replies and events of one server frame, in order (trusts the server)."""
        obj = orjson.loads(frame) if isinstance(frame, str) else msgpack.unpackb(frame, raw=False)
        return obj if isinstance(obj, list) else [obj]

    # internals

    def _event(self, event: Event) -> str | bytes:
        return self._serialize(to_wire(event))

    def _encode_one(self, item: Outgoing) -> str | bytes:
        """One reply, error, welcome or (without shared encodings) event.

        A listing of summaries (the welcome's, ``listSessions``') is joined from each
        summary's memoized encoding; the frame is, byte for byte, what serializing the item's
        :func:`to_wire` would give.
        """
        if type(item) is Event:
            return self._event(item)
        if type(item) is Welcome:
            return self._spliced(welcome_to_wire(item, self._listing))
        if type(item) is Reply and any(type(v) is Summaries for v in item.result.values()):
            return self._spliced(reply_to_wire(item, self._listing))
        return self._serialize(to_wire(item))

    def _listing(self, summaries: Iterable[Summary]) -> _Encoded:
        """An array of summaries, from their memoized encodings."""
        of = (MSGPACK_SUMMARIES if self.binary else JSON_SUMMARIES).of
        encode = self._summary
        encoded = [of(summary, encode) for summary in summaries]
        if self.binary:
            return _Encoded([self._packer.pack_array_header(len(encoded)), *encoded])
        if not encoded:
            return _Encoded(["[]"])
        parts: list[Any] = [","] * (2 * len(encoded) + 1)  # "[", s1, ",", s2, ..., sN, "]"
        parts[0], parts[-1] = "[", "]"
        parts[1::2] = encoded
        return _Encoded(parts)

    def _summary(self, summary: Summary) -> str | bytes:
        return self._serialize(summary_to_wire(summary))

    def _spliced(self, obj: Mapping[str, Any]) -> str | bytes:
        """``obj`` serialized, with the :class:`_Encoded` values in it (in nested dicts) copied
        in as they are, in one join."""
        parts: list[Any] = []
        self._write_map(obj, parts)
        return b"".join(parts) if self.binary else "".join(parts)

    def _write_map(self, obj: Mapping[str, Any], parts: list[Any]) -> None:
        """Append the encoding of ``obj`` to ``parts``. In either format a map is its keys and
        values one after the other (after a header in msgpack; in braces, with separators, in
        JSON), so writing it pair by pair gives the very bytes that serializing it whole does."""
        binary = self.binary
        parts.append(self._packer.pack_map_header(len(obj)) if binary else "{")
        for i, (key, value) in enumerate(obj.items()):
            if binary:
                parts.append(self._serialize(key))
            else:
                parts.append(("," if i else "") + cast(str, self._serialize(key)) + ":")
            if type(value) is _Encoded:
                parts.extend(value.parts)
            elif type(value) is dict:
                self._write_map(value, parts)
            else:
                parts.append(self._serialize(value))
        if not binary:
            parts.append("}")

    def _serialize(self, payload: Any) -> str | bytes:
        if self.binary:
            try:
                packed: bytes = self._packer.pack(payload)
            except UnicodeEncodeError:
                self._packer.reset()
                packed = self._packer.pack(_scrub(payload))
            return packed
        return _dumps(payload)
