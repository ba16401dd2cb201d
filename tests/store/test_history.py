"""Per-project chat history files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenroom.protocol.chat import Message, ToolCall
from greenroom.protocol.errors import InvalidArgument
from greenroom.store.history import (
    CorruptHistory,
    append_histories,
    encode_lines,
    history_name,
    history_path,
    message_from_json,
    message_to_json,
    newest_history,
    read_history,
)

CONVERSATION = [
    Message(role="system", content="You are helpful."),
    Message(role="user", content="Make a todo app.\nWith two lines, ünïcode and \u2028."),
    Message(
        role="assistant",
        content=None,
        tool_calls=(
            ToolCall(id="call_1", name="write_file", arguments='{"path":"a.txt","content":"x"}'),
            ToolCall(id="call_2", name="read_file", arguments="{}"),
        ),
    ),
    Message(role="tool", content="ok", tool_call_id="call_1"),
    Message(role="tool", content="x", tool_call_id="call_2"),
    Message(role="assistant", content="Half a sent", stopped=True),
]

# Lines in the shape Shakespeare writes (OpenAI ChatCompletionMessageParam, one per line),
# including its habits: content parts, extra keys, and no newline after the last line.
SHAKESPEARE = (
    b'{"role":"system","content":"You are Shakespeare, an AI website builder."}\n'
    b'{"role":"user","content":[{"type":"text","text":"Build a landing page"},'
    b'{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}\n'
    b'{"role":"assistant","content":"I\'ll create it.","tool_calls":[{"id":"call_abc123",'
    b'"type":"function","function":{"name":"text_editor_write","arguments":'
    b'"{\\"path\\":\\"src/pages/Index.tsx\\",\\"content\\":\\"export default 1\\"}"}}]}\n'
    b'{"role":"tool","tool_call_id":"call_abc123","content":"File written"}\n'
    b'{"role":"assistant","content":"Done!","reasoning_content":"thinking","refusal":null}'
)


def test_message_json_shape() -> None:
    obj = message_to_json(CONVERSATION[2])
    assert obj == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "write_file", "arguments": '{"path":"a.txt","content":"x"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "read_file", "arguments": "{}"},
            },
        ],
    }
    assert message_to_json(CONVERSATION[3]) == {
        "role": "tool",
        "content": "ok",
        "tool_call_id": "call_1",
    }
    assert message_to_json(CONVERSATION[5])["stopped"] is True
    assert "stopped" not in message_to_json(CONVERSATION[1])


def test_encode_lines_is_one_compact_line_per_message() -> None:
    data = encode_lines(CONVERSATION)
    lines = data.split(b"\n")
    assert lines[-1] == b""
    assert len(lines) == len(CONVERSATION) + 1
    assert b": " not in lines[0]
    assert "ünïcode".encode() in data
    assert [message_from_json(json.loads(line)) for line in lines[:-1]] == CONVERSATION


def test_round_trip_through_file(tmp_path: Path) -> None:
    path = history_path(tmp_path, "2026-01-01T00-00-00Z-abc")
    append_histories({path: CONVERSATION[:3]})
    append_histories({path: CONVERSATION[3:]})
    assert read_history(path) == CONVERSATION
    assert read_history(path, limit=2) == CONVERSATION[:2]
    assert read_history(path, limit=0) == []
    assert read_history(path, limit=100) == CONVERSATION


def test_appends_leave_earlier_bytes_identical(tmp_path: Path) -> None:
    path = history_path(tmp_path, "h")
    append_histories({path: CONVERSATION[:2]})
    before = path.read_bytes()
    append_histories({path: CONVERSATION[2:]})
    assert path.read_bytes().startswith(before)


def test_lone_surrogate_still_round_trips(tmp_path: Path) -> None:
    message = Message(role="assistant", content="broken \ud800 escape")
    path = history_path(tmp_path, "h")
    append_histories({path: [message]})
    assert read_history(path) == [message]


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = history_path(tmp_path, "h")
    whole = encode_lines(CONVERSATION)
    for cut in (2, 7, len(encode_lines(CONVERSATION[-1:])) - 2):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(whole[:-cut])
        assert read_history(path) == CONVERSATION[:-1]
    path.write_bytes(whole[:-1])  # only the newline is missing: the message is whole
    assert read_history(path) == CONVERSATION
    path.write_bytes(encode_lines(CONVERSATION[:2]) + b"\0\0\0\0")  # zeros after power loss
    assert read_history(path) == CONVERSATION[:2]


def test_append_after_torn_line_keeps_file_readable(tmp_path: Path) -> None:
    path = history_path(tmp_path, "h")
    path.parent.mkdir(parents=True)
    path.write_bytes(encode_lines(CONVERSATION[:2]) + b'{"role":"assis')
    append_histories({path: CONVERSATION[2:]})
    assert read_history(path) == CONVERSATION


def test_bad_middle_line_reports_line_number(tmp_path: Path) -> None:
    path = history_path(tmp_path, "h")
    path.parent.mkdir(parents=True)
    lines = encode_lines(CONVERSATION).split(b"\n")
    lines[2] = b"{not json"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(CorruptHistory) as caught:
        read_history(path)
    assert caught.value.line == 3
    assert "line 3" in str(caught.value)
    assert read_history(path, limit=2) == CONVERSATION[:2]


def test_bad_role_in_middle_reports_line_number(tmp_path: Path) -> None:
    path = history_path(tmp_path, "h")
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"role":"user","content":"a"}\n{"role":"robot"}\n{"role":"user"}\n')
    with pytest.raises(CorruptHistory, match=r"line 2.*role"):
        read_history(path)


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(b'\n{"role":"user","content":"a"}\n\n')
    assert read_history(path) == [Message(role="user", content="a")]


def test_shakespeare_lines(tmp_path: Path) -> None:
    path = history_path(tmp_path, "2025-08-01T10-00-00Z-abc")
    path.parent.mkdir(parents=True)
    path.write_bytes(SHAKESPEARE)
    messages = read_history(path)
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[1].content == "Build a landing page"
    assert messages[2].tool_calls == (
        ToolCall(
            id="call_abc123",
            name="text_editor_write",
            arguments='{"path":"src/pages/Index.tsx","content":"export default 1"}',
        ),
    )
    assert messages[3].tool_call_id == "call_abc123"
    assert messages[4] == Message(role="assistant", content="Done!")
    # greenroom continues a Shakespeare history without breaking its last line.
    append_histories({path: [Message(role="user", content="more")]})
    assert read_history(path)[-2:] == [messages[4], Message(role="user", content="more")]


def test_message_from_json_is_tolerant() -> None:
    assert message_from_json({"role": "user"}) == Message(role="user", content=None)
    assert message_from_json({"role": "developer", "content": "x", "extra": 1}) == Message(
        role="system", content="x"
    )
    assert message_from_json({"role": "assistant", "tool_calls": []}).tool_calls is None
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    parsed = message_from_json({"role": "assistant", "tool_calls": [call]})
    assert parsed.tool_calls == (ToolCall(id="c", name="f", arguments='{"a":1}'),)
    assert message_from_json({"role": "assistant", "stopped": "yes"}).stopped is False


@pytest.mark.parametrize(
    "obj",
    [
        [],
        "user",
        None,
        {},
        {"role": 3},
        {"role": "robot"},
        {"role": "user", "content": 5},
        {"role": "tool", "tool_call_id": 5},
        {"role": "assistant", "tool_calls": {}},
        {"role": "assistant", "tool_calls": [{"id": "c"}]},
        {"role": "assistant", "tool_calls": [{"id": 1, "function": {"name": "f"}}]},
    ],
)
def test_message_from_json_refuses_non_messages(obj: object) -> None:
    with pytest.raises(CorruptHistory):
        message_from_json(obj)


_text = st.text(max_size=30)
_messages = st.builds(
    Message,
    role=st.sampled_from(["system", "user", "assistant", "tool"]),
    content=st.none() | _text,
    tool_calls=st.none()
    | st.lists(
        st.builds(ToolCall, id=_text, name=_text, arguments=_text), min_size=1, max_size=3
    ).map(tuple),
    tool_call_id=st.none() | _text,
    stopped=st.booleans(),
)


@given(st.lists(_messages, max_size=8))
def test_encode_read_round_trip(messages: list[Message]) -> None:
    lines = encode_lines(messages).splitlines(keepends=False)
    assert len(encode_lines(messages).split(b"\n")) == len(messages) + 1
    assert [message_from_json(json.loads(line)) for line in lines if line] == messages


def test_history_path_refuses_escapes(tmp_path: Path) -> None:
    assert history_path(tmp_path, "a") == tmp_path / ".ai" / "history" / "a.jsonl"
    for bad in ("", "../x", "a/b", ".hidden", "a\0b"):
        with pytest.raises(InvalidArgument):
            history_path(tmp_path, bad)


def test_newest_history(tmp_path: Path) -> None:
    assert newest_history(tmp_path) is None
    folder = tmp_path / ".ai" / "history"
    folder.mkdir(parents=True)
    assert newest_history(tmp_path) is None
    rng = random.Random(1)
    names = [history_name(t, rng) for t in (1_700_000_000, 1_800_000_000, 1_750_000_000)]
    for name in names:
        (folder / f"{name}.jsonl").write_bytes(b"")
    (folder / "9999-zzz.json").write_bytes(b"")
    (folder / "9999-notes.txt").write_bytes(b"")
    (folder / "9999-dir.jsonl").mkdir()
    assert newest_history(tmp_path) == names[1]
    assert names[1].startswith("2027-01-15T08-00-00Z-")
