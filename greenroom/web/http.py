"""Plain HTTP next to the websocket, on the same port: read a request head, then either hand the
stream on (a websocket upgrade) or send it the reply the server chose (a file of the
:class:`~greenroom.web.site.Site`, or an operations endpoint: health, readiness, metrics).

h11 parses the head. Every byte read is kept, so that an upgrade can be replayed, whole, to
trio-websocket through a :class:`PrefixedStream`: the websocket library then sees the stream
exactly as the client sent it. A plain request gets one response and ``Connection: close``
(the UI is three small files; keep-alive would only complicate the hand-over).
"""

from __future__ import annotations

import contextlib
import logging
from http import HTTPStatus

import attrs
import h11
import trio

from greenroom.web.site import Reply, error_reply

__all__ = ["PrefixedStream", "RequestHead", "answer_http", "read_request_head"]

log = logging.getLogger("greenroom.web")

_RECEIVE_BYTES = 4096
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 256 << 10


@attrs.frozen(kw_only=True)
class RequestHead:
    """A request's head as parsed, plus every byte read so far (the head, maybe more)."""

    method: str
    target: str
    host: str | None
    upgrade: bool
    """Whether it asks for a websocket (``Upgrade: websocket``)."""
    headers: tuple[tuple[bytes, bytes], ...]
    """Every header, names in lower case (as h11 gives them)."""
    raw: bytes


async def read_request_head(stream: trio.abc.Stream, *, max_bytes: int) -> RequestHead | None:
    """Read one request head; ``None`` when the client left or sent a bad one (answered).

    The caller bounds the time; ``max_bytes`` bounds the head (431 beyond it).
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_bytes)
    raw = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            await _send_quietly(stream, error_reply(status, f"bad request: {exc}"), conn)
            return None
        if isinstance(event, h11.Request):
            return _head(event, bytes(raw))
        if event is not h11.NEED_DATA:
            return None  # the client closed before a whole head
        if len(raw) >= max_bytes:
            await _send_quietly(stream, error_reply(431, "request header fields too large"), conn)
            return None
        try:
            # Never past max_bytes, so that the limit is exact, whatever the packet sizes.
            chunk = bytes(await stream.receive_some(min(_RECEIVE_BYTES, max_bytes - len(raw))))
        except trio.BrokenResourceError:
            return None
        raw += chunk
        conn.receive_data(chunk)  # b"" means EOF, which h11 turns into an event or an error


async def answer_http(stream: trio.abc.Stream, head: RequestHead, reply: Reply) -> None:
    """Send ``reply`` to a plain (non-websocket) request, then leave the stream to be closed."""
    log.debug("%s %s -> %s", head.method, head.target[:200].split("?")[0], reply.status)
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head.raw)
    conn.next_event()  # the Request again, so that h11 knows what it answers (HEAD, 1.0)
    await _send_quietly(stream, reply, conn, with_body=head.method != "HEAD")


async def _send_quietly(
    stream: trio.abc.Stream, reply: Reply, conn: h11.Connection, *, with_body: bool = True
) -> None:
    headers = [
        *reply.headers,
        ("Content-Length", str(len(reply.body))),
        ("Connection", "close"),
    ]
    reason = HTTPStatus(reply.status).phrase.encode("ascii")
    data = conn.send(h11.Response(status_code=reply.status, headers=headers, reason=reason))
    if reply.body and with_body:
        data = (data or b"") + (conn.send(h11.Data(data=reply.body)) or b"")
    data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
    # A client that is gone gets nothing: there is nobody to tell.
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(data)
        await _linger(stream)


async def _linger(stream: trio.abc.Stream) -> None:
    """Close our side, then read what the client still sends, for a little while.

    Closing a socket with unread input makes the kernel send a reset, which can destroy the
    response before the client reads it (a 431 for a head we stopped reading, say).
    """
    if not isinstance(stream, trio.abc.HalfCloseableStream):
        return
    await stream.send_eof()
    with trio.move_on_after(_LINGER_SECONDS):
        drained = 0
        while drained < _LINGER_BYTES:
            chunk = await stream.receive_some(_RECEIVE_BYTES)
            if not chunk:
                return
            drained += len(chunk)


def _head(request: h11.Request, raw: bytes) -> RequestHead:
    host: str | None = None
    upgrade = False
    for name, value in request.headers:
        if name == b"host":
            host = value.decode("latin-1")
        elif name == b"upgrade":
            tokens = {token.strip().lower() for token in value.split(b",")}
            upgrade = b"websocket" in tokens
    return RequestHead(
        method=request.method.decode("ascii", "replace"),
        target=request.target.decode("latin-1"),
        host=host,
        upgrade=upgrade,
        headers=tuple((bytes(name), bytes(value)) for name, value in request.headers),
        raw=raw,
    )


LINGER_READ = 64 * 1024
"""How much a lingering close reads (and drops) at a time."""


async def close_lingering(stream: trio.abc.Stream, seconds: float) -> None:
    """Close ``stream`` as web servers do: shut our side, then read and drop what the peer
    still sends until it closes too, for at most ``seconds`` (see :class:`PrefixedStream`)."""
    try:
        with trio.move_on_after(seconds):
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            while await stream.receive_some(LINGER_READ):
                pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
        pass  # gone already, or another task still reads it: close without lingering
    finally:
        await stream.aclose()


@attrs.define(eq=False)
class PrefixedStream(trio.abc.Stream):
    """A stream that first gives back ``prefix`` (bytes already read from ``stream``), then
    reads on from ``stream``. Sending goes straight through.

    Closing it lingers, as web servers do: our side is shut, then what the peer still sends is
    read and dropped until it closes too, for at most ``linger`` seconds. A socket closed with
    unread data sends a reset, and a reset makes the peer's system drop what it had received
    and not yet read: the websocket's close frame (1009 after a frame over the size limit,
    while the client is still sending the rest of it) would be lost, and the client would see
    the connection cut (1006) instead.
    """

    stream: trio.abc.Stream
    prefix: bytes
    linger: float = 0.0

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.prefix:
            size = len(self.prefix) if max_bytes is None else max_bytes
            chunk, self.prefix = self.prefix[:size], self.prefix[size:]
            await trio.lowlevel.checkpoint()
            return chunk
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await close_lingering(self.stream, self.linger)

    def __repr__(self) -> str:
        # trio-websocket names a peer it cannot find a socket for by repr(): say who it is.
        if not isinstance(self.stream, trio.SocketStream):
            return repr(self.stream)
        try:
            address, port, *_ = self.stream.socket.getpeername()
        except OSError:
            return "<disconnected>"
        return f"{address}:{port}"
