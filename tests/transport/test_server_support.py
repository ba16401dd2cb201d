"""Shared pieces of the websocket server tests: a server on 127.0.0.1 port 0, a wire client.

Real sockets run on the real clock (an autojump clock would leap while the kernel moves
bytes), so every test caps itself with ``trio.fail_after`` and uses a fast simulated provider.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio_websocket

from greenroom.config import SimulatedConfig
from greenroom.protocol import commands as cmd
from greenroom.protocol.codec import SUBPROTOCOL_JSON, Codec, Subprotocol
from greenroom.runtime import Runtime
from greenroom.transport.server import Server, ServerAddress, ServerSettings
from tests.conftest import make_config, open_test_runtime

TOKEN = "test-token"
FAST = SimulatedConfig(seed=1, tokens_per_second=200.0, reply_tokens=10)
BIG_FRAMES = 64 << 20  # our test clients accept big batches


@attrs.define(eq=False)
class Running:
    runtime: Runtime
    server: Server
    address: ServerAddress
    scope: trio.CancelScope

    def stop(self) -> None:
        """Cancel the server (as ``greenroom serve`` does on SIGTERM)."""
        self.scope.cancel()


@asynccontextmanager
async def open_server(
    tmp_path: Path, *, simulated: SimulatedConfig = FAST, **settings: Any
) -> AsyncIterator[Running]:
    """A runtime and a server on 127.0.0.1 port 0; stopped on exit."""
    config = make_config(tmp_path, simulated=simulated)
    async with open_test_runtime(config) as runtime, trio.open_nursery() as nursery:
        server = Server(
            runtime=runtime,
            settings=ServerSettings(host="127.0.0.1", port=0, token=TOKEN, **settings),
        )
        scope = trio.CancelScope()

        async def run(*, task_status: trio.TaskStatus[ServerAddress]) -> None:
            with scope:
                await server.run(task_status=task_status)

        address = await nursery.start(run)
        yield Running(runtime=runtime, server=server, address=address, scope=scope)
        scope.cancel()


@attrs.define(eq=False)
class WireClient:
    """Talks the protocol over a trio-websocket connection, keeping every item received."""

    ws: trio_websocket.WebSocketConnection
    codec: Codec
    events: list[dict[str, Any]] = attrs.Factory(list)
    frames: int = 0
    _unread: list[dict[str, Any]] = attrs.Factory(list)
    _ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(1))

    async def items(self) -> list[dict[str, Any]]:
        """The items of the next frame."""
        frame = await self.ws.get_message()
        self.frames += 1
        return self.codec.decode_server(frame)

    async def next_item(self) -> dict[str, Any]:
        while not self._unread:
            self._unread.extend(await self.items())
        return self._unread.pop(0)

    async def send(self, op: str, **fields: Any) -> int:
        id_ = next(self._ids)
        await self.ws.send_message(self.codec.encode_command(id_, cmd.COMMANDS[op](**fields)))
        return id_

    async def reply(self, id_: int | str | None) -> dict[str, Any]:
        """The reply to ``id_``; events met on the way are kept in ``events``."""
        while True:
            item = await self.next_item()
            if "event" in item:
                self.events.append(item)
            elif item["re"] == id_:
                return item

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a command and return its result; fails on an error reply."""
        reply = await self.reply(await self.send(op, **fields))
        assert reply["ok"], reply
        result: dict[str, Any] = reply["result"]
        return result

    async def error(self, op: str, **fields: Any) -> str:
        """Send a command that must fail; returns the error code."""
        reply = await self.reply(await self.send(op, **fields))
        assert not reply["ok"], reply
        code: str = reply["error"]["code"]
        return code

    async def event(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first kept or next event for which ``match`` holds (kept ones are consumed)."""
        for i, event in enumerate(self.events):
            if match(event):
                return self.events.pop(i)
        while True:
            item = await self.next_item()
            if "event" in item:
                if match(item):
                    return item
                self.events.append(item)


@asynccontextmanager
async def open_client(
    address: ServerAddress,
    *,
    subprotocol: Subprotocol | None = SUBPROTOCOL_JSON,
    token: str | None = TOKEN,
    path: str = "/ws",
    headers: list[tuple[bytes, bytes]] | None = None,
    host: str | None = None,
    message_queue_size: int = 64,
    receive_buffer: int | None = None,
) -> AsyncIterator[WireClient]:
    """A connected client (its welcome not read yet). The stream is ours, so it is closed
    however the websocket ends (trio-websocket's client leaves it open after a server close).
    """
    resource = path if token is None else f"{path}?token={token}"
    sock = trio.socket.socket()
    if receive_buffer is not None:  # before connecting, so that the window starts small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect((address.host, address.port))
    stream = trio.SocketStream(sock)
    try:
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                host or f"{address.host}:{address.port}",
                resource,
                subprotocols=[subprotocol] if subprotocol else None,
                extra_headers=headers,
                message_queue_size=message_queue_size,
                max_message_size=BIG_FRAMES,
            )
            try:
                yield WireClient(ws=ws, codec=Codec(subprotocol or SUBPROTOCOL_JSON))
            finally:
                with trio.move_on_after(2):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)


async def refused_with(address: ServerAddress, **options: Any) -> int:
    """The HTTP status the server refuses this handshake with (fails if it accepts)."""
    with pytest.RaisesGroup(trio_websocket.ConnectionRejected, flatten_subgroups=True) as info:
        async with open_client(address, **options):
            pass
    rejected = info.value.exceptions[0]
    assert isinstance(rejected, trio_websocket.ConnectionRejected)
    return rejected.status_code


async def read_up_to(client: WireClient, session: str, seq: int) -> None:
    """Keep every item until ``session``'s event ``seq`` (or a later one) has come."""
    while max((e["seq"] or 0 for e in client.events if e["session"] == session), default=0) < seq:
        item = await client.next_item()
        if "event" in item:
            client.events.append(item)


def turn_ended(session: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (
        e["session"] == session and e["event"] == "loadingChanged" and not e["data"]["loading"]
    )


def reassemble(updates: list[dict[str, Any]]) -> str:
    """The partial message the streamingUpdates build, checking that none leaves a gap and
    that an update starting inside the text held (a replayed run) agrees with it there."""
    text = ""
    for update in updates:
        offset, delta = update["data"]["offset"], update["data"]["delta"]
        assert offset <= len(text), (offset, len(text))
        assert delta.startswith(text[offset:]) or text[offset:].startswith(delta)
        text = text[:offset] + delta if offset + len(delta) >= len(text) else text
    return text
