"""This node's part of a cluster (docs/cluster.md).

:class:`Node` holds what the node knows of the cluster: the sessions it owns and at which
epoch, the last seq of every session it released to its own clients, and the summaries of the
sessions other nodes own. Its tasks keep that true:

- the heartbeat renews the node's lease; a node that cannot renew it for a whole lease, or
  finds a session it holds owned by another node now, lets its copies go;
- the claimer takes the sessions whose owner is gone (a lapsed lease, a graceful leave);
- the live reader releases the other nodes' events to this node's bus, in seq order, once
  each, filling a gap from the session's stream first;
- its :class:`~greenroom.cluster.forward.Forwarder` runs the commands other nodes forward
  here, and hands this node's forwarded commands their replies.

Events and snapshots are written by :mod:`greenroom.cluster.journal`, fenced by the epochs
kept here. The runtime is the node's *host*: it builds a claimed session's state, stops a lost
one and runs a forwarded command (:class:`Host`).

(Over 500 lines: what the node owns, what it released and what it knows of the others is one
state, which every one of its tasks reads and changes; apart, each would reach into the rest.)
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs
import trio

from greenroom.actors.bus import EventBus
from greenroom.cluster.database import Database, SessionRow
from greenroom.cluster.errors import EngineUnavailable, Unavailable
from greenroom.cluster.folder import check_projects_folder
from greenroom.cluster.forward import Backoff, Forwarder, pack, unpack
from greenroom.cluster.streams import Entry, Streams
from greenroom.config import ClusterConfig, redact_url
from greenroom.protocol import commands as cmd
from greenroom.protocol.commands import Command
from greenroom.protocol.errors import GreenroomError, NotFound
from greenroom.protocol.events import Event, SessionCreated, SessionDeleted, SessionUpdated, Summary
from greenroom.store.journal import CorruptRecord, decode_payload
from greenroom.store.snapshots import Dormant, dormant_from_payload

logger = logging.getLogger("greenroom.cluster")

T = TypeVar("T")

SESSION_COMMANDS = (
    cmd.SendMessage,
    cmd.StopGeneration,
    cmd.CancelQueued,
    cmd.ResumeSession,
    cmd.ApproveToolCall,
    cmd.NewChat,
    cmd.DeleteSession,
)
"""The commands that its owner runs, whichever node gets them."""

CLAIM_BATCH = 200
"""Sessions claimed in one pass of the claimer."""


@attrs.frozen(kw_only=True)
class Claim:
    """A session this node has just claimed: its row, its snapshot, and the events of its
    stream past the snapshot (what the last owner published after its last write)."""

    row: SessionRow
    dormant: Dormant
    events: tuple[Event, ...]
    previous: str | None
    """The node that owned it before (None: nobody did)."""


class Host(Protocol):
    """What the node asks of the runtime it serves."""

    async def adopt(self, claim: Claim) -> None:
        """Make ``claim``'s session this node's: its state, its actor (resumed if it was
        running)."""

    async def let_go(self, session: str) -> Summary | None:
        """Stop this node's copy of ``session`` without publishing; its last summary."""

    async def serve(self, command: Command[Any]) -> dict[str, Any]:
        """Run a command another node forwarded here; its wire result."""


@attrs.define(eq=False)
class ClusterStatistics:
    node: str
    database_ok: bool = True
    bus_ok: bool = True
    last_error: str | None = None
    live_nodes: int = 0
    owned: int = 0
    claimed: int = 0
    lost: int = 0
    forwarded: int = 0
    served: int = 0
    fenced: int = 0
    live_events: int = 0
    gaps_filled: int = 0
    gone_back: int = 0


@attrs.define(eq=False)
class Node:
    """See the module docstring. Made by :func:`open_node`."""

    config: ClusterConfig
    database: Database
    streams: Streams
    bus: EventBus
    ask_timeout: float = 10.0
    instance: str = attrs.Factory(lambda: secrets.token_hex(8))
    owned: dict[str, int] = attrs.Factory(dict)
    """The sessions this node owns, and the epoch of each."""
    released: dict[str, int] = attrs.Factory(dict)
    """Per session, the last seq released to this node's bus."""
    epochs: dict[str, int] = attrs.Factory(dict)
    """Per session, the newest epoch of an owner of it this node knows: its own, or the one
    its last event came under (see :meth:`_deliver`)."""
    live: frozenset[str] = frozenset()
    """The nodes whose lease was alive at this node's last heartbeat (itself included)."""
    replicas: dict[str, Summary] = attrs.Factory(dict)
    """The sessions other nodes own, as their last events said."""
    stats: ClusterStatistics = attrs.field(init=False)
    host: Host | None = None
    _cursor: bytes = b"0-0"
    _last_renewal: float = 0.0
    _nursery: trio.Nursery | None = None
    _claiming: trio.Lock = attrs.Factory(trio.Lock)
    _leaving: dict[str, trio.Event] = attrs.Factory(dict)
    """Sessions lost whose copy is still being stopped."""
    _retaking: set[str] = attrs.Factory(set)
    _making: dict[str, trio.Event] = attrs.field(factory=dict, init=False)
    """Sessions this node is making (:meth:`make`), set once held: the database names the
    node their owner before it holds them, and neither the heartbeat nor a claim (a second
    ``openSession`` of the project) must take them again meanwhile."""
    _adopting: dict[str, trio.Event] = attrs.field(factory=dict, init=False)
    """Sessions being handed to the host (:meth:`_take`), set once it has them: one lost
    meanwhile is let go only then, or its copy would start after it was let go."""

    forwarder: Forwarder = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.stats = ClusterStatistics(node=self.config.node_id)
        self.forwarder = Forwarder(
            name=self.name,
            instance=self.instance,
            streams=self.streams,
            ask_timeout=self.ask_timeout,
            stats=self.stats,
            run=self._run_forwarded,
        )

    async def _run_forwarded(self, command: Command[Any]) -> dict[str, Any]:
        assert self.host is not None
        return await self.host.serve(command)

    @property
    def name(self) -> str:
        return self.config.node_id

    async def db(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` of the database, in a worker thread (psycopg blocks)."""
        try:
            result = await trio.to_thread.run_sync(functools.partial(call, *args))
        except EngineUnavailable as error:
            self.stats.database_ok = False
            self.stats.last_error = str(error)
            raise
        self.stats.database_ok = True
        return result

    # -- start ------------------------------------------------------------------------------

    async def join(self) -> None:
        """Take this node's place: a heartbeat (waiting out a previous instance of this node
        id, killed, whose lease has not lapsed yet), the live stream's cursor, and the summaries
        of every session, brought up to date from their streams."""
        lease = self.config.lease_seconds
        waited = False
        asked = trio.current_time()
        while not await self.db(self.database.heartbeat, self.instance):
            if not waited:
                logger.warning(
                    "node %s: another instance holds this node id; waiting for its lease "
                    "(%.0f s) to lapse",
                    self.name,
                    lease,
                )
                waited = True
            await trio.sleep(lease / 4)
            asked = trio.current_time()
        self._last_renewal = asked
        self.live = frozenset(await self.db(self.database.live_nodes))
        self._cursor = await self.streams.live_cursor()
        for row in await self.db(self.database.sessions):
            replica = await self._replica(row)
            if replica is not None:
                self._know(row.session, replica)

    async def learn(self, session: str) -> None:
        """Know ``session`` (made by another node, its first events not here yet) from the
        database and its stream, as :meth:`join` knows every session; nothing if there is
        no such session, or the engines are away."""
        if session in self.replicas or session in self.owned:
            return
        try:
            row = await self.db(self.database.get, session)
            replica = None if row is None else await self._replica(row)
        except EngineUnavailable:
            return
        if replica is None or session in self.replicas or session in self.owned:
            return  # no such session, or the live stream got here first
        self._know(session, replica)

    def _know(self, session: str, replica: tuple[Summary, int, int]) -> None:
        """Keep a :meth:`_replica` of another node's session: its summary, and its last seq
        with the epoch that seq came under, unless the live stream told of the session
        already (it knows a seq as new, and its epoch)."""
        summary, seq, epoch = replica
        self.replicas[session] = summary
        if session not in self.released:
            self.released[session] = seq
            self._learn_epoch(session, epoch)

    async def _replica(self, row: SessionRow) -> tuple[Summary, int, int] | None:
        """A session another node owns, as this node keeps it: its summary, last seq and
        the epoch that seq was appended under, brought up to date from its stream past the
        snapshot; None once it was deleted."""
        entries = await self.streams.replay(row.session, row.seq)
        events = [event for entry in entries if (event := _readable(entry)) is not None]
        if events and isinstance(events[-1].data, SessionDeleted):
            return None
        summary = _dormant(row).summary
        for event in events:
            summary = _summary_after(summary, event) or summary
        if not entries:
            return summary, row.seq, row.epoch
        return summary, entries[-1].seq, entries[-1].epoch or row.epoch

    def _hold(self, session: str, epoch: int) -> None:
        """This node owns ``session`` at ``epoch`` from now on (taken, or made here)."""
        self.owned[session] = epoch
        self._learn_epoch(session, epoch)
        self.stats.owned = len(self.owned)

    def _learn_epoch(self, session: str, epoch: int) -> None:
        if epoch > self.epochs.get(session, 0):
            self.epochs[session] = epoch

    async def events_after(self, session: str, seq: int) -> list[Event]:
        """The events of ``session``'s stream after ``seq`` (an empty list if the bus is
        away, or one of them cannot be read: the client then reloads, as when they are no
        longer kept)."""
        try:
            return await self._stream_after(session, seq)
        except (EngineUnavailable, CorruptRecord):
            return []

    async def _stream_after(self, session: str, seq: int) -> list[Event]:
        return [decode_payload(entry.record) for entry in await self.streams.replay(session, seq)]

    # -- ownership --------------------------------------------------------------------------

    async def claim(self, session: str) -> bool:
        """Take ``session`` if nobody live owns it; whether this node owns it now."""
        making = self._making.get(session)
        if making is not None:
            await making.wait()
        if session in self.owned:
            return True
        async with self._claiming:
            if session in self.owned:
                return True
            before = await self.db(self.database.get, session)
            if before is None:
                raise NotFound(f"no session {session}")
            row = await self.db(self.database.claim, session)
            if row is None:
                return False
            await self._take(row, before.owner)
        return True

    async def claim_orphans(self) -> int:
        async with self._claiming:
            rows = await self.db(self.database.claim_orphans, CLAIM_BATCH)
            for row in rows:
                await self._take(row, None)
        return len(rows)

    async def _take(self, row: SessionRow, previous: str | None) -> None:
        """Raise the owner in the bus to the new epoch, read what the stream holds past the
        snapshot, and hand the session to the host."""
        leaving = self._leaving.get(row.session)
        if leaving is not None:  # the copy this node lost is still stopping: not over it
            await leaving.wait()
        if not await self.streams.raise_owner(row.session, row.epoch):
            logger.error("session %s: a newer claim exists in the bus; not taken", row.session)
            return
        events = await self._stream_after(row.session, row.seq)
        self._hold(row.session, row.epoch)
        self.replicas.pop(row.session, None)
        self.stats.claimed += 1
        claim = Claim(row=row, dormant=_dormant(row), events=tuple(events), previous=previous)
        logger.info(
            "node %s took session %s (project %s) at epoch %d",
            self.name,
            row.session,
            row.project,
            row.epoch,
        )
        assert self.host is not None
        adopted = self._adopting[row.session] = trio.Event()
        try:
            await self.host.adopt(claim)  # which releases here what the stream held past ours
        except BaseException as error:
            # Held but not running here (an engine away, or the claiming command cancelled):
            # let it go, for the heartbeat to take it again.
            why = "cancelled" if isinstance(error, trio.Cancelled) else str(error)
            self.lose(row.session, f"it could not be rebuilt here: {why}", row.epoch)
            raise
        finally:
            del self._adopting[row.session]
            adopted.set()

    def lose(self, session: str, why: str, epoch: int | None = None) -> None:
        """This node no longer owns ``session`` (its write or append was refused, or its lease
        lapsed): drop the epoch now, so nothing more of it is written, and stop the copy.
        With ``epoch``, only if it still holds the session at that epoch (a write refused
        under an older one says nothing of a newer claim)."""
        if epoch is not None and self.owned.get(session) != epoch:
            return
        if self.owned.pop(session, None) is None:
            return
        self.stats.lost += 1
        self.stats.owned = len(self.owned)
        logger.warning("node %s lost session %s: %s; stopping its copy", self.name, session, why)
        if self._nursery is not None:
            self._leaving[session] = trio.Event()
            self._nursery.start_soon(self._let_go, session)

    async def _let_go(self, session: str) -> None:
        assert self.host is not None
        try:
            adopting = self._adopting.get(session)
            if adopting is not None:
                await adopting.wait()
            summary = await self.host.let_go(session)
            if summary is not None and session not in self.owned:
                self.replicas[session] = summary
        finally:
            self._leaving.pop(session).set()

    async def make(self, row: SessionRow) -> SessionRow:
        """Make a new session (``openSession`` of a new project) owned by this node, unless
        its project has one already: the row of the session the project has now (this one,
        held here from now on, or another node's)."""
        session = row.session
        made_here = self._making[session] = trio.Event()
        try:
            made = await self.db(self.database.create_session, row)
            if made.session == session:
                await self.streams.raise_owner(session, made.epoch)
                self._hold(session, made.epoch)
                self.released.setdefault(session, 0)
        finally:
            del self._making[session]
            made_here.set()
        return made

    def released_now(self, event: Event) -> None:
        """The journal released ``event`` of a session this node owns."""
        if event.session is not None and event.seq is not None:
            self.released[event.session] = event.seq
            if isinstance(event.data, SessionDeleted):
                self.released.pop(event.session, None)

    # -- the tasks --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._beat)
                nursery.start_soon(self._watch_lease)
                nursery.start_soon(self._claim_orphans_often)
                nursery.start_soon(self._read_live)
                nursery.start_soon(self.forwarder.serve_forever)
                nursery.start_soon(self.forwarder.read_answers)
                task_status.started()
        finally:
            # Stopping: a session lost from now on (an append refused while the sessions
            # stop) is only dropped; nobody is left to hand it over to.
            self._nursery = None

    async def _beat(self) -> None:
        """Renew the lease every quarter lease; compare the sessions held with the database's
        owners; let everything go when the lease could not be renewed for a whole lease."""
        lease = self.config.lease_seconds
        while True:
            await trio.sleep(lease / 4)
            # The lease runs from before the renewal was asked: the database's clock started
            # it no later than that, so this node never counts on a lease the others think
            # has lapsed.
            asked = trio.current_time()
            try:
                mine = await self.db(self.database.heartbeat, self.instance)
                if not mine:
                    self._lose_all("another instance of this node id took its place")
                    continue
                self._last_renewal = asked
                # What was held before the database was asked is judged by its answer; a
                # session taken while it was asked is judged by the next one (the answer may
                # have been read before the claim, and must not make this node let go of it).
                held = dict(self.owned)
                owned = await self.db(self.database.owned)
                self.live = frozenset(await self.db(self.database.live_nodes))
                self.stats.live_nodes = len(self.live)
            except EngineUnavailable as error:
                if not self.lease_held:
                    self._lose_all(f"the lease could not be renewed: {error}")
                continue
            for session, epoch in held.items():
                if self.owned.get(session) == epoch and owned.get(session) != epoch:
                    self.lose(session, "the database names another owner")
            # Sessions still recorded as this node's but not held (let go while the lease
            # could not be renewed): taken again, at a new epoch, and resumed; not on a
            # renewal that itself took longer than the lease.
            if not self.lease_held:
                continue
            for session in owned.keys() - self.owned.keys() - self._retaking - self._making.keys():
                assert self._nursery is not None
                self._retaking.add(session)
                self._nursery.start_soon(self._take_again, session)

    async def _take_again(self, session: str) -> None:
        """Claim one of this node's own sessions again, beside the heartbeat (which must not
        wait for a session to be rebuilt and started)."""
        try:
            await self.claim(session)
        except GreenroomError as error:
            logger.warning("session %s could not be taken again: %s", session, error)
        finally:
            self._retaking.discard(session)

    async def _watch_lease(self) -> None:
        """Let every session go once the lease lapsed, even while a renewal still waits on
        a database that does not answer."""
        while True:
            await trio.sleep(self.config.lease_seconds / 8)
            if self.owned and not self.lease_held:
                self._lose_all("the lease could not be renewed in time")

    @property
    def lease_held(self) -> bool:
        """Whether this node's lease is surely alive (renewed within the lease)."""
        return trio.current_time() - self._last_renewal <= self.config.lease_seconds

    def health(self) -> str | None:
        """Why this node is not ready to serve (None: it is): what ``/readyz`` says."""
        if not self.stats.database_ok:
            return "PostgreSQL unreachable"
        if not self.stats.bus_ok:
            return "Valkey/Redis unreachable"
        if not self.lease_held:
            return "lease lapsed"
        return None

    def _lose_all(self, why: str) -> None:
        for session in list(self.owned):
            self.lose(session, why)

    async def _claim_orphans_often(self) -> None:
        period = min(1.0, self.config.lease_seconds / 4)
        while True:
            try:
                await self.claim_orphans()
            except (EngineUnavailable, Unavailable) as error:
                logger.warning("claiming orphaned sessions failed (will retry): %s", error)
            except GreenroomError as error:
                logger.error("claiming orphaned sessions failed: %s", error)
            await trio.sleep(period)

    async def _read_live(self) -> None:
        backoff = Backoff()
        while True:
            try:
                cursor, entries = await self.streams.read_live(self._cursor)
                for entry in entries:
                    await self._deliver(entry)  # which may read a session's stream (a gap)
            except EngineUnavailable as error:
                # The same entries again once the bus answers: those delivered are repeats.
                self.stats.bus_ok = False
                self.stats.last_error = str(error)
                await backoff.wait()
                continue
            self._cursor = cursor
            self.stats.bus_ok = True
            backoff.reset()

    async def _deliver(self, entry: Entry) -> None:
        """Release one event of the live stream unless this node has (its own, or one it
        already released); fill a gap first.

        Seqs only rise under one owner, and a new owner goes on from the last seq its
        stream holds, so an event at or below the last seq released comes twice; unless the
        bus lost the session's events past its snapshot (restarted empty) and the owner took
        the session again from there. The first event of a new epoch is checked for that
        (:meth:`_gone_back_to`); this node then follows the session back, as the owner's own
        clients do: what it retains of the session for resumes is dropped, and the events
        are released from the new owner's first on."""
        session = entry.session
        if session in self.owned:
            return
        last = self.released.get(session, 0)
        known = self.epochs.get(session, 0)
        if entry.epoch > known and known and last:
            back = await self._gone_back_to(session, last, known)
            if back is not None:
                logger.warning(
                    "session %s went back from seq %d to %d under epoch %d: the bus lost its "
                    "events past the snapshot its owner took it again from",
                    session,
                    last,
                    back + 1,
                    entry.epoch,
                )
                self.stats.gone_back += 1
                self.bus.forget(session)
                last = self.released[session] = back
        self._learn_epoch(session, entry.epoch)
        if entry.seq <= last:
            return
        event = _readable(entry)
        if event is None:
            return  # the next event fills the gap from the session's stream, if it can
        if entry.seq > last + 1:
            for missed in await self.streams.replay(session, last):
                if missed.seq < entry.seq and (earlier := _readable(missed)) is not None:
                    await self._release_remote(earlier)
            self.stats.gaps_filled += 1  # once filled: not again for a read that failed
        await self._release_remote(event)

    async def _gone_back_to(self, session: str, last: int, known: int) -> int | None:
        """On the first event of a new epoch: None when the new owner went on from the
        session's stream as this node knows it (the stream holds ``last`` from the epoch
        this node last saw, or an older one), else the seq to release after: the session
        went back (``last`` was appended again under a newer epoch, or the stream no longer
        reaches it), and the new owner's events start after that seq."""
        entries = await self.streams.replay(session, last - 1)
        if entries and (entries[0].seq > last or entries[0].epoch <= known):
            return None  # as this node knows it; or trimmed past it (a gap, filled as ever)
        newer = [e.seq for e in await self.streams.replay(session, 0) if e.epoch > known]
        return newer[0] - 1 if newer else None

    async def _release_remote(self, event: Event) -> None:
        """Another node's event: this node's summary of its session first (a client that saw
        the event then lists the sessions finds it), then the event itself."""
        session, seq = event.session, event.seq
        if session is None or seq is None or seq <= self.released.get(session, 0):
            return
        self.stats.live_events += 1
        if isinstance(event.data, SessionDeleted):
            self.replicas.pop(session, None)
        else:
            summary = _summary_after(self.replicas.get(session), event)
            if summary is not None:
                self.replicas[session] = summary
        await self.show(event)

    async def show(self, event: Event, epoch: int | None = None) -> None:
        """Release ``event``, published by another node (or by this one before it lost the
        session, at ``epoch``), to this node's bus, unless it released that seq or a later
        one already, or the session went back since ``epoch`` (see :meth:`_deliver`)."""
        session, seq = event.session, event.seq
        if session is None or seq is None or seq <= self.released.get(session, 0):
            return
        if epoch is not None and epoch < self.epochs.get(session, 0):
            return
        self.released[session] = seq
        stopped = self.bus.release_nowait(event, published=False)
        if stopped is not None:
            await self.bus.release_rest(event, stopped, published=False)

    async def forward(self, node: str, command: Command[Any]) -> dict[str, Any]:
        """Run ``command`` on ``node`` (the owner of its session); its wire result."""
        return await self.forwarder.forward(node, command)

    # -- where a command runs ---------------------------------------------------------------

    async def owner_of(self, command: Command[Any]) -> str | None:
        """The node that must run ``command``, or None for this one (claiming the session
        when its owner is gone)."""
        match command:
            case cmd.OpenSession(project=project) | cmd.DeleteProject(project=project):
                row = await self.db(self.database.of_project, project)
                if row is None:
                    return None
            case _ if isinstance(command, SESSION_COMMANDS):
                if command.session in self.owned:
                    return None
                row = await self.db(self.database.get, command.session)
                if row is None:
                    raise NotFound(f"no session {command.session}")
            case _:
                return None
        if row.session in self.owned:
            return None
        if row.owner is not None and row.owner != self.name and row.owner in self.live:
            return row.owner
        if await self.claim(row.session):
            return None
        fresh = await self.db(self.database.get, row.session)
        if fresh is None or fresh.owner is None:
            raise Unavailable(f"session {row.session} could not be claimed; try again")
        return fresh.owner

    def summaries(self) -> list[Summary]:
        return [s for session, s in self.replicas.items() if session not in self.owned]

    def seq_of(self, session: str) -> int | None:
        """The last seq this node released of a session another node owns (None: unknown)."""
        if session not in self.replicas:
            return None
        return self.released.get(session, 0)


def _readable(entry: Entry) -> Event | None:
    """The entry's event, or None (logged) when this node cannot read it: a record damaged,
    or written by a newer version of greenroom. Passed over rather than ending the live
    reader, and with it the node."""
    try:
        return decode_payload(entry.record)
    except CorruptRecord as error:
        logger.error(
            "session %s: event %d on the bus cannot be read here; passed over: %s",
            entry.session,
            entry.seq,
            error,
        )
        return None


def _dormant(row: SessionRow) -> Dormant:
    return dormant_from_payload(row.session, unpack(row.snapshot))


def snapshot_bytes(payload: dict[str, Any]) -> bytes:
    """A snapshot payload (``greenroom.store.snapshots.snapshot_payload``) as stored."""
    return pack(payload)


def _summary_after(summary: Summary | None, event: Event) -> Summary | None:
    """A replica's summary after ``event`` (only the lifecycle events carry one)."""
    match event.data:
        case SessionCreated(summary=new) | SessionUpdated(summary=new):
            return new
    return summary


@asynccontextmanager
async def open_node(
    config: ClusterConfig, bus: EventBus, *, projects_root: Path, ask_timeout: float
) -> AsyncIterator[Node]:
    """Connect to both engines (a clear error naming the one that is unreachable), take this
    node's place, and on exit leave the cluster: release every claim, so that the others take
    the sessions over at once."""
    database = Database(config.database_url, config.node_id, lease=config.lease_seconds)
    await trio.to_thread.run_sync(database.open)
    try:
        streams = Streams(config.bus_url, config.node_id)
        await streams.open()
        try:
            await trio.to_thread.run_sync(check_projects_folder, database, projects_root)
            node = Node(
                config=config, database=database, streams=streams, bus=bus, ask_timeout=ask_timeout
            )
            await node.join()
            logger.info(
                "node %s joined the cluster (database %s, bus %s)",
                config.node_id,
                redact_url(config.database_url),
                redact_url(config.bus_url),
            )
            try:
                yield node
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(10):
                    try:
                        await trio.to_thread.run_sync(database.leave)
                    except EngineUnavailable as error:
                        logger.error("node %s could not leave: %s", config.node_id, error)
        finally:
            # Not in a cancel scope of ours: the client's task group, opened in open(),
            # encloses every scope opened since and must be exited outside of them.
            await streams.aclose()
    finally:
        await trio.to_thread.run_sync(database.close)
