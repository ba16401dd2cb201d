"""Who may open a websocket, seen from a client over a real socket: statuses and bodies."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from greenroom.protocol.codec import SUBPROTOCOL_MSGPACK
from tests.transport.test_server_support import (
    TOKEN,
    open_client,
    open_server,
    refused_with,
)


async def test_a_missing_or_wrong_token_is_refused_with_401(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path) as running:
            assert await refused_with(running.address, token=None) == 401
            assert await refused_with(running.address, token="wrong") == 401
            assert await refused_with(running.address, token="") == 401
            bearer = [(b"Authorization", b"Bearer wrong")]
            assert await refused_with(running.address, token=None, headers=bearer) == 401
            assert running.server.statistics().rejected_handshakes == 4
            assert running.server.statistics().connections_total == 0


async def test_the_token_may_come_in_the_authorization_header(tmp_path: Path) -> None:
    bearer = [(b"Authorization", f"Bearer {TOKEN}".encode())]
    with trio.fail_after(10):
        async with (
            open_server(tmp_path) as running,
            open_client(running.address, token=None, headers=bearer) as client,
        ):
            assert await client.call("ping") == {}


@pytest.mark.parametrize(
    "origin",
    [b"http://evil.example", b"https://localhost", b"null", b"http://127.0.0.1.evil.example"],
)
async def test_a_foreign_origin_is_refused_with_403(tmp_path: Path, origin: bytes) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path) as running:
            assert await refused_with(running.address, headers=[(b"Origin", origin)]) == 403


async def test_local_own_and_configured_origins_are_allowed(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path, allowed_origins=("https://ui.example",)) as running:
            port = running.address.port
            for origin in (
                "http://localhost",
                "http://localhost:5173",
                "http://127.0.0.1:3000",
                f"http://127.0.0.1:{port}",
                "https://ui.example",
                "HTTPS://UI.example/",
            ):
                headers = [(b"Origin", origin.encode())]
                async with open_client(running.address, headers=headers) as client:
                    assert await client.call("ping") == {}


async def test_a_foreign_host_is_refused_with_403(tmp_path: Path) -> None:
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example.
    with trio.fail_after(10):
        async with open_server(tmp_path) as running:
            assert await refused_with(running.address, host="evil.example:8765") == 403
            for host in ("localhost:1", "[::1]:8765", "127.0.0.1"):
                async with open_client(running.address, host=host) as client:
                    assert await client.call("ping") == {}


async def test_another_path_is_404(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path) as running:
            assert await refused_with(running.address, path="/") == 404
            assert await refused_with(running.address, path="/ws/x") == 404


async def test_unknown_subprotocols_only_are_refused_with_400(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path) as running:
            assert await refused_with(running.address, subprotocol="chat.v2") == 400  # type: ignore[arg-type]
            async with open_client(running.address, subprotocol=None) as client:
                assert client.ws.subprotocol is None  # JSON, with no header
                assert (await client.next_item())["event"] == "welcome"
            async with open_client(running.address, subprotocol=SUBPROTOCOL_MSGPACK) as client:
                assert client.ws.subprotocol == SUBPROTOCOL_MSGPACK


async def test_past_max_connections_is_refused_with_503(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with (
            open_server(tmp_path, max_connections=2) as running,
            open_client(running.address) as one,
            open_client(running.address) as two,
        ):
            await one.call("ping")
            await two.call("ping")
            assert await refused_with(running.address) == 503
            assert running.server.statistics().connections == 2
        async with open_server(tmp_path, max_connections=1) as running:
            async with open_client(running.address) as one:
                await one.call("ping")
            # A closed connection frees its place (the server's last steps after the closing
            # handshake are in-process: they are done once every task waits).
            await trio.testing.wait_all_tasks_blocked()
            assert running.server.statistics().connections == 0
            async with open_client(running.address) as again:
                await again.call("ping")


async def test_a_client_that_never_finishes_its_handshake_is_dropped(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path, handshake_timeout=0.2) as running:
            stream = await trio.open_tcp_stream("127.0.0.1", running.address.port)
            async with stream:
                await stream.send_all(b"GET /ws HTTP/1.1\r\n")  # and nothing more
                assert await stream.receive_some() == b""  # the server hung up
