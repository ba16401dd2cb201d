"""One websocket connection: its tasks, its outbox, and how it ends.

:func:`handle_connection` serves an already accepted :class:`trio_websocket.WebSocketConnection`
(from the listener, or from ``wrap_server_stream`` over a memory stream in tests) until the
peer leaves, the server goes away, or the client falls too far behind. Its tasks, all in one
nursery that the connection owns:

- the **reader** takes frames off the websocket and decodes them; it hands commands on through
  a bounded channel (:data:`COMMAND_QUEUE`; when full, the reader waits and TCP pushes back);
- the **command loop** starts each command as it comes (at most :data:`CONCURRENT_COMMANDS`
  at once) and puts the replies in the outbox in the order the commands were sent. Commands
  for different sessions (``sendMessage``, ``stopGeneration``, ...: :data:`SESSION_COMMANDS`)
  run side by side; those for one session run in the order sent; any other command runs
  alone, once those before it are done, and before those after it start (:class:`_Order`).
  So a thousand ``sendMessage`` to a thousand sessions take about as long as one, and a slow
  command (``deleteProject``) delays the commands behind it on this connection only; the
  reader keeps reading meanwhile, and events keep flowing;
- the **writer** sends everything waiting as one frame, at most one frame of live events per
  tick of ``send_interval`` (the same ticks for every connection, :func:`_next_tick`): a
  frame costs far more than an event in it, so events that come meanwhile wait for the tick
  and share the next frame. The first event after a quiet interval, and any reply, go at
  once. While the outbox is empty (the client keeps up), the writer takes the live events
  straight from the runtime subscription and joins their shared encodings into the frame: an
  event costs a connection a lookup and a join, and a frame made of the same events at the
  same tick by another connection costs nothing more.
  Otherwise what waits in the outbox goes first, and the subscription's events after it;
- the **pump** moves events from the runtime subscription into the outbox as they come
  while the writer is stuck in a send (for :data:`STUCK_SECONDS`, or with
  :data:`PUMP_BACKLOG` events waiting: a slow peer), so that the outbox's byte bound and
  merging apply. A ``subscribe`` runs in the command loop: it moves what waits in the
  subscription to the outbox first, then queues the replay, all with no checkpoint in
  between;
- the **keepalive** pings every ``ping_interval`` and drops a peer that does not answer.

Subscribing: the reply ``{"seq": N}`` (with ``"reset": true`` when the missed events are no
longer retained: reload with ``openSession``) is followed by the replayed events, then the live
ones; the outbox drops a live event whose seq was already queued, so they meet with no gap and
no duplicate. A lifecycle event sent before the ``subscribe`` may come again in the replay,
with the same seq.

Ending: the peer's close (and trio-websocket's own 1009 for an over-size frame) ends the
connection as it stands. A client too slow for its live events (past ``send_queue_bytes`` in
the outbox after merging while a frame to it is being sent, or its runtime subscription
overflowing) is closed with 4008 once the frame being sent is out. Cancellation from outside
(the server stopping) closes with 1001. A frame being sent is never cut by our own
cancellation: it gets ``close_timeout`` to finish, and if it does not, the stream is dropped
without a closing handshake. The closing handshake itself runs shielded, under
``close_timeout``; a peer that does not answer pings within ``ping_timeout`` is dropped the
same way.

(About 600 lines: the tasks of one connection share its outbox, its subscription and its way
of ending, and the rules above only make sense read together.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePath
from typing import Any, Final

import attrs
import trio
import trio_websocket

from greenroom import __version__
from greenroom.protocol import commands as c
from greenroom.protocol.codec import (
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    Codec,
    ErrorReply,
    Incoming,
    Outgoing,
    Reply,
    Subprotocol,
    Welcome,
    result_to_wire,
)
from greenroom.protocol.convert import camel
from greenroom.protocol.encodings import EventEncodings
from greenroom.protocol.errors import GreenroomError
from greenroom.protocol.events import Event
from greenroom.runtime import Client, Runtime
from greenroom.transport.outbox import Outbox, TransportCounters
from greenroom.waits import acquire, after, send

__all__ = [
    "COMMAND_QUEUE",
    "CONCURRENT_COMMANDS",
    "CONNECTION_COMMANDS",
    "SESSION_COMMANDS",
    "Closing",
    "ConnectionSettings",
    "Disconnected",
    "handle_connection",
    "websocket_io",
]

log = logging.getLogger("greenroom.transport")

COMMAND_QUEUE: Final = 64
"""Decoded commands a connection holds while its command loop is busy."""
CONCURRENT_COMMANDS: Final = 256
"""Commands of one connection running at once (see :class:`_Order` for which may)."""
SESSION_COMMANDS: Final = (
    c.SendMessage,
    c.StopGeneration,
    c.CancelQueued,
    c.ResumeSession,
    c.ApproveToolCall,
    c.NewChat,
    c.DeleteSession,
)
"""The commands that concern one session only: they run beside those of other sessions."""
BATCH_BYTES: Final = 256 * 1024
"""About how much one frame carries at most (estimated), so that a batch stays well under the
1 MiB that websocket clients accept by default."""
SLOW_REASON: Final = "client too slow: reconnect and subscribe with since"
STUCK_SECONDS: Final = 0.25
"""How long a send may take before the writer counts as stuck on a slow peer (at least
``send_interval``): shorter, and a busy event loop alone (a send waits its turn to be
scheduled again) would send events through the outbox, the costlier way, and keep them
there."""
PUMP_BACKLOG: Final = 4096
"""Events waiting in the runtime subscription that make a send in flight count as stuck at
once (a flood; at most half the subscription's capacity); and left over by a full frame, that
go to the outbox to be merged rather than wait for the next frame as they are."""
CONNECTION_COMMANDS: Final = (c.Subscribe, c.Unsubscribe, c.FocusProject, c.Stats)
"""The commands about one connection, executed here; the runtime executes all others."""


class Disconnected(GreenroomError):
    """The websocket is closed (by the peer, or by us); ``close_code`` is the code if known."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"websocket closed ({code}: {reason or 'no reason'})")
        self.close_code = code
        self.reason = reason


@contextmanager
def websocket_io() -> Iterator[None]:
    """Translate trio-websocket's closed error into ours, at the one place I/O happens."""
    try:
        yield
    except trio_websocket.ConnectionClosed as exc:
        reason = exc.reason
        raise Disconnected(
            reason.code if reason else None, reason.reason if reason else None
        ) from None


@attrs.frozen(kw_only=True)
class Closing:
    """How the connection ends: a close frame with ``code``, or ``abort`` (no handshake)."""

    code: int = 1000
    reason: str | None = None
    abort: bool = False


GOING_AWAY: Final = Closing(code=1001, reason="server going away")


@attrs.frozen(kw_only=True)
class ConnectionSettings:
    """What one connection needs of the server's settings (see ServerSettings)."""

    max_frame_bytes: int = 1 << 20
    send_queue_bytes: int = 8 << 20
    subscription_capacity: int = 65_536
    send_interval: float = 0.01
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 5.0


async def handle_connection(
    runtime: Runtime,
    ws: trio_websocket.WebSocketConnection,
    settings: ConnectionSettings,
    *,
    counters: TransportCounters | None = None,
    encodings: EventEncodings | None = None,
    outboxes: set[Outbox] | None = None,
) -> Closing:
    """Serve the accepted ``ws`` until it closes; returns how it ended.

    Peer behaviour never makes it raise; the caller still owns (and closes) the stream below.
    The connection's send queue is in ``outboxes`` while it lasts (the metrics sum them).
    """
    counters = counters if counters is not None else TransportCounters()
    subprotocol: Subprotocol = (
        SUBPROTOCOL_MSGPACK if ws.subprotocol == SUBPROTOCOL_MSGPACK else SUBPROTOCOL_JSON
    )
    codec = Codec(subprotocol, max_frame_bytes=settings.max_frame_bytes, encodings=encodings)
    async with runtime.connect(capacity=settings.subscription_capacity) as client:
        outbox = Outbox(
            limit=settings.send_queue_bytes,
            counters=counters,
            # Merge once more than a frame waits, well before the bound closes the client.
            merge_above=min(BATCH_BYTES, settings.send_queue_bytes // 4),
            sizes=codec,  # real encoded sizes: the bound holds whatever the events
        )
        client.events.notify(outbox.poke)  # the writer takes live events when a frame is due
        connection = _Connection(
            runtime=runtime,
            ws=ws,
            settings=settings,
            client=client,
            codec=codec,
            outbox=outbox,
            counters=counters,
        )
        live = outboxes if outboxes is not None else set()
        live.add(outbox)
        try:
            return await connection.run()
        finally:
            live.discard(outbox)


@attrs.define(eq=False)
class _Connection:
    runtime: Runtime
    ws: trio_websocket.WebSocketConnection
    settings: ConnectionSettings
    client: Client
    codec: Codec
    outbox: Outbox
    counters: TransportCounters
    _closing: Closing | None = None
    _slow: bool = False
    _scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    # The writer's current send, shielded so that ending the connection never cuts a frame in
    # half; once the connection is ending, it gets close_timeout to finish (_bound_last_send).
    _send_scope: trio.CancelScope | None = None
    _in_flight: tuple[int, float] | None = None  # the send in flight: its number, its start
    _carry: list[Event] = attrs.Factory(list)  # live events the last frame could not carry
    _sends: int = 0
    _send_deadline: float = math.inf
    _frame_cut: bool = False  # a send hit that deadline: the stream may hold half a frame

    async def run(self) -> Closing:
        name = self.client.name
        log.info("connection %s opened from %s (%s)", name, _peer(self.ws), self.codec.subprotocol)
        try:
            with self._scope:
                welcome = Welcome(
                    version=__version__,
                    connection=name,
                    sessions=await self.runtime.execute(c.ListSessions()),
                    notifications=self.client.pending_notifications,
                    provider=self.runtime.provider_name,
                )
                self.outbox.put(welcome)  # first, before the pump starts
                send, receive = trio.open_memory_channel[Incoming | ErrorReply](COMMAND_QUEUE)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read, send)
                    nursery.start_soon(self._serve_commands, receive)
                    nursery.start_soon(self._pump)
                    nursery.start_soon(self._write)
                    nursery.start_soon(self._keepalive)
                    nursery.start_soon(self._bound_last_send)
        except Exception:
            self._closing = self._closing or Closing(code=1011, reason="internal error")
            raise
        finally:
            closing = self._closing or GOING_AWAY
            await self._close(closing)
            log.info("connection %s closed: %s %s", name, closing.code, closing.reason or "")
        return closing

    def _finish(self, closing: Closing) -> None:
        """End the connection (the first reason given wins)."""
        if self._closing is None:
            self._closing = closing
        self._scope.cancel()

    async def _close(self, closing: Closing) -> None:
        with trio.CancelScope(shield=True):
            if closing.abort or self._frame_cut:
                # A frame may be half sent (or nobody answers): no closing handshake.
                await trio.aclose_forcefully(self.ws)
                return
            with trio.move_on_after(self.settings.close_timeout):
                # Closes the stream too, even when the deadline cuts the handshake short.
                await self.ws.aclose(closing.code, closing.reason)

    # -- reading and commands -----------------------------------------------------------------

    async def _read(self, commands: trio.MemorySendChannel[Incoming | ErrorReply]) -> None:
        async with commands:
            while True:
                try:
                    with websocket_io():
                        frame = await self.ws.get_message()
                except Disconnected as exc:
                    self._finish(_closed_by_peer(exc))
                    return
                decoded = self.codec.decode(frame)
                if isinstance(decoded, ErrorReply) and decoded.code == "too_large":
                    # trio-websocket counts characters; the limit is in bytes, checked here.
                    self._finish(Closing(code=1009, reason=decoded.message))
                    return
                await send(commands, decoded)

    async def _serve_commands(
        self, receive: trio.MemoryReceiveChannel[Incoming | ErrorReply]
    ) -> None:
        order = _Order()
        room = trio.Semaphore(CONCURRENT_COMMANDS)
        async with receive, trio.open_nursery() as nursery:
            async for incoming in receive:
                await self.outbox.wait_room()  # a client that does not read stalls here
                await acquire(room)  # the receive was this loop's checkpoint
                step = order.next(_scope_of(incoming))
                nursery.start_soon(self._serve_command, incoming, step, order, room)

    async def _serve_command(
        self, incoming: Incoming | ErrorReply, step: _Step, order: _Order, room: trio.Semaphore
    ) -> None:
        try:
            for earlier in step.start_after:
                await after(earlier)
            if isinstance(incoming, ErrorReply):
                reply: Reply | ErrorReply = incoming
            elif isinstance(incoming.command, c.Subscribe):
                # Runs alone, so every earlier reply is in the outbox: its reply and replay
                # go in right after them, with no checkpoint in between.
                command = incoming.command
                await self.runtime.prepare_subscribe(command.session, command.since)
                self._subscribe(incoming.id, command)
                return
            else:
                reply = await self._execute(incoming)
            step.executed.set()
            await after(step.reply_after)
            self.outbox.put(reply)
        finally:
            step.executed.set()
            step.replied.set()
            order.done(step)
            room.release()

    async def _execute(self, incoming: Incoming) -> Reply | ErrorReply:
        command = incoming.command
        try:
            if isinstance(command, CONNECTION_COMMANDS):
                wire = result_to_wire(command, await self._execute_here(command))
            else:
                wire = await self.runtime.execute_wire(command)
            return Reply(re=incoming.id, result=wire)
        except GreenroomError as error:
            return ErrorReply.of(incoming.id, error)
        except Exception:
            log.exception("command %s failed on %s", command.op, self.client.name)
            return ErrorReply(re=incoming.id, code="internal", message="internal error")

    async def _execute_here(self, command: c.Command[Any]) -> Any:
        """The commands about this connection (``subscribe`` is answered by _subscribe)."""
        match command:
            case c.Unsubscribe(session=session):
                self.client.unsubscribe(session)
            case c.FocusProject(project=project):
                await self.client.focus(project)
            case c.Stats():
                return self._statistics()
            case _:  # pragma: no cover - subscribe is answered before it gets here
                raise AssertionError(f"{command.op} is not the connection's")
        return None

    def _subscribe(self, id: int | str, command: c.Subscribe) -> None:
        """Reply ``{"seq"}``, then the replay, then (through the pump) the live events.

        Everything already in the runtime subscription is moved to the outbox first: those
        events are older than the replay, and would otherwise be dropped as repeats after it.
        All of this is synchronous, so no event is published in between.
        """
        self._drain()
        try:
            subscribed = self.client.subscribe(command.session, command.since)
        except GreenroomError as error:
            self.outbox.put(ErrorReply.of(id, error))
            return
        self.outbox.put(Reply(re=id, result=result_to_wire(command, subscribed)))
        self.outbox.put_replay(command.session, subscribed.replay or ())

    def _statistics(self) -> dict[str, Any]:
        counters: dict[str, Any] = _plain(attrs.asdict(self.runtime.statistics()))
        counters.update(self.counters.as_wire())
        return counters

    # -- events and writing ---------------------------------------------------------------

    def _drain(self) -> None:
        """Move every live event waiting into the outbox."""
        self.outbox.put_events(self._take_live())

    def _take_live(self) -> list[Event]:
        """Every live event waiting, in order: what the last frame could not carry, then what
        waits in the runtime subscription."""
        live = self.client.events.take()
        if self._carry:
            live[:0] = self._carry
            self._carry = []
        return live

    async def _pump(self) -> None:
        """Move events into the outbox as they come while the writer is stuck in a send (it
        takes them itself while it keeps up)."""
        events = self.client.events
        stuck_after = max(STUCK_SECONDS, self.settings.send_interval)
        backlog = max(1, min(PUMP_BACKLOG, events.capacity // 2))
        while not events.closed:
            await events.wait(at_least=events.queued() + 1)  # the next event
            send = self._in_flight
            if send is None:
                continue  # the writer takes them when its next frame is due
            stuck_at = send[1] + stuck_after
            if trio.current_time() < stuck_at and events.queued() < backlog:
                with trio.move_on_at(stuck_at):
                    await events.wait(at_least=backlog)
                if self._in_flight != send:
                    continue  # that send is out
            self._drain()
            self._check_outbox()
        self._drain()
        if events.overflowed or self._slow:
            self._too_slow()

    def _check_outbox(self) -> None:
        """Start closing for slowness if the outbox is past its bound while a frame is being
        sent: events that gather while the writer waits out ``send_interval`` are not the
        client's doing."""
        if self.outbox.overflowed and self._send_scope is not None and not self._slow:
            self._slow = True
            self.client.events.close()  # the pump drains what is left, then closes

    def _too_slow(self) -> None:
        """Close with 4008, once the frame being sent (if any) is out."""
        self.counters.closed_slow += 1
        self.outbox.close()
        self._finish(Closing(code=4008, reason=SLOW_REASON))

    async def _write(self) -> None:
        try:
            interval = self.settings.send_interval
            next_send = -math.inf
            while await self.outbox.wait():
                if trio.current_time() < next_send:
                    # Live events gather for the rest of the interval; a reply cuts it short.
                    with trio.move_on_at(next_send):
                        await self.outbox.wait_asked()
                    if self.outbox.closed:
                        continue
                frame, items, live = self._next_frame()
                if frame is None:
                    continue  # the events were taken meanwhile (a subscribe's drain)
                next_send = _next_tick(trio.current_time(), interval)
                with trio.CancelScope(shield=True, deadline=self._send_deadline) as scope:
                    self._sends += 1
                    self._send_scope = scope
                    self._in_flight = (self._sends, trio.current_time())
                    with websocket_io():
                        await self.ws.send_message(frame)
                self._send_scope = self._in_flight = None
                if scope.cancelled_caught:
                    self._frame_cut = True
                    self._finish(Closing(code=1006, reason="send timed out", abort=True))
                    return
                self.counters.sent(items, live)
        except Disconnected as exc:
            self._finish(_closed_by_peer(exc))

    def _next_frame(self) -> tuple[str | bytes | None, list[Outgoing], int]:
        """The next frame, what it carries from the outbox, and how many live events from
        the subscription: what waits in the outbox (replies go ahead of the live events still
        in the subscription; live events in the outbox are older than those), then, once the
        outbox is empty, as many of the live events waiting in the subscription as the
        frame's budget takes; the rest wait for the next frame (in the outbox, merged, if
        they are many). Events go through the outbox (and its merging) only when the pump
        moved them there or a frame left very many: merging costs CPU for every connection,
        which pays for a slow client, not for a busy server; and a connection that fell
        behind for a moment is back on the cheap way as soon as its outbox is sent."""
        outbox = self.outbox
        items: list[Outgoing] = []
        budget = BATCH_BYTES
        if outbox:
            items = outbox.take(BATCH_BYTES)
            if outbox:  # more waits there: the newer events wait behind it
                return self.codec.encode(items), items, 0
            budget //= 2  # about: what was taken is not measured
        live = self._take_live()
        if not live:
            return (self.codec.encode(items) if items else None), items, 0
        frame, fits = self.codec.encode_with(items, live, budget)
        if fits < len(live):
            rest = live[fits:]
            if len(rest) < PUMP_BACKLOG:
                self._carry = rest
                outbox.poke()  # the next frame is due after the interval
            else:
                outbox.put_events(rest)
        return frame, items, fits

    async def _bound_last_send(self) -> None:
        """When the connection starts ending (we are cancelled), give the send in flight
        close_timeout to finish."""
        try:
            await trio.sleep_forever()
        finally:
            self._send_deadline = trio.current_time() + self.settings.close_timeout
            if self._send_scope is not None:
                self._send_scope.deadline = self._send_deadline

    async def _keepalive(self) -> None:
        while True:
            await trio.sleep(self.settings.ping_interval)
            with trio.move_on_after(self.settings.ping_timeout) as waited:
                try:
                    with websocket_io():
                        await self.ws.ping()
                except Disconnected:
                    return  # the reader sees the close too, and ends the connection
            if waited.cancelled_caught:
                self._finish(Closing(code=1006, reason="no pong", abort=True))
                return


def _next_tick(now: float, interval: float) -> float:
    """When a connection that sent a frame at ``now`` may send the next: the next multiple of
    ``interval``. Every connection keeps this one clock, so connections with the same events
    waiting take them at the same moment and share the frame (:meth:`Fragments.frame_of`)."""
    if interval <= 0:
        return now
    return (math.floor(now / interval) + 1) * interval


def _scope_of(incoming: Incoming | ErrorReply) -> str | object | None:
    """What a command must keep its order with: its session for a session's command, None
    (everything) for any other, and nothing (a key of its own) for a refused frame."""
    if isinstance(incoming, ErrorReply):
        return object()
    command = incoming.command
    return command.session if isinstance(command, SESSION_COMMANDS) else None


@attrs.frozen(eq=False)
class _Step:
    """One command's place in the order: what it waits for, and what it signals."""

    scope: object
    start_after: tuple[trio.Event, ...]
    reply_after: trio.Event
    executed: trio.Event = attrs.Factory(trio.Event)
    replied: trio.Event = attrs.Factory(trio.Event)


def _done() -> trio.Event:
    event = trio.Event()
    event.set()
    return event


@attrs.define(eq=False)
class _Order:
    """Which earlier commands of a connection each command waits for (module docstring).

    Replies go in command order: each reply waits for the one before. A command of one
    session starts once the last command of that session and the last command that ran alone
    have executed; a command that runs alone (scope None) starts once every earlier reply is
    in, which means every earlier command has executed.
    """

    _replied: trio.Event = attrs.Factory(_done)
    _alone: trio.Event = attrs.Factory(_done)
    _last: dict[object, _Step] = attrs.Factory(dict)

    def next(self, scope: object) -> _Step:
        if scope is None:
            step = _Step(scope=None, start_after=(self._replied,), reply_after=self._replied)
            self._alone = step.executed
            self._last.clear()
        else:
            before = self._last.get(scope)
            after = (self._alone,) if before is None else (self._alone, before.executed)
            step = _Step(scope=scope, start_after=after, reply_after=self._replied)
            self._last[scope] = step
        self._replied = step.replied
        return step

    def done(self, step: _Step) -> None:
        if self._last.get(step.scope) is step:
            del self._last[step.scope]


def _closed_by_peer(exc: Disconnected) -> Closing:
    return Closing(code=exc.close_code or 1006, reason=exc.reason or "closed by the peer")


def _peer(ws: trio_websocket.WebSocketConnection) -> str:
    remote = ws.remote
    if isinstance(remote, trio_websocket.Endpoint):
        return f"{remote.address}:{remote.port}"
    return remote


def _plain(value: Any) -> Any:
    """Counters as wire values: camelCase keys at every level, paths as strings."""
    if isinstance(value, dict):
        return {camel(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value
