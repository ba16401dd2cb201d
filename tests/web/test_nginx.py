"""Through a real nginx that terminates TLS, configured as docs/deploy.md says: the web UI and
its websocket work once the public origin is allowed. nginx is Debian's (``nginx-light``,
installed by ``.ci/run``); the certificate is a throwaway one made with openssl."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
import trio_websocket

from greenroom.protocol.codec import SUBPROTOCOL_JSON
from tests.debian import install_from_debian
from tests.transport.test_server_support import TOKEN, open_server

NGINX = Path("/usr/sbin/nginx")
PUBLIC = "greenroom.example.com"
ORIGIN = f"https://{PUBLIC}"

# The location block of docs/deploy.md, word for word.
LOCATION = """
        proxy_pass http://127.0.0.1:UPSTREAM;
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_read_timeout 1h;
"""


def _nginx() -> str:
    install_from_debian(NGINX, "nginx-light")
    found = shutil.which("nginx") or (str(NGINX) if NGINX.exists() else None)
    assert found, f"nginx is missing at {NGINX}: apt-get install nginx-light (.ci/run does)"
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={PUBLIC}",
         "-addext", f"subjectAltName=DNS:{PUBLIC}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@asynccontextmanager
async def running_nginx(folder: Path, upstream: int) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    """nginx on 127.0.0.1, TLS for PUBLIC, proxying to ``upstream``; stopped on exit."""
    folder.mkdir()
    cert, key = _certificate(folder)
    port = _free_port()
    user = "user root;" if os.geteuid() == 0 else ""  # the workers read our temp folder
    (folder / "nginx.conf").write_text(f"""
daemon off;
{user}
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {PUBLIC};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{{LOCATION.replace("UPSTREAM", str(upstream))}        }}
    }}
}}
""")
    process = await trio.lowlevel.open_process(
        [_nginx(), "-p", str(folder), "-c", str(folder / "nginx.conf"),
         "-e", str(folder / "error.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with trio.fail_after(10):
            while True:  # until it listens (bounded above)
                assert process.poll() is None, (folder / "error.log").read_text()
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.05)
        context = ssl.create_default_context(cafile=str(cert))
        yield port, context
    finally:
        process.terminate()
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _tls(port: int, context: ssl.SSLContext) -> trio.SSLStream[trio.SocketStream]:
    stream = trio.SSLStream(
        await trio.open_tcp_stream("127.0.0.1", port), context, server_hostname=PUBLIC
    )
    await stream.do_handshake()
    return stream


async def _page(port: int, context: ssl.SSLContext) -> bytes:
    stream = await _tls(port, context)
    async with stream:
        await stream.send_all(f"GET /?token=t HTTP/1.1\r\nHost: {PUBLIC}\r\n\r\n".encode())
        received = bytearray()
        with trio.fail_after(10):
            while b"\r\n\r\n" not in received:
                received += await stream.receive_some()
    return bytes(received)


async def _websocket(port: int, context: ssl.SSLContext, origin: str) -> str | int:
    """The first frame through nginx, or the status the handshake was refused with."""
    stream = await _tls(port, context)
    refused: list[int] = []
    try:
        try:
            async with trio.open_nursery() as nursery:
                ws = await trio_websocket.wrap_client_stream(
                    nursery, stream, PUBLIC, f"/ws?token={TOKEN}",
                    subprotocols=[SUBPROTOCOL_JSON],
                    extra_headers=[(b"Origin", origin.encode())],
                )  # fmt: skip
                first = str(await ws.get_message())
                await ws.aclose()
                nursery.cancel_scope.cancel()
                return first
        except* trio_websocket.ConnectionRejected as group:
            refused += [error.status_code for error in group.exceptions]  # type: ignore[attr-defined]
    finally:
        await trio.aclose_forcefully(stream)
    return refused[0]


async def test_the_ui_through_nginx_with_tls(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with (
            open_server(tmp_path) as plain,
            running_nginx(tmp_path / "nginx-a", plain.address.port) as (port, tls),
        ):
            # Before: the public Host was refused as a rebound name.
            assert (await _page(port, tls)).startswith(b"HTTP/1.1 403")
            assert await _websocket(port, tls, ORIGIN) == 403
        async with (
            open_server(tmp_path, allowed_origins=(ORIGIN,)) as allowed,
            running_nginx(tmp_path / "nginx-b", allowed.address.port) as (port, tls),
        ):
            page = await _page(port, tls)
            assert page.startswith(b"HTTP/1.1 200"), page[:200]
            assert f"wss://{PUBLIC}".encode() in page  # the CSP lets the page connect
            welcome = str(await _websocket(port, tls, ORIGIN)).replace(" ", "")
            assert welcome.startswith('{"event":"welcome"')
            assert await _websocket(port, tls, "https://elsewhere.example") == 403
