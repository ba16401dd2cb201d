"""The Python client of the greenroom protocol, with automatic reconnect and resume.

``async with open_client(url, token) as client:`` opens a websocket, reads the ``welcome`` and
yields a :class:`GreenroomClient`: one awaitable method per command (the result dict, or
:class:`CommandError`), and :meth:`GreenroomClient.events`, the events in order. One task
reads the socket and routes replies by id to their callers and events to a bounded queue;
every task lives in the nursery the ``open_client`` context owns. Where each session's stream
resumes is decided by :class:`~greenroom.protocol.resume.ResumeTracker`, sans I/O; this module
is the trio shell around it: the calls, the reader's routing and the reconnect loop.

Decisions (docs/protocol.md, "The Python client", says the same for users):

- **Reconnect.** A connection closed by anything but this client (4008 too slow, 1001 server
  restart, a network drop noticed by the heartbeat) is reopened with jittered exponential
  backoff, for at most ``reconnect_timeout`` seconds; a handshake refused with 401/403 is not
  retried. After the new ``welcome``, a synthetic ``reconnected`` event (data: the new welcome)
  is queued, every subscribed session is subscribed again with ``since`` the last ``seq``
  delivered for it, and the focus is sent again. A ``reset`` reply (the missed events are no
  longer retained) becomes a synthetic ``resync`` event: reload that session with
  ``open_session``.
- **No gap, no duplicate.** For a subscribed session, events with ``seq`` at or below the last
  one delivered are dropped, and while a ``subscribe`` with ``since`` is answered, the events
  of that session that overtake the replay are held back and delivered after it.
- **Calls during a disconnect.** A call made while disconnected waits for the reconnection.
  A call in flight when the connection drops is retried once on the new connection if its
  command is ``idempotent`` (reads, ``openSession``, ``subscribe``, ``unsubscribe``,
  ``focusProject``, ``trustMcpConfig``, ``ping``); any other fails with
  :class:`ConnectionLost`, since the server may or may not have run it (a ``sendMessage``
  sent twice would start two turns).
- **Backpressure.** The event queue holds ``event_buffer`` events. When it is full the reader
  waits, which stops reading the socket; the server's send queue then fills and it closes the
  connection with 4008; once the application catches up, the client reconnects and resumes
  from its last ``seq``. So a slow application loses nothing, and replies wait behind the
  events before them: consume :meth:`~GreenroomClient.events` concurrently with your calls.
- The welcome's pending notifications are also queued as ``notification`` events.

(Over 500 lines: the calls, the reader's routing and the reconnect loop share one connection
state, and the reconnect rules above only make sense read together.)
"""

from __future__ import annotations

import itertools
import logging
import random
import re
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, Final

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from greenroom.protocol import commands as cmd
from greenroom.protocol.codec import SUBPROTOCOLS, Codec, Subprotocol
from greenroom.protocol.errors import GreenroomError
from greenroom.protocol.events import Event
from greenroom.protocol.resume import Reconnected, ResumeTracker, Resync, typed

__all__ = [
    "ClientError",
    "CommandError",
    "ConnectFailed",
    "ConnectionLost",
    "EventStream",
    "GreenroomClient",
    "HandshakeRefused",
    "TypedEventStream",
    "connect",
    "open_client",
    "websocket_url",
]

logger = logging.getLogger(__name__)

MAX_SERVER_FRAME: Final = 256 << 20
"""Largest server frame accepted: a batch or a long chat's state can be far over 1 MiB."""
_CLOSE_TIMEOUT: Final = 2.0
_STABLE: Final = 5.0
"""A connection that lasted this long resets the backoff and the reconnect deadline; one
that closes sooner counts as a failed attempt (a server that accepts and drops at once)."""
_UNSET: Final[Any] = object()

JSON = dict[str, Any]


class ClientError(GreenroomError, code="client"):
    """The client could not talk to the server (as opposed to the server saying no)."""


class ConnectFailed(ClientError, code="unavailable"):
    """No websocket could be opened: nothing listens there, or the handshake failed."""


class HandshakeRefused(ConnectFailed, code="refused"):
    """The server refused the handshake: ``status`` 401 (token) or 403 (origin)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConnectionLost(ClientError, code="connection_lost"):
    """The connection dropped while a call waited, or the client gave up reconnecting."""


class CommandError(GreenroomError):
    """The server answered a command with an error; ``code`` is the protocol's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        # The server's code, per instance: GreenroomError declares a per-class default.
        self.code = code  # type: ignore[misc]

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@attrs.define(eq=False)
class _Pending:
    """A call waiting for its reply. ``on_ok`` runs in the reader, in frame order."""

    on_ok: Callable[[JSON], Awaitable[None]] | None = None
    done: trio.Event = attrs.Factory(trio.Event)
    result: JSON | None = None
    error: GreenroomError | None = None


class TypedEventStream:
    """The client's events as the protocol's classes: ``async for event in
    client.typed_events()``: an :class:`Event`, or the client's own ``Reconnected`` and
    ``Resync``. Ends and raises as :class:`EventStream` does."""

    def __init__(self, events: EventStream) -> None:
        self._events = events

    def __aiter__(self) -> TypedEventStream:
        return self

    async def __anext__(self) -> Event | Reconnected | Resync:
        while True:
            known = typed(await self._events.__anext__())
            if known is not None:
                return known


class EventStream:
    """The client's events, in order: ``async for event in client.events()``.

    Ends when the client is closed; raises :class:`ConnectionLost` when the connection is gone
    for good (no reconnect, or reconnecting gave up).
    """

    def __init__(self, client: GreenroomClient) -> None:
        self._client = client

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> JSON:
        try:
            return await self._client._events_receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._client._lost is not None:
                raise self._client._lost from None
            raise StopAsyncIteration from None

    async def receive(self) -> JSON:
        """The next event (raises trio.EndOfChannel once the client is closed)."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise trio.EndOfChannel from None


@attrs.define(eq=False)
class GreenroomClient:
    """A connection to a greenroom server that survives reconnects. Use :func:`open_client`."""

    url: str
    token: str | None
    subprotocol: Subprotocol
    reconnect: bool
    origin: str | None
    reconnect_timeout: float
    connect_timeout: float
    ping_interval: float
    event_buffer: int
    welcome: JSON = attrs.Factory(dict)
    """The ``data`` of the latest ``welcome`` (server, version, protocol, connection, ...)."""
    reconnects: int = 0
    """How many times the connection was reopened."""
    _codec: Codec = attrs.field(init=False)
    _ids: itertools.count[int] = attrs.field(init=False, factory=lambda: itertools.count(1))
    _pending: dict[int, _Pending] = attrs.field(init=False, factory=dict)
    _resume: ResumeTracker = attrs.field(init=False, factory=ResumeTracker)
    _focus: Any = attrs.field(init=False, default=_UNSET)
    _ws: WebSocketConnection | None = attrs.field(init=False, default=None)
    _stream: trio.abc.Stream | None = attrs.field(init=False, default=None)
    _ready: trio.Event = attrs.field(init=False, factory=trio.Event)
    _gone: trio.Event = attrs.field(init=False, factory=trio.Event)
    _closing: bool = attrs.field(init=False, default=False)
    _lost: ClientError | None = attrs.field(init=False, default=None)
    _events_send: trio.MemorySendChannel[JSON] = attrs.field(init=False)
    _events_receive: trio.MemoryReceiveChannel[JSON] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._codec = Codec(self.subprotocol)
        self._events_send, self._events_receive = trio.open_memory_channel[JSON](self.event_buffer)

    # -- commands ---------------------------------------------------------------------------

    async def execute(self, command: cmd.Command[Any]) -> JSON:
        """Send ``command`` and return its reply's ``result`` (a :class:`CommandError` when
        the server says no). The methods below are this, spelt out per command."""
        match command:
            # These change what the client itself keeps (resubscribed, focus sent again).
            case cmd.Subscribe(session=session, since=since):
                return await self.subscribe(session, since)
            case cmd.Unsubscribe(session=session):
                return await self.unsubscribe(session)
            case cmd.FocusProject(project=project):
                return await self.focus_project(project)
        return await self._call(command)

    async def list_projects(self) -> JSON:
        return await self.execute(cmd.ListProjects())

    async def create_project(self, project: str) -> JSON:
        return await self.execute(cmd.CreateProject(project=project))

    async def delete_project(self, project: str) -> JSON:
        return await self.execute(cmd.DeleteProject(project=project))

    async def list_sessions(self) -> JSON:
        return await self.execute(cmd.ListSessions())

    async def open_session(
        self,
        project: str,
        model: str | None = None,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        preset: str | None = None,
    ) -> JSON:
        """``{"session": state, "mcp": ...}``: the project's session, opened or created;
        ``model``, ``temperature`` and ``max_tokens`` are what its turns use, over what the
        ``preset`` (a name :meth:`list_presets` shows) sets."""
        command = cmd.OpenSession(
            project=project,
            preset=preset,
            model=model,
            temperature=temperature,
            maxTokens=max_tokens,
        )
        return await self.execute(command)

    async def list_presets(self, project: str | None = None) -> JSON:
        """``{"presets": [...], "error": ...}``: the presets ``open_session`` accepts (with
        ``project``, its own too), and why the project's presets file is unusable, if it is."""
        return await self.execute(cmd.ListPresets(project=project))

    async def mcp_config(self, project: str) -> JSON:
        """``{"mcp": ...}``: the project's ``.mcp.json`` and whether it is approved."""
        return await self.execute(cmd.McpConfig(project=project))

    async def trust_mcp_config(self, project: str, digest: str) -> JSON:
        """Approve the project's ``.mcp.json`` whose contents hash to ``digest``."""
        return await self.execute(cmd.TrustMcpConfig(project=project, hash=digest))

    async def subscribe(self, session: str, since: int | None = None) -> JSON:
        """Receive the session's events from now on (and the retained ones after ``since``).

        ``{"seq": N}``, plus ``"reset": true`` when events after ``since`` are gone (then a
        ``resync`` event is queued too).
        """
        handle = self._resume.subscribing(session, since)
        try:
            return await self._call(
                cmd.Subscribe(session=session, since=since),
                on_ok=lambda result: self._subscribed(session, since, result),
            )
        except GreenroomError:
            await self._deliver_all(self._resume.subscribe_failed(session, handle))
            raise

    async def unsubscribe(self, session: str) -> JSON:
        await self._deliver_all(self._resume.unsubscribe(session))
        return await self._call(cmd.Unsubscribe(session=session))

    async def send_message(self, session: str, content: str) -> JSON:
        """``{"queued": bool}``: a turn started, or the message waits behind the running one."""
        return await self.execute(cmd.SendMessage(session=session, content=content))

    async def stop_generation(self, session: str) -> JSON:
        return await self.execute(cmd.StopGeneration(session=session))

    async def cancel_queued(self, session: str, index: int, preview: str) -> JSON:
        """Remove the queued text at ``index`` that ``preview`` (its summary preview, or the
        whole text) names: ``{"removed": text}``, or a ``conflict`` if the queue moved."""
        return await self.execute(cmd.CancelQueued(session=session, index=index, preview=preview))

    async def resume_session(self, session: str) -> JSON:
        return await self.execute(cmd.ResumeSession(session=session))

    async def approve_tool_call(
        self, session: str, call: str, *, allow: bool, reason: str | None = None
    ) -> JSON:
        """Allow or deny the tool call ``call`` the session waits on (its summary's
        ``approval``, an ``approvalRequested`` event); ``reason`` is what the model reads when
        it is denied."""
        command = cmd.ApproveToolCall(session=session, call=call, allow=allow, reason=reason)
        return await self.execute(command)

    async def new_chat(self, session: str) -> JSON:
        return await self.execute(cmd.NewChat(session=session))

    async def delete_session(self, session: str) -> JSON:
        return await self.execute(cmd.DeleteSession(session=session))

    async def focus_project(self, project: str | None) -> JSON:
        """Say what this client views (None: nothing); sent again after a reconnect."""
        self._focus = project
        return await self._call(cmd.FocusProject(project=project))

    async def stop_all(self) -> JSON:
        return await self.execute(cmd.StopAll())

    async def stats(self) -> JSON:
        return await self.execute(cmd.Stats())

    async def ping(self) -> JSON:
        return await self.execute(cmd.Ping())

    def events(self) -> EventStream:
        """The events, in order, batches split (see the module docstring)."""
        return EventStream(self)

    def typed_events(self) -> TypedEventStream:
        """The same events as :meth:`events`, in the protocol's classes (see
        :func:`~greenroom.protocol.resume.typed`); events this version does not know are
        skipped."""
        return TypedEventStream(EventStream(self))

    @property
    def subscribed(self) -> frozenset[str]:
        """The sessions this client is subscribed to (and resubscribes after a reconnect)."""
        return self._resume.subscribed

    def last_seq(self, session: str) -> int | None:
        """The last ``seq`` delivered for a subscribed session."""
        return self._resume.last_seq(session)

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._ready.is_set()

    # -- calls ------------------------------------------------------------------------------

    async def _call(
        self, command: cmd.Command[Any], *, on_ok: Callable[[JSON], Awaitable[None]] | None = None
    ) -> JSON:
        attempts = 2 if command.idempotent else 1
        for attempt in range(attempts):
            ws = await self._connection()
            try:
                return await self._request(ws, command, on_ok)
            except ConnectionLost:
                if attempt + 1 == attempts or self._lost is not None or self._closing:
                    raise
        raise AssertionError("unreachable")

    async def _connection(self) -> WebSocketConnection:
        """The open connection, waiting for a reconnect if there is none right now."""
        while True:
            if self._lost is not None:
                raise self._lost
            if self._closing:
                raise ConnectionLost("the client is closed")
            ws = self._ws
            if ws is not None and self._ready.is_set():
                if ws.closed is None:
                    return ws
                await self._gone.wait()  # closed, and the reader has yet to notice
            else:
                await self._ready.wait()

    async def _request(
        self,
        ws: WebSocketConnection,
        command: cmd.Command[Any],
        on_ok: Callable[[JSON], Awaitable[None]] | None = None,
    ) -> JSON:
        id_ = next(self._ids)
        pending = self._pending[id_] = _Pending(on_ok=on_ok)
        try:
            try:
                await ws.send_message(self._codec.encode_command(id_, command))
            except ConnectionClosed:
                raise ConnectionLost(f"connection lost before {command.op} was sent") from None
            await pending.done.wait()
        finally:
            self._pending.pop(id_, None)
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def _fail_pending(self, reason: str) -> None:
        for pending in self._pending.values():
            if not pending.done.is_set():
                pending.error = ConnectionLost(f"connection lost before the reply came ({reason})")
                pending.done.set()
        self._pending.clear()

    # -- the reader -------------------------------------------------------------------------

    async def _read(self, ws: WebSocketConnection) -> None:
        """Route every frame until the connection closes."""
        while True:
            try:
                frame = await ws.get_message()
            except ConnectionClosed:
                return
            try:
                items = self._codec.decode_server(frame)
            except ValueError:  # json and msgpack errors are ValueErrors
                logger.warning("greenroom client: undecodable frame from the server")
                continue
            for item in items:
                if not isinstance(item, dict):
                    continue
                if "re" in item:
                    await self._on_reply(item)
                elif "event" in item:
                    await self._on_event(item)

    async def _on_reply(self, reply: JSON) -> None:
        re = reply.get("re")
        pending = self._pending.get(re) if isinstance(re, int) else None
        if pending is None:
            if re is None and not reply.get("ok"):
                logger.warning("greenroom server refused a frame: %s", reply.get("error"))
            return
        if reply.get("ok"):
            result = reply.get("result")
            pending.result = result if isinstance(result, dict) else {}
            if pending.on_ok is not None:
                await pending.on_ok(pending.result)
        else:
            error = reply.get("error") or {}
            pending.error = CommandError(
                str(error.get("code", "internal")), str(error.get("message", ""))
            )
        pending.done.set()

    async def _on_event(self, event: JSON) -> None:
        await self._deliver_all(self._resume.event(event))

    async def _subscribed(self, session: str, since: int | None, result: JSON) -> None:
        """A subscribe reply, in frame order: set where the stream of ``session`` resumes."""
        await self._deliver_all(self._resume.subscribed_reply(session, since, result))

    async def _deliver_all(self, events: list[JSON]) -> None:
        for event in events:
            await self._deliver(event)

    async def _deliver(self, event: JSON) -> None:
        # Blocks while the queue is full: that is the backpressure (module docstring).
        # Closed: the client is closing, and nobody reads events any more.
        with suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await self._events_send.send(event)

    # -- the connection loop ----------------------------------------------------------------

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve the connection, and reconnect until closed or given up."""
        first = True
        delay = 0.1
        gave_up_at: float | None = None
        while True:
            error: ClientError | None = None
            reason = ""
            try:
                async with trio.open_nursery() as nursery:
                    try:
                        ws, stream = await self._open(nursery)
                    except ClientError as failure:
                        error = failure
                        nursery.cancel_scope.cancel()
                    else:
                        if first:
                            task_status.started()
                        else:
                            self.reconnects += 1
                        opened = trio.current_time()
                        reason = await self._serve(ws, stream, reconnected=not first)
                        first = False
                        if trio.current_time() - opened >= _STABLE:
                            delay, gave_up_at = 0.1, None
                        nursery.cancel_scope.cancel()
            except* ConnectionRejected as group:
                # trio-websocket raises a refused handshake in its reader task.
                error = _refused(group.exceptions[0])
            if first and error is not None:
                raise error
            if self._closing:
                return
            if error is None:
                logger.info("greenroom connection lost (%s)", reason)
                if not self.reconnect:
                    self._give_up(ConnectionLost(f"connection to the server lost ({reason})"))
                    return
            now = trio.current_time()
            gave_up_at = gave_up_at or now + self.reconnect_timeout
            if isinstance(error, HandshakeRefused) or now >= gave_up_at:
                why = reason if error is None else error.message
                self._give_up(ConnectionLost(f"could not reconnect: {why}"))
                return
            await trio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 5.0)

    async def _open(self, nursery: trio.Nursery) -> tuple[WebSocketConnection, trio.abc.Stream]:
        """A connection whose welcome was read (the socket's reader runs in ``nursery``).

        The TCP stream is opened here rather than by trio-websocket, so that it is always
        closed: trio-websocket leaves it open when the server closed first.
        """
        host, port, resource, tls = _split_url(self.url)
        headers: list[tuple[bytes, bytes]] = []
        if self.token is not None:
            headers.append((b"Authorization", f"Bearer {self.token}".encode()))
        if self.origin is not None:
            headers.append((b"Origin", self.origin.encode()))
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
        try:
            with trio.fail_after(self.connect_timeout):
                if tls:
                    stream = await trio.open_ssl_over_tcp_stream(
                        host, port, ssl_context=ssl.create_default_context(), https_compatible=True
                    )
                else:
                    stream = await trio.open_tcp_stream(host, port)
                name = f"[{host}]" if ":" in host else host
                ws = await wrap_client_stream(
                    nursery,
                    stream,
                    name if port == (443 if tls else 80) else f"{name}:{port}",
                    resource,
                    subprotocols=[self.subprotocol],
                    extra_headers=headers,
                    max_message_size=MAX_SERVER_FRAME,
                )
                frame = await ws.get_message()
            items = self._codec.decode_server(frame)
            welcome = items[0] if items else {}
            if welcome.get("event") != "welcome":
                raise ConnectFailed("the server did not send a welcome first")
        except BaseException as failure:
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
            if isinstance(failure, OSError | HandshakeError | ConnectionClosed | trio.TooSlowError):
                raise ConnectFailed(
                    f"cannot connect to {self._public_url()}: {failure!r}"
                ) from None
            if isinstance(failure, ValueError):  # the welcome was not JSON
                raise ConnectFailed(f"bad welcome from {self._public_url()}") from None
            raise
        self.welcome = welcome.get("data") or {}
        return ws, stream

    async def _serve(
        self, ws: WebSocketConnection, stream: trio.abc.Stream, *, reconnected: bool
    ) -> str:
        """Run one connection until it closes; return why it closed."""
        # Hold every subscribed session's events until its resubscribe reply says where the
        # stream resumes. A session whose first subscribe is still unanswered is left to that
        # call, which is retried on this connection.
        resume = self._resume.reconnected()
        if reconnected:
            await self._deliver(
                {"event": "reconnected", "session": None, "project": None, "seq": None,
                 "data": self.welcome}
            )  # fmt: skip
        for note in self.welcome.get("notifications") or ():
            await self._deliver(note)
        self._ws, self._stream, self._gone = ws, stream, trio.Event()
        try:
            async with trio.open_nursery() as nursery:

                async def read() -> None:
                    await self._read(ws)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(read)
                nursery.start_soon(self._heartbeat, ws, nursery.cancel_scope)
                async with trio.open_nursery() as restore:
                    for session, since in resume.items():
                        restore.start_soon(self._resubscribe, ws, session, since)
                    if self._focus is not _UNSET:
                        restore.start_soon(self._refocus, ws)
                self._ready.set()
        finally:
            self._ws = self._stream = None
            self._ready = trio.Event()
            self._gone.set()
            closed = ws.closed
            reason = "no close frame" if closed is None else f"code {closed.code}"
            if closed is not None and closed.reason:
                reason += f": {closed.reason}"
            self._fail_pending(reason)
            with trio.CancelScope(shield=True):
                await self._abort(ws, stream)
        return reason

    async def _resubscribe(self, ws: WebSocketConnection, session: str, since: int | None) -> None:
        try:
            await self._request(
                ws,
                cmd.Subscribe(session=session, since=since),
                lambda result: self._subscribed(session, since, result),
            )
        except CommandError as error:  # the session is gone (deleted while we were away)
            logger.info("greenroom: cannot resubscribe to %s: %s", session, error)
            await self._deliver_all(self._resume.resubscribe_failed(session))
        except ConnectionLost:
            pass  # the next connection tries again

    async def _refocus(self, ws: WebSocketConnection) -> None:
        with suppress(CommandError, ConnectionLost):
            await self._request(ws, cmd.FocusProject(project=self._focus))

    async def _heartbeat(self, ws: WebSocketConnection, scope: trio.CancelScope) -> None:
        """Notice a dead peer that never sent a close frame (a dropped network)."""
        while True:
            await trio.sleep(self.ping_interval)
            try:
                with trio.move_on_after(self.ping_interval) as timeout:
                    await ws.ping()
            except ConnectionClosed:
                return
            if timeout.cancelled_caught:
                logger.info("greenroom server did not answer a ping; reconnecting")
                scope.cancel()
                return

    async def _abort(self, ws: WebSocketConnection, stream: trio.abc.Stream) -> None:
        """Close the websocket (bounded), then its TCP stream."""
        with trio.move_on_after(_CLOSE_TIMEOUT):
            await ws.aclose()
        await stream.aclose()

    def _give_up(self, error: ClientError) -> None:
        self._lost = error
        self._fail_pending(error.message)
        self._events_send.close()
        # Wake the calls waiting for a connection: they raise ``error``.
        self._ready.set()
        self._gone.set()

    async def _close(self) -> None:
        self._closing = True
        self._fail_pending("the client is closing")
        self._events_send.close()
        self._ready.set()
        self._gone.set()
        ws, stream = self._ws, self._stream
        if ws is not None and stream is not None:
            with trio.CancelScope(shield=True):
                await self._abort(ws, stream)

    def _public_url(self) -> str:
        """The URL without its query, which may hold the token."""
        return self.url.split("?", 1)[0]


@asynccontextmanager
async def open_client(
    url: str,
    token: str | None = None,
    *,
    subprotocol: Subprotocol = "greenroom.v1.json",
    reconnect: bool = True,
    origin: str | None = None,
    reconnect_timeout: float = 60.0,
    connect_timeout: float = 10.0,
    ping_interval: float = 20.0,
    event_buffer: int = 10_000,
) -> AsyncIterator[GreenroomClient]:
    """A connected client; closed (code 1000) when the block ends.

    ``url`` is anything :func:`websocket_url` accepts. ``token`` is sent as
    ``Authorization: Bearer``; a URL with ``?token=`` works too. Raises :class:`HandshakeRefused`
    (401, 403) or :class:`ConnectFailed` when the first connection cannot be made.
    """
    if subprotocol not in SUBPROTOCOLS:
        raise ValueError(f"unknown subprotocol {subprotocol!r}")
    # A bad URL is the caller's mistake: ValueError now, not a retry loop.
    url = websocket_url(url)
    client = GreenroomClient(
        url=url,
        token=token,
        subprotocol=subprotocol,
        reconnect=reconnect,
        origin=origin,
        reconnect_timeout=reconnect_timeout,
        connect_timeout=connect_timeout,
        ping_interval=ping_interval,
        event_buffer=event_buffer,
    )
    failed: ClientError | None = None
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(_run_client, client)
        except ClientError as error:
            failed = error
        else:
            try:
                yield client
            except BaseException as error:
                # Re-raised below, outside the nursery, so that it is not wrapped in a group.
                body_error = error
            finally:
                await client._close()
                nursery.cancel_scope.cancel()
    if failed is not None:
        raise failed
    if body_error is not None:
        raise body_error


connect = open_client
"""The name :func:`open_client` had first; kept for the code that uses it."""


_SCHEMES: Final = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
_BARE: Final = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})/?")


def websocket_url(text: str) -> str:
    """The server's websocket URL for what a user typed: a ``ws://`` or ``wss://`` URL, the
    ``http://`` or ``https://`` address of the server (the one the web UI is opened at, its
    ``?token=`` kept), or a bare ``host:port``. A URL without a path gets the server's ``/ws``.
    Anything else is a ValueError that says what is accepted."""
    text = text.strip()
    bare = _BARE.fullmatch(text)
    if bare is not None:
        text = f"ws://{bare['host']}:{bare['port']}"
    parts = urllib.parse.urlsplit(text)
    scheme = _SCHEMES.get(parts.scheme.lower())
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or above 65535
        port_ok = False
    if scheme is None or not parts.hostname or not port_ok or parts.fragment:
        shown = text.split("?", 1)[0]  # the query may hold the token
        raise ValueError(
            f"not a server address: {shown!r}; give ws://HOST:PORT/ws, http://HOST:PORT "
            "or HOST:PORT"
        )
    path = parts.path if parts.path not in ("", "/") else "/ws"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _split_url(url: str) -> tuple[str, int, str, bool]:
    """(host, port, resource with query, TLS) of a ws:// or wss:// URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url.split('?', 1)[0]!r}")
    tls = parts.scheme == "wss"
    port = parts.port or (443 if tls else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, resource, tls


def _refused(rejected: BaseException) -> HandshakeRefused:
    assert isinstance(rejected, ConnectionRejected)
    body = (rejected.body or b"").decode("utf-8", "replace").strip()
    return HandshakeRefused(
        rejected.status_code,
        f"the server refused the connection: HTTP {rejected.status_code}"
        + (f" ({body})" if body else ""),
    )


async def _run_client(
    client: GreenroomClient, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    await client._run(task_status=task_status)
