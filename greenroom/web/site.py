"""What the web UI's HTTP side answers, as pure functions: request line and headers in, a
:class:`Reply` out. No sockets, no trio (see :mod:`greenroom.web.http` for the I/O).

Decisions:

- The files are the package's ``greenroom/web/static/`` folder, read once into memory when the
  server starts (:func:`load_site`). A path is looked up by exact name in that table, so no
  request can name a file outside it: there is no path joining, hence no traversal.
- Only ``GET`` and ``HEAD``. ``/`` is ``index.html``; ``/static/<name>`` the other files, and
  ``/static/vendor/<name>`` the vendored libraries (their license files are not served: no
  ``.txt`` type).
- Every reply carries a Content-Security-Policy that allows scripts, styles and connections
  from this origin only (``connect-src`` names the websocket of the Host the page came from),
  ``no-referrer`` (the page's URL may hold the token) and ``nosniff``.
- When the server listens on a loopback address, a Host that is neither local nor the host of
  an allowed origin is refused with 403, as the websocket handshake does: a rebound DNS name
  gets nothing from us (see :func:`greenroom.transport.auth.host_refused`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from types import MappingProxyType
from urllib.parse import urlsplit

import attrs

from greenroom.transport.auth import FOREIGN_HOST, WS_PATH, host_refused

__all__ = ["Reply", "Site", "StaticFile", "body_reply", "error_reply", "load_site", "text_reply"]

STATIC_PREFIX = "/static/"
CONTENT_TYPES = MappingProxyType(
    {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
        ".ico": "image/x-icon",
    }
)
# A Host value we are willing to echo into the CSP header: a name or address and a port.
_HOST_VALUE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")


@attrs.frozen(kw_only=True)
class StaticFile:
    content_type: str
    body: bytes


@attrs.frozen(kw_only=True)
class Reply:
    """An HTTP response: status, headers (besides Content-Length, added by the writer), body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@attrs.frozen(kw_only=True)
class Site:
    """The static files by URL path, and what the Host check needs: the address the server
    listens on and the allowed origins."""

    files: Mapping[str, StaticFile]
    listen_host: str
    allowed_origins: tuple[str, ...] = ()

    def answer(self, method: str, target: str, host: str | None) -> Reply:
        """The reply to one request (``target`` as sent, with its query string)."""
        path = urlsplit(target).path
        refused = self.refuse_host(host)
        if refused is not None:
            return refused
        if method not in ("GET", "HEAD"):
            return _text(405, "method not allowed", (("Allow", "GET, HEAD"),))
        if path == WS_PATH:
            return _text(426, f"upgrade required: {WS_PATH} is the websocket", (
                ("Upgrade", "websocket"),
            ))  # fmt: skip
        file = self.files.get(path)
        if file is None:
            return _text(404, "not found")
        headers = (
            ("Content-Type", file.content_type),
            # The files change only with the package; revalidating costs little on localhost
            # and never shows a stale UI after an upgrade.
            ("Cache-Control", "no-cache"),
            ("Content-Security-Policy", _csp(host)),
            *_COMMON_HEADERS,
        )
        return Reply(status=200, headers=headers, body=file.body)  # HEAD: the writer drops it

    def refuse_host(self, host: str | None) -> Reply | None:
        """The 403 for a foreign Host (see the module docstring), or None."""
        if host_refused(host, self.listen_host, self.allowed_origins):
            return _text(403, FOREIGN_HOST)
        return None


_COMMON_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)


def load_site(listen_host: str, allowed_origins: tuple[str, ...] = ()) -> Site:
    """Read the packaged static files (blocking: run it in a thread)."""
    folder = resources.files("greenroom.web").joinpath("static")
    files: dict[str, StaticFile] = {}
    _read_folder(folder, STATIC_PREFIX, files)
    files["/"] = files[STATIC_PREFIX + "index.html"]
    return Site(
        files=MappingProxyType(files), listen_host=listen_host, allowed_origins=allowed_origins
    )


def _read_folder(folder: Traversable, prefix: str, files: dict[str, StaticFile]) -> None:
    """Every file of ``folder`` and its subfolders (``vendor/``) with a known type, by URL."""
    for entry in folder.iterdir():
        if entry.is_dir():
            _read_folder(entry, f"{prefix}{entry.name}/", files)
            continue
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in CONTENT_TYPES:
            files[prefix + entry.name] = StaticFile(
                content_type=CONTENT_TYPES[suffix], body=entry.read_bytes()
            )


def error_reply(status: int, message: str) -> Reply:
    """A plain-text error, for requests that could not be read."""
    return _text(status, message)


def text_reply(
    status: int, message: str, extra: tuple[tuple[str, str], ...] = ()
) -> Reply:
    """A short plain-text answer (the health endpoints), with the common headers."""
    return _text(status, message, extra)


def body_reply(content_type: str, body: bytes) -> Reply:
    """A 200 with ``body`` (the metrics), with the common headers and no caching."""
    headers = (
        ("Content-Type", content_type),
        ("Cache-Control", "no-store"),
        ("Content-Security-Policy", "default-src 'none'"),
        *_COMMON_HEADERS,
    )
    return Reply(status=200, headers=headers, body=body)


def _text(status: int, message: str, extra: tuple[tuple[str, str], ...] = ()) -> Reply:
    headers = (
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Security-Policy", "default-src 'none'"),
        *_COMMON_HEADERS,
        *extra,
    )
    return Reply(status=status, headers=headers, body=(message + "\n").encode("utf-8"))


def _csp(host: str | None) -> str:
    # 'self' covers ws: and wss: to the same host and port in CSP 3; the explicit sources are
    # for browsers that still read it the CSP 2 way (wss: for a page behind a TLS proxy).
    valid = host is not None and _HOST_VALUE.match(host)
    websocket = f" ws://{host} wss://{host}" if valid else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'{websocket}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )

