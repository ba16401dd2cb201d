"""The Python client against a scripted fake server: routing, resume, duplicates, failures.

A fake server lets each test say exactly which frames arrive in which order (a replay that is
overtaken by a live event, a ``reset``, a close in the middle of a call), which the real
server only does by chance. Real sockets on 127.0.0.1, real clock, capped with fail_after.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from greenroom.transport.client import (
    CommandError,
    ConnectFailed,
    ConnectionLost,
    GreenroomClient,
    HandshakeRefused,
    connect,
)

JSON = dict[str, Any]
Script = Callable[[int, WebSocketConnection], Awaitable[None]]


def welcome(**extra: Any) -> JSON:
    data = {
        "server": "greenroom",
        "version": "test",
        "protocol": 1,
        "connection": "c-1",
        "provider": "simulated",
        "sessions": [],
        "notifications": [],
    }
    data.update(extra)
    return {"event": "welcome", "session": None, "project": None, "seq": None, "data": data}


def ev(seq: int, name: str = "streamingUpdate", session: str = "s-1", **data: Any) -> JSON:
    return {"event": name, "session": session, "project": "blog", "seq": seq, "data": data}


def ok(re: Any, **result: Any) -> JSON:
    return {"re": re, "ok": True, "result": result}


async def send(ws: WebSocketConnection, *items: JSON) -> None:
    await ws.send_message(json.dumps(items[0] if len(items) == 1 else list(items)))


async def recv(ws: WebSocketConnection) -> JSON:
    frame = await ws.get_message()
    assert isinstance(frame, str)
    obj: JSON = json.loads(frame)
    return obj


@asynccontextmanager
async def fake_server(script: Script, *, status: int | None = None) -> AsyncIterator[str]:
    """Serve ``script(n, ws)`` for the n-th connection (from 0), after sending the welcome."""
    count = 0

    async def handler(request: WebSocketRequest) -> None:
        nonlocal count
        if status is not None:
            await request.reject(status, body=b"no")
            return
        ws = await request.accept(subprotocol="greenroom.v1.json")
        n, count = count, count + 1
        await send(ws, welcome(connection=f"c-{n}"))
        with suppress(ConnectionClosed):
            await script(n, ws)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        yield f"ws://127.0.0.1:{server.port}/ws"
        nursery.cancel_scope.cancel()


async def take(client: GreenroomClient, n: int) -> list[JSON]:
    events = client.events()
    return [await events.__anext__() for _ in range(n)]


async def test_calls_batches_and_errors() -> None:
    async def script(n: int, ws: WebSocketConnection) -> None:
        a = await recv(ws)
        assert a == {"id": a["id"], "op": "ping"}
        b = await recv(ws)
        assert b["op"] == "openSession" and b["project"] == "blog"
        # Replies out of order and in one batch with an event: routed by id.
        await send(ws, ev(1, "sessionCreated", session="s-9"), ok(b["id"], x=2), ok(a["id"]))
        c = await recv(ws)
        err = {"code": "not_found", "message": "no session s-0"}
        await send(ws, {"re": c["id"], "ok": False, "error": err})
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with fake_server(script) as url, connect(url, "t") as client:
            assert client.welcome["connection"] == "c-0"
            results: dict[str, JSON] = {}
            async with trio.open_nursery() as nursery:

                async def call(name: str, coro: Awaitable[JSON]) -> None:
                    results[name] = await coro

                nursery.start_soon(call, "ping", client.ping())
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(call, "open", client.open_session("blog"))
            assert results == {"ping": {}, "open": {"x": 2}}
            assert (await take(client, 1))[0]["event"] == "sessionCreated"
            with pytest.raises(CommandError) as caught:
                await client.stop_generation("s-0")
            assert caught.value.code == "not_found"
            assert "no session s-0" in str(caught.value)


async def test_resubscribes_with_since_and_drops_duplicates() -> None:
    seen_since: list[Any] = []

    async def script(n: int, ws: WebSocketConnection) -> None:
        sub = await recv(ws)
        assert sub["op"] == "subscribe"
        seen_since.append(sub.get("since"))
        if n == 0:
            await send(ws, ok(sub["id"], seq=3), ev(4), ev(5))
            await ws.aclose(4008, "too slow")
            return
        # A live lifecycle event overtakes the reply; the replay repeats 5 and brings 6, 7.
        await send(ws, ev(7, "loadingChanged", loading=False, reason="completed"))
        await send(ws, ok(sub["id"], seq=7), ev(6), ev(7, "loadingChanged", loading=False))
        await send(ws, ev(8, "sessionUpdated"))
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with fake_server(script) as url, connect(url, "t") as client:
            assert await client.subscribe("s-1") == {"seq": 3}
            got = await take(client, 6)
            assert [(e["event"], e["seq"]) for e in got] == [
                ("streamingUpdate", 4),
                ("streamingUpdate", 5),
                ("reconnected", None),
                ("streamingUpdate", 6),
                ("loadingChanged", 7),
                ("sessionUpdated", 8),
            ]
            assert got[2]["data"]["connection"] == "c-1"
            assert seen_since == [None, 5]
            assert client.last_seq("s-1") == 8
            assert client.reconnects == 1


async def test_live_event_after_replay_is_held_until_the_replay_ends() -> None:
    async def script(n: int, ws: WebSocketConnection) -> None:
        sub = await recv(ws)
        if n == 0:
            await send(ws, ok(sub["id"], seq=2))
            await ws.aclose(1001)
            return
        assert sub["since"] == 2
        # Overtaking: 5 (live) before the reply; the replay 3, 4 after it.
        await send(ws, ev(5), ok(sub["id"], seq=4), ev(3), ev(4), ev(6))
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with fake_server(script) as url, connect(url, "t") as client:
            await client.subscribe("s-1")
            got = await take(client, 5)
            assert [e["seq"] for e in got] == [None, 3, 4, 5, 6]


async def test_reset_becomes_a_resync_event() -> None:
    async def script(n: int, ws: WebSocketConnection) -> None:
        sub = await recv(ws)
        if n == 0:
            await send(ws, ok(sub["id"], seq=2), ev(3))
            await ws.aclose(4008)
            return
        await send(ws, ok(sub["id"], seq=900, reset=True), ev(901))
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with fake_server(script) as url, connect(url, "t") as client:
            await client.subscribe("s-1")
            got = await take(client, 4)
            assert [(e["event"], e["seq"]) for e in got] == [
                ("streamingUpdate", 3),
                ("reconnected", None),
                ("resync", None),
                ("streamingUpdate", 901),
            ]
            assert got[2]["session"] == "s-1" and got[2]["data"] == {"seq": 900}


async def test_focus_is_sent_again_after_a_reconnect() -> None:
    focused: list[Any] = []

    async def script(n: int, ws: WebSocketConnection) -> None:
        while True:
            cmd = await recv(ws)
            focused.append((n, cmd["op"], cmd.get("project")))
            await send(ws, ok(cmd["id"]))
            if n == 0:
                await ws.aclose(1001)

    with trio.fail_after(10):
        async with fake_server(script) as url, connect(url, "t") as client:
            await client.focus_project("blog")
            await take(client, 1)  # reconnected
            await client.ping()  # answered after the focus was restored
    assert focused == [(0, "focusProject", "blog"), (1, "focusProject", "blog"), (1, "ping", None)]


async def test_in_flight_calls_fail_or_retry() -> None:
    ops: list[str] = []

    async def script(n: int, ws: WebSocketConnection) -> None:
        while True:
            cmd = await recv(ws)
            ops.append(cmd["op"])
            if n == 0 and len(ops) == 2:
                await ws.aclose(1001)  # both calls are in flight
                return
            if n > 0:
                await send(ws, ok(cmd["id"], op=cmd["op"]))

    with trio.fail_after(10):
        async with fake_server(script) as url, connect(url, "t") as client:
            outcome: dict[str, Any] = {}

            async def call(name: str, coro: Awaitable[JSON]) -> None:
                try:
                    outcome[name] = await coro
                except ConnectionLost as lost:
                    outcome[name] = lost

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, "send", client.send_message("s-1", "hi"))
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(call, "list", client.list_sessions())
            assert isinstance(outcome["send"], ConnectionLost)
            assert outcome["list"] == {"op": "listSessions"}
            assert ops == ["sendMessage", "listSessions", "listSessions"]


async def test_no_reconnect_ends_the_event_stream() -> None:
    async def script(n: int, ws: WebSocketConnection) -> None:
        await send(ws, ev(1, "sessionCreated"))
        await ws.aclose(1001)

    with trio.fail_after(10):
        async with fake_server(script) as url, connect(url, "t", reconnect=False) as client:
            events = client.events()
            assert (await events.__anext__())["event"] == "sessionCreated"
            with pytest.raises(ConnectionLost, match="1001"):
                await events.__anext__()
            with pytest.raises(ConnectionLost):
                await client.ping()


async def test_gives_up_after_the_reconnect_timeout() -> None:
    async def script(n: int, ws: WebSocketConnection) -> None:
        await ws.aclose(1001)

    with trio.fail_after(10):
        async with fake_server(script) as url, connect(url, "t", reconnect_timeout=0.3) as client:
            with pytest.raises(ConnectionLost):
                async for _ in client.events():
                    pass
            assert client.reconnects >= 1


async def test_handshake_refused_and_nothing_listening() -> None:
    async def script(n: int, ws: WebSocketConnection) -> None:
        raise AssertionError("never accepted")

    with trio.fail_after(10):
        async with fake_server(script, status=401) as url:
            with pytest.raises(HandshakeRefused) as refused:
                async with connect(url, "wrong"):
                    pass
            assert refused.value.status == 401
        with pytest.raises(ConnectFailed):
            async with connect("ws://127.0.0.1:9/ws", "t"):
                pass


async def test_error_in_the_body_is_not_wrapped() -> None:
    async def script(n: int, ws: WebSocketConnection) -> None:
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with fake_server(script) as url:
            with pytest.raises(KeyError):
                async with connect(url, "t"):
                    raise KeyError("mine")


async def test_slow_consumer_blocks_the_reader_then_resumes() -> None:
    """A full event queue stops the reader: the events wait in the socket, none is lost."""

    async def script(n: int, ws: WebSocketConnection) -> None:
        sub = await recv(ws)
        await send(ws, ok(sub["id"], seq=0))
        for seq in range(1, 51):
            await send(ws, ev(seq))
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with fake_server(script) as url, connect(url, "t", event_buffer=4) as client:
            await client.subscribe("s-1")
            got = await take(client, 50)
            assert [e["seq"] for e in got] == list(range(1, 51))
