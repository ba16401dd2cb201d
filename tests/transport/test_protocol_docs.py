"""docs/protocol.md cannot drift from the codec: its JSON examples are checked here.

Blocks are fenced as ```json request, ```json reply, ```json event or ```json frame (an array
of replies and events). Requests must decode to a command and encode back to themselves;
events must be exactly what the server's converter makes of them; replies must have the reply
shape and answer a request shown on the page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from greenroom.protocol.codec import Codec, Incoming
from greenroom.protocol.commands import COMMANDS
from greenroom.protocol.convert import EVENT_TYPES, event_to_wire, structure
from greenroom.protocol.events import Event

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
BLOCK = re.compile(r"^```json (request|reply|event|frame)\n(.*?)^```", re.DOTALL | re.MULTILINE)
CODES = {
    "bad_frame",
    "bad_request",
    "unknown_op",
    "invalid_argument",
    "not_found",
    "conflict",
    "limit_reached",
    "too_large",
    "internal",
}
WELCOME_KEYS = {
    "server",
    "version",
    "protocol",
    "connection",
    "provider",
    "sessions",
    "notifications",
}
SUMMARY_KEYS = {
    "session",
    "project",
    "name",
    "status",
    "loading",
    "messageCount",
    "lastActivity",
    "preview",
    "queued",
    "error",
    "waiting",
    "model",
    "temperature",
    "maxTokens",
    "preset",
    "approval",
}


def blocks(kind: str) -> list[Any]:
    text = DOC.read_text(encoding="utf-8")
    found = [json.loads(body) for k, body in BLOCK.findall(text) if k == kind]
    assert found, f"no ```json {kind} blocks in {DOC}"
    return found


def replies() -> list[dict[str, Any]]:
    frames = [item for frame in blocks("frame") for item in frame if "re" in item]
    return blocks("reply") + frames


def events() -> list[dict[str, Any]]:
    frames = [item for frame in blocks("frame") for item in frame if "event" in item]
    return blocks("event") + frames


def test_every_block_is_valid_json() -> None:
    text = DOC.read_text(encoding="utf-8")
    fenced = re.findall(r"^```json(.*)$", text, re.MULTILINE)
    assert all(info.strip() in ("request", "reply", "event", "frame") for info in fenced), (
        "mark every JSON block as request, reply, event or frame"
    )
    for _, body in BLOCK.findall(text):
        json.loads(body)


@pytest.mark.parametrize("request_", blocks("request"), ids=lambda r: f"{r['op']}-{r['id']}")
def test_requests_decode_and_encode_back(request_: dict[str, Any]) -> None:
    codec = Codec("greenroom.v1.json")
    decoded = codec.decode(json.dumps(request_))
    assert isinstance(decoded, Incoming), decoded
    assert decoded.id == request_["id"]
    again = json.loads(codec.encode_command(decoded.id, decoded.command))
    # Optional fields given as null are left out when encoding: the same command.
    assert again == {k: v for k, v in request_.items() if v is not None}


def test_every_op_has_a_request_and_an_answer() -> None:
    requests = blocks("request")
    assert {r["op"] for r in requests} == set(COMMANDS)
    answered = {r["re"] for r in replies()}
    for request_ in requests:
        if request_["op"] == "focusProject" and request_["project"] is None:
            continue  # its twin with a project shows the reply
        assert request_["id"] in answered, f"no reply shown for {request_}"


def test_replies_have_the_reply_shape() -> None:
    requests = {r["id"]: r for r in blocks("request")}
    for reply in replies():
        if reply["ok"]:
            assert set(reply) == {"re", "ok", "result"}
            assert isinstance(reply["result"], dict)
        else:
            assert set(reply) == {"re", "ok", "error"}
            assert set(reply["error"]) == {"code", "message"}
            assert reply["error"]["code"] in CODES
        op = requests.get(reply["re"], {}).get("op")
        result = reply.get("result", {})
        if op in ("listSessions",):
            assert all(set(s) == SUMMARY_KEYS for s in result["sessions"])
        if op == "openSession" and reply["ok"]:
            state = result["session"]
            preset = {"systemPrompt", "mcpServers", "tools"}  # the state's, not the summary's
            assert set(state) == SUMMARY_KEYS | preset | {"messages", "streaming", "seq"}


@pytest.mark.parametrize(
    "event", events(), ids=lambda e: f"{e['event']}-{e['seq'] if e['seq'] is not None else 'x'}"
)
def test_events_are_what_the_server_sends(event: dict[str, Any]) -> None:
    assert set(event) == {"event", "session", "project", "seq", "data"}
    if event["event"] == "welcome":
        assert set(event["data"]) == WELCOME_KEYS
        assert event["session"] is None and event["seq"] is None
        for summary in event["data"]["sessions"]:
            assert set(summary) == SUMMARY_KEYS
        return
    assert event["event"] in EVENT_TYPES
    rebuilt = event_to_wire(structure(event, Event))
    assert rebuilt == event


def test_every_event_and_error_code_is_documented() -> None:
    assert {e["event"] for e in events()} >= set(EVENT_TYPES) | {"welcome"}
    text = DOC.read_text(encoding="utf-8")
    for code in CODES:
        assert f"| `{code}` |" in text
    for close in ("1000", "1001", "1009", "4008"):
        assert f"| {close} |" in text
    for directive in ("[[tokens:N]]", "[[rate:R]]", "[[fail:KIND]]", "[[fail-before:KIND]]",
                      "[[stall]]"):  # fmt: skip
        assert directive in text


def test_notifications_name_their_session_in_data() -> None:
    for event in events():
        if event["event"] == "notification":
            assert event["session"] is None and event["seq"] is None
            assert {"kind", "title", "body", "session", "project"} == set(event["data"])
