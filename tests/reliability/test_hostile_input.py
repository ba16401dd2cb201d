"""Hostile input against a real server over real sockets: random frames, escaping names.

One in-process server for the whole module runs in a background thread (its own ``trio.run``
on the real clock), because hypothesis runs every example in a fresh ``trio.run``. A *watcher*
client lives beside it for the whole module: it subscribed to a session that streams a very
long reply. Each hypothesis example opens a connection and sends it many drawn frames; every
frame must get exactly one error reply (in order), or, for a frame over 1 MiB, a 1009 close.
After each test the watcher must still round-trip a ping and still receive contiguous text.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import msgpack  # type: ignore[import-untyped]
import pytest
import trio
import trio_websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom.protocol.codec import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, Codec
from greenroom.protocol.commands import COMMANDS
from greenroom.transport.server import ServerAddress
from tests.reliability.support import open_server
from tests.transport.test_server_support import open_client

JSON = dict[str, Any]
LIMIT = 1 << 20
ERROR_CODES = {"bad_frame", "bad_request", "unknown_op", "invalid_argument", "not_found"}
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)

# -- the module's server and its watcher -------------------------------------------------------


@attrs.define(eq=False)
class Watcher:
    """A client that reads everything, all the time, in the server's thread."""

    ws: trio_websocket.WebSocketConnection
    session: str
    text: str = ""
    updates: int = 0
    gaps: list[str] = attrs.Factory(list)
    replies: dict[int, JSON] = attrs.Factory(dict)
    arrived: trio.Event = attrs.Factory(trio.Event)
    closed: BaseException | None = None
    next_id: int = 1000

    async def read(self) -> None:
        codec = Codec(SUBPROTOCOL_JSON)
        try:
            while True:
                for item in codec.decode_server(await self.ws.get_message()):
                    self.take(item)
                self.arrived.set()
                self.arrived = trio.Event()
        except trio_websocket.ConnectionClosed as exc:
            self.closed = exc

    def take(self, item: JSON) -> None:
        if "re" in item:
            self.replies[item["re"]] = item
        elif item["event"] == "streamingUpdate" and item["session"] == self.session:
            data = item["data"]
            if data["offset"] != len(self.text):
                self.gaps.append(f"offset {data['offset']} after {len(self.text)} chars")
            self.text = self.text[: data["offset"]] + data["delta"]
            self.updates += 1

    async def check(self) -> None:
        """Still connected, still answered, still streaming."""
        with trio.fail_after(10):
            self.next_id += 1
            ping = self.next_id
            await self.ws.send_message(json.dumps({"id": ping, "op": "ping"}))
            while ping not in self.replies and self.closed is None:
                await self.arrived.wait()
            before = self.updates
            while self.updates < before + 2 and self.closed is None:
                await self.arrived.wait()
        assert self.closed is None, self.closed
        assert self.replies[ping]["ok"], self.replies[ping]
        assert not self.gaps, self.gaps[:3]


@attrs.define(eq=False)
class Background:
    address: ServerAddress
    token: trio.lowlevel.TrioToken
    watcher: Watcher
    projects: Path
    outside: Path

    def check_watcher(self) -> None:
        trio.from_thread.run(self.watcher.check, trio_token=self.token)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    tmp = tmp_path_factory.mktemp("hostile")
    ready: queue.Queue[Background | BaseException] = queue.Queue()
    stopper: list[trio.Event] = []

    async def main() -> None:
        stopper.append(trio.Event())
        async with open_server(tmp) as running, open_client(running.address) as wire:
            await wire.next_item()  # welcome
            opened = await wire.call("openSession", project="watched")
            session = opened["session"]["session"]
            await wire.call("subscribe", session=session)
            # A reply of 100000 tokens at 40/s: it streams for the whole module.
            await wire.call(
                "sendMessage", session=session, content="watch [[tokens:100000]] [[rate:40]]"
            )
            watcher = Watcher(ws=wire.ws, session=session)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watcher.read)
                ready.put(
                    Background(
                        address=running.address,
                        token=trio.lowlevel.current_trio_token(),
                        watcher=watcher,
                        projects=tmp / "projects",
                        outside=tmp,
                    )
                )
                await stopper[0].wait()
                nursery.cancel_scope.cancel()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the fixture, not lost in the thread
            ready.put(exc)

    thread = threading.Thread(target=run, name="hostile-server", daemon=True)
    thread.start()
    got = ready.get(timeout=30)
    if isinstance(got, BaseException):
        raise got
    try:
        yield got
        got.check_watcher()  # after every test of the module, the watcher is still fine
    finally:
        trio.from_thread.run_sync(stopper[0].set, trio_token=got.token)
        thread.join(timeout=30)
        assert not thread.is_alive(), "the server thread did not stop"


# -- frames ------------------------------------------------------------------------------------


class Frame:
    """A frame to send and the error codes its reply may carry (None: a 1009 close).

    A plain class, not attrs: hypothesis prints an attrs instance field by field, and a failing
    batch of megabyte payloads would then fail again on the size of its own report.
    """

    def __init__(self, payload: str | bytes, codes: frozenset[str] | None, label: str) -> None:
        self.payload = payload
        self.codes = codes
        self.label = label

    def __repr__(self) -> str:
        shown = self.payload[:60] if len(self.payload) > 60 else self.payload
        return f"Frame({self.label}, {len(self.payload)} long, {shown!r})"


def _frame(payload: str | bytes, *codes: str, label: str) -> Frame:
    return Frame(payload=payload, codes=frozenset(codes), label=label)


_INTS = st.integers(-(2**63), 2**64 - 1)  # what msgpack can carry
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    _INTS,
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
_WRONG = st.one_of(
    st.booleans(),
    _INTS,
    st.floats(allow_nan=False),
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=5), _SCALARS, max_size=3),
)
_NEEDS_STRING = {
    "createProject": "project",
    "deleteProject": "project",
    "openSession": "project",
    "subscribe": "session",
    "unsubscribe": "session",
    "sendMessage": "session",
    "stopGeneration": "session",
    "cancelQueued": "session",
    "resumeSession": "session",
    "newChat": "session",
    "deleteSession": "session",
}


def _encoder(binary: bool) -> Any:
    if binary:
        return lambda obj: msgpack.packb(obj, use_bin_type=True)
    return lambda obj: json.dumps(obj, allow_nan=False)


@st.composite
def frames(draw: st.DrawFn, binary: bool) -> Frame:
    """One hostile frame for a connection that speaks msgpack (``binary``) or JSON."""
    encode = _encoder(binary)
    kind = draw(
        st.sampled_from(
            ["garbage", "other-kind", "nesting", "huge", "wrong-type", "unknown-op", "bad-id",
             "bad-name", "no-session", "numbers"]
        )
    )  # fmt: skip
    if kind == "garbage":
        if binary:
            raw = draw(
                st.one_of(
                    st.binary(max_size=200),
                    st.sampled_from([b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc1"]),
                )
            )
            return _frame(raw, "bad_frame", "bad_request", label=kind)
        return _frame(draw(st.text(max_size=200)), "bad_frame", "bad_request", label=kind)
    if kind == "other-kind":  # text on msgpack, binary on JSON
        if binary:
            return _frame(json.dumps({"id": 1, "op": "ping"}), "bad_frame", label=kind)
        return _frame(msgpack.packb({"id": 1, "op": "ping"}), "bad_frame", label=kind)
    if kind == "nesting":
        depth = draw(st.sampled_from([33, 100, 1000, 100_000]))
        if binary:  # by hand: msgpack's own packer stops at 512 levels
            head = b"\x83" + b"".join(encode(v) for v in ("id", 1, "op", "ping", "x"))
            return _frame(head + b"\x91" * depth + b"\xc0", "bad_frame", label=kind)
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        text = '{"id": 1, "op": "ping", "x": ' + opener * depth + "1" + closer * depth + "}"
        return _frame(text, "bad_frame", label=kind)
    if kind == "huge":
        size = draw(st.sampled_from([100_000, LIMIT - 200, LIMIT + 1, 3 * LIMIT]))
        text = encode({"id": 5, "op": "noSuchOp", "blob": "x" * size})
        if len(text) > LIMIT:
            return Frame(payload=text, codes=None, label=kind)
        return _frame(text, "unknown_op", label=kind)
    if kind == "wrong-type":
        op = draw(st.sampled_from(sorted(_NEEDS_STRING)))
        value = draw(_WRONG)
        obj = {"id": draw(st.integers(0, 10**6)), "op": op, _NEEDS_STRING[op]: value}
        return _frame(encode(obj), "bad_request", "invalid_argument", label=kind)
    if kind == "unknown-op":
        op = draw(st.text(max_size=30).filter(lambda s: s not in _KNOWN_OPS))
        return _frame(encode({"id": "x", "op": op}), "unknown_op", label=kind)
    if kind == "bad-id":
        huge = st.integers(min_value=2**64) if not binary else st.none()
        bad = draw(st.one_of(st.booleans(), st.floats(), st.lists(_INTS, max_size=2), huge))
        obj = {"id": bad, "op": "ping"}
        payload = json.dumps(obj) if not binary else encode(obj)
        return _frame(payload, "bad_request", label=kind)
    if kind == "bad-name":
        name = draw(st.one_of(st.text(min_size=65, max_size=70), st.sampled_from(ESCAPES)))
        op = draw(st.sampled_from(["createProject", "openSession", "deleteProject"]))
        return _frame(encode({"id": 2, "op": op, "project": name}), "invalid_argument",
                      label=kind)  # fmt: skip
    if kind == "numbers":
        if binary:
            return _frame(b"\xcb" + os.urandom(8), "bad_frame", label=kind)  # a lone float
        digits = draw(st.integers(4301, 20_000))
        return _frame('{"id": ' + "9" * digits + ', "op": "ping"}', "bad_frame", label=kind)
    session = draw(st.text(min_size=1, max_size=128).filter(lambda s: not s.startswith("s-")))
    obj = {"id": 3, "op": "sendMessage", "session": session, "content": "hi"}
    return _frame(encode(obj), "not_found", "invalid_argument", "bad_request", label=kind)


_KNOWN_OPS = frozenset(COMMANDS)  # every op the protocol has: none of them is unknown

#: Project names built to leave the projects folder, or to look like a legal one.
ESCAPES = [
    "", ".", "..", "...", "../x", "../../etc", "/etc", "/tmp/x", "a/b", "a\\b", "..\\x",
    "a\x00b", "\x00", "x" * 65, "x" * 10_000, "\uff0e\uff0e", "\uff0e\uff0e\uff0fx",
    "\u2024\u2024", "\u202eabc", "abc\u202e", "cafe\u0301", "caf\u00e9", "%2e%2e", "%2e%2e%2fx",
    ".hidden", "A", "a b", "x\n", "\uff41", "a/../b", "~", "~root", "\ud800",
]  # fmt: skip


# -- sending -----------------------------------------------------------------------------------


async def _exchange(address: ServerAddress, subprotocol: Any, batch: list[Frame]) -> None:
    async with open_client(address, subprotocol=subprotocol) as client:
        welcome = await client.next_item()
        assert welcome["event"] == "welcome"
        for frame in batch:
            if frame.codes is None:
                # The server may close while the frame is still being sent: either way, 1009.
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await client.ws.send_message(frame.payload)
                    while True:
                        await client.next_item()
                assert closed.value.reason.code == 1009, frame
                return
            await client.ws.send_message(frame.payload)
            while True:
                item = await client.next_item()
                if "re" in item:
                    break
            assert item["ok"] is False, (frame, item)
            assert item["error"]["code"] in frame.codes, (frame, item)
        # The connection is still usable after all that.
        assert await client.call("ping") == {}


def exchange(server: Background, subprotocol: str, batch: list[Frame]) -> None:
    """Send ``batch`` on one connection (oversize frames last), checking each reply."""
    batch = sorted(batch, key=lambda f: f.codes is None)  # at most one close, at the end
    ends = [i for i, f in enumerate(batch) if f.codes is None]
    if ends:
        batch = batch[: ends[0] + 1]

    async def run() -> None:
        with trio.fail_after(30):
            await _exchange(server.address, subprotocol, batch)

    trio.run(run)


@EXAMPLES
@given(batch=st.lists(frames(binary=False), min_size=1, max_size=12))
def test_hostile_json_frames_get_error_replies(server: Background, batch: list[Frame]) -> None:
    exchange(server, SUBPROTOCOL_JSON, batch)


@EXAMPLES
@given(batch=st.lists(frames(binary=True), min_size=1, max_size=12))
def test_hostile_msgpack_frames_get_error_replies(server: Background, batch: list[Frame]) -> None:
    exchange(server, SUBPROTOCOL_MSGPACK, batch)


def test_the_watcher_was_unaffected(server: Background) -> None:
    """Runs after the fuzzing (pytest keeps file order): the other client never noticed."""
    server.check_watcher()
    assert server.watcher.updates > 0


@pytest.mark.parametrize("name", ESCAPES, ids=lambda n: repr(n)[:30])
def test_escaping_project_names_are_refused_over_the_protocol(
    server: Background, name: str
) -> None:
    before = _tree(server.outside)

    async def run() -> None:
        with trio.fail_after(10):
            async with open_client(server.address) as client:
                await client.next_item()
                for op in ("createProject", "openSession", "deleteProject"):
                    await client.ws.send_message(json.dumps({"id": 1, "op": op, "project": name}))
                    reply = await client.reply(1)
                    assert not reply["ok"], (op, reply)
                    assert reply["error"]["code"] in {"invalid_argument", "bad_request"}, reply

    trio.run(run)
    assert _tree(server.outside) == before
    assert sorted(p.name for p in server.projects.iterdir()) == ["watched"]


def _tree(root: Path) -> set[str]:
    """Every folder under ``root`` but the data of the running session (which changes)."""
    return {
        str(Path(folder).relative_to(root))
        for folder, _, _ in os.walk(root)
        if "sessions" not in folder and ".ai" not in folder
    }
