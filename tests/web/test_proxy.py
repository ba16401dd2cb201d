"""Behind a TLS reverse proxy: the web UI and its websocket, with exactly the headers that Caddy
and nginx send (docs/deploy.md has both configurations), as raw requests to a real server."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from greenroom.transport.auth import FOREIGN_HOST
from tests.transport.test_operations import get
from tests.transport.test_server_support import open_client, open_server, refused_with

PUBLIC = "greenroom.example.com"
ORIGIN = f"https://{PUBLIC}"

# Caddy's reverse_proxy keeps the client's Host and adds the X-Forwarded-* headers.
CADDY = (
    ("Host", PUBLIC),
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", PUBLIC),
)
# nginx with the snippet of docs/deploy.md: Host $host, X-Forwarded-Proto $scheme.
NGINX = (
    ("Host", PUBLIC),
    ("X-Real-IP", "203.0.113.7"),
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
)
# nginx without ``proxy_set_header Host``: the upstream's address (filled in per test).
NGINX_DEFAULT_HOST = (("X-Forwarded-Proto", "https"),)


async def page(port: int, headers: tuple[tuple[str, str], ...]) -> int:
    """The status of ``GET /`` sent with exactly ``headers`` (Host among them)."""
    lines = ["GET /?token=t HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        received = bytearray()
        while chunk := await stream.receive_some():
            received += chunk
    return int(bytes(received).split(b" ", 2)[1])


def _host(headers: tuple[tuple[str, str], ...]) -> str:
    return dict(headers)["Host"]


def _rest(headers: tuple[tuple[str, str], ...]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in headers if k != "Host"]


@pytest.mark.parametrize("proxy", [CADDY, NGINX], ids=["caddy", "nginx"])
async def test_a_proxied_ui_was_refused_before_its_origin_is_allowed(
    tmp_path: Path, proxy: tuple[tuple[str, str], ...]
) -> None:
    """What happened before allowed_origins: the public Host is not local, so 403."""
    with trio.fail_after(10):
        async with open_server(tmp_path) as running:
            assert await page(running.address.port, proxy) == 403
            status = await refused_with(
                running.address,
                host=_host(proxy),
                headers=[*_rest(proxy), (b"Origin", ORIGIN.encode())],
            )
    assert status == 403


@pytest.mark.parametrize("proxy", [CADDY, NGINX], ids=["caddy", "nginx"])
async def test_a_proxied_ui_works_once_its_origin_is_allowed(
    tmp_path: Path, proxy: tuple[tuple[str, str], ...]
) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path, allowed_origins=(ORIGIN,)) as running:
            port = running.address.port
            assert await page(port, proxy) == 200
            reply = await get(port, "/", *[(k, v) for k, v in proxy if k != "Host"])
            assert reply.status == 200  # the plain local Host still works as well
            headers = [*_rest(proxy), (b"Origin", ORIGIN.encode())]
            async with open_client(running.address, host=_host(proxy), headers=headers) as client:
                assert (await client.next_item())["event"] == "welcome"
                await client.call("ping")


async def test_nginx_without_a_host_header_needs_the_origin_allowed(tmp_path: Path) -> None:
    """nginx's default Host is the upstream's address: local, so only the Origin matters."""
    with trio.fail_after(10):
        async with open_server(tmp_path) as running:
            address = running.address
            upstream = f"127.0.0.1:{address.port}"
            headers = [*_rest(NGINX_DEFAULT_HOST), (b"Origin", ORIGIN.encode())]
            assert await page(address.port, (("Host", upstream), *NGINX_DEFAULT_HOST)) == 200
            assert await refused_with(address, host=upstream, headers=headers) == 403
        async with open_server(tmp_path, allowed_origins=(ORIGIN,)) as running:
            address = running.address
            upstream = f"127.0.0.1:{address.port}"
            async with open_client(address, host=upstream, headers=headers) as client:
                assert (await client.next_item())["event"] == "welcome"


async def test_forwarded_headers_are_no_way_around_the_host_check(tmp_path: Path) -> None:
    """A page on a rebound DNS name can send X-Forwarded-Host itself: it changes nothing."""
    spoofed = (
        ("Host", "rebound.example"),
        ("X-Forwarded-Host", PUBLIC),
        ("X-Forwarded-Proto", "https"),
    )
    with trio.fail_after(10):
        async with open_server(tmp_path, allowed_origins=(ORIGIN,)) as running:
            assert await page(running.address.port, spoofed) == 403
            status = await refused_with(
                running.address,
                host="rebound.example",
                headers=[*_rest(spoofed), (b"Origin", b"https://rebound.example")],
            )
            assert status == 403
            # Nor does an allowed origin help a request addressed to a foreign Host.
            status = await refused_with(
                running.address,
                host="rebound.example",
                headers=[(b"Origin", ORIGIN.encode())],
            )
    assert status == 403
    assert "allowed origin" in FOREIGN_HOST


async def test_the_page_may_connect_with_wss_to_its_own_host(tmp_path: Path) -> None:
    """The CSP names wss:// of the Host as well, for a page served over https."""
    with trio.fail_after(10):
        async with open_server(tmp_path, allowed_origins=(ORIGIN,)) as running:
            reply = await get(running.address.port, "/")
    assert f"wss://127.0.0.1:{running.address.port}" in reply.headers["content-security-policy"]
