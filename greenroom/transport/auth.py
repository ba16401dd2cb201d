"""Who may open a websocket: the token, the Origin and Host checks, and the path.

No sockets and no trio here; the one function that touches the disk is
:func:`load_or_create_token` (the token file). :func:`check_handshake` is pure: it looks at
what a client sent in its HTTP upgrade request and says either which subprotocol to speak or
which HTTP status to refuse it with. The server calls it once per handshake, before the
websocket opens.

Decisions:

- The token comes from ``?token=T`` or ``Authorization: Bearer T`` (either may be used; when
  both are given the header wins). It is compared in constant time.
- The checks run in this order, so that a client learns as little as possible before it has
  proven it holds the token: path (404), Host (403), Origin (403), token (401), subprotocol
  (400). The connection limit (503) is the server's, after these.
- Host: when the server listens on a loopback address, a ``Host`` that is not ``localhost``,
  ``127.0.0.1``, ``[::1]`` or the host of an allowed origin (any port) is refused, so that a web
  page on a rebound DNS name cannot reach the server even if it guessed the token. The host of
  an allowed origin passes because a reverse proxy (Caddy, nginx with ``Host $host``) hands on
  the public name: the operator who allowed that origin vouches for the name.
- ``X-Forwarded-Host`` and ``X-Forwarded-Proto`` are never read: a page on a rebound name can
  send them itself (a same-origin request with a custom header needs no preflight), so they
  cannot carry a security decision.
- Origin: a browser always sends one; a script usually does not, and is allowed. An origin is
  compared as ``scheme://host[:port]`` in lower case, without a trailing slash. A page of the
  very host it connects to (``Origin`` equal to ``http://`` or ``https://`` and the ``Host``) is
  same-origin and allowed.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import attrs

from greenroom.protocol.codec import Subprotocol, choose_subprotocol

__all__ = [
    "FOREIGN_HOST",
    "TOKEN_FILE",
    "WS_PATH",
    "Accepted",
    "HandshakeRequest",
    "Refused",
    "check_handshake",
    "check_origin",
    "host_refused",
    "is_loopback",
    "load_or_create_token",
    "origin_hosts",
    "request_token",
    "tokens_match",
]

TOKEN_FILE = "token"
WS_PATH = "/ws"
FOREIGN_HOST = "forbidden: Host must be localhost, 127.0.0.1 or the host of an allowed origin"
_LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def load_or_create_token(config_dir: Path) -> str:
    """The server's token, kept in ``config_dir/token`` (mode 0600); made on first use."""
    config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = config_dir / TOKEN_FILE
    token = _read_token(path)
    if token is not None:
        return token
    token = secrets.token_urlsafe(32)
    # Written to a private temp file, then linked into place: link fails if another process
    # created the token meanwhile, and nobody ever reads a half-written token.
    temp = config_dir / f".{TOKEN_FILE}.{secrets.token_hex(8)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            existing = _read_token(path)
            if existing is not None:
                return existing
            os.replace(temp, path)  # an empty token file: ours replaces it
    finally:
        temp.unlink(missing_ok=True)
    return token


def _read_token(path: Path) -> str | None:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # a token others can read is no secret: tighten it
    return token or None


def tokens_match(given: str | None, expected: str) -> bool:
    """Whether ``given`` is the token, compared in constant time."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` only accepts local connections."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@attrs.frozen(kw_only=True)
class HandshakeRequest:
    """What the server reads from a client's upgrade request.

    ``headers`` are (lower-case name, value) pairs; ``host`` is the ``Host`` header.
    """

    target: str
    host: str | None
    headers: tuple[tuple[bytes, bytes], ...]
    subprotocols: tuple[str, ...]


@attrs.frozen(kw_only=True)
class Accepted:
    subprotocol: Subprotocol


@attrs.frozen(kw_only=True)
class Refused:
    """Refuse the handshake with an HTTP ``status`` and a short text ``body``."""

    status: int
    body: str


def check_handshake(
    request: HandshakeRequest,
    *,
    token: str,
    listen_host: str,
    listen_port: int,
    allowed_origins: Iterable[str] = (),
) -> Accepted | Refused:
    """Accept the request (and say in which subprotocol), or say how to refuse it."""
    url = urlsplit(request.target)
    if url.path != WS_PATH:
        return Refused(status=404, body=f"not found: the websocket is at {WS_PATH}")
    if host_refused(request.host, listen_host, allowed_origins):
        return Refused(status=403, body=FOREIGN_HOST)
    origin = _header(request.headers, b"origin")
    if origin is not None and not _origin_allowed(
        origin, listen_host, listen_port, allowed_origins, request.host
    ):
        return Refused(status=403, body=f"forbidden: origin {origin[:100]!r} is not allowed")
    if not tokens_match(_token(request), token):
        return Refused(status=401, body="unauthorized: missing or wrong token")
    subprotocol = choose_subprotocol(request.subprotocols)
    if subprotocol is None:
        return Refused(
            status=400,
            body="bad request: subprotocols offered are not greenroom.v1.json "
            "or greenroom.v1.msgpack",
        )
    return Accepted(subprotocol=subprotocol)


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _token(request: HandshakeRequest) -> str | None:
    return request_token(request.target, request.headers)


def request_token(target: str, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The token a request carries: ``Authorization: Bearer T``, else ``?token=T``."""
    authorization = _header(headers, b"authorization")
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    values = parse_qs(urlsplit(target).query).get("token")
    return values[0] if values else None


def _split_host(host: str) -> str:
    """The name of a ``Host`` value without its port: ``[::1]:80`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def host_refused(host: str | None, listen_host: str, allowed_origins: Iterable[str]) -> bool:
    """Whether a request's ``Host`` is refused (see the module docstring): only ever on a
    server that listens on a loopback address."""
    if not is_loopback(listen_host):
        return False
    if host is None:
        return True
    name = _split_host(host)
    return name not in _LOCAL_NAMES and name not in origin_hosts(allowed_origins)


def origin_hosts(origins: Iterable[str]) -> frozenset[str]:
    """The host names of ``origins``, in lower case."""
    return frozenset(urlsplit(_normal_origin(origin)).hostname or "" for origin in origins)


def check_origin(origin: str) -> str:
    """``origin`` as an allowed origin is kept: ``http(s)://host[:port]`` in lower case,
    without a trailing slash; ValueError for anything else (a path, another scheme)."""
    normal = _normal_origin(origin)
    url = urlsplit(normal)
    try:
        url.port  # noqa: B018 (a bad port raises)
    except ValueError:
        raise ValueError(f"bad port in {origin!r}") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"{origin!r} is not an origin: give http(s)://host[:port]")
    if url.path or url.query or url.fragment or url.username or url.password:
        raise ValueError(f"{origin!r} is not an origin: no path, query or user")
    return normal


def _normal_origin(origin: str) -> str:
    return origin.strip().lower().rstrip("/")


def _origin_allowed(
    origin: str,
    listen_host: str,
    listen_port: int,
    allowed: Iterable[str],
    host: str | None = None,
) -> bool:
    origin = _normal_origin(origin)
    if origin in {_normal_origin(o) for o in allowed}:
        return True
    url = urlsplit(origin)
    if url.scheme not in ("http", "https") or url.path or url.query or url.fragment:
        return False
    try:
        port = url.port
    except ValueError:
        return False
    name = url.hostname or ""
    if url.scheme == "http" and name in _LOCAL_NAMES:
        return True  # http://localhost and http://127.0.0.1 on any port
    own = listen_host.strip("[]").lower()
    if url.scheme == "http" and name == own and port == listen_port:
        return True
    # Same origin: the page was served from the very host and port the browser now connects
    # to (the web UI opened at http://<LAN address>:PORT/ of a server on 0.0.0.0). A page
    # from elsewhere cannot pass this by DNS rebinding without also knowing the token. Behind
    # a TLS proxy that keeps the Host (Caddy does), the page is https:// on that same name.
    return host is not None and url.netloc.lower() == host.strip().lower()
