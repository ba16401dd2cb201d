"""A connection's send queue: bounded in bytes, merging deltas, never repeating a seq.

The command loop puts replies into it, and the pump the live events of a client stuck in a
send (and the writer what a frame left over in a flood); the writer sends what waits here
before the live events still in the runtime subscription, which it takes directly while this
queue is empty (greenroom.transport.connection). Its decisions:

- **Bounded in bytes**. A live event counts its real encoded size in the connection's format
  (``sizes``: the connection's codec, whose encoding of each event is shared with every other
  connection and with the writer, so measuring costs no second encoding); a delta merged into
  a queued update counts what its text adds to the frame. Replies and the welcome are
  estimated (a constant per item plus the text they carry): they are not what closes a
  client. Live events past ``limit`` make it say ``overflowed``, and the connection closes
  with 4008: the client reconnects and resumes with ``since``. What commands ask for
  (replies, the replay of ``subscribe``) is not counted there: the command loop waits for
  room (``wait_room``) before each command instead, so it is bounded by the client's own
  reading, and a big ``openSession`` state or a long replay is never mistaken for slowness.
- **Merging**: once more than ``merge_above`` bytes of live events wait (the writer is
  behind: the connection sets it to what one frame carries), a ``streamingUpdate`` of a
  session whose previous queued item is a ``streamingUpdate`` still waiting is merged into
  it: offset of the first, deltas joined, tool calls and seq of the last. Below that, events
  queue as they are: each is encoded once for every connection, while a merged update is
  built and encoded again for each, so merging only pays where it saves a backlog. Per
  session the order is kept; text of one session may move ahead of events of another, which
  the protocol allows (each session's events are ordered by its own seq).
- **No repeats**: a live event whose seq is not above the highest queued for its session is
  dropped. The replay of ``subscribe`` is put exactly as the events were published (it may
  repeat lifecycle events already sent, with their same seq) and raises that mark, so replay
  and live meet with no duplicate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

import attrs
import trio

from greenroom.protocol.codec import ErrorReply, Outgoing, Reply, Welcome
from greenroom.protocol.events import (
    Event,
    MessageAdded,
    SessionDeleted,
    StreamingUpdate,
)
from greenroom.protocol.text import DeltaRun

__all__ = ["Estimates", "Outbox", "Sizes", "TransportCounters", "estimate"]

_ITEM_BYTES = 160  # an event's envelope and fields, roughly, in JSON
_SUMMARY_BYTES = 320
_MESSAGE_BYTES = 120


@attrs.define(kw_only=True)
class TransportCounters:
    """Counters of the websocket transport, shared by the connections of one server."""

    connections: int = 0
    connections_total: int = 0
    frames_sent: int = 0
    events_sent: int = 0
    replies_sent: int = 0
    merged_deltas: int = 0
    closed_slow: int = 0
    rejected_handshakes: int = 0

    def sent(self, items: Iterable[Outgoing], events: int = 0) -> None:
        """One frame sent: ``items``, and ``events`` live events besides."""
        self.frames_sent += 1
        self.events_sent += events
        for item in items:
            if isinstance(item, Event):
                self.events_sent += 1
            elif isinstance(item, Reply | ErrorReply):
                self.replies_sent += 1

    def as_wire(self) -> dict[str, int]:
        """The counters with the protocol's camelCase names."""
        return {
            "connections": self.connections,
            "connectionsTotal": self.connections_total,
            "framesSent": self.frames_sent,
            "eventsSent": self.events_sent,
            "repliesSent": self.replies_sent,
            "mergedDeltas": self.merged_deltas,
            "closedSlow": self.closed_slow,
            "rejectedHandshakes": self.rejected_handshakes,
        }


class Sizes(Protocol):
    """What items take in a frame, in bytes (the connection's codec)."""

    def event_bytes(self, event: Event) -> int: ...

    def delta_bytes(self, delta: str) -> int: ...


class Estimates:
    """Sizes estimated without encoding: for outboxes with no codec (tests)."""

    def event_bytes(self, event: Event) -> int:
        return estimate(event)

    def delta_bytes(self, delta: str) -> int:
        return len(delta)


def estimate(item: Outgoing) -> int:
    """About how many bytes ``item`` takes in a frame (cheap, not exact)."""
    if isinstance(item, Event):
        data = item.data
        if isinstance(data, StreamingUpdate):
            calls = data.tool_calls or ()
            return _ITEM_BYTES + len(data.delta) + sum(len(c.arguments) + 80 for c in calls)
        if isinstance(data, MessageAdded):
            message = data.message
            tools = message.tool_calls or ()
            size = len(message.content or "") + sum(len(t.arguments) + 80 for t in tools)
            return _ITEM_BYTES + size
        return _ITEM_BYTES + _SUMMARY_BYTES
    if isinstance(item, Reply):
        return _ITEM_BYTES + _result_bytes(item.result)
    if isinstance(item, Welcome):
        return _ITEM_BYTES + _SUMMARY_BYTES * (len(item.sessions) + len(item.notifications))
    return _ITEM_BYTES + len(item.message)


def _result_bytes(result: dict[str, Any]) -> int:
    state = result.get("session")
    if isinstance(state, dict):  # openSession: the whole conversation
        messages = state.get("messages") or ()
        text = sum(len(m.get("content") or "") for m in messages if isinstance(m, dict))
        return _SUMMARY_BYTES + text + _MESSAGE_BYTES * len(messages)
    size = 0
    for value in result.values():
        if isinstance(value, list):
            size += _SUMMARY_BYTES * len(value)
    return size


@attrs.define(eq=False)
class _Pending:
    """One queued item; a streamingUpdate may grow by merging until the writer takes it."""

    item: Outgoing
    size: int
    live: bool  # a live event (bounded), rather than what a command asked for
    run: DeltaRun | None = None  # once a delta merged into this one
    taken: bool = False

    def merge(self, event: Event, delta: str, size: int) -> None:
        if self.run is None:
            assert isinstance(self.item, Event)
            self.run = DeltaRun(self.item)
        self.run.add(event, delta)
        self.size += size

    def end(self) -> int:
        """Where the (merged) update's text ends in the partial message."""
        if self.run is not None:
            return self.run.end
        assert isinstance(self.item, Event) and isinstance(self.item.data, StreamingUpdate)
        return self.item.data.offset + len(self.item.data.delta)

    def build(self) -> Outgoing:
        return self.item if self.run is None else self.run.event()


@attrs.define(eq=False)
class Outbox:
    """The send queue of one connection (see the module docstring)."""

    limit: int
    counters: TransportCounters = attrs.Factory(TransportCounters)
    merge_above: int = 0
    sizes: Sizes = attrs.Factory(Estimates)
    closed: bool = False
    _queue: deque[_Pending] = attrs.Factory(deque)
    _size: int = 0  # estimated bytes of everything queued
    _live: int = 0  # of which live events
    _last: dict[str, _Pending] = attrs.Factory(dict)  # per session, its newest queued item
    _high: dict[str, int] = attrs.Factory(dict)  # per session, the highest seq queued
    _asked: int = 0  # queued items that a command asked for (replies, replays)
    _poked: bool = False  # live events wait in the runtime subscription
    _ready: trio.Event = attrs.Factory(trio.Event)
    _asked_ready: trio.Event = attrs.Factory(trio.Event)
    _room: trio.Event = attrs.Factory(trio.Event)

    @property
    def size(self) -> int:
        """The estimated bytes waiting."""
        return self._size

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def overflowed(self) -> bool:
        """Whether the live events waiting are past ``limit`` (the client is too slow)."""
        return self._live > self.limit and len(self._queue) > 1

    def put(self, item: Outgoing) -> None:
        """Queue what a command asked for (a reply, the welcome), as it is."""
        if not self.closed:
            self._append(item, None, live=False)

    def put_event(self, event: Event) -> None:
        """Queue a live event: dropped if its seq was already queued, else maybe merged."""
        self.put_events((event,))

    def put_events(self, events: Iterable[Event]) -> None:
        """Queue live events in order (see :meth:`put_event`); the pump's one call per
        wakeup, so this loop is the transport's per-event cost for each connection, and the
        common case (a delta, not merged) is written out here rather than in calls."""
        if self.closed:
            return
        high, last, queue = self._high, self._last, self._queue
        added = 0
        for event in events:
            session, seq = event.session, event.seq
            if session is None or seq is None:
                self._append(event, None, live=True)
                continue
            if seq <= high.get(session, 0):
                continue  # already queued by a subscribe's replay
            high[session] = seq
            data = event.data
            kind = type(data)
            if kind is StreamingUpdate:
                assert isinstance(data, StreamingUpdate)
                if self._live > self.merge_above and self._merge(session, event):
                    continue
                size = self.sizes.event_bytes(event)
                pending = _Pending(event, size, True)
                queue.append(pending)
                last[session] = pending
                self._live += size
                added += size
                continue
            self._append(event, session, live=True)
            if kind is SessionDeleted:  # nothing of it follows: forget it
                del high[session]
                del last[session]
        if added:
            self._size += added
            self._ready.set()

    def put_replay(self, session: str, events: Iterable[Event]) -> None:
        """Queue the retained events a ``subscribe`` replays, exactly as they were sent."""
        if self.closed:
            return
        for event in events:
            self._append(event, None, live=False)
            if event.seq is not None and event.seq > self._high.get(session, 0):
                self._high[session] = event.seq
        self._last.pop(session, None)  # live updates do not merge into the replay

    def _merge(self, session: str, event: Event) -> bool:
        data = event.data
        pending = self._last.get(session)
        if (
            not isinstance(data, StreamingUpdate)
            or pending is None
            or pending.taken
            or not isinstance(pending.item, Event)
            or not isinstance(pending.item.data, StreamingUpdate)
            or pending.end() != data.offset
        ):
            return False
        added = self.sizes.delta_bytes(data.delta)
        if data.tool_calls:  # the merged update carries the newest tool calls
            added += self.sizes.event_bytes(event)
        pending.merge(event, data.delta, added)
        self._size += added
        if pending.live:
            self._live += added
        self.counters.merged_deltas += 1
        return True

    def _append(self, item: Outgoing, session: str | None, *, live: bool) -> None:
        size = self.sizes.event_bytes(item) if live and type(item) is Event else estimate(item)
        pending = _Pending(item=item, size=size, live=live)
        self._queue.append(pending)
        self._size += pending.size
        if live:
            self._live += pending.size
        if session is not None:
            self._last[session] = pending
        if not live:
            self._asked += 1
            self._asked_ready.set()
        self._ready.set()

    def poke(self) -> None:
        """Wake the writer for live events that wait elsewhere (the runtime subscription,
        which the writer takes from directly while nothing waits here)."""
        self._poked = True
        self._ready.set()

    async def wait(self) -> bool:
        """Wait until something is queued (or :meth:`poke` was called); False once the
        outbox is closed."""
        while not self._queue and not self._poked and not self.closed:
            self._ready = trio.Event()
            await self._ready.wait()
        self._poked = False
        return not self.closed

    async def wait_asked(self) -> None:
        """Wait until something a command asked for is queued (or the outbox is closed): the
        writer does not hold a reply back to batch it with later events."""
        while not self._asked and not self.closed:
            self._asked_ready = trio.Event()
            await self._asked_ready.wait()

    async def wait_room(self) -> None:
        """Wait until at most ``limit`` bytes are queued (or the outbox is closed).

        The command loop waits here before each command, so that what commands ask for is
        bounded by the client's reading rather than by a disconnect.
        """
        while self._size > self.limit and not self.closed:
            self._room = trio.Event()
            await self._room.wait()

    def take(self, budget: int) -> list[Outgoing]:
        """The oldest items, at least one, up to about ``budget`` bytes, in order."""
        items: list[Outgoing] = []
        used = 0
        while self._queue and (not items or used + self._queue[0].size <= budget):
            pending = self._queue.popleft()
            pending.taken = True
            used += pending.size
            self._size -= pending.size
            if pending.live:
                self._live -= pending.size
            else:
                self._asked -= 1
            items.append(pending.build())
        if self._size <= self.limit:
            self._room.set()
        return items

    def close(self) -> None:
        """Drop what waits and wake the writer: nothing more will be sent."""
        self.closed = True
        self._queue.clear()
        self._last.clear()
        self._size = self._live = self._asked = 0
        self._ready.set()
        self._asked_ready.set()
        self._room.set()
