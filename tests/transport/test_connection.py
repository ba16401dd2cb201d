"""One connection over trio's memory streams, on virtual time: no listener, no sockets."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import trio_websocket

from greenroom.protocol import commands as cmd
from greenroom.protocol.codec import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, Codec, Subprotocol
from greenroom.protocol.encodings import EventEncodings
from greenroom.runtime import ROUTES, Runtime
from greenroom.transport.connection import (
    BATCH_BYTES,
    PUMP_BACKLOG,
    Closing,
    ConnectionSettings,
    handle_connection,
)
from greenroom.transport.outbox import TransportCounters
from tests.conftest import make_config, open_test_runtime
from tests.transport.test_server_support import WireClient, turn_ended


@attrs.define(eq=False)
class Pair:
    """The client end of a connection, and what the server end did."""

    counters: TransportCounters
    server_scope: trio.CancelScope  # cancel it as the server does when it stops
    client_scope: trio.CancelScope  # cancel it to make the client a dead peer
    client: WireClient = attrs.field(init=False)
    closing: Closing | None = None
    ended: trio.Event = attrs.Factory(trio.Event)


@asynccontextmanager
async def connected(
    runtime: Runtime,
    subprotocol: Subprotocol = SUBPROTOCOL_JSON,
    encodings: EventEncodings | None = None,
    **settings: Any,
) -> AsyncIterator[Pair]:
    server_stream, client_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery, trio.open_nursery() as client_nursery:
        pair = Pair(
            counters=TransportCounters(),
            server_scope=trio.CancelScope(),
            client_scope=client_nursery.cancel_scope,
        )

        async def serve() -> None:
            request = await trio_websocket.wrap_server_stream(nursery, server_stream)
            ws = await request.accept(subprotocol=subprotocol)
            try:
                with pair.server_scope:  # cancelled, handle_connection raises: no return
                    pair.closing = await handle_connection(
                        runtime,
                        ws,
                        ConnectionSettings(**settings),
                        counters=pair.counters,
                        encodings=encodings,
                    )
            finally:
                pair.ended.set()

        nursery.start_soon(serve)
        ws = await trio_websocket.wrap_client_stream(
            client_nursery,
            client_stream,  # type: ignore[arg-type]  # any trio stream does
            "localhost",
            "/ws",
            subprotocols=[subprotocol],
        )
        pair.client = WireClient(ws=ws, codec=Codec(subprotocol))
        yield pair
        client_nursery.cancel_scope.cancel()
        pair.server_scope.cancel()


async def subscribed_session(client: WireClient) -> str:
    """After the welcome: a session opened and subscribed to."""
    await client.next_item()
    state = (await client.call("openSession", project="blog"))["session"]
    session: str = state["session"]
    await client.call("subscribe", session=session, since=state["seq"])
    return session


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with open_test_runtime(make_config(tmp_path)) as rt:
        yield rt


@pytest.mark.parametrize("subprotocol", [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK])
async def test_welcome_then_commands_and_a_streamed_turn(
    runtime: Runtime, autojump_clock: trio.abc.Clock, subprotocol: Subprotocol
) -> None:
    with trio.fail_after(60):
        async with connected(runtime, subprotocol) as pair:
            client = pair.client
            welcome = await client.next_item()
            assert welcome["event"] == "welcome" and welcome["data"]["protocol"] == 1
            state = (await client.call("openSession", project="blog"))["session"]
            session = state["session"]
            assert await client.call("subscribe", session=session, since=state["seq"]) == {
                "seq": state["seq"]
            }
            await client.call("sendMessage", session=session, content="hello")
            await client.event(turn_ended(session))
            assert await client.call("ping") == {}
    assert pair.counters.events_sent > 10 and pair.counters.replies_sent == 4


async def test_a_dead_peer_is_dropped_after_the_ping_timeout(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(60):
        async with connected(runtime, ping_interval=5.0, ping_timeout=3.0) as pair:
            assert (await pair.client.next_item())["event"] == "welcome"
            pair.client_scope.cancel()  # the client stops reading, so it never answers a ping
            began = trio.current_time()
            await pair.ended.wait()
            assert trio.current_time() - began == pytest.approx(8.0)
    assert pair.closing == Closing(code=1006, reason="no pong", abort=True)


async def test_a_live_peer_answers_pings_and_stays(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(60):
        async with connected(runtime, ping_interval=1.0, ping_timeout=1.0) as pair:
            await pair.client.next_item()
            await trio.sleep(30)  # thirty pings, each answered by trio-websocket's reader
            assert not pair.ended.is_set()
            assert await pair.client.call("ping") == {}


async def test_cancelling_the_connection_closes_it_with_1001(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(60):
        async with connected(runtime) as pair:
            await pair.client.next_item()
            pair.server_scope.cancel()
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await pair.client.items()
            await pair.ended.wait()
    assert closed.value.reason.code == 1001
    assert closed.value.reason.reason == "server going away"


async def test_the_peer_closing_ends_the_connection(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(60):
        async with connected(runtime) as pair:
            await pair.client.next_item()
            await pair.client.ws.aclose(1000, "bye")
            await pair.ended.wait()
    assert pair.closing == Closing(code=1000, reason="bye")


async def test_events_flow_while_a_command_is_slow(
    runtime: Runtime, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def slow_list_projects(self: Runtime, command: cmd.ListProjects) -> tuple[()]:
        await trio.sleep(100)
        return ()

    monkeypatch.setitem(ROUTES, cmd.ListProjects, slow_list_projects)
    with trio.fail_after(200):
        async with connected(runtime) as pair:
            client = pair.client
            await client.next_item()
            slow = await client.send("listProjects")
            then = await client.send("ping")
            began = trio.current_time()
            # Published while listProjects runs:
            await runtime.execute(cmd.OpenSession(project="blog"))
            created = await client.next_item()
            assert created["event"] == "sessionCreated"
            assert trio.current_time() - began < 100
            # Replies keep the order of the commands.
            assert (await client.next_item())["re"] == slow
            assert (await client.next_item())["re"] == then


async def test_commands_for_different_sessions_run_side_by_side_and_reply_in_order(
    runtime: Runtime, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    b_ran = trio.Event()

    async def send(self: Runtime, command: cmd.SendMessage) -> bool:
        if command.session == "s-a":
            await b_ran.wait()  # one at a time, this would wait forever
            return False
        b_ran.set()
        return True

    monkeypatch.setitem(ROUTES, cmd.SendMessage, send)
    with trio.fail_after(60):
        async with connected(runtime) as pair:
            client = pair.client
            await client.next_item()
            first = await client.send("sendMessage", session="s-a", content="x")
            second = await client.send("sendMessage", session="s-b", content="y")
            # b finished first; the replies still come in command order.
            assert [(await client.next_item())["re"] for _ in range(2)] == [first, second]


async def test_a_sessions_commands_and_any_other_command_keep_their_order(
    runtime: Runtime, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []

    async def send(self: Runtime, command: cmd.SendMessage) -> bool:
        log.append(f"start {command.session} {command.content}")
        await trio.sleep(10 if command.content == "slow" else 0)
        log.append(f"end {command.session} {command.content}")
        return False

    async def list_projects(self: Runtime, command: cmd.ListProjects) -> tuple[()]:
        log.append("start listProjects")
        await trio.sleep(5)
        log.append("end listProjects")
        return ()

    monkeypatch.setitem(ROUTES, cmd.SendMessage, send)
    monkeypatch.setitem(ROUTES, cmd.ListProjects, list_projects)
    with trio.fail_after(60):
        async with connected(runtime) as pair:
            client = pair.client
            await client.next_item()
            sent = [
                await client.send("sendMessage", session="s-a", content="slow"),
                await client.send("sendMessage", session="s-a", content="then"),
                await client.send("sendMessage", session="s-b", content="beside"),
                await client.send("listProjects"),
                await client.send("sendMessage", session="s-b", content="after"),
            ]
            assert [(await client.next_item())["re"] for _ in sent] == sent
    # s-a's second waits for its first; s-b runs beside them; listProjects runs alone, after
    # every command before it and before every command after it.
    assert log.index("end s-a slow") < log.index("start s-a then")
    assert log.index("end s-b beside") < log.index("end s-a slow")
    alone = ["start listProjects", "end listProjects", "start s-b after", "end s-b after"]
    assert log[-4:] == alone


async def test_an_unexpected_error_is_internal_and_the_connection_stays(
    runtime: Runtime, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Runtime, command: cmd.ListProjects) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setitem(ROUTES, cmd.ListProjects, broken)
    with trio.fail_after(60):
        async with connected(runtime) as pair:
            await pair.client.next_item()
            assert await pair.client.error("listProjects") == "internal"
            assert await pair.client.call("ping") == {}


async def test_one_log_line_when_a_connection_opens_and_one_when_it_closes(
    runtime: Runtime, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="greenroom.transport")
    with trio.fail_after(60):
        async with connected(runtime) as pair:
            await pair.client.next_item()
            await pair.client.ws.aclose(1000, "bye")
            await pair.ended.wait()
    lines = [r.getMessage() for r in caplog.records if r.name == "greenroom.transport"]
    assert len(lines) == 2
    assert lines[0].startswith("connection c-1 opened") and "greenroom.v1.json" in lines[0]
    assert lines[1] == "connection c-1 closed: 1000 bye"


async def test_live_events_gather_for_the_send_interval_and_replies_do_not_wait(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(60):
        async with connected(runtime, send_interval=1.0) as pair:
            client = pair.client
            session = await subscribed_session(client)
            turn = "[[tokens:60]] [[rate:20]] go"
            await client.call("sendMessage", session=session, content=turn)
            frames: list[tuple[float, list[dict[str, Any]]]] = []
            ping_sent = ping_answered = None
            while not any(turn_ended(session)(i) for _, f in frames for i in f if "event" in i):
                if ping_sent is None and len(frames) == 1:
                    ping_sent = trio.current_time()
                    await client.send("ping")
                items = await client.items()
                frames.append((trio.current_time(), items))
                if any(i.get("re") is not None for i in items):
                    ping_answered = trio.current_time()
                    answer = items
    # A reply goes out at once, even in the middle of an interval, ahead of the live events
    # that were waiting for the next frame, which it takes with it.
    assert ping_sent is not None and ping_answered == ping_sent
    assert "re" in answer[0] and len(answer) > 1
    assert all(i["event"] == "streamingUpdate" for i in answer[1:])
    # Three seconds of tokens came in a handful of frames; one with no reply in it waited for
    # the next tick of the interval (the ticks are the multiples of the interval).
    assert 3 <= len(frames) <= 6
    for (earlier, _), (later, items) in itertools.pairwise(frames):
        if not any("re" in i for i in items):
            assert later == pytest.approx(round(later)) and math.floor(later) > earlier
    updates = [i for _, items in frames for i in items if i.get("event") == "streamingUpdate"]
    text = "".join(u["data"]["delta"] for u in updates)
    assert len(text.split()) == 60


async def test_connections_of_the_same_sessions_get_the_same_frames_at_the_same_ticks(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    """The frame clock is the same for every connection: two clients whose last frames went
    out at different moments get the very same frames of live events, at the same ticks (so
    the frame is made once, see test_codec)."""
    encodings = EventEncodings()
    frames: dict[str, list[tuple[float, str]]] = {"a": [], "b": []}
    with trio.fail_after(60):
        async with (
            connected(runtime, encodings=encodings, send_interval=1.0) as a,
            connected(runtime, encodings=encodings, send_interval=1.0) as b,
        ):
            session = await subscribed_session(a.client)
            await b.client.next_item()  # the welcome
            await trio.sleep(0.3)
            await b.client.call("subscribe", session=session, since=0)  # b's last frame
            await trio.sleep(0.3)
            await a.client.call(  # a's last frame, 0.3 s later
                "sendMessage", session=session, content="[[tokens:80]] [[rate:20]] go"
            )

            async def read(name: str, client: WireClient) -> None:
                while True:
                    frame = await client.ws.get_message()
                    assert isinstance(frame, str)
                    frames[name].append((trio.current_time(), frame))
                    if any(turn_ended(session)(i) for i in client.codec.decode_server(frame)):
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read, "a", a.client)
                nursery.start_soon(read, "b", b.client)

    def live(name: str) -> list[tuple[float, str]]:
        """The frames of live events after the first tick (b's first one also carries the
        events that a's reply took with it)."""
        return [(round(t, 6), f) for t, f in frames[name] if '"re"' not in f and t > 1.5]

    assert len(live("a")) >= 3
    assert live("a") == live("b")
    assert all(t == round(t) for t, _ in live("a"))
    codec = Codec(SUBPROTOCOL_JSON)
    for name in ("a", "b"):
        items = [i for _, f in frames[name] for i in codec.decode_server(f)]
        text = "".join(i["data"]["delta"] for i in items if i.get("event") == "streamingUpdate")
        assert len(text.split()) == 80


@pytest.mark.parametrize("tokens", [3_000, 40_000])
async def test_a_burst_bigger_than_a_frame_goes_out_in_frames_in_order(
    runtime: Runtime, autojump_clock: trio.abc.Clock, tokens: int
) -> None:
    """On virtual time a turn at an unbounded rate is streamed whole while the writer waits
    out its interval: the frames that follow carry about BATCH_BYTES each, in order, and the
    client gets all the text once. What one frame could not carry waits for the next as it
    is (3,000 tokens: fewer than PUMP_BACKLOG left over), or, a flood, in the outbox, merged
    (40,000)."""
    with trio.fail_after(60):
        async with connected(runtime, send_interval=1.0) as pair:
            client = pair.client
            session = await subscribed_session(client)
            await client.call("sendMessage", session=session, content="[[tokens:3]] first")
            while not turn_ended(session)(await client.next_item()):
                pass
            # The writer has just sent a frame: the whole burst comes within its interval.
            await client.call(
                "sendMessage", session=session, content=f"[[tokens:{tokens}]] [[rate:inf]] go"
            )
            sizes: list[int] = []
            updates: list[dict[str, Any]] = []
            while True:
                frame = await client.ws.get_message()
                sizes.append(len(frame))
                items = client.codec.decode_server(frame)
                updates += [i for i in items if i.get("event") == "streamingUpdate"]
                if any(turn_ended(session)(i) for i in items if "event" in i):
                    break
    assert len(sizes) >= 2 and max(sizes) < 2 * BATCH_BYTES
    if tokens < PUMP_BACKLOG:
        assert pair.counters.merged_deltas == 0 and len(updates) == tokens
    else:
        assert pair.counters.merged_deltas > 0
    seqs = [u["seq"] for u in updates]
    assert seqs == sorted(set(seqs))
    text = ""
    for update in updates:
        data = update["data"]
        assert data["offset"] == len(text)
        text += data["delta"]
    assert len(text.split()) == tokens
