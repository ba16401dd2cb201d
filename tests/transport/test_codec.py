"""The wire codec: every op, every error path, garbage in, and the exact shapes going out."""

from __future__ import annotations

import gc
import json
import math
import re
import subprocess
import sys
import weakref
from collections.abc import Callable
from typing import Any

import attrs
import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenroom.agent.mcp.config import ProjectMcpStatus, parse_server
from greenroom.protocol import codec as codec_module
from greenroom.protocol import encodings as encodings_module
from greenroom.protocol.chat import Message, ToolCall
from greenroom.protocol.codec import (
    MAX_DEPTH,
    MAX_FRAME_BYTES,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    SUBPROTOCOLS,
    Codec,
    ErrorReply,
    Incoming,
    Outgoing,
    Reply,
    Subprotocol,
    Welcome,
    _scrub,
    cancel_queued_result,
    choose_subprotocol,
    empty_result,
    mcp_result,
    project_result,
    projects_result,
    send_message_result,
    session_result,
    sessions_result,
    state_to_wire,
    stats_result,
    stop_all_result,
    stop_generation_result,
    subscribe_result,
    to_wire,
)
from greenroom.protocol.commands import (
    COMMANDS,
    ApproveToolCall,
    CancelQueued,
    Command,
    CreateProject,
    DeleteProject,
    DeleteSession,
    FocusProject,
    ListPresets,
    ListProjects,
    ListSessions,
    McpConfig,
    NewChat,
    OpenSession,
    Ping,
    ResumeSession,
    SendMessage,
    Stats,
    StopAll,
    StopGeneration,
    Subscribe,
    TrustMcpConfig,
    Unsubscribe,
    command_to_wire,
)
from greenroom.protocol.convert import structure, summary_to_wire, unstructure
from greenroom.protocol.encodings import EventEncodings
from greenroom.protocol.events import (
    ApprovalRequested,
    Event,
    EventData,
    LoadingChanged,
    MessageAdded,
    Notification,
    PartialToolCall,
    PendingApproval,
    SessionCreated,
    SessionDeleted,
    SessionFailed,
    SessionRestarted,
    SessionUpdated,
    StreamingUpdate,
    Summary,
)
from greenroom.protocol.state import SessionView
from greenroom.transport.outbox import estimate
from tests import strategies

NO_MCP = ProjectMcpStatus(state="none")
NO_MCP_WIRE = {
    "mcp": {"file": ".mcp.json", "state": "none", "hash": None, "servers": [], "error": None}
}

JSON = Codec(SUBPROTOCOL_JSON)
MSGPACK = Codec(SUBPROTOCOL_MSGPACK)
CODECS = pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])


def frame_of(codec: Codec, obj: Any) -> str | bytes:
    """What a client would send for ``obj`` (any plain value) on ``codec``'s connection."""
    return json.dumps(obj, ensure_ascii=False) if not codec.binary else msgpack.packb(obj)


def parse(frame: str | bytes) -> Any:
    return json.loads(frame) if isinstance(frame, str) else msgpack.unpackb(frame)


# -- subprotocols ---------------------------------------------------------------------------


def test_choose_subprotocol() -> None:
    assert SUBPROTOCOLS == ("greenroom.v1.json", "greenroom.v1.msgpack")
    assert choose_subprotocol([]) == SUBPROTOCOL_JSON
    assert choose_subprotocol(["greenroom.v1.msgpack"]) == SUBPROTOCOL_MSGPACK
    assert choose_subprotocol(["x", "greenroom.v1.msgpack", "greenroom.v1.json"]) == (
        SUBPROTOCOL_MSGPACK
    )
    assert choose_subprotocol(["greenroom.v1.json", "greenroom.v1.msgpack"]) == SUBPROTOCOL_JSON
    assert choose_subprotocol(["graphql-ws", "greenroom.v2.json"]) is None


def test_unknown_subprotocol_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown subprotocol"):
        Codec("greenroom.v1.xml")  # type: ignore[arg-type]


def test_codec_does_not_import_trio() -> None:
    code = "import sys, greenroom.protocol.codec; assert 'trio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- every op -------------------------------------------------------------------------------

EXAMPLES: list[tuple[dict[str, Any], Command]] = [
    ({"id": 1, "op": "listProjects"}, ListProjects()),
    ({"id": 2, "op": "createProject", "project": "blog"}, CreateProject(project="blog")),
    (
        {"id": 3, "op": "deleteProject", "project": "my_site-2.0"},
        DeleteProject(project="my_site-2.0"),
    ),
    ({"id": 4, "op": "listSessions"}, ListSessions()),
    ({"id": 5, "op": "openSession", "project": "blog"}, OpenSession(project="blog")),
    ({"id": 6, "op": "subscribe", "session": "s-1f3a"}, Subscribe(session="s-1f3a")),
    ({"id": 6, "op": "subscribe", "session": "s-1f3a", "since": None}, Subscribe(session="s-1f3a")),
    (
        {"id": 6, "op": "subscribe", "session": "s-1f3a", "since": 41},
        Subscribe(session="s-1f3a", since=41),
    ),
    ({"id": 7, "op": "unsubscribe", "session": "s-1f3a"}, Unsubscribe(session="s-1f3a")),
    (
        {"id": 7, "op": "sendMessage", "session": "s-1f3a", "content": "add a footer"},
        SendMessage(session="s-1f3a", content="add a footer"),
    ),
    ({"id": 8, "op": "stopGeneration", "session": "s-1"}, StopGeneration(session="s-1")),
    (
        {"id": 18, "op": "cancelQueued", "session": "s-1", "index": 2, "preview": "add a footer"},
        CancelQueued(session="s-1", index=2, preview="add a footer"),
    ),
    (
        {"id": 18, "op": "cancelQueued", "session": "s-1", "index": 0, "preview": ""},
        CancelQueued(session="s-1", index=0, preview=""),
    ),
    ({"id": 9, "op": "resumeSession", "session": "s-1"}, ResumeSession(session="s-1")),
    ({"id": 10, "op": "newChat", "session": "s-1"}, NewChat(session="s-1")),
    ({"id": 11, "op": "deleteSession", "session": "s-1"}, DeleteSession(session="s-1")),
    ({"id": 12, "op": "focusProject", "project": "blog"}, FocusProject(project="blog")),
    ({"id": 12, "op": "focusProject", "project": None}, FocusProject(project=None)),
    ({"id": 12, "op": "focusProject"}, FocusProject(project=None)),
    ({"id": 13, "op": "stopAll"}, StopAll()),
    ({"id": "stats-1", "op": "stats"}, Stats()),
    ({"id": -5, "op": "ping"}, Ping()),
    ({"id": 16, "op": "mcpConfig", "project": "blog"}, McpConfig(project="blog")),
    (
        {"id": 17, "op": "trustMcpConfig", "project": "blog", "hash": "AB" * 32},
        TrustMcpConfig(project="blog", hash="ab" * 32),
    ),
    ({"id": 18, "op": "listPresets"}, ListPresets()),
    ({"id": 18, "op": "listPresets", "project": "blog"}, ListPresets(project="blog")),
    (
        {"id": 19, "op": "openSession", "project": "blog", "preset": "review.v2"},
        OpenSession(project="blog", preset="review.v2"),
    ),
    (
        {"id": 18, "op": "approveToolCall", "session": "s-1", "call": "call_1", "allow": True},
        ApproveToolCall(session="s-1", call="call_1", allow=True),
    ),
    (
        {"id": 18, "op": "approveToolCall", "session": "s-1", "call": "c", "allow": False,
         "reason": "not that file"},
        ApproveToolCall(session="s-1", call="c", allow=False, reason="not that file"),
    ),
    # Unknown fields are ignored (forward compatibility).
    ({"id": 14, "op": "ping", "future": [1, {"x": 2}]}, Ping()),
    (
        {"id": 15, "op": "sendMessage", "session": "s", "content": "", "priority": "high"},
        SendMessage(session="s", content=""),
    ),
]


def test_every_op_has_an_example() -> None:
    assert {type(command).op for _, command in EXAMPLES} == set(COMMANDS)


@CODECS
@pytest.mark.parametrize(("obj", "command"), EXAMPLES)
def test_every_op_decodes(codec: Codec, obj: dict[str, Any], command: Command) -> None:
    assert codec.decode(frame_of(codec, obj)) == Incoming(id=obj["id"], command=command)


def test_decodes_the_protocol_example_verbatim() -> None:
    frame = '{"id": 7, "op": "sendMessage", "session": "s-1f3a", "content": "add a footer"}'
    assert JSON.decode(frame) == Incoming(
        id=7, command=SendMessage(session="s-1f3a", content="add a footer")
    )


# -- every error path -----------------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = 0
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


ERRORS: list[tuple[Any, Any, str, str]] = [
    # (frame object, expected re, code, part of the message)
    ([1, 2], None, "bad_frame", "must be"),
    ([], None, "bad_frame", "must be"),
    ("ping", None, "bad_frame", "must be"),
    (3, None, "bad_frame", "must be"),
    (None, None, "bad_frame", "must be"),
    ({"id": 1, "op": "ping", "x": nested(MAX_DEPTH)}, None, "bad_frame", "deeper"),
    ({"op": "ping"}, None, "bad_request", "'id'"),
    ({"id": None, "op": "ping"}, None, "bad_request", "'id'"),
    ({"id": True, "op": "ping"}, None, "bad_request", "'id'"),
    ({"id": 1.5, "op": "ping"}, None, "bad_request", "'id'"),
    ({"id": [1], "op": "ping"}, None, "bad_request", "'id'"),
    ({"id": {"a": 1}, "op": "ping"}, None, "bad_request", "'id'"),
    ({"id": 1}, 1, "bad_request", "'op'"),
    ({"id": 1, "op": None}, 1, "bad_request", "'op'"),
    ({"id": "a", "op": 5}, "a", "bad_request", "'op'"),
    ({"id": 1, "op": "launchMissiles"}, 1, "unknown_op", "launchMissiles"),
    ({"id": 1, "op": "Ping"}, 1, "unknown_op", "Ping"),
    ({"id": 1, "op": "x" * 10_000}, 1, "unknown_op", "unknown op"),
    ({"id": 2, "op": "sendMessage", "session": "s"}, 2, "bad_request", "'content'"),
    ({"id": 2, "op": "sendMessage", "content": "x"}, 2, "bad_request", "'session'"),
    ({"id": 2, "op": "sendMessage", "session": "s", "content": None}, 2, "bad_request", "content"),
    ({"id": 2, "op": "sendMessage", "session": "s", "content": 5}, 2, "bad_request", "string"),
    ({"id": 2, "op": "sendMessage", "session": 5, "content": "x"}, 2, "bad_request", "'session'"),
    ({"id": 2, "op": "subscribe", "session": ["s"]}, 2, "bad_request", "'session'"),
    ({"id": 2, "op": "subscribe", "session": ""}, 2, "invalid_argument", "session"),
    ({"id": 2, "op": "subscribe", "session": "s" * 129}, 2, "invalid_argument", "session"),
    ({"id": 2, "op": "subscribe", "session": "s", "since": "3"}, 2, "bad_request", "'since'"),
    ({"id": 2, "op": "trustMcpConfig", "project": "p"}, 2, "bad_request", "'hash'"),
    (
        {"id": 2, "op": "trustMcpConfig", "project": "p", "hash": "x" * 64},
        2,
        "invalid_argument",
        "sha256",
    ),
    ({"id": 2, "op": "subscribe", "session": "s", "since": True}, 2, "bad_request", "'since'"),
    ({"id": 2, "op": "subscribe", "session": "s", "since": 1.0}, 2, "bad_request", "'since'"),
    ({"id": 2, "op": "subscribe", "session": "s", "since": -1}, 2, "invalid_argument", "'since'"),
    ({"id": 3, "op": "createProject"}, 3, "bad_request", "'project'"),
    ({"id": 3, "op": "createProject", "project": 7}, 3, "bad_request", "'project'"),
    ({"id": 3, "op": "createProject", "project": ""}, 3, "invalid_argument", "project name"),
    ({"id": 3, "op": "createProject", "project": "../etc"}, 3, "invalid_argument", "project"),
    ({"id": 3, "op": "openSession", "project": ".git"}, 3, "invalid_argument", "project name"),
    ({"id": 3, "op": "openSession", "project": "Blog"}, 3, "invalid_argument", "project name"),
    ({"id": 3, "op": "deleteProject", "project": "a/b"}, 3, "invalid_argument", "project name"),
    ({"id": 3, "op": "deleteProject", "project": "a" * 65}, 3, "invalid_argument", "64"),
    ({"id": 3, "op": "focusProject", "project": "a" * 10_000}, 3, "invalid_argument", "64"),
    ({"id": 3, "op": "focusProject", "project": False}, 3, "bad_request", "'project'"),
    ({"id": 4, "op": "cancelQueued", "session": "s", "preview": "x"}, 4, "bad_request", "'index'"),
    ({"id": 4, "op": "cancelQueued", "session": "s", "index": 0}, 4, "bad_request", "'preview'"),
    (
        {"id": 4, "op": "cancelQueued", "session": "s", "index": "0", "preview": "x"},
        4,
        "bad_request",
        "'index'",
    ),
    (
        {"id": 4, "op": "cancelQueued", "session": "s", "index": True, "preview": "x"},
        4,
        "bad_request",
        "'index'",
    ),
    (
        {"id": 4, "op": "cancelQueued", "session": "s", "index": 1.0, "preview": "x"},
        4,
        "bad_request",
        "'index'",
    ),
    (
        {"id": 4, "op": "cancelQueued", "session": "s", "index": -1, "preview": "x"},
        4,
        "invalid_argument",
        "'index'",
    ),
    (
        {"id": 4, "op": "cancelQueued", "session": "s", "index": 2**31, "preview": "x"},
        4,
        "invalid_argument",
        "'index'",
    ),
    (
        {"id": 4, "op": "cancelQueued", "session": "s", "index": 0, "preview": 5},
        4,
        "bad_request",
        "'preview'",
    ),
    (
        {"id": 4, "op": "cancelQueued", "session": "", "index": 0, "preview": "x"},
        4,
        "invalid_argument",
        "session",
    ),
]


@CODECS
@pytest.mark.parametrize(("obj", "re", "code", "text"), ERRORS)
def test_error_replies(codec: Codec, obj: Any, re: Any, code: str, text: str) -> None:
    reply = codec.decode(frame_of(codec, obj))
    assert isinstance(reply, ErrorReply)
    assert (reply.re, reply.code) == (re, code), reply.message
    assert text in reply.message
    assert len(reply.message) < 200


@CODECS
def test_nesting_up_to_the_limit_is_fine(codec: Codec) -> None:
    deepest = {"id": 1, "op": "ping", "x": nested(MAX_DEPTH - 1)}  # the frame is level 1
    assert codec.decode(frame_of(codec, deepest)) == Incoming(id=1, command=Ping())


def test_brackets_inside_strings_are_not_nesting() -> None:
    content = "[{" * 1000 + '\\"' + "}]" * 1000
    frame = json.dumps({"id": 1, "op": "sendMessage", "session": "s", "content": content})
    assert JSON.decode(frame) == Incoming(id=1, command=SendMessage(session="s", content=content))


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 100_000,
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        '"\\"' * 100_000,  # an unterminated string full of escaped quotes
        "{" + '"\\' * 100_000,
        "]" * 40 + "[" * 40,
        "{" * 40 + "}" * 39 + "]",
    ],
)
def test_hostile_json_is_bad_frame(frame: str) -> None:
    reply = JSON.decode(frame)
    assert isinstance(reply, ErrorReply)
    assert (reply.re, reply.code) == (None, "bad_frame")


@pytest.mark.parametrize(
    "frame",
    [
        b"\x91" * 100_000 + b"\xc0",  # deeper than msgpack's own stack
        b"\x81\xa1a" * 40 + b"\xc0",
        b"\xc1",  # never used
        b"\x82\xa2id\x01",  # truncated
        b"\x81\xa2id\x01\x00",  # trailing bytes
        b"\x81\xa2id\xa2\xff\xfe",  # invalid UTF-8
        b"\x81\x01\x02",  # an integer key
        msgpack.packb([1, 2]),
        msgpack.packb("x"),
        b"",
    ],
)
def test_hostile_msgpack_is_bad_frame(frame: bytes) -> None:
    reply = MSGPACK.decode(frame)
    assert isinstance(reply, ErrorReply)
    assert (reply.re, reply.code) == (None, "bad_frame")


def test_frame_of_the_wrong_kind_is_bad_frame() -> None:
    ping = {"id": 1, "op": "ping"}
    for codec, frame in [(JSON, msgpack.packb(ping)), (MSGPACK, json.dumps(ping))]:
        reply = codec.decode(frame)
        assert isinstance(reply, ErrorReply)
        assert (reply.re, reply.code) == (None, "bad_frame")
        assert "frame" in reply.message


@pytest.mark.parametrize(
    "frame", ["", " ", "{", "{'id': 1}", "NaN", "{}x", '{"id": 1,}', "1" * 5000]
)
def test_invalid_json_is_bad_frame(frame: str) -> None:
    reply = JSON.decode(frame)
    assert isinstance(reply, ErrorReply)
    assert (reply.re, reply.code, reply.message) == (None, "bad_frame", reply.message)


@CODECS
def test_over_size_frame_is_too_large(codec: Codec) -> None:
    small = Codec(codec.subprotocol, max_frame_bytes=200)
    obj = {"id": 1, "op": "sendMessage", "session": "s", "content": "é" * 40}
    assert isinstance(small.decode(frame_of(small, obj)), Incoming)
    obj["content"] = "é" * 100  # under 200 characters, over 200 bytes
    reply = small.decode(frame_of(small, obj))
    assert isinstance(reply, ErrorReply)
    assert (reply.re, reply.code) == (None, "too_large")
    assert MAX_FRAME_BYTES == 1 << 20


def test_lone_surrogates_are_refused() -> None:
    content = json.dumps({"id": 1, "op": "sendMessage", "session": "s", "content": "a\ud800"})
    reply = JSON.decode(content)
    assert isinstance(reply, ErrorReply)
    assert (reply.re, reply.code) == (1, "bad_request")
    reply = JSON.decode('{"id": "\\udfff", "op": "ping"}')
    assert isinstance(reply, ErrorReply)
    assert (reply.re, reply.code) == (None, "bad_request")
    # A proper pair is one character and fine.
    assert JSON.decode('{"id": "\\ud83d\\ude00", "op": "ping"}') == Incoming(
        id="😀", command=Ping()
    )


def test_ids_must_fit_64_bits() -> None:
    for good in (2**64 - 1, -(2**63), 0, ""):
        assert JSON.decode(json.dumps({"id": good, "op": "ping"})) == Incoming(
            id=good, command=Ping()
        )
    for bad in (2**64, -(2**63) - 1, 10**100):
        reply = JSON.decode(json.dumps({"id": bad, "op": "ping"}))
        assert isinstance(reply, ErrorReply)
        assert (reply.re, reply.code) == (None, "bad_request")


# -- hypothesis: round trip and garbage in --------------------------------------------------

ids = st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=20))
project_names = strategies.project_names
sessions = st.text(min_size=1, max_size=128)
seqs = st.integers(0, 2**63 - 1)


def command_strategy(cls: type[Command]) -> st.SearchStrategy[Command]:
    fields: dict[str, st.SearchStrategy[Any]] = {
        "project": project_names,
        "session": sessions,
        "content": st.text(),
    }
    if cls in (FocusProject, ListPresets):
        fields["project"] = st.none() | project_names
    if cls is Subscribe:
        fields["since"] = st.none() | seqs
    fields["model"] = st.none() | st.text(
        st.characters(codec="utf-8").filter(str.isprintable), min_size=1, max_size=200
    )
    fields["temperature"] = st.none() | st.floats(0, 2)
    fields["maxTokens"] = st.none() | st.integers(1, 2**31 - 1)
    fields["hash"] = st.text("0123456789abcdef", min_size=64, max_size=64)
    fields["index"] = st.integers(0, 2**31 - 1)
    fields["preview"] = st.text()
    fields["preset"] = st.none() | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True)
    fields["call"] = st.text(min_size=1, max_size=256)
    fields["allow"] = st.booleans()
    fields["reason"] = st.none() | st.text(max_size=2000)
    return st.builds(cls, **{a.name: fields[a.name] for a in attrs.fields(cls)})


any_command = st.one_of([command_strategy(cls) for cls in COMMANDS.values()])


@CODECS
@given(id_=ids, command=any_command)
def test_any_command_round_trips(codec: Codec, id_: int | str, command: Command) -> None:
    frame = codec.encode_command(id_, command)
    assert isinstance(frame, bytes) == codec.binary
    assert codec.decode(frame) == Incoming(id=id_, command=command)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=40,
)
deeply_nested = st.builds(nested, st.integers(0, 200))
field_values = st.one_of(json_values, deeply_nested, project_names, st.sampled_from(["", "s-1"]))
near_commands = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(ids, json_values),
        "op": st.one_of(st.sampled_from(sorted(COMMANDS)), json_values),
        "session": field_values,
        "project": field_values,
        "content": field_values,
        "since": field_values,
        "hash": field_values,
        "call": field_values,
        "allow": field_values,
        "reason": field_values,
        "extra": field_values,
    },
)


def check_decodes_cleanly(codec: Codec, frame: str | bytes) -> None:
    result = codec.decode(frame)
    assert isinstance(result, Incoming | ErrorReply)
    if isinstance(result, ErrorReply):
        assert result.code in {"bad_frame", "bad_request", "unknown_op", "invalid_argument"}
        assert len(result.message) < 200
    # Whatever comes back can always be encoded in either format.
    JSON.encode([result] if isinstance(result, ErrorReply) else [Reply(re=result.id)])
    MSGPACK.encode([result] if isinstance(result, ErrorReply) else [Reply(re=result.id)])


@CODECS
@given(frame=st.one_of(st.text(), st.binary()))
def test_any_text_or_bytes_decodes_cleanly(codec: Codec, frame: str | bytes) -> None:
    check_decodes_cleanly(codec, frame)


@given(value=st.one_of(json_values, deeply_nested, near_commands))
def test_any_json_value_decodes_cleanly(value: Any) -> None:
    check_decodes_cleanly(JSON, json.dumps(value))


@given(value=st.one_of(json_values, deeply_nested, near_commands))
def test_any_msgpack_value_decodes_cleanly(value: Any) -> None:
    try:
        frame = msgpack.packb(value)
    except (OverflowError, ValueError):  # ints msgpack cannot carry, or too deep for it
        return
    check_decodes_cleanly(MSGPACK, frame)


@given(obj=near_commands)
def test_json_and_msgpack_agree(obj: dict[str, Any]) -> None:
    try:
        packed = msgpack.packb(obj)
    except (OverflowError, ValueError):
        return
    from_json, from_msgpack = JSON.decode(json.dumps(obj)), MSGPACK.decode(packed)
    if isinstance(from_json, ErrorReply) and isinstance(from_msgpack, ErrorReply):
        assert (from_json.re, from_json.code) == (from_msgpack.re, from_msgpack.code)
    elif not any(isinstance(v, float) and v != v for v in obj.values()):  # NaN != NaN
        assert from_json == from_msgpack


# -- outgoing: exact shapes -----------------------------------------------------------------

SUMMARY = Summary(
    session="s-1f3a",
    project="blog",
    name="Chat 1",
    status="running",
    loading=True,
    message_count=3,
    last_activity=1_700_000_000.5,
    preview="Here is the foo",
    queued=("and a header",),
)
SUMMARY_WIRE = {
    "session": "s-1f3a",
    "project": "blog",
    "name": "Chat 1",
    "status": "running",
    "loading": True,
    "messageCount": 3,
    "lastActivity": 1_700_000_000.5,
    "preview": "Here is the foo",
    "queued": ["and a header"],
    "error": None,
    "waiting": False,
    "model": None,
    "temperature": None,
    "maxTokens": None,
    "preset": None,
    "approval": None,
}
CALLING = Message(
    role="assistant",
    content=None,
    tool_calls=(ToolCall(id="call_1", name="write_file", arguments='{"path": "a"}'),),
)
CALLING_WIRE = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "write_file", "arguments": '{"path": "a"}'},
        }
    ],
}

DATA_SHAPES: list[tuple[EventData, dict[str, Any]]] = [
    (SessionCreated(summary=SUMMARY), SUMMARY_WIRE),
    (SessionUpdated(summary=SUMMARY), SUMMARY_WIRE),
    (SessionDeleted(), {}),
    (
        MessageAdded(index=0, message=Message(role="user", content="add a footer")),
        {"index": 0, "message": {"role": "user", "content": "add a footer"}},
    ),
    (MessageAdded(index=1, message=CALLING), {"index": 1, "message": CALLING_WIRE}),
    (
        MessageAdded(index=2, message=Message(role="tool", content="ok", tool_call_id="call_1")),
        {"index": 2, "message": {"role": "tool", "content": "ok", "tool_call_id": "call_1"}},
    ),
    (
        MessageAdded(index=3, message=Message(role="assistant", content="Fo", stopped=True)),
        {"index": 3, "message": {"role": "assistant", "content": "Fo", "stopped": True}},
    ),
    (
        StreamingUpdate(offset=12, delta="foo"),
        {"offset": 12, "delta": "foo", "toolCalls": None},
    ),
    (
        StreamingUpdate(
            offset=0,
            delta="",
            tool_calls=(PartialToolCall(index=0, id="call_1", name="read_file", arguments='{"pa'),),
        ),
        {
            "offset": 0,
            "delta": "",
            "toolCalls": [{"index": 0, "id": "call_1", "name": "read_file", "arguments": '{"pa'}],
        },
    ),
    (LoadingChanged(loading=True), {"loading": True, "reason": None, "error": None}),
    (
        LoadingChanged(loading=False, reason="failed", error="rate limited"),
        {"loading": False, "reason": "failed", "error": "rate limited"},
    ),
    (SessionRestarted(reason="boom", restarts=2), {"reason": "boom", "restarts": 2}),
    (SessionFailed(reason="too many restarts"), {"reason": "too many restarts"}),
    (
        ApprovalRequested(call="call_1", tool="delete_file", arguments='{"path": "a"}'),
        {"call": "call_1", "tool": "delete_file", "arguments": '{"path": "a"}'},
    ),
    (
        SessionUpdated(
            summary=attrs.evolve(
                SUMMARY, approval=PendingApproval(call="call_1", tool="delete_file")
            )
        ),
        {**SUMMARY_WIRE, "approval": {"call": "call_1", "tool": "delete_file"}},
    ),
]
NOTIFICATION = Notification(
    kind="completed", title="blog: done", body="Added a footer", session="s-1f3a", project="blog"
)
NOTIFICATION_WIRE = {
    "kind": "completed",
    "title": "blog: done",
    "body": "Added a footer",
    "session": "s-1f3a",
    "project": "blog",
}


@CODECS
@pytest.mark.parametrize(("data", "wire"), DATA_SHAPES)
def test_event_shapes(codec: Codec, data: EventData, wire: dict[str, Any]) -> None:
    event = Event(session="s-1f3a", project="blog", seq=42, data=data)
    assert parse(codec.encode([event])) == {
        "event": data.name,
        "session": "s-1f3a",
        "project": "blog",
        "seq": 42,
        "data": wire,
    }
    assert structure(unstructure(event), Event) == event


@CODECS
def test_notification_shape(codec: Codec) -> None:
    event = Event(session=None, project=None, seq=None, data=NOTIFICATION)
    assert parse(codec.encode([event])) == {
        "event": "notification",
        "session": None,
        "project": None,
        "seq": None,
        "data": NOTIFICATION_WIRE,
    }


@CODECS
def test_reply_and_error_shapes(codec: Codec) -> None:
    assert parse(codec.encode([Reply(re=7, result={"queued": False})])) == {
        "re": 7,
        "ok": True,
        "result": {"queued": False},
    }
    assert parse(codec.encode([Reply(re="x")])) == {"re": "x", "ok": True, "result": {}}
    error = ErrorReply(re=7, code="not_found", message="no session s-1f3a")
    assert parse(codec.encode([error])) == {
        "re": 7,
        "ok": False,
        "error": {"code": "not_found", "message": "no session s-1f3a"},
    }
    bad = JSON.decode("nope")
    assert isinstance(bad, ErrorReply)
    assert parse(codec.encode([bad]))["re"] is None


def test_error_reply_of_a_greenroom_error() -> None:
    from greenroom.protocol.errors import NotFound

    assert ErrorReply.of(3, NotFound("no session s-1")) == ErrorReply(
        re=3, code="not_found", message="no session s-1"
    )


@CODECS
def test_welcome_shape(codec: Codec) -> None:
    pending = Event(session=None, project=None, seq=None, data=NOTIFICATION)
    welcome = Welcome(
        version="0.1.0",
        connection="c-1",
        sessions=(SUMMARY,),
        notifications=(pending,),
        provider="simulated",
    )
    assert parse(codec.encode([welcome])) == {
        "event": "welcome",
        "session": None,
        "project": None,
        "seq": None,
        "data": {
            "server": "greenroom",
            "version": "0.1.0",
            "protocol": 1,
            "connection": "c-1",
            "provider": "simulated",
            "sessions": [SUMMARY_WIRE],
            "notifications": [
                {
                    "event": "notification",
                    "session": None,
                    "project": None,
                    "seq": None,
                    "data": NOTIFICATION_WIRE,
                }
            ],
        },
    }


@CODECS
def test_batch_keeps_order(codec: Codec) -> None:
    items: list[Outgoing] = [
        Event(session="s", project="p", seq=i, data=StreamingUpdate(offset=i, delta="x"))
        for i in range(1, 1001)
    ]
    items.insert(500, Reply(re=9, result={}))
    items.append(ErrorReply(re=None, code="bad_frame", message="x"))
    frame = codec.encode(items)
    assert isinstance(frame, bytes) == codec.binary
    objs = parse(frame)
    assert isinstance(objs, list)
    assert len(objs) == 1002
    assert [o.get("seq") for o in objs[:500]] == list(range(1, 501))
    assert objs[500] == {"re": 9, "ok": True, "result": {}}
    assert [o.get("seq") for o in objs[501:1001]] == list(range(501, 1001))
    assert objs[-1]["ok"] is False
    assert codec.decode_server(frame) == objs
    assert codec.decode_server(codec.encode([items[0]])) == [objs[0]]


def test_encode_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing"):
        JSON.encode([])


def test_json_frames_are_compact_and_unescaped() -> None:
    event = Event(session="s", project="p", seq=1, data=StreamingUpdate(offset=0, delta="héllo ✓"))
    frame = JSON.encode([event])
    assert isinstance(frame, str)
    assert ", " not in frame and ": " not in frame
    assert "héllo ✓" in frame


@CODECS
def test_lone_surrogates_going_out_are_replaced(codec: Codec) -> None:
    event = Event(session="s", project="p", seq=1, data=StreamingUpdate(offset=0, delta="a\ud83d"))
    frame = codec.encode([event, Reply(re=1)])
    if isinstance(frame, str):
        frame.encode("utf-8")  # sendable as a text frame
    assert parse(frame)[0]["data"]["delta"] == "a\ufffd"
    # The codec is still usable afterwards.
    assert parse(codec.encode([Reply(re=2)])) == {"re": 2, "ok": True, "result": {}}


# -- hypothesis: any event encodes to the documented shape and back ------------------------

texts = st.text(max_size=30)
# Round-tripped through JSON and compared: a time JSON can carry, a name the codec accepts.
# The preset's prompt, servers and tools stay out of the wire's summary (openSession's state
# has them): drawn at their defaults, which is what a client reads back.
summaries = strategies.summaries(
    texts,
    project=project_names,
    last_activity=st.floats(0, 2e9),
    system_prompt=st.none(),
    mcp_servers=st.none(),
    tools=st.just({}),
)
tool_calls = st.builds(ToolCall, id=texts, name=texts, arguments=texts)
messages = st.builds(
    Message,
    role=st.sampled_from(["system", "user", "assistant", "tool"]),
    content=st.none() | st.text(),
    tool_calls=st.none() | st.lists(tool_calls, max_size=3).map(tuple),
    tool_call_id=st.none() | texts,
    stopped=st.booleans(),
)
partial_calls = st.builds(
    PartialToolCall,
    index=st.integers(0, 20),
    id=st.none() | texts,
    name=st.none() | texts,
    arguments=texts,
)
payloads: st.SearchStrategy[EventData] = st.one_of(
    st.builds(SessionCreated, summary=summaries),
    st.builds(SessionUpdated, summary=summaries),
    st.just(SessionDeleted()),
    st.builds(MessageAdded, index=st.integers(0, 10**6), message=messages),
    st.builds(
        StreamingUpdate,
        offset=st.integers(0, 10**9),
        delta=st.text(),
        tool_calls=st.none() | st.lists(partial_calls, max_size=3).map(tuple),
    ),
    st.builds(
        LoadingChanged,
        loading=st.booleans(),
        reason=st.none() | st.sampled_from(["completed", "stopped", "failed", "interrupted"]),
        error=st.none() | texts,
    ),
    st.builds(SessionRestarted, reason=texts, restarts=st.integers(0, 1000)),
    st.builds(SessionFailed, reason=texts),
    st.builds(ApprovalRequested, call=texts, tool=texts, arguments=texts),
    st.builds(
        Notification,
        kind=st.sampled_from(["completed", "stopped", "failed", "approval"]),
        title=texts,
        body=texts,
        session=texts,
        project=project_names,
    ),
)
events = st.builds(
    Event,
    session=st.none() | texts,
    project=st.none() | project_names,
    seq=st.none() | st.integers(1, 2**53),
    data=payloads,
)

SUMMARY_KEYS = set(SUMMARY_WIRE)
DATA_KEYS: dict[str, set[str]] = {
    "sessionCreated": SUMMARY_KEYS,
    "sessionUpdated": SUMMARY_KEYS,
    "sessionDeleted": set(),
    "messageAdded": {"index", "message"},
    "streamingUpdate": {"offset", "delta", "toolCalls"},
    "loadingChanged": {"loading", "reason", "error"},
    "sessionRestarted": {"reason", "restarts"},
    "sessionFailed": {"reason"},
    "notification": {"kind", "title", "body", "session", "project"},
    "approvalRequested": {"call", "tool", "arguments"},
}


def check_message(wire: dict[str, Any], message: Message) -> None:
    assert set(wire) <= {"role", "content", "tool_calls", "tool_call_id", "stopped"}
    assert wire["role"] == message.role
    assert wire["content"] == message.content
    assert wire.get("tool_call_id") == message.tool_call_id
    assert ("tool_call_id" in wire) == (message.tool_call_id is not None)
    assert wire.get("stopped", False) is message.stopped
    assert ("stopped" in wire) == message.stopped
    if message.tool_calls is None:
        assert "tool_calls" not in wire
    else:
        assert wire["tool_calls"] == [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]


@CODECS
@settings(max_examples=300)
@given(event=events)
def test_any_event_has_the_documented_shape(codec: Codec, event: Event) -> None:
    obj = parse(codec.encode([event]))
    assert set(obj) == {"event", "session", "project", "seq", "data"}
    assert (obj["event"], obj["session"], obj["project"], obj["seq"]) == (
        event.name,
        event.session,
        event.project,
        event.seq,
    )
    data = obj["data"]
    assert set(data) == DATA_KEYS[event.name]
    match event.data:
        case SessionCreated(summary=s) | SessionUpdated(summary=s):
            assert data["messageCount"] == s.message_count
            assert data["lastActivity"] == s.last_activity
            assert data["queued"] == list(s.queued)
        case MessageAdded(message=message):
            check_message(data["message"], message)
        case StreamingUpdate(tool_calls=calls):
            if calls is None:
                assert data["toolCalls"] is None
            else:
                assert [set(c) for c in data["toolCalls"]] == [
                    {"index", "id", "name", "arguments"}
                ] * len(calls)
    assert structure(obj, Event) == event


@given(batch=st.lists(events, min_size=2, max_size=20))
def test_any_batch_keeps_order(batch: list[Event]) -> None:
    for codec in (JSON, MSGPACK):
        objs = parse(codec.encode(batch))
        assert [structure(o, Event) for o in objs] == batch


@given(
    replies=st.lists(st.integers(0, 9).map(lambda n: Reply(re=n, result={})), max_size=3),
    batch=st.lists(events, max_size=20),
    budget=st.integers(0, 4000),
)
def test_a_frame_with_live_events_is_the_batch_of_what_fits(
    replies: list[Reply], batch: list[Event], budget: int
) -> None:
    """``encode_with``: the items, then the events in order as long as they fit the budget
    (at least one item in the frame), and the same frame as encoding those items together."""
    for subprotocol in ("greenroom.v1.json", "greenroom.v1.msgpack"):
        codec = Codec(subprotocol, encodings=EventEncodings())
        if not replies and not batch:
            with pytest.raises(ValueError):
                codec.encode_with(replies, batch, budget)
            continue
        frame, taken = codec.encode_with(replies, batch, budget)
        carried = [*replies, *batch[:taken]]
        assert frame == codec.encode(carried)
        sizes = [codec.event_bytes(event) for event in batch]
        if replies or taken > 1:
            assert sum(sizes[:taken]) <= budget
        if taken < len(batch):  # the next one would not have fit
            assert sum(sizes[: taken + 1]) > budget and carried


# -- results --------------------------------------------------------------------------------

VIEW = SessionView(
    summary=SUMMARY,
    messages=(Message(role="user", content="add a footer"), CALLING),
    streaming=Message(role="assistant", content="Here is the foo", stopped=True),
    seq=42,
)
STATE_WIRE = {
    **SUMMARY_WIRE,
    "systemPrompt": None,
    "mcpServers": None,
    "tools": {},
    "messages": [{"role": "user", "content": "add a footer"}, CALLING_WIRE],
    "streaming": {"role": "assistant", "content": "Here is the foo", "stopped": True},
    "seq": 42,
}


def test_state_to_wire() -> None:
    assert state_to_wire(VIEW) == STATE_WIRE
    assert structure(state_to_wire(VIEW), SessionView) == VIEW
    idle = SessionView(summary=SUMMARY, messages=(), streaming=None, seq=0)
    assert state_to_wire(idle)["streaming"] is None


@given(
    view=st.builds(
        SessionView,
        summary=summaries,
        messages=st.lists(messages, max_size=4).map(tuple),
        streaming=st.none() | messages,
        seq=st.integers(0, 2**53),
    )
)
def test_any_state_round_trips(view: SessionView) -> None:
    for codec in (JSON, MSGPACK):
        reply = parse(codec.encode([Reply(re=1, result=session_result(view, NO_MCP))]))
        assert structure(reply["result"]["session"], SessionView) == view


@given(summary=summaries, message=messages)
def test_summaries_and_messages_round_trip(summary: Summary, message: Message) -> None:
    assert structure(unstructure(summary), Summary) == summary
    assert structure(unstructure(message), Message) == message


def test_result_helpers() -> None:
    class Info:
        project, session, status = "blog", "s-1", "idle"

    assert projects_result([Info()]) == {
        "projects": [{"project": "blog", "session": "s-1", "status": "idle"}]
    }
    assert project_result("blog") == {"project": "blog"}
    assert sessions_result([SUMMARY]) == {"sessions": [SUMMARY]}  # written by the codec
    assert session_result(VIEW, NO_MCP) == {"session": STATE_WIRE, **NO_MCP_WIRE}


def test_mcp_result() -> None:
    server = parse_server("files", {"command": "npx", "args": ["x"], "env": {"K": "secret"}},
                          where="t", source="project")
    status = ProjectMcpStatus(state="untrusted", hash="ab" * 32, servers=(server,))
    assert mcp_result(status) == {
        "mcp": {
            "file": ".mcp.json",
            "state": "untrusted",
            "hash": "ab" * 32,
            "servers": [
                {"name": "files", "type": "stdio", "command": "npx", "args": ["x"], "env": ["K"]}
            ],
            "error": None,
        }
    }
    assert subscribe_result(42) == {"seq": 42}
    assert send_message_result(True) == {"queued": True}
    assert stop_generation_result(("a", "b")) == {"discarded": ["a", "b"]}
    assert cancel_queued_result("the whole text") == {"removed": "the whole text"}
    assert stop_all_result(3) == {"stopped": 3}
    assert stats_result({"sessions": {"idle": 2}}) == {"sessions": {"idle": 2}}
    assert empty_result() == {}
    assert empty_result() is not empty_result()


# -- listings: joined from each summary's memoized encoding -------------------------------

tricky_texts = texts | st.lists(st.sampled_from(['"', "\\", "é", "\ud83d", "a"])).map("".join)
listed_summaries = strategies.summaries(tricky_texts, project=project_names)


@CODECS
@settings(max_examples=200)
@given(listing=st.lists(listed_summaries, max_size=5), re=ids)
def test_a_listing_is_the_very_frame_of_its_plain_form(
    codec: Codec, listing: list[Summary], re: int | str
) -> None:
    # listSessions and the welcome are joined from memoized summaries; the frame must be, byte
    # for byte, what serializing the plain objects (summaries as dicts) gives.
    pending = Event(session=None, project=None, seq=None, data=NOTIFICATION)
    reply = Reply(re=re, result=sessions_result(listing))
    welcome = Welcome(
        version="0.1.0", connection="c-1", sessions=tuple(listing), notifications=(pending,)
    )
    plain = [to_wire(reply), to_wire(welcome)]
    assert plain[0]["result"]["sessions"] == [summary_to_wire(s) for s in listing]
    for _ in range(2):  # the second time, from the memo
        assert codec.encode([reply]) == codec._serialize(plain[0])
        assert codec.encode([welcome]) == codec._serialize(plain[1])
        assert codec.encode([reply, welcome]) == codec._serialize(plain)


def plain_json(value: Any) -> Any:
    """What the JSON codec promises for ``value``: NaN and the infinities as null, lone
    surrogates as U+FFFD, tuples as arrays."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return re.sub("[\ud800-\udfff]", "\ufffd", value)
    if isinstance(value, dict):
        return {plain_json(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    return value


@settings(max_examples=500)
@given(summary=listed_summaries, payload=payloads)
def test_json_frames_are_what_the_generic_path_makes_of_the_objects(
    summary: Summary, payload: EventData
) -> None:
    # The JSON text comes from orjson; read back by the standard library, it is the plain
    # object the converter made, field for field.
    event = Event(session="s-1", project="p", seq=3, data=payload)
    for item, wire in (
        (Reply(re=1, result=sessions_result([summary])), None),
        (event, to_wire(event)),
    ):
        frame = JSON.encode([item])
        assert isinstance(frame, str)
        expected = wire if wire is not None else {
            "re": 1, "ok": True, "result": {"sessions": [summary_to_wire(summary)]}
        }
        assert json.loads(frame) == plain_json(expected)


def test_a_summary_is_encoded_once_per_format(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[Summary] = []

    def counting(write: Callable[[Summary], Any]) -> Callable[[Summary], Any]:
        def counted(summary: Summary) -> Any:
            encoded.append(summary)
            return write(summary)

        return counted

    monkeypatch.setattr(codec_module, "summary_to_wire", counting(summary_to_wire))
    listing = [attrs.evolve(SUMMARY, session=f"s-{i}") for i in range(3)]
    reply = Reply(re=1, result=sessions_result(listing))
    # Three connections, two formats: each summary encoded once per format.
    for codec in (Codec(SUBPROTOCOL_JSON), Codec(SUBPROTOCOL_JSON), Codec(SUBPROTOCOL_MSGPACK)):
        codec.encode([reply])
        codec.encode([Welcome(version="0.1.0", connection="c-1", sessions=tuple(listing))])
    assert encoded == listing * 2
    # A change makes a new summary object, which is encoded afresh.
    changed = attrs.evolve(listing[1], status="idle", loading=False)
    frame = JSON.encode([Reply(re=2, result=sessions_result([listing[0], changed]))])
    assert encoded[6:] == [changed]
    assert [s["status"] for s in parse(frame)["result"]["sessions"]] == ["running", "idle"]


def test_the_summary_memo_keeps_nothing_alive() -> None:
    memo = encodings_module.SummaryMemo()
    encode = JSON._summary
    listing = [attrs.evolve(SUMMARY, session=f"s-{i}") for i in range(100)]
    first = [memo.of(s, encode) for s in listing]
    assert len(memo) == 100
    assert all(memo.of(s, encode) is text for s, text in zip(listing, first, strict=True))
    freed = weakref.ref(listing[0])
    del listing[:60]
    assert freed() is None  # the memo did not hold it
    assert len(memo) == 40  # and its entries went with the summaries


def test_a_listing_is_sized_as_the_summaries_it_holds() -> None:
    # The outbox bounds what waits by an estimate that counts the entries of a result's lists.
    listing = [SUMMARY] * 5
    assert isinstance(sessions_result(listing)["sessions"], list)
    assert estimate(Reply(re=1, result=sessions_result(listing))) == estimate(
        Reply(re=1, result={"sessions": [SUMMARY_WIRE] * 5})
    )


def test_command_frames_are_what_a_client_sends() -> None:
    frame = JSON.encode_command(7, SendMessage(session="s-1f3a", content="add a footer"))
    assert json.loads(frame) == command_to_wire(
        7, SendMessage(session="s-1f3a", content="add a footer")
    )


def test_open_session_takes_an_optional_model() -> None:
    codec = Codec("greenroom.v1.json")
    incoming = codec.decode('{"id": 1, "op": "openSession", "project": "p", "model": "gpt-x"}')
    assert isinstance(incoming, Incoming)
    assert incoming.command == OpenSession(project="p", model="gpt-x")
    for bad in ('""', '"a\\nb"', '"' + "m" * 201 + '"'):
        reply = codec.decode('{"id": 2, "op": "openSession", "project": "p", "model": ' + bad + "}")
        assert isinstance(reply, ErrorReply) and reply.code == "invalid_argument"
    reply = codec.decode('{"id": 3, "op": "openSession", "project": "p", "model": 5}')
    assert isinstance(reply, ErrorReply) and reply.code == "bad_request"


def test_open_session_takes_an_optional_temperature_and_max_tokens() -> None:
    codec = Codec("greenroom.v1.json")
    frame = '{"id": 1, "op": "openSession", "project": "p", "temperature": 0, "maxTokens": 64}'
    incoming = codec.decode(frame)
    assert isinstance(incoming, Incoming)
    assert incoming.command == OpenSession(project="p", temperature=0.0, maxTokens=64)
    assert isinstance(incoming.command.temperature, float)
    for field, bad, code in [
        ("temperature", "-0.1", "invalid_argument"),
        ("temperature", "2.5", "invalid_argument"),
        ("temperature", "1e999", "invalid_argument"),  # infinity
        ("temperature", '"0.5"', "bad_request"),
        ("temperature", "true", "bad_request"),
        ("maxTokens", "0", "invalid_argument"),
        ("maxTokens", "2147483648", "invalid_argument"),
        ("maxTokens", "10.0", "bad_request"),
        ("maxTokens", "false", "bad_request"),
    ]:
        reply = codec.decode(f'{{"id": 2, "op": "openSession", "project": "p", "{field}": {bad}}}')
        assert isinstance(reply, ErrorReply) and reply.code == code, (field, bad, reply)
        assert field in reply.message


def test_approve_tool_call_checks_its_fields() -> None:
    codec = Codec("greenroom.v1.json")
    frame = '{"id": 1, "op": "approveToolCall", "session": "s-1", "call": "c1", "allow": false}'
    incoming = codec.decode(frame)
    assert isinstance(incoming, Incoming)
    assert incoming.command == ApproveToolCall(session="s-1", call="c1", allow=False)
    frame = frame.replace("false}", 'true, "reason": "no"}')
    incoming = codec.decode(frame)
    assert isinstance(incoming, Incoming)
    assert incoming.command == ApproveToolCall(session="s-1", call="c1", allow=True, reason="no")
    base = '{"id": 2, "op": "approveToolCall", "session": "s-1"'
    for fields, code, named in [
        ('"call": "c1"', "bad_request", "allow"),  # allow is required
        ('"allow": true', "bad_request", "call"),
        ('"call": "c1", "allow": 1', "bad_request", "allow"),
        ('"call": "c1", "allow": "yes"', "bad_request", "allow"),
        ('"call": 7, "allow": true', "bad_request", "call"),
        ('"call": "", "allow": true', "invalid_argument", "tool call id"),
        (f'"call": "{"c" * 257}", "allow": true', "invalid_argument", "tool call id"),
        ('"call": "c1", "allow": false, "reason": 5', "bad_request", "reason"),
        (f'"call": "c1", "allow": false, "reason": "{"r" * 2001}"', "invalid_argument", "reason"),
    ]:
        reply = codec.decode(f"{base}, {fields}}}")
        assert isinstance(reply, ErrorReply) and reply.code == code, (fields, reply)
        assert named in reply.message


@pytest.mark.parametrize("subprotocol", ["greenroom.v1.json", "greenroom.v1.msgpack"])
def test_an_event_is_encoded_once_for_every_connection(subprotocol: Subprotocol) -> None:
    shared = EventEncodings()
    first = Codec(subprotocol, encodings=shared)
    second = Codec(subprotocol, encodings=shared)
    event = Event(session="s-1", project="p", seq=9, data=StreamingUpdate(offset=0, delta="hi"))
    # The second connection gets the very text the first one built, not a new encoding.
    assert first.encode([event]) is second.encode([event])
    reply = Reply(re=1, result={})
    batch = second.encode([reply, event, event])
    assert parse(batch) == [parse(second.encode([item])) for item in (reply, event, event)]
    # Without shared encodings (a client, a test), nothing is kept between frames.
    alone = Codec(subprotocol)
    assert alone.encode([event]) == first.encode([event])
    assert alone.encode([event]) is not alone.encode([event])


@pytest.mark.parametrize("subprotocol", ["greenroom.v1.json", "greenroom.v1.msgpack"])
def test_a_frame_of_the_same_live_events_is_made_once_for_every_connection(
    subprotocol: Subprotocol,
) -> None:
    shared = EventEncodings()
    first = Codec(subprotocol, encodings=shared)
    second = Codec(subprotocol, encodings=shared)
    events = [
        Event(session="s-1", project="p", seq=n, data=StreamingUpdate(offset=n, delta="hi "))
        for n in range(1, 6)
    ]
    frame, taken = first.encode_with([], list(events), 10_000)
    assert taken == 5 and parse(frame) == [parse(first.encode([e])) for e in events]
    # Another connection's list of the very same events, at the same budget: the same frame.
    assert second.encode_with([], list(events), 10_000) == (frame, 5)
    assert second.encode_with([], list(events), 10_000)[0] is frame
    # Anything else is made anew: other events (equal is not the same), another budget, a
    # reply ahead of them.
    copies = [attrs.evolve(e) for e in events]
    assert second.encode_with([], copies, 10_000)[0] is not frame
    assert first.encode_with([], list(events), 10_000)[0] is not frame
    two = 2 * len(first.encode([events[0]])) + 10
    cut, fits = second.encode_with([], list(events), two)
    assert fits == 2 and parse(cut) == parse(frame)[:2]
    reply = Reply(re=1, result={})
    with_reply, taken = second.encode_with([reply], list(events), 10_000)
    assert parse(with_reply) == [parse(second.encode([reply])), *parse(frame)]


def test_the_shared_encodings_stay_bounded_and_keep_the_newest() -> None:
    shared = EventEncodings(limit=8)
    codec = Codec("greenroom.v1.json", encodings=shared)
    events = [
        Event(session="s-1", project="p", seq=n, data=StreamingUpdate(offset=n, delta="x"))
        for n in range(1, 40)
    ]
    texts = [codec.encode([event]) for event in events]
    assert len(shared.json) <= 16
    assert codec.encode([events[-1]]) is texts[-1]  # the newest are still shared
    assert codec.encode([events[0]]) == texts[0]  # the oldest were dropped, then encoded again
    assert codec.encode([events[0]]) is not texts[0]


def test_the_shared_encodings_do_not_keep_their_events_alive() -> None:
    """An event can hold far more than its encoding (a summary's queue behind its previews):
    once nothing else holds it, the memo lets it go."""
    shared = EventEncodings()
    codec = Codec("greenroom.v1.json", encodings=shared)
    event = Event(session="s-1", project="p", seq=1, data=StreamingUpdate(offset=0, delta="x"))
    gone = weakref.ref(event)
    codec.encode([event])
    assert len(shared.json) == 1
    del event
    gc.collect()
    assert gone() is None and len(shared.json) == 0


def test_big_encodings_are_kept_within_a_byte_budget() -> None:
    """A flood of long messages must not stay in memory after it: counted by entries, the
    memo would keep thousands of them."""
    shared = EventEncodings(big_budget=1 << 20)
    codec = Codec("greenroom.v1.json", encodings=shared)
    messages = [Message(role="user", content=f"{n} " + "x" * 250_000) for n in range(24)]
    events = [
        Event(session="s-1", project="p", seq=n, data=MessageAdded(index=n, message=message))
        for n, message in enumerate(messages)
    ]
    texts = [codec.encode([event]) for event in events]
    assert 0 < shared.json.big_bytes <= 1 << 20
    assert len(shared.json) == 4  # 250 kB each: the newest four fit
    assert codec.encode([events[-1]]) is texts[-1]  # the newest are still shared
    assert codec.encode([events[0]]) == texts[0]  # the oldest were dropped
    assert codec.encode([events[0]]) is not texts[0]
    # Small events keep their own generations, untouched by the big ones.
    small = Event(session="s-1", project="p", seq=99, data=StreamingUpdate(offset=0, delta="x"))
    assert codec.encode([small]) is codec.encode([small])


@given(
    session=st.text(min_size=1, max_size=20),
    project=st.text(max_size=20),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    offset=st.integers(min_value=0, max_value=2**40),
    delta=st.text(max_size=50),  # quotes, controls, astral, lone surrogates
)
def test_a_text_delta_written_directly_is_what_the_generic_encoder_gives(
    session: str, project: str, seq: int, offset: int, delta: str
) -> None:
    event = Event(
        session=session, project=project, seq=seq, data=StreamingUpdate(offset=offset, delta=delta)
    )
    codec = Codec("greenroom.v1.json", encodings=EventEncodings())
    wire = to_wire(event)
    generic = json.dumps(_scrub(wire), separators=(",", ":"), ensure_ascii=False)
    assert codec.encode([event]) == generic
    assert Codec("greenroom.v1.json").encode([event]) == generic


@given(delta=tricky_texts | st.text())
def test_what_a_delta_adds_to_a_json_frame_is_what_delta_bytes_says(delta: str) -> None:
    def frame_bytes(text: str) -> int:
        event = Event(session="s", project="p", seq=1, data=StreamingUpdate(offset=0, delta=text))
        return len(str(JSON.encode([event])).encode("utf-8"))

    assert JSON.delta_bytes(delta) == frame_bytes(delta) - frame_bytes("")
