"""The event bus: every event goes through the journal, then to its receivers, in one order.

Publishing an event hands it to the *gate*, the journal actor (lossless: ``publish`` waits
while its mailbox is full). The journal writes it, applies it to the persistence mirror, and
*releases* it here; only then does anyone else see it. So every event a client can receive is
in the journal already, and a kill -9 can never take it back (docs/reliability.md). Without a
gate (some tests), publishing releases at once.

Released events go to two kinds of receivers, with two overflow decisions:

- **Attached actors** (the notifier) get every released event they accept by ``tell``, in
  order; releasing waits while one of their mailboxes is full.
- **Subscriptions** (one per client connection) are bounded queues that releasing never waits
  on. A subscription that is full is closed and marked overflowed, and no event is dropped
  silently: its owner reconnects and resumes from its last ``seq``. A client's subscription
  is *indexed*: it gets every lifecycle event and the events of the sessions it watches
  (:meth:`EventBus.watch`), found by session, so that an event costs only the subscriptions
  that want it; any other subscription filters each event with its ``accepts``.

The bus is a passive object rather than a task of its own: publishing is the sending session's
own work, releasing the journal's.

The bus also retains the newest released events of each session (``retain`` entries per
session), so that a client that reconnects can ``replay`` what it missed after the last ``seq``
it saw; after a restart they are retained again from the journal. When what it missed is older
than what is retained, ``replay`` says so (None) and the client reloads the session's state
instead. Consecutive text deltas are retained as one run and replayed as one merged
``streamingUpdate`` (offset of the first, deltas joined, tool calls and seq of the last), as a
connection merges them when it is behind: a thousand sessions streaming long replies would
otherwise keep two million event objects alive, which cost memory and made every full garbage
collection longer. A client that resumes from inside a run gets the whole run; rewriting text
it already holds from ``offset`` changes nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import trio

from greenroom.actors.mailbox import ActorRef
from greenroom.protocol.errors import MailboxFull
from greenroom.protocol.events import LIFECYCLE_EVENTS, Event, SessionDeleted, StreamingUpdate
from greenroom.protocol.text import DeltaRun


@attrs.frozen(kw_only=True)
class BusStatistics:
    published: int
    released: int
    subscriptions: int
    attached: int
    overflowed: int


@attrs.define(eq=False)
class Subscription:
    """A bounded queue of events for one receiver. ``overflowed`` says why it closed.

    A deque and one wakeup, not a memory channel: a channel hands each event to a waiting
    receiver by rescheduling it, one task switch per event per receiver, while here the
    receiver wakes once and takes every event published meanwhile (:meth:`take`). It has
    one receiver, which may wait for several events at once (``wait(at_least=n)``), and may
    ask to be told when an event comes into the empty queue (:meth:`notify`): a websocket
    connection's writer takes the events when its next frame is due rather than being woken
    for each batch (greenroom.transport.connection).
    """

    name: str
    capacity: int
    accepts: Callable[[Event], bool]
    overflowed: bool = attrs.field(default=False, init=False)
    closed: bool = attrs.field(default=False, init=False)
    _queue: deque[Event] = attrs.field(factory=deque, init=False)
    _notify: Callable[[], None] | None = attrs.field(default=None, init=False)
    _ready: trio.Event | None = attrs.field(default=None, init=False)
    _wake_at: int = attrs.field(default=1, init=False)  # queued events that wake the waiter
    _bus: EventBus | None = attrs.field(default=None, init=False)

    def offer(self, event: Event) -> bool:
        """Queue ``event`` if this subscription wants it; close on overflow. Never waits."""
        if self.closed or not self.accepts(event):
            return False
        return self.put(event)

    def put(self, event: Event) -> bool:
        """Queue ``event`` (wanted: the bus found it by the subscription's index); close on
        overflow. Never waits."""
        if self.closed:
            return False
        if len(self._queue) >= self.capacity:
            self.overflowed = True
            self.close()
            return False
        queue = self._queue
        queue.append(event)
        if len(queue) == 1 and self._notify is not None:
            self._notify()
        if self._ready is not None and len(queue) >= self._wake_at:
            self._ready.set()
            self._ready = None
        return True

    def notify(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (with no checkpoint) whenever an event comes into the empty queue,
        and now if events wait already."""
        self._notify = callback
        if self._queue:
            callback()

    async def wait(self, at_least: int = 1) -> bool:
        """Wait until ``at_least`` events are queued (or fewer, once closed); False once
        closed and drained."""
        while len(self._queue) < at_least:
            if self.closed:
                return bool(self._queue)
            self._wake_at = at_least
            if self._ready is None:  # a wait cancelled earlier may have left one
                self._ready = trio.Event()
            await self._ready.wait()
        return True

    def take(self) -> list[Event]:
        """Every queued event, oldest first (none: an empty list). Never waits."""
        events = list(self._queue)
        self._queue.clear()
        return events

    async def receive(self) -> Event:
        """The next event; raises trio.EndOfChannel once closed and drained. Always a
        checkpoint, like a channel's receive, so that a loop of receives lets others run."""
        if self._queue:
            await trio.lowlevel.checkpoint()
        elif not await self.wait():
            raise trio.EndOfChannel
        return self._queue.popleft()

    def receive_nowait(self) -> Event:
        """The next event; raises trio.WouldBlock if none waits (EndOfChannel once closed)."""
        if self._queue:
            return self._queue.popleft()
        raise trio.EndOfChannel if self.closed else trio.WouldBlock

    def queued(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Accept nothing more; what is queued can still be received."""
        if not self.closed:
            self.closed = True
            if self._ready is not None:
                self._ready.set()
                self._ready = None
            if self._bus is not None:
                self._bus._drop(self)


DEFAULT_RETAIN = 2048

def _first_seq(entry: Event | DeltaRun) -> int:
    return ((entry.first if isinstance(entry, DeltaRun) else entry).seq) or 0


def _last_seq(entry: Event | DeltaRun) -> int:
    return ((entry.last if isinstance(entry, DeltaRun) else entry).seq) or 0


_GATE = -1  # where a publication stopped: at the gate's full mailbox


@attrs.define(eq=False)
class EventBus:
    """Publishes each event through the gate, then releases it to attached actors and
    subscriptions, in order."""

    retain: int = DEFAULT_RETAIN
    _gate: ActorRef[Any] | None = None
    _logs: dict[str, deque[Event | DeltaRun]] = attrs.Factory(dict)
    _attached: list[tuple[ActorRef[Any], Callable[[Event], bool]]] = attrs.Factory(list)
    _subscriptions: list[Subscription] = attrs.Factory(list)  # filtering each event
    # Indexed subscriptions: all of them (they get every lifecycle event), and by session.
    _indexed: list[Subscription] = attrs.Factory(list)
    _watching: dict[str, list[Subscription]] = attrs.Factory(dict)
    _published: int = 0
    _released: int = 0
    _overflowed: int = 0
    # (published count, event): set once that many events are released; marks only grow.
    _settle_waiters: deque[tuple[int, trio.Event]] = attrs.Factory(deque)

    def set_gate(self, ref: ActorRef[Any]) -> None:
        """Send every published event to ``ref`` (the journal), which releases it
        (:meth:`release_nowait`)."""
        self._gate = ref

    def attach(self, ref: ActorRef[Any], accepts: Callable[[Event], bool] | None = None) -> None:
        """Deliver every released event ``accepts`` allows to ``ref`` by tell, losslessly."""
        self._attached.append((ref, accepts or _everything))

    def subscribe(
        self,
        name: str,
        *,
        capacity: int,
        accepts: Callable[[Event], bool] | None = None,
        indexed: bool = False,
    ) -> Subscription:
        """A new bounded subscription; close it when done. ``indexed``: it gets every
        lifecycle event and the events of the sessions it is made to :meth:`watch` (what is
        offered to it directly, such as a notification, it takes as it is)."""
        subscription = Subscription(name=name, capacity=capacity, accepts=accepts or _everything)
        subscription._bus = self
        # Lists copied on write, so that offering to each (which may close one) needs no copy.
        if indexed:
            self._indexed = [*self._indexed, subscription]
        else:
            self._subscriptions = [*self._subscriptions, subscription]
        return subscription

    def watch(self, subscription: Subscription, session: str) -> None:
        """Give the indexed ``subscription`` the events of ``session`` from now on."""
        if subscription.closed:
            return
        watching = self._watching.get(session, [])
        if subscription not in watching:
            self._watching[session] = [*watching, subscription]

    def unwatch(self, subscription: Subscription, session: str) -> None:
        """Stop giving ``subscription`` the events of ``session``."""
        watching = self._watching.get(session)
        if watching is None:
            return
        kept = [s for s in watching if s is not subscription]
        if kept:
            self._watching[session] = kept
        else:
            del self._watching[session]

    async def publish(self, event: Event) -> None:
        """Hand ``event`` on. Waits only for the gate's (or attached actors') mailboxes."""
        stopped_at = self.publish_nowait(event)
        if stopped_at is not None:
            await self.publish_rest(event, stopped_at)

    def publish_nowait(self, event: Event) -> int | None:
        """Hand ``event`` on if no mailbox on its way is full, without a checkpoint (the
        common case, and the cheap one). Otherwise return where it stopped: the caller must
        then ``await publish_rest(event, stopped)`` before publishing again."""
        self._published += 1
        if self._gate is None:
            return self.release_nowait(event)
        try:
            self._gate.tell_nowait(event)
        except MailboxFull:
            return _GATE
        return None

    async def publish_rest(self, event: Event, stopped: int) -> None:
        """Finish a publication that ``publish_nowait`` stopped at ``stopped``."""
        if stopped == _GATE:
            assert self._gate is not None
            await self._gate.tell(event)
        else:
            await self.release_rest(event, stopped)

    def release_nowait(self, event: Event, *, published: bool = True) -> int | None:
        """Let everyone see ``event`` (the gate's call, once the event is journaled), without
        a checkpoint; as :meth:`publish_nowait` when an attached mailbox is full: then
        ``await release_rest(event, stopped)``. ``published`` False: an event published
        elsewhere (another node of a cluster), not counted by :meth:`settled`."""
        # Retained first: what a replay offers is never behind what subscriptions carry.
        self._keep(event)
        for index, (ref, accepts) in enumerate(self._attached):
            if accepts(event):
                try:
                    ref.tell_nowait(event)
                except MailboxFull:
                    return index
        self._offer(event, published)
        return None

    async def release_rest(self, event: Event, start: int, *, published: bool = True) -> None:
        for ref, accepts in self._attached[start:]:
            if accepts(event):
                await ref.tell(event)
        self._offer(event, published)

    def discard(self) -> None:
        """A published event the gate did not release (a cluster node whose session was
        taken over, or lost while the event was being appended, and then shown as another
        node's): no longer waited for by :meth:`settled`."""
        self._released += 1
        self._wake_settled()

    def _offer(self, event: Event, published: bool = True) -> None:
        for subscription in self._subscriptions:
            subscription.offer(event)
        if self._indexed:
            if event.data.name in LIFECYCLE_EVENTS:
                wanting = self._indexed
            elif event.session is not None:
                wanting = self._watching.get(event.session, _NONE)
            else:
                wanting = _NONE
            for subscription in wanting:
                subscription.put(event)
        if published:
            self._released += 1
            self._wake_settled()

    def _wake_settled(self) -> None:
        waiters = self._settle_waiters
        while waiters and waiters[0][0] <= self._released:
            waiters.popleft()[1].set()

    async def settled(self) -> None:
        """Wait until every event published before this call is released (journaled, in the
        mirror, offered): what is read after it is no newer than what a kill -9 keeps."""
        mark = self._published
        if self._released >= mark:
            return
        done = trio.Event()
        self._settle_waiters.append((mark, done))
        await done.wait()

    def backfill(self, session: str, events: Iterable[Event]) -> None:
        """Retain ``events`` of ``session`` older than any it retains (read back from where
        they are kept, for a client that resumes from before this server saw them)."""
        log = self._logs.get(session)
        first = _first_seq(log[0]) if log else None
        newer = list(log) if log else []
        self._logs[session] = deque(maxlen=self.retain)
        for event in events:
            if event.seq is not None and (first is None or event.seq < first):
                self._keep(event)
        kept = self._logs[session]
        for entry in newer:
            kept.append(entry)

    def restore(self, events: Iterable[Event]) -> None:
        """Retain ``events`` (read back from the journal at startup) for replay."""
        for event in events:
            self._keep(event)

    def replay(self, session: str, since: int) -> tuple[Event, ...] | None:
        """The retained events of ``session`` after seq ``since``, in order, runs of deltas
        merged (the first may begin at or before ``since``); None when some of what came after
        ``since`` is no longer retained (the caller must reload the whole state)."""
        log = self._logs.get(session)
        if not log:
            return ()
        if since + 1 < _first_seq(log[0]):
            return None
        return tuple(
            entry.event() if isinstance(entry, DeltaRun) else entry
            for entry in log
            if _last_seq(entry) > since
        )

    def latest_seq(self, session: str) -> int | None:
        """The ``seq`` of the newest retained event of ``session``."""
        log = self._logs.get(session)
        return _last_seq(log[-1]) if log else None

    def forget(self, session: str) -> None:
        """Drop the retained events of ``session`` (deleted, or unloaded from memory)."""
        self._logs.pop(session, None)

    def _keep(self, event: Event) -> None:
        session = event.session
        if session is None or event.seq is None:
            return
        if isinstance(event.data, SessionDeleted):
            self._logs.pop(session, None)
            return
        log = self._logs.get(session)
        if log is None:
            log = self._logs[session] = deque(maxlen=self.retain)
        data = event.data
        if type(data) is StreamingUpdate and log:
            assert isinstance(data, StreamingUpdate)
            tail = log[-1]
            if isinstance(tail, DeltaRun):
                if tail.end == data.offset:
                    tail.add(event, data.delta)
                    return
            elif isinstance(tail.data, StreamingUpdate):
                before = tail.data
                if before.offset + len(before.delta) == data.offset:
                    run = DeltaRun(tail)
                    run.add(event, data.delta)
                    log[-1] = run
                    return
        log.append(event)

    def statistics(self) -> BusStatistics:
        return BusStatistics(
            published=self._published,
            released=self._released,
            subscriptions=len(self._subscriptions) + len(self._indexed),
            attached=len(self._attached),
            overflowed=self._overflowed,
        )

    def _drop(self, subscription: Subscription) -> None:
        self._subscriptions = [s for s in self._subscriptions if s is not subscription]
        if subscription in self._indexed:
            self._indexed = [s for s in self._indexed if s is not subscription]
            for session in [k for k, v in self._watching.items() if subscription in v]:
                self.unwatch(subscription, session)
        if subscription.overflowed:
            self._overflowed += 1


def _everything(event: Event) -> bool:
    return True


_NONE: list[Subscription] = []
