"""The web UI's HTTP side: the pure routing of :class:`Site`, then real requests on the
websocket's own port (raw sockets, no browser)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio
import trio.testing

from greenroom.web.http import PrefixedStream
from greenroom.web.site import STATIC_PREFIX, load_site
from tests.transport.test_server_support import open_client, open_server

SITE = load_site("127.0.0.1")


def test_the_packaged_files_are_all_there() -> None:
    names = {path.removeprefix(STATIC_PREFIX) for path in SITE.files if path != "/"}
    assert {"index.html", "app.js", "chat.js", "wire.js", "style.css"} <= names
    assert {"markdown.js", "messages.js", "vendor/marked.js", "vendor/purify.js"} <= names
    assert SITE.files["/"] is SITE.files["/static/index.html"]


def test_every_module_a_page_imports_is_served() -> None:
    """The browser resolves each relative import against /static/: a missing one is a blank
    page, so check them all here, without a browser."""
    for path, file in SITE.files.items():
        if not path.endswith(".js"):
            continue
        folder = path.rpartition("/")[0]
        for target in re.findall(rb'from\s*"(\./[^"]+)"', file.body):
            wanted = f"{folder}/{target.decode().removeprefix('./')}"
            assert wanted in SITE.files, f"{path} imports {wanted}, which is not served"


def test_the_vendored_libraries_come_with_their_licenses_which_are_not_served() -> None:
    folder = Path(__file__).parents[2] / "greenroom" / "web" / "static" / "vendor"
    for name in ("marked", "dompurify", "highlight"):
        assert (folder / f"{name}.LICENSE.txt").stat().st_size > 500
    assert SITE.answer("GET", "/static/vendor/marked.LICENSE.txt", "localhost").status == 404
    assert SITE.answer("GET", "/static/vendor/README.md", "localhost").status == 404
    reply = SITE.answer("GET", "/static/vendor/purify.js", "localhost")
    assert reply.status == 200
    assert dict(reply.headers)["Content-Type"] == "text/javascript; charset=utf-8"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/?token=abc", "text/html; charset=utf-8"),
        ("/static/app.js", "text/javascript; charset=utf-8"),
        ("/static/style.css", "text/css; charset=utf-8"),
    ],
)
def test_files_come_with_their_type_and_a_csp(path: str, content_type: str) -> None:
    reply = SITE.answer("GET", path, "127.0.0.1:8765")
    headers = dict(reply.headers)
    assert reply.status == 200
    assert headers["Content-Type"] == content_type
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "connect-src 'self' ws://127.0.0.1:8765" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"  # the URL may carry the token


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pyproject.toml",
        "/static/%2e%2e/pyproject.toml",
        "/static/",
        "/static",
        "/index.html",
        "/../greenroom/cli/serve.py",
        "/static/__init__.py",
        "//etc/passwd",
    ],
)
def test_anything_but_the_packaged_files_is_404(path: str) -> None:
    assert SITE.answer("GET", path, "localhost").status == 404


def test_methods_other_than_get_and_head_are_405() -> None:
    assert SITE.answer("POST", "/", "localhost").status == 405
    assert SITE.answer("HEAD", "/", "localhost").status == 200


def test_a_plain_get_of_the_websocket_path_is_426() -> None:
    assert SITE.answer("GET", "/ws?token=x", "localhost").status == 426


def test_a_foreign_host_is_refused_on_loopback_only() -> None:
    assert SITE.answer("GET", "/", "evil.example:8765").status == 403
    assert SITE.answer("GET", "/", None).status == 403
    anywhere = load_site("0.0.0.0")
    assert anywhere.answer("GET", "/", "box.lan:8765").status == 200


def test_a_strange_host_is_not_echoed_into_the_csp() -> None:
    site = load_site("0.0.0.0")
    csp = dict(site.answer("GET", "/", "a b;script-src *").headers)["Content-Security-Policy"]
    assert "connect-src 'self';" in csp


async def exchange(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        received = bytearray()
        while chunk := await stream.receive_some():
            received += chunk
    return bytes(received)


async def test_the_ui_and_the_websocket_share_one_port(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path) as running:
            port = running.address.port
            page = await exchange(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head, _, body = page.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"connection: close" in head.lower()
            assert body.startswith(b"<!doctype html>")
            script = await exchange(port, b"GET /static/app.js HTTP/1.0\r\n\r\n")
            assert script.startswith(b"HTTP/1.1 403 ")  # HTTP/1.0 without Host: not local
            async with open_client(running.address) as client:
                await client.call("ping")
            missing = await exchange(port, b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert missing.startswith(b"HTTP/1.1 404 Not Found\r\n")
            head_only = await exchange(port, b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            head, _, body = head_only.partition(b"\r\n\r\n")
            assert body == b""
            assert f"content-length: {len(SITE.files['/'].body)}".encode() in head.lower()


async def test_bad_and_oversized_request_heads_are_answered_and_closed(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path, max_head_bytes=1024) as running:
            port = running.address.port
            big = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
            assert (await exchange(port, big)).startswith(b"HTTP/1.1 431 ")
            garbage = await exchange(port, b"\x16\x03\x01 not http at all\r\n\r\n")
            assert garbage.startswith(b"HTTP/1.1 400 ")


async def test_a_prefixed_stream_gives_back_its_prefix_first() -> None:
    sender, receiver = trio.testing.memory_stream_pair()
    await sender.send_all(b"world")
    stream = PrefixedStream(stream=receiver, prefix=b"hello ")
    assert await stream.receive_some(3) == b"hel"
    assert await stream.receive_some() == b"lo "
    assert await stream.receive_some() == b"world"
