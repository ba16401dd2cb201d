"""The sans-IO wire codec: client frames -> commands, replies and events -> server frames.

It knows nothing of sockets, tasks or clocks (and never imports trio): the connection hands it
one frame at a time and sends what it returns. :meth:`Codec.decode` is the single point where
peer bytes enter; it never raises for bad input, it returns the exact :class:`ErrorReply` that
docs/protocol.md names instead. JSON goes out through orjson, msgpack through one kept packer;
each event and summary is encoded once per format for every connection (protocol/encodings.py).
(One file of some 800 lines: both directions share the frame types and the wire rules, and
splitting them would scatter the contract.)

Decisions the protocol leaves open, made here:

- Unknown extra fields of a command are ignored, so that a newer client can talk to an older
  server. Optional fields (``since``, ``focusProject``'s ``project``) may be absent or ``null``.
- ``id`` must be an integer in the 64-bit range (so that it fits msgpack too) or a string;
  ``true``/``false`` are not integers. Without a usable ``id`` the reply has ``"re": null``.
- Every string a command carries must be valid Unicode (no lone surrogates from ``\\ud800``
  escapes), so that whatever the server echoes can always be encoded again.
- Nesting deeper than :data:`MAX_DEPTH` anywhere in a frame is ``bad_frame``, checked before
  (JSON) or right after (msgpack, whose unpacker has its own fixed stack) parsing, so that no
  parser ever recurses deeply.
- A session id must be 1 to 128 characters (``invalid_argument`` otherwise); ``since`` must be
  0 or more; a tool call id 1 to 256 characters and a denial's ``reason`` at most 2,000.
- The first frame is the ``welcome`` event, which belongs to no session (:class:`Welcome`).
- Outgoing text with lone surrogates (a provider can send ``\\ud800``) has them replaced by
  U+FFFD rather than failing the whole batch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final, Literal, TypeVar, cast

import attrs
import msgpack  # type: ignore[import-untyped]  # no stubs, no py.typed
import orjson

from greenroom.protocol import commands as c
from greenroom.protocol.commands import COMMANDS, Command, command_to_wire
from greenroom.protocol.convert import converter, event_to_wire, summary_to_wire
from greenroom.protocol.encodings import (
    JSON_SUMMARIES,
    MSGPACK_SUMMARIES,
    EventEncodings,
    Fragments,
)
from greenroom.protocol.errors import BadRequest, GreenroomError, InvalidArgument
from greenroom.protocol.events import Event, Summary
from greenroom.protocol.results import (
    McpStatusLike,
    OpenedSession,
    PresetListingLike,
    ProjectInfo,
    Subscribed,
)
from greenroom.protocol.state import SessionView
from greenroom.protocol.values import (
    MAX_TEMPERATURE,
    MAX_TOKENS,
    PRESET_NAME,
    validate_project_name,
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
    "empty_result",
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
]

Subprotocol = Literal["greenroom.v1.json", "greenroom.v1.msgpack"]
SUBPROTOCOL_JSON: Final = "greenroom.v1.json"
SUBPROTOCOL_MSGPACK: Final = "greenroom.v1.msgpack"
SUBPROTOCOLS: Final[tuple[Subprotocol, ...]] = (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK)

PROTOCOL_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 1 << 20
"""Default frame size limit; the server closes with 1009 above it, decode says too_large."""
MAX_DEPTH: Final = 32
"""Deepest nesting of arrays and objects a client frame may have."""
MAX_SESSION_CHARS: Final = 128
MAX_MODEL_CHARS: Final = 200
MAX_CALL_CHARS: Final = 256
MAX_REASON_CHARS: Final = 2000

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what msgpack can carry
_SHOWN_CHARS = 40  # how much of a bad value an error message quotes


def choose_subprotocol(offered: Sequence[str]) -> Subprotocol | None:
    """The subprotocol to accept: the client's first one that greenroom speaks.

    JSON when the client offers none. None when it offers only unknown ones: the server then
    refuses the handshake, since a client that asked for a subprotocol would fail the
    connection anyway when none is selected (RFC 6455, 4.1).
    """
    if not offered:
        return SUBPROTOCOL_JSON
    for name in offered:
        if name == SUBPROTOCOL_JSON:
            return SUBPROTOCOL_JSON
        if name == SUBPROTOCOL_MSGPACK:
            return SUBPROTOCOL_MSGPACK
    return None


# -- what crosses the wire ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Incoming:
    """A decoded command and the client's ``id``, to be echoed as ``re`` in its reply."""

    id: int | str
    command: Command[Any]


@attrs.frozen(kw_only=True)
class Reply:
    """A successful reply; build ``result`` with the ``*_result`` helpers below."""

    re: int | str
    result: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ErrorReply:
    """A failed command, or a frame that was no command at all (``re`` None)."""

    re: int | str | None
    code: str
    message: str

    @classmethod
    def of(cls, re: int | str | None, error: GreenroomError) -> ErrorReply:
        """The reply that tells the client about ``error``."""
        return cls(re=re, code=error.code, message=error.message)


@attrs.frozen(kw_only=True)
class Welcome:
    """The first frame of every connection (an event of no session).

    ``sessions`` are the summaries of every session; ``notifications`` the ``notification``
    events kept for this client while nobody was connected; ``provider`` (greenroom's addition)
    names the model provider, so that a UI can label simulated replies as such.
    """

    name: ClassVar[str] = "welcome"
    version: str
    connection: str
    sessions: tuple[Summary, ...] = ()
    notifications: tuple[Event, ...] = ()
    server: str = "greenroom"
    protocol: int = PROTOCOL_VERSION
    provider: str | None = None


Outgoing = Reply | ErrorReply | Event | Welcome

R = TypeVar("R")


# -- results --------------------------------------------------------------------------------


def state_to_wire(view: SessionView) -> dict[str, Any]:
    """The protocol's ``state``: summary fields, ``messages``, ``streaming``, ``seq``."""
    result: dict[str, Any] = converter.unstructure(view, SessionView)
    return result


def projects_result(projects: Iterable[ProjectInfo]) -> dict[str, Any]:
    """``listProjects``."""
    return {
        "projects": [
            {"project": p.project, "session": p.session, "status": p.status} for p in projects
        ]
    }


def project_result(project: str) -> dict[str, Any]:
    """``createProject``."""
    return {"project": project}


class Summaries(list[Summary]):
    """The summaries of a listing, kept as objects in a result until the codec writes them.

    With 100,000 sessions, building and serializing a dict per summary was most of what a
    ``listSessions`` cost; the codec instead joins each summary's memoized encoding (see
    :class:`_SummaryMemo`). A list, so that what sizes a result by its lists (the outbox's
    estimate) still counts the summaries.
    """

    __slots__ = ()


def sessions_result(summaries: Iterable[Summary]) -> dict[str, Any]:
    """``listSessions`` (the summaries as :class:`Summaries`, written by the codec)."""
    return {"sessions": Summaries(summaries)}


def session_result(view: SessionView, mcp: McpStatusLike) -> dict[str, Any]:
    """``openSession``: the state, and the project's MCP configuration."""
    return {"session": state_to_wire(view), **mcp_result(mcp)}


def mcp_result(status: McpStatusLike) -> dict[str, Any]:
    """``mcpConfig`` and ``trustMcpConfig``: the project's ``.mcp.json`` and its approval."""
    return {
        "mcp": {
            "file": ".mcp.json",
            "state": status.state,
            "hash": status.hash,
            "servers": [server.describe() for server in status.servers],
            "error": status.error,
        }
    }


def presets_result(listing: PresetListingLike) -> dict[str, Any]:
    """``listPresets``: the presets (system prompts cut short), and why the project's own
    presets file is unusable (null when it is fine or absent)."""
    return {
        "presets": [preset.describe() for preset in listing.presets],
        "error": listing.error,
    }


def subscribe_result(seq: int) -> dict[str, Any]:
    """``subscribe``: the session's current seq."""
    return {"seq": seq}


def send_message_result(queued: bool) -> dict[str, Any]:
    """``sendMessage``: whether the message waits behind a running turn."""
    return {"queued": queued}


def stop_generation_result(discarded: Iterable[str]) -> dict[str, Any]:
    """``stopGeneration``: the queued texts that were dropped."""
    return {"discarded": list(discarded)}


def cancel_queued_result(removed: str) -> dict[str, Any]:
    """``cancelQueued``: the whole text that was removed from the queue."""
    return {"removed": removed}


def stop_all_result(stopped: int) -> dict[str, Any]:
    """``stopAll``: how many sessions were stopped."""
    return {"stopped": stopped}


def stats_result(counters: Mapping[str, Any]) -> dict[str, Any]:
    """``stats``: the counters as given (plain values only)."""
    return dict(counters)


def empty_result(_: object = None) -> dict[str, Any]:
    """The ``{}`` of every command that returns nothing."""
    return {}


def _opened_result(opened: OpenedSession) -> dict[str, Any]:
    return session_result(opened, opened.mcp)


def _subscribed_result(subscribed: Subscribed) -> dict[str, Any]:
    result = subscribe_result(subscribed.seq)
    if subscribed.replay is None:
        result["reset"] = True  # what was missed is gone: reload with openSession
    return result


RESULTS: dict[type[Command[Any]], Callable[[Any], dict[str, Any]]] = {}
"""Per command class, what turns its result (see :mod:`~greenroom.protocol.commands`) into the
reply's ``result``."""


def _result(cls: type[Command[R]], to_wire: Callable[[R], dict[str, Any]]) -> None:
    # One call per command, so that mypy checks each function against the command's result.
    RESULTS[cls] = to_wire


_result(c.ListProjects, projects_result)
_result(c.CreateProject, lambda info: project_result(info.project))
_result(c.DeleteProject, empty_result)
_result(c.ListSessions, sessions_result)
_result(c.OpenSession, _opened_result)
_result(c.Subscribe, _subscribed_result)
_result(c.Unsubscribe, empty_result)
_result(c.SendMessage, send_message_result)
_result(c.StopGeneration, stop_generation_result)
_result(c.CancelQueued, cancel_queued_result)
_result(c.ResumeSession, empty_result)
_result(c.ApproveToolCall, empty_result)
_result(c.NewChat, empty_result)
_result(c.DeleteSession, empty_result)
_result(c.FocusProject, empty_result)
_result(c.McpConfig, mcp_result)
_result(c.TrustMcpConfig, mcp_result)
_result(c.ListPresets, presets_result)
_result(c.StopAll, stop_all_result)
_result(c.Stats, stats_result)
_result(c.Ping, empty_result)


def result_to_wire(command: Command[R], result: R) -> dict[str, Any]:
    """The reply's ``result`` for ``command``, executed with ``result``."""
    return RESULTS[type(command)](result)


# -- decoding -------------------------------------------------------------------------------

# A JSON string, or an unterminated one up to the end: it always matches, so scanning is
# linear even on hostile input (no backtracking on a string that never closes).
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SHA256 = re.compile("[0-9a-fA-F]{64}")


def _json_nesting_error(text: str) -> str | None:
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


def _is_text(value: str) -> bool:
    return value.isascii() or _SURROGATE.search(value) is None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _bad_frame(message: str) -> ErrorReply:
    return ErrorReply(re=None, code="bad_frame", message=message)


def _string(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string")
    if not _is_text(value):
        raise BadRequest(f"field {name!r} is not valid Unicode text")
    return value


def _identifier(what: str, limit: int) -> Callable[[str, object], str]:
    """The check of an id field: a string of 1 to ``limit`` characters, ``what`` it names."""

    def check(name: str, value: object) -> str:
        text = _string(name, value)
        if not 0 < len(text) <= limit:
            raise InvalidArgument(f"invalid {what}: use 1 to {limit} characters")
        return text

    return check


_session = _identifier("session id", MAX_SESSION_CHARS)
_call = _identifier("tool call id", MAX_CALL_CHARS)


def _project(name: str, value: object) -> str:
    project = _string(name, value)
    if len(project) > 64:  # checked first so that the message does not quote it all
        raise InvalidArgument("invalid project name: longer than 64 characters")
    return validate_project_name(project)


def _model(name: str, value: object) -> str:
    model = _string(name, value)
    if not 0 < len(model) <= MAX_MODEL_CHARS or not model.isprintable():
        raise InvalidArgument(
            f"invalid model name: use 1 to {MAX_MODEL_CHARS} printable characters"
        )
    return model


def _temperature(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"field {name!r} must be a number")
    if not (math.isfinite(value) and 0 <= value <= MAX_TEMPERATURE):
        raise InvalidArgument(f"field {name!r} must be from 0 to {MAX_TEMPERATURE:g}")
    return float(value)


def _integer(low: int, high: int, shown: str) -> Callable[[str, object], int]:
    """The check of an integer field from ``low`` to ``high`` (``high`` written as ``shown``)."""

    def check(name: str, value: object) -> int:
        if type(value) is not int:
            raise BadRequest(f"field {name!r} must be an integer")
        if not low <= value <= high:
            raise InvalidArgument(f"field {name!r} must be from {low} to {shown}")
        return value

    return check


_max_tokens = _integer(1, MAX_TOKENS, str(MAX_TOKENS))
_index = _integer(0, 2**31 - 1, "2**31 - 1")
_seq = _integer(0, 2**63 - 1, "2**63 - 1")


def _preset(name: str, value: object) -> str:
    preset = _string(name, value)
    if not PRESET_NAME.fullmatch(preset):
        raise InvalidArgument(
            "invalid preset name: use 1 to 64 letters, digits, '_', '.' or '-', starting with "
            "a letter or digit"
        )
    return preset


def _hash(name: str, value: object) -> str:
    digest = _string(name, value)
    if not _SHA256.fullmatch(digest):
        raise InvalidArgument(f"field {name!r} must be a sha256 digest: 64 hexadecimal digits")
    return digest.lower()


def _allow(name: str, value: object) -> bool:
    if type(value) is not bool:
        raise BadRequest(f"field {name!r} must be true or false")
    return value


def _reason(name: str, value: object) -> str:
    reason = _string(name, value)
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidArgument(f"field {name!r} is over {MAX_REASON_CHARS} characters")
    return reason


# Commands are checked by hand rather than structured with cattrs: the protocol wants one short
# error per field ("field 'session' must be a string"), and bools must not pass for ints.
_CHECKS = {
    "session": _session,
    "project": _project,
    "content": _string,
    "since": _seq,
    "model": _model,
    "temperature": _temperature,
    "maxTokens": _max_tokens,
    "preset": _preset,
    "hash": _hash,
    "index": _index,
    "preview": _string,
    "call": _call,
    "allow": _allow,
    "reason": _reason,
}
_FIELDS: dict[type[Any], tuple[tuple[str, bool], ...]] = {
    cls: tuple((f.name, f.default is attrs.NOTHING) for f in attrs.fields(cls))
    for cls in COMMANDS.values()
}
"""Per command class: (field, required) pairs; an optional field defaults to None."""


def _command(obj: dict[Any, Any]) -> Incoming | ErrorReply:
    if "id" not in obj:
        return ErrorReply(re=None, code="bad_request", message="missing field 'id'")
    id_ = obj["id"]
    if not (
        (type(id_) is int and _INT_MIN <= id_ <= _INT_MAX) or (type(id_) is str and _is_text(id_))
    ):
        return ErrorReply(
            re=None, code="bad_request", message="'id' must be a 64-bit integer or a string"
        )
    if "op" not in obj:
        return ErrorReply(re=id_, code="bad_request", message="missing field 'op'")
    op = obj["op"]
    if not isinstance(op, str):
        return ErrorReply(re=id_, code="bad_request", message="field 'op' must be a string")
    cls = COMMANDS.get(op)
    if cls is None:
        return ErrorReply(re=id_, code="unknown_op", message=f"unknown op {_show(op)}")
    try:
        kwargs: dict[str, Any] = {}
        for name, required in _FIELDS[cls]:
            value = obj.get(name)
            if value is None:
                if required:
                    raise BadRequest(f"missing field {name!r}")
                continue
            kwargs[name] = _CHECKS[name](name, value)
    except GreenroomError as error:
        return ErrorReply.of(id_, error)
    return Incoming(id=id_, command=cls(**kwargs))


def command_from_wire(obj: dict[Any, Any]) -> Incoming | ErrorReply:
    """A command frame already parsed (a dict), checked as :meth:`Codec.decode` checks one:
    how a cluster node reads a command forwarded to it."""
    return _command(obj)


# -- encoding -------------------------------------------------------------------------------


def _plain_listing(summaries: Iterable[Summary]) -> list[dict[str, Any]]:
    return [summary_to_wire(s) for s in summaries]


_Listing = Callable[[Iterable[Summary]], Any]
"""How a listing of summaries goes into a frame: as plain dicts (:func:`to_wire`), or as the
joined encodings that the codec copies in (:meth:`Codec._listing`)."""


def _reply_to_wire(reply: Reply, listing: _Listing = _plain_listing) -> dict[str, Any]:
    result = reply.result
    if any(type(value) is Summaries for value in result.values()):
        result = {k: listing(v) if type(v) is Summaries else v for k, v in result.items()}
    return {"re": reply.re, "ok": True, "result": result}


def _error_to_wire(reply: ErrorReply) -> dict[str, Any]:
    return {"re": reply.re, "ok": False, "error": {"code": reply.code, "message": reply.message}}


def _welcome_to_wire(welcome: Welcome, listing: _Listing = _plain_listing) -> dict[str, Any]:
    return {
        "event": Welcome.name,
        "session": None,
        "project": None,
        "seq": None,
        "data": {
            "server": welcome.server,
            "version": welcome.version,
            "protocol": welcome.protocol,
            "connection": welcome.connection,
            "provider": welcome.provider,
            "sessions": listing(welcome.sessions),
            "notifications": [event_to_wire(e) for e in welcome.notifications],
        },
    }


_TO_WIRE: dict[type[Any], Any] = {
    Event: event_to_wire,
    Reply: _reply_to_wire,
    ErrorReply: _error_to_wire,
    Welcome: _welcome_to_wire,
}


def to_wire(item: Outgoing) -> dict[str, Any]:
    """One reply or event as the plain object that goes into a frame."""
    obj: dict[str, Any] = _TO_WIRE[type(item)](item)
    return obj


def _scrub(value: Any) -> Any:
    """``value`` with lone surrogates replaced by U+FFFD (the rare, slow path)."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
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
        parsed = self._parse(frame)
        if isinstance(parsed, ErrorReply):
            return parsed
        return _command(parsed)

    def encode(self, items: Sequence[Outgoing]) -> str | bytes:
        """One frame: an object for one item, an array (a batch, in order) for several.

        A batch is built from the items' own encodings, joined: an array in either format is
        its elements one after the other. So an event, which goes to every connection, is
        encoded once (see :class:`EventEncodings`) and its text reused in every batch.
        """
        if not items:
            raise ValueError("nothing to encode")
        events = self._events
        parts = [
            events.of(item, self._event)
            if events is not None and type(item) is Event
            else self._encode_one(item)
            for item in items
        ]
        if len(parts) == 1:
            return parts[0]
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
            return self._spliced(_welcome_to_wire(item, self._listing))
        if type(item) is Reply and any(type(v) is Summaries for v in item.result.values()):
            return self._spliced(_reply_to_wire(item, self._listing))
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

    def _parse(self, frame: str | bytes) -> dict[Any, Any] | ErrorReply:
        if isinstance(frame, str):
            if self.binary:
                return _bad_frame("expected a binary frame (greenroom.v1.msgpack)")
            size = len(frame)
            if size <= self.max_frame_bytes < 4 * size:
                size = len(frame.encode("utf-8", "surrogatepass"))
        else:
            if not self.binary:
                return _bad_frame("expected a text frame (greenroom.v1.json)")
            size = len(frame)
        if size > self.max_frame_bytes:
            return ErrorReply(
                re=None, code="too_large", message=f"frame over {self.max_frame_bytes} bytes"
            )
        obj: object
        if isinstance(frame, str):
            error = _json_nesting_error(frame)
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
            kind = "a msgpack map" if self.binary else "a JSON object"
            return _bad_frame(f"a frame must be {kind}")
        return obj
