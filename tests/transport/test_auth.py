"""The token file and the handshake checks, with no sockets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from greenroom.transport.auth import (
    Accepted,
    HandshakeRequest,
    Refused,
    check_handshake,
    is_loopback,
    load_or_create_token,
    tokens_match,
)

TOKEN = "s3cret"


def request(
    target: str = f"/ws?token={TOKEN}",
    host: str | None = "127.0.0.1:8765",
    headers: tuple[tuple[bytes, bytes], ...] = (),
    subprotocols: tuple[str, ...] = (),
) -> HandshakeRequest:
    return HandshakeRequest(target=target, host=host, headers=headers, subprotocols=subprotocols)


def check(req: HandshakeRequest, listen_host: str = "127.0.0.1") -> Accepted | Refused:
    return check_handshake(
        req,
        token=TOKEN,
        listen_host=listen_host,
        listen_port=8765,
        allowed_origins=("https://ui.example",),
    )


def status(req: HandshakeRequest, listen_host: str = "127.0.0.1") -> int:
    verdict = check(req, listen_host)
    return verdict.status if isinstance(verdict, Refused) else 101


def test_the_token_is_made_once_private_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "config" / "greenroom"
    token = load_or_create_token(folder)
    assert len(token) >= 40
    assert stat.S_IMODE((folder / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert load_or_create_token(folder) == token
    assert [p.name for p in folder.iterdir()] == ["token"]  # no temp file left


def test_a_readable_token_file_is_tightened_and_an_empty_one_replaced(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("mine\n")
    path.chmod(0o644)
    assert load_or_create_token(tmp_path) == "mine"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("")
    fresh = load_or_create_token(tmp_path)
    assert fresh and path.read_text().strip() == fresh


def test_tokens_match_in_constant_time_and_only_exactly() -> None:
    assert tokens_match("abc", "abc")
    assert not tokens_match("abd", "abc")
    assert not tokens_match("", "abc")
    assert not tokens_match(None, "abc")
    assert not tokens_match("é", "abc")  # non-ASCII does not raise


def test_a_good_request_is_accepted_in_json_or_what_the_client_offers_first() -> None:
    assert check(request()) == Accepted(subprotocol="greenroom.v1.json")
    offered = ("x", "greenroom.v1.msgpack", "greenroom.v1.json")
    assert check(request(subprotocols=offered)) == Accepted(subprotocol="greenroom.v1.msgpack")
    assert status(request(subprotocols=("chat",))) == 400


@pytest.mark.parametrize(
    ("target", "headers", "expected"),
    [
        ("/ws", (), 401),
        ("/ws?token=", (), 401),
        ("/ws?token=nope", (), 401),
        ("/ws?other=1", (), 401),
        ("/ws", ((b"authorization", b"Bearer s3cret"),), 101),
        ("/ws", ((b"authorization", b"bearer s3cret"),), 101),
        ("/ws", ((b"authorization", b"Basic s3cret"),), 401),
        ("/ws?token=s3cret", ((b"authorization", b"Bearer wrong"),), 401),
        ("/ws?x=1&token=s3cret", (), 101),
    ],
)
def test_the_token_comes_from_the_query_or_a_bearer_header(
    target: str, headers: tuple[tuple[bytes, bytes], ...], expected: int
) -> None:
    assert status(request(target=target, headers=headers)) == expected


@pytest.mark.parametrize("target", ["/", "/ws/", "/wsx?token=s3cret", "/other?token=s3cret"])
def test_other_paths_are_404_before_anything_else(target: str) -> None:
    assert status(request(target=target, host="evil.example")) == 404


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("http://localhost", 101),
        ("http://localhost:5173", 101),
        ("http://127.0.0.1:1", 101),
        ("http://[::1]:3000", 101),
        ("http://127.0.0.1:8765/", 101),
        ("https://ui.example", 101),
        ("https://UI.example/", 101),
        ("https://localhost", 403),
        ("http://localhost.evil.example", 403),
        ("http://evil.example", 403),
        ("null", 403),
        ("", 403),
        ("http://localhost:bad", 403),
        ("http://localhost/path", 403),
    ],
)
def test_origins(origin: str, expected: int) -> None:
    assert status(request(headers=((b"origin", origin.encode()),))) == expected


def test_the_own_origin_counts_when_listening_elsewhere() -> None:
    req = request(host="box.lan:8765", headers=((b"origin", b"http://box.lan:8765"),))
    assert status(req, listen_host="box.lan") == 101
    other_port = request(host="box.lan:8765", headers=((b"origin", b"http://box.lan:9999"),))
    assert status(other_port, listen_host="box.lan") == 403


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", 101),
        ("localhost:8765", 101),
        ("LOCALHOST:1", 101),
        ("127.0.0.1", 101),
        ("[::1]:8765", 101),
        ("[::1]", 101),
        ("evil.example", 403),
        ("evil.example:8765", 403),
        ("127.0.0.1.evil.example", 403),
        (None, 403),
    ],
)
def test_on_loopback_the_host_must_be_local(host: str | None, expected: int) -> None:
    assert status(request(host=host)) == expected


def test_the_host_is_not_checked_when_listening_on_all_interfaces() -> None:
    assert status(request(host="box.lan:8765"), listen_host="0.0.0.0") == 101


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.2", False),
        ("box.lan", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_page_served_by_this_server_at_its_lan_address_may_connect() -> None:
    """Listening on 0.0.0.0, the web UI opened at http://192.168.1.20:8765/ is same-origin."""
    lan = request(host="192.168.1.20:8765", headers=((b"origin", b"http://192.168.1.20:8765"),))
    assert status(lan, listen_host="0.0.0.0") == 101
    elsewhere = request(
        host="192.168.1.20:8765", headers=((b"origin", b"http://192.168.1.99:8765"),)
    )
    assert status(elsewhere, listen_host="0.0.0.0") == 403
    # Same origin is no way around the token.
    tokenless = request(
        target="/ws",
        host="192.168.1.20:8765",
        headers=((b"origin", b"http://192.168.1.20:8765"),),
    )
    assert status(tokenless, listen_host="0.0.0.0") == 401
