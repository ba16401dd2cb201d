"""Auth hardening: constant-time token check, private token file, rebinding, no leaked secret.

Most checks run against the real ``greenroom serve`` subprocess (tests/e2e/harness.py), the
token check's mechanism against an in-process server with ``hmac.compare_digest`` spied on.
"""

from __future__ import annotations

import hmac
import os
import stat
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket

import greenroom.transport.auth as auth
from greenroom.transport.auth import load_or_create_token
from greenroom.transport.server import ServerAddress, ServerSettings
from tests.e2e.harness import start_server, stop_server
from tests.reliability.support import open_server
from tests.transport.test_server_support import TOKEN, open_client, refused_with, turn_ended


async def test_the_handshake_decides_on_hmac_compare_digest_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, Any]] = []
    verdict = {"value": True}
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return verdict["value"] and real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    with trio.fail_after(10):
        async with open_server(tmp_path) as running:
            assert await refused_with(running.address, token="wrong-token") == 401
            assert calls[-1] == (b"wrong-token", TOKEN.encode())
            async with open_client(running.address) as client:
                await client.next_item()
            assert calls[-1] == (TOKEN.encode(), TOKEN.encode())
            # If compare_digest says no, the right token is refused: nothing else decides.
            verdict["value"] = False
            assert await refused_with(running.address) == 401
    assert hmac.compare_digest is spy and real is not spy


def test_the_token_file_is_0600_in_a_0700_folder(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "config"
    token = load_or_create_token(folder)
    assert len(token) >= 32
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "token").stat().st_mode) == 0o600
    (folder / "token").write_text("   \n")  # an empty token is never used: a new one is made
    again = load_or_create_token(folder)
    assert again.strip() and again != token


async def test_an_empty_token_lets_nobody_in(tmp_path: Path) -> None:
    """Fail closed: with token "" no handshake passes, whatever it sends as its token."""
    with trio.fail_after(10):
        async with open_server(tmp_path, settings={"token": ""}) as running:
            assert await refused_with(running.address, token="") == 401
            assert await refused_with(running.address, token=None) == 401
            bearer = [(b"Authorization", b"Bearer")]
            assert await refused_with(running.address, token=None, headers=bearer) == 401


def test_listening_beyond_loopback_without_a_token_is_refused() -> None:
    for host in ("0.0.0.0", "::", "192.0.2.7"):
        with pytest.raises(ValueError, match="without a token"):
            ServerSettings(host=host, port=0, token="")
    assert ServerSettings(host="0.0.0.0", port=0, token="t").token == "t"


def _address(url: str) -> ServerAddress:
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return ServerAddress(host=parts.hostname, port=parts.port)


async def test_the_real_server_keeps_its_token_private_and_out_of_everything(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path)
    try:
        token = server.token
        assert stat.S_IMODE(server.config_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((server.config_dir / "token").stat().st_mode) == 0o600
        address = _address(server.url)
        with trio.fail_after(30):
            # DNS rebinding and foreign pages are refused even with the right token.
            assert await refused_with(address, token=token, host="evil.example") == 403
            rebound = f"evil.example:{address.port}"
            assert await refused_with(address, token=token, host=rebound) == 403
            evil = [(b"Origin", b"http://evil.example")]
            assert await refused_with(address, token=token, headers=evil) == 403
            assert await refused_with(address, token=token[:-1]) == 401
            assert await refused_with(address, token=token + "x") == 401
            async with open_client(address, token=token) as client:
                await client.next_item()
                session = (await client.call("openSession", project="secrets"))["session"]
                await client.call("subscribe", session=session["session"])
                await client.call("sendMessage", session=session["session"], content="hello")
                await client.event(turn_ended(session["session"]))
                stats = await client.call("stats")
                assert token not in repr(stats)
                state = await client.call("openSession", project="secrets")
                assert token not in repr(state)
        assert await stop_server(server) == 0
    finally:
        server.process.kill()
        await server.process.wait()
    needle = token.encode()
    leaks = [
        path
        for root in (server.data_dir, server.config_dir, server.stderr.parent)
        for path in _files(root)
        if path != server.config_dir / "token" and needle in path.read_bytes()
    ]
    assert not leaks, leaks
    assert server.stderr.read_bytes(), "the server logged nothing: the grep proves nothing"


def _files(root: Path) -> list[Path]:
    return [
        Path(folder) / name
        for folder, _, names in os.walk(root)
        for name in names
        if not (Path(folder) / name).is_symlink()
    ]


async def test_a_bad_handshake_is_logged_without_the_token_it_carried(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    try:
        address = _address(server.url)
        almost = server.token[:-2] + "zz"
        with trio.fail_after(20):
            assert await refused_with(address, token=almost) == 401
            with pytest.RaisesGroup(trio_websocket.ConnectionRejected, flatten_subgroups=True):
                async with open_client(address, token=server.token, path="/nope"):
                    pass
        assert await stop_server(server) == 0
    finally:
        server.process.kill()
        await server.process.wait()
    log = server.stderr.read_text()
    assert server.token not in log and almost not in log
