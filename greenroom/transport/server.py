"""The websocket server: listens, checks each handshake, and serves each connection.

``await nursery.start(serve, runtime, settings)`` listens on ``settings.host:port`` and hands
back the :class:`ServerAddress` it really bound (``port=0`` picks a free one). It runs until
cancelled; then every connection is closed with 1001 (server going away), each within
``close_timeout``.

Per accepted TCP stream: the HTTP request head is read first (under ``handshake_timeout``,
at most ``max_head_bytes``). A websocket upgrade goes on, with the bytes already read put back
in front, to the websocket handshake, the checks of :mod:`greenroom.transport.auth` and the
connection limit (refused with an HTTP status, the websocket never opens), then
:func:`~greenroom.transport.connection.handle_connection`. Any other request is plain HTTP,
one response per connection: ``/healthz``, ``/readyz`` and ``/metrics`` (see
:data:`OPERATIONS_PATHS`), else the web UI's static files (:mod:`greenroom.web`). The stream
is closed when the connection ends, whatever the reason.

A server may listen before it has a runtime: ``greenroom serve`` binds, starts the server,
restores the sessions, then hands the runtime over with :meth:`Server.serving`. Meanwhile
``/healthz`` answers, ``/readyz`` says 503 (restoring), and a websocket upgrade waits for the
runtime (as it waited in the listen queue before: a client that reconnects during a restart
gets through once the sessions are back, rather than a refusal it would give up on).
Leaving :meth:`Server.serving` makes ``/readyz`` 503 again (stopping) and closes every
websocket with 1001 before the runtime goes.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, cast
from urllib.parse import urlsplit

import attrs
import trio
import trio_websocket
from prometheus_client import CollectorRegistry

from greenroom.protocol.encodings import EventEncodings
from greenroom.runtime import Runtime
from greenroom.transport.auth import (
    WS_PATH,
    Accepted,
    HandshakeRequest,
    Refused,
    check_handshake,
    is_loopback,
    request_token,
    tokens_match,
)
from greenroom.transport.connection import (
    ConnectionSettings,
    Disconnected,
    handle_connection,
    websocket_io,
)
from greenroom.transport.metrics import CONTENT_TYPE, metrics_registry, render_metrics
from greenroom.transport.outbox import Outbox, TransportCounters
from greenroom.web.http import (
    PrefixedStream,
    RequestHead,
    answer_http,
    close_lingering,
    read_request_head,
)
from greenroom.web.site import Reply, Site, body_reply, load_site, text_reply

__all__ = [
    "OPERATIONS_PATHS",
    "Server",
    "ServerAddress",
    "ServerSettings",
    "ServerStatistics",
    "serve",
]

log = logging.getLogger("greenroom.transport")

OPERATIONS_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
"""Plain-HTTP endpoints for operators (docs/protocol.md, "Health and metrics"): ``/healthz``
(the process answers) and ``/readyz`` (restored and serving) without the token, tiny bodies;
``/metrics`` (Prometheus) with the token unless ``metrics_public``."""


@attrs.frozen(kw_only=True)
class ServerSettings:
    """How the server listens and what it allows (see docs/protocol.md)."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str
    allowed_origins: tuple[str, ...] = ()
    """Origins allowed besides the server's own and http://localhost, http://127.0.0.1; their
    hosts pass the Host check too (a reverse proxy's public name)."""
    metrics_public: bool = False
    """Whether ``/metrics`` answers without the token (see docs/deploy.md)."""
    max_frame_bytes: int = 1 << 20
    max_connections: int = 1000
    send_queue_bytes: int = 8 << 20
    """Per connection, after merging; a client further behind is closed with 4008."""
    subscription_capacity: int = 65_536
    """Events a connection's runtime subscription holds before it overflows (then 4008)."""
    send_buffer_bytes: int | None = None
    """The kernel's send buffer per connection (SO_SNDBUF); None keeps the system's, which
    grows to megabytes. What the kernel holds is out of merging's reach: a smaller buffer
    makes a slow client's stream merge (and, past ``send_queue_bytes``, close) sooner."""
    send_interval: float = 0.01
    """Live events wait up to this long after the previous frame, to go out together in one
    frame (replies never wait); 0 sends as soon as the writer is free."""
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    handshake_timeout: float = 10.0
    """For the whole request head and websocket handshake, or a plain HTTP exchange."""
    max_head_bytes: int = 16 << 10
    """An HTTP request head larger than this is refused with 431."""
    close_timeout: float = 5.0

    def __attrs_post_init__(self) -> None:
        # Beyond loopback, anyone on the network could reach an unprotected server.
        if not self.token and not is_loopback(self.host):
            raise ValueError(
                f"refusing to listen on {self.host} without a token: every client there "
                "could drive the sessions"
            )

    def connection_settings(self) -> ConnectionSettings:
        """What each connection needs of these settings: the fields of the same names."""
        names = [field.name for field in attrs.fields(ConnectionSettings)]
        return ConnectionSettings(**{name: getattr(self, name) for name in names})


@attrs.frozen(kw_only=True)
class ServerAddress:
    """Where the server listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The websocket URL, without the token."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{WS_PATH}"

    @property
    def http_url(self) -> str:
        """The web UI's URL, without the token (add ``?token=T`` to open it logged in)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


@attrs.frozen(kw_only=True)
class ServerStatistics:
    """A snapshot of the transport's counters."""

    connections: int
    connections_total: int
    frames_sent: int
    events_sent: int
    replies_sent: int
    merged_deltas: int
    closed_slow: int
    rejected_handshakes: int


@attrs.define(eq=False)
class Server:
    """One listening server and its connections. Use :func:`serve` unless the server must
    listen before the runtime is there (see the module docstring) or you need
    :meth:`statistics` from outside."""

    settings: ServerSettings
    runtime: Runtime | None = None
    """None until :meth:`serving` (or given here: serving from the start)."""
    counters: TransportCounters = attrs.Factory(TransportCounters)
    # Each event encoded once for all the connections (see EventEncodings).
    encodings: EventEncodings = attrs.Factory(EventEncodings)
    address: ServerAddress | None = None
    site: Site | None = None
    listeners: list[trio.SocketListener] | None = None
    """Already bound (``greenroom serve`` binds before it restores anything); None: bind here."""
    outboxes: set[Outbox] = attrs.Factory(set)
    """The open connections' send queues."""
    stopping: bool = False
    _has_runtime: trio.Event = attrs.Factory(trio.Event)
    _live: set[trio.CancelScope] = attrs.Factory(set)  # one per open websocket connection
    _all_closed: trio.Event = attrs.Factory(trio.Event)
    _waiting: int = 0  # upgrades waiting for the runtime
    _registry: CollectorRegistry = attrs.field(init=False)  # what /metrics renders

    def __attrs_post_init__(self) -> None:
        if self.runtime is not None:
            self._has_runtime.set()
        self._registry = metrics_registry(self)

    @property
    def ready(self) -> bool:
        """Restored and serving (and, on a cluster node, its engines reachable and its lease
        alive): what ``/readyz`` says."""
        return self.runtime is not None and not self.stopping and self._cluster_health() is None

    def _cluster_health(self) -> str | None:
        node = self.runtime.node if self.runtime is not None else None
        return None if node is None else node.health()

    def _not_ready(self) -> str:
        if self.stopping:
            return "stopping"
        if self.runtime is None:
            return "restoring"
        return f"cluster: {self._cluster_health()}"

    def statistics(self) -> ServerStatistics:
        return ServerStatistics(**attrs.asdict(self.counters))

    @asynccontextmanager
    async def serving(self, runtime: Runtime) -> AsyncIterator[None]:
        """Serve ``runtime`` inside the block; on the way out, say not ready and close every
        websocket (1001), so that none outlives the runtime."""
        self.runtime = runtime
        self._has_runtime.set()
        try:
            yield
        finally:
            self.stopping = True
            for scope in list(self._live):
                scope.cancel()
            with trio.CancelScope(shield=True), trio.move_on_after(
                self.settings.close_timeout + 1
            ):
                if self._live:
                    await self._all_closed.wait()

    async def run(
        self, *, task_status: trio.TaskStatus[ServerAddress] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and serve until cancelled."""
        self.site = await trio.to_thread.run_sync(
            load_site, self.settings.host, self.settings.allowed_origins
        )
        listeners = self.listeners or await trio.open_tcp_listeners(
            self.settings.port, host=self.settings.host
        )
        port = listeners[0].socket.getsockname()[1]
        self.address = ServerAddress(host=self.settings.host, port=port)
        log.info("listening on %s", self.address.url)
        # Connection handlers run in serve_listeners' own nursery, inside this task: they
        # are cancelled with it, and each closes its websocket with 1001 on the way out.
        started = cast(trio.TaskStatus[Any], _Started(task_status, self.address))
        await trio.serve_listeners(self._handle_stream, listeners, task_status=started)

    async def _handle_stream(self, stream: trio.SocketStream) -> None:
        if self.settings.send_buffer_bytes is not None:
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.send_buffer_bytes)
        try:
            async with trio.open_nursery() as nursery:
                # trio-websocket's reader task must outlive our cancellation, so that the
                # closing handshake (1001) completes: it runs shielded, stopped below.
                reader = _ShieldedStarter(nursery)
                try:
                    await self._serve_stream(stream, reader)
                finally:
                    reader.cancel()
        except Exception:
            log.exception("connection handler failed")
        finally:
            # Lingering: a close frame or an HTTP answer still on its way must not be cut by
            # the reset that closing with unread data sends (see close_lingering).
            with trio.CancelScope(shield=True):
                await close_lingering(stream, self.settings.close_timeout)

    async def _serve_stream(self, stream: trio.SocketStream, reader: _ShieldedStarter) -> None:
        settings = self.settings
        request: trio_websocket.WebSocketRequest | None = None
        head: RequestHead | None = None
        # One budget for the head and the handshake, as a client sees them; time spent
        # waiting for the sessions to be restored is not the client's and restarts it.
        deadline = trio.current_time() + settings.handshake_timeout
        with trio.move_on_at(deadline):
            head = await read_request_head(stream, max_bytes=settings.max_head_bytes)
            if head is None:  # gone, or a bad head (answered)
                return
            if not head.upgrade:
                await answer_http(stream, head, self._answer(head))
                return
        if head is None:  # no complete head in time
            return
        waited = not self._has_runtime.is_set()
        runtime = await self._runtime_for_upgrade()
        if waited:
            deadline = trio.current_time() + settings.handshake_timeout
        with trio.move_on_at(deadline):
            request = await trio_websocket.wrap_server_stream(
                cast(trio.Nursery, reader),  # it only calls start_soon
                PrefixedStream(stream=stream, prefix=head.raw, linger=settings.close_timeout),
                max_message_size=settings.max_frame_bytes,
            )
        if request is None:  # no complete handshake in time
            return
        verdict = check_handshake(
            _handshake_request(request),
            token=settings.token,
            listen_host=settings.host,
            listen_port=self.address.port if self.address else settings.port,
            allowed_origins=settings.allowed_origins,
        )
        if isinstance(verdict, Accepted) and runtime is None:
            verdict = Refused(status=503, body="server busy: shutting down or restoring")
        if isinstance(verdict, Accepted) and self.counters.connections >= settings.max_connections:
            verdict = Refused(
                status=503,
                body=f"server busy: {settings.max_connections} connections already open",
            )
        if isinstance(verdict, Refused):
            self.counters.rejected_handshakes += 1
            log.info("handshake refused: %s %s", verdict.status, verdict.body)
            with (
                trio.move_on_after(settings.close_timeout),
                contextlib.suppress(Disconnected),  # the client left already
                websocket_io(),
            ):
                await request.reject(
                    verdict.status,
                    extra_headers=[(b"Content-Type", b"text/plain; charset=utf-8")],
                    body=verdict.body.encode("utf-8"),
                )
            return
        assert runtime is not None  # else refused above
        # A client that offered no subprotocol gets JSON without the header (RFC 6455 4.2.2).
        offered = request.proposed_subprotocols
        try:
            with websocket_io():
                ws = await request.accept(subprotocol=verdict.subprotocol if offered else None)
        except Disconnected:
            return  # the client left during the handshake
        self.counters.connections += 1
        self.counters.connections_total += 1
        scope = trio.CancelScope()
        self._live.add(scope)
        if self.stopping:  # serving() ended during the handshake: close at once (1001)
            scope.cancel()
        try:
            with scope:
                await handle_connection(
                    runtime,
                    ws,
                    settings.connection_settings(),
                    counters=self.counters,
                    encodings=self.encodings,
                    outboxes=self.outboxes,
                )
        finally:
            self.counters.connections -= 1
            self._live.discard(scope)
            if not self._live and self.stopping:
                self._all_closed.set()

    async def _runtime_for_upgrade(self) -> Runtime | None:
        """The runtime, once restored (None when stopping, or too many wait already)."""
        if not self._has_runtime.is_set():
            if self._waiting >= self.settings.max_connections:
                return None
            self._waiting += 1
            try:
                await self._has_runtime.wait()
            finally:
                self._waiting -= 1
        return None if self.stopping else self.runtime

    def _answer(self, head: RequestHead) -> Reply:
        """The reply to a plain HTTP request: an operations endpoint or the web UI."""
        assert self.site is not None  # loaded before listening
        path = urlsplit(head.target).path
        if path not in OPERATIONS_PATHS or head.method not in ("GET", "HEAD"):
            return self.site.answer(head.method, head.target, head.host)
        refused = self.site.refuse_host(head.host)
        if refused is not None:
            return refused
        if path == "/healthz":
            return text_reply(200, "ok")
        if path == "/readyz":
            if self.ready:
                return text_reply(200, "ready")
            return text_reply(503, self._not_ready())
        if not self.settings.metrics_public and not tokens_match(
            request_token(head.target, head.headers), self.settings.token
        ):
            return text_reply(
                401,
                "unauthorized: /metrics needs the token (Authorization: Bearer T), unless "
                "metrics_public is set",
                (("WWW-Authenticate", 'Bearer realm="greenroom"'),),
            )
        return body_reply(CONTENT_TYPE, render_metrics(self._registry))


async def serve(
    runtime: Runtime,
    settings: ServerSettings,
    *,
    listeners: list[trio.SocketListener] | None = None,
    task_status: trio.TaskStatus[ServerAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``runtime`` over websockets until cancelled (see the module docstring), on
    ``listeners`` if given, else on ``settings.host:port``."""
    server = Server(runtime=runtime, settings=settings, listeners=listeners)
    await server.run(task_status=task_status)


def _handshake_request(request: trio_websocket.WebSocketRequest) -> HandshakeRequest:
    # wsproto keeps the Host header out of the headers it hands on; it is on the request
    # event, which trio-websocket does not expose publicly.
    host: str | None = getattr(getattr(request, "_event", None), "host", None)
    return HandshakeRequest(
        target=request.path,
        host=host,
        headers=tuple(request.headers),
        subprotocols=request.proposed_subprotocols,
    )


@attrs.define(eq=False)
class _ShieldedStarter:
    """Stands in for a nursery: runs what is started in it shielded, until :meth:`cancel`."""

    nursery: trio.Nursery
    scopes: list[trio.CancelScope] = attrs.Factory(list)

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        scope = trio.CancelScope(shield=True)
        self.scopes.append(scope)

        async def shielded() -> None:
            with scope:
                await fn(*args)

        self.nursery.start_soon(shielded)

    def cancel(self) -> None:
        for scope in self.scopes:
            scope.cancel()


@attrs.define(eq=False)
class _Started:
    """Reports our address, rather than serve_listeners' listeners, to whoever started us."""

    task_status: trio.TaskStatus[ServerAddress]
    address: ServerAddress

    def started(self, value: object = None) -> None:
        self.task_status.started(self.address)
