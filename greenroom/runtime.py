"""The whole supervision tree, as one in-process API.

``async with open_runtime(config) as runtime:`` starts, in order, the persistence actor, the
notifier, the session supervisor and the session manager under the root supervisor
(one_for_one), and stops them in reverse order on exit. The websocket transport, the tests and
the bench suite all drive this same object, so they exercise exactly what ``greenroom serve``
runs.

(Over 500 lines: the routes of every command and the wiring of the tree are the runtime's
whole job, and each route is a few lines.)
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs
import trio

from greenroom.actors.actor import actor_child
from greenroom.actors.bus import EventBus, Subscription
from greenroom.actors.journal import JournalActor, JournalStatistics
from greenroom.actors.mailbox import ActorRef, Mailbox, Request
from greenroom.actors.manager import GivenUp, Lookup, ManagerMessage, SessionManager, Sweep
from greenroom.actors.notifier import Connect, Disconnect, Focus, NotifierActor, NotifierMessage
from greenroom.actors.notifier import wants as notifier_wants
from greenroom.actors.persistence import (
    ListSummaries,
    Mirror,
    PersistenceActor,
    PersistenceMessage,
    PersistenceStatistics,
)
from greenroom.actors.session import GetState, SessionMessage, StartChat
from greenroom.actors.tally import Tally
from greenroom.agent.mcp.config import ProjectMcpStatus
from greenroom.agent.mcp.hub import McpRegistry
from greenroom.agent.provider import Provider
from greenroom.agent.simulated import SimulatedProvider
from greenroom.config import Config
from greenroom.presets import PresetCatalog, PresetListing
from greenroom.protocol import commands as cmd
from greenroom.protocol.codec import result_to_wire
from greenroom.protocol.commands import Command
from greenroom.protocol.errors import ActorError, GreenroomError, InvalidArgument, NotFound
from greenroom.protocol.events import Event, Summary
from greenroom.protocol.results import OpenedSession, ProjectInfo, Subscribed
from greenroom.protocol.state import SessionView
from greenroom.store.history import history_name
from greenroom.store.journal import JournalFiles, JournalRead, read_journal
from greenroom.store.lock import DataDirLock, lock_data_dir
from greenroom.store.projects import validate_project_name
from greenroom.store.snapshots import QuarantinedFile, SnapshotStore, dormant_from_payload
from greenroom.supervisor import (
    Backoff,
    ChildSpec,
    DynamicSupervisor,
    Intensity,
    RestartInfo,
    open_supervisor,
)

DEFAULT_CLIENT_QUEUE = 65_536

logger = logging.getLogger("greenroom.runtime")

if TYPE_CHECKING:  # the cluster's modules import its engines' clients, an optional extra
    from greenroom.cluster.journal import DatabaseStore, StreamJournal
    from greenroom.cluster.node import ClusterStatistics, Node

R = TypeVar("R")
SessionCommand = (
    cmd.SendMessage
    | cmd.StopGeneration
    | cmd.CancelQueued
    | cmd.ResumeSession
    | cmd.ApproveToolCall
)
"""The commands a session's actor executes as they come."""
_Route = Callable[["Runtime", Any], Awaitable[Any]]
ROUTES: dict[type[Command[Any]], _Route] = {}
"""Per command class, the method of :class:`Runtime` that executes it: what ``execute`` does.
The classes missing here are a connection's own (see :mod:`greenroom.transport.connection`)."""
_F = TypeVar("_F", bound=_Route)


def _route(*classes: type[Command[Any]]) -> Callable[[_F], _F]:
    """Make the decorated method the one that executes ``classes``."""

    def register(method: _F) -> _F:
        for cls in classes:
            if cls in ROUTES:
                raise RuntimeError(f"{cls.op} has two routes")
            ROUTES[cls] = method
        return method

    return register


def make_provider(config: Config) -> Provider:
    """The provider named in the configuration."""
    if config.provider == "simulated":
        sim = config.simulated
        return SimulatedProvider(
            seed=sim.seed, tokens_per_second=sim.tokens_per_second, reply_tokens=sim.reply_tokens
        )
    if config.provider not in ("openai", "anthropic"):
        raise InvalidArgument(
            f"unknown provider {config.provider!r}: use simulated, openai or anthropic"
        )
    if not config.model:
        raise InvalidArgument(
            f"the {config.provider} provider needs a model: set model in config.toml, "
            "GREENROOM_MODEL or --model"
        )
    # Imported here: the offline default never loads httpx2.
    from greenroom.agent import anthropic, openai

    dialect = openai if config.provider == "openai" else anthropic
    cls = openai.OpenAIProvider if config.provider == "openai" else anthropic.AnthropicProvider
    return cls(
        base_url=config.base_url or dialect.DEFAULT_BASE_URL,
        api_key=config.api_key,
        model=config.model,
        rng=random.Random(config.seed) if config.seed is not None else None,
        extra_headers=config.extra_headers,
        extra_body=config.extra_body,
        query=config.query,
        api_key_header=config.api_key_header,
    )


@attrs.frozen(kw_only=True)
class RuntimeStatistics:
    """Counters for ``stats``."""

    sessions: dict[str, int]
    sessions_in_memory: int
    events_published: int
    restarts: int
    given_up: int
    clients: int
    notifications_sent: int
    persistence: PersistenceStatistics
    journal: JournalStatistics
    cluster: ClusterStatistics | None = None


@attrs.define(eq=False)
class Client:
    """One connected client: what it subscribed to, what it views, and its event queue.

    ``events`` receives every lifecycle event, the ``messageAdded`` and ``streamingUpdate``
    events of the sessions in ``subscribed``, and the client's notifications.
    """

    name: str
    events: Subscription
    pending_notifications: tuple[Event, ...]
    subscribed: set[str]
    _runtime: Runtime

    def subscribe(self, session: str, since: int | None = None) -> Subscribed:
        """Receive every event of ``session`` from now on, and get the retained ones after
        ``since``. Registering and reading the retained events happen in one step, so the
        replay and the live events meet with no gap."""
        mirror, node = self._runtime.mirror, self._runtime.node
        state = mirror.sessions.get(session) or mirror.dormant.get(session)
        known = state.seq if state is not None else None
        if known is None and node is not None:
            known = node.seq_of(session)  # another node's session
        if known is None:
            raise NotFound(f"no session {session}")
        if session not in self.subscribed:
            self.subscribed.add(session)
            self._runtime.bus.watch(self.events, session)
            counts = self._runtime._subscribers
            counts[session] = counts.get(session, 0) + 1
        # The bus retains an event as it releases it, so its newest seq is the one the live
        # stream continues from; with nothing retained, the mirror's (released events only).
        latest = self._runtime.bus.latest_seq(session)
        seq = latest if latest is not None else known
        return Subscribed(seq=seq, replay=self._replay(session, since, seq))

    def _replay(self, session: str, since: int | None, seq: int) -> tuple[Event, ...] | None:
        """What the client missed, or None when it cannot be given whole: the client is
        ahead of the session (its seq went back after a kill), or what it missed is no longer
        retained (an old since, or a server restart since)."""
        if since is None or since == seq:
            return ()
        if since > seq:
            return None
        missed = self._runtime.bus.replay(session, since)
        if not missed or missed[-1].seq != seq:
            return None
        return missed

    def unsubscribe(self, session: str) -> None:
        if session in self.subscribed:
            self.subscribed.discard(session)
            self._runtime.bus.unwatch(self.events, session)
            counts = self._runtime._subscribers
            counts[session] -= 1
            if not counts[session]:
                del counts[session]

    async def focus(self, project: str | None) -> None:
        await self._runtime._notifier.ref.tell(Focus(client=self.name, project=project))


@attrs.define(eq=False)
class Runtime:
    """The running tree. Every method is safe to call from any task.

    :meth:`execute` runs the protocol's commands; :meth:`connect` makes a client (its
    subscriptions and focus), :meth:`watch` an observer, and :meth:`get_state` reads a
    session's whole state."""

    config: Config
    bus: EventBus
    mirror: Mirror
    _manager: Mailbox[ManagerMessage]
    _registry: SessionManager
    _notifier: Mailbox[NotifierMessage]
    _persistence: Mailbox[PersistenceMessage]
    _sessions: DynamicSupervisor
    _rng: random.Random
    _provider: Provider
    _notifier_actor: NotifierActor
    _persistence_actor: PersistenceActor
    _journal_actor: JournalActor | StreamJournal
    _mcp: McpRegistry
    _presets: PresetCatalog
    # How many clients subscribe to each session: a subscribed session is never unloaded.
    _subscribers: dict[str, int]
    tally: Tally = attrs.Factory(Tally)
    """Live counters for the metrics: turns, streamed text, provider failures, durations."""
    node: Node | None = None
    """This server's part of a cluster (None: one server on local files)."""
    _client_ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(1))

    # -- commands ---------------------------------------------------------------------------

    async def execute(self, command: Command[R]) -> R:
        """Execute ``command`` and return its result: the in-process way to do what a client
        does with a frame (``await runtime.execute(cmd.SendMessage(session=s, content="hi"))``
        is the ``bool`` ``queued``). The commands about one connection (``subscribe``,
        ``unsubscribe``, ``focusProject``, ``stats``) are a :class:`Client`'s instead."""
        route = ROUTES.get(type(command))
        if route is None:
            raise InvalidArgument(f"{command.op} belongs to a connection, not to the runtime")
        return cast(R, await route(self, command))

    async def execute_wire(self, command: Command[Any]) -> dict[str, Any]:
        """Execute ``command`` and return its result as the wire carries it: on a cluster
        node, on the node that owns its session (see greenroom.cluster.host)."""
        if self.node is not None:
            from greenroom.cluster.host import execute_wire

            return await execute_wire(self.node, self.execute, command)
        return result_to_wire(command, await self.execute(command))

    async def prepare_subscribe(self, session: str, since: int | None) -> None:
        """On a cluster node, before a client subscribes to ``session``: learn of a session
        another node made a moment ago (its first events may not have come here yet), and
        for a resume from ``since``, retain the events this node did not see itself (it
        started later), read back from the session's stream, so that the client gets what it
        missed rather than a reset."""
        node = self.node
        if node is None:
            return
        mirror = self.mirror
        if session not in mirror.sessions and session not in mirror.dormant:
            await node.learn(session)
        if since is None:
            return
        retained = self.bus.replay(session, since)
        if retained:
            return
        self.bus.backfill(session, await node.events_after(session, since))

    @_route(cmd.ListProjects, cmd.DeleteProject, cmd.DeleteSession, cmd.StopAll)
    async def _to_manager(self, command: Command[Any]) -> Any:
        return await self._manager.ref.ask(Request.of(command))

    @_route(cmd.SendMessage, cmd.StopGeneration, cmd.ResumeSession, cmd.ApproveToolCall)
    async def _to_session(self, command: SessionCommand) -> Any:
        return await (await self._session(command.session)).ask(Request.of(command))

    @_route(cmd.CreateProject)
    async def _create_project(self, command: cmd.CreateProject) -> ProjectInfo:
        await self._manager.ref.ask(Request.of(command))
        return ProjectInfo(project=command.project)

    @_route(cmd.ListSessions)
    async def _list_sessions(self, command: cmd.ListSessions) -> tuple[Summary, ...]:
        here = await self._persistence.ref.ask(ListSummaries())
        if self.node is not None:
            return (*here, *self.node.summaries())
        return here

    @_route(cmd.OpenSession)
    async def _open_session(self, command: cmd.OpenSession) -> OpenedSession:
        """The project's session (reused if it exists, else new), its whole state, and the
        project's ``.mcp.json`` status. A ``preset`` sets all it carries first, and the
        explicit settings win over it; None keeps what the session had."""
        session = await self._manager.ref.ask(Request[str](command=command))
        view = await self.get_state(session)
        mcp = await self._mcp.status(command.project)
        return OpenedSession(
            summary=view.summary,
            messages=view.messages,
            streaming=view.streaming,
            seq=view.seq,
            mcp=mcp,
        )

    @_route(cmd.CancelQueued)
    async def _cancel_queued(self, command: cmd.CancelQueued) -> str:
        # Replied once the removal is journaled: a kill -9 after the reply keeps it removed.
        removed: str = await self._to_session(command)
        await self.bus.settled()
        return removed

    @_route(cmd.NewChat)
    async def _new_chat(self, command: cmd.NewChat) -> None:
        name = history_name(self.config.now(), self._rng)
        await (await self._session(command.session)).ask(StartChat(name=name))

    @_route(cmd.ListPresets)
    async def _list_presets(self, command: cmd.ListPresets) -> PresetListing:
        if command.project is not None:
            validate_project_name(command.project)
        return await self._presets.visible(command.project)

    @_route(cmd.McpConfig)
    async def _mcp_config(self, command: cmd.McpConfig) -> ProjectMcpStatus:
        validate_project_name(command.project)
        return await self._mcp.status(command.project)

    @_route(cmd.TrustMcpConfig)
    async def _trust_mcp_config(self, command: cmd.TrustMcpConfig) -> ProjectMcpStatus:
        # Its servers start at the next step of the project's session.
        validate_project_name(command.project)
        return await self._mcp.trust(command.project, command.hash)

    @_route(cmd.Ping)
    async def _ping(self, command: cmd.Ping) -> None:
        return None

    # -- sessions ---------------------------------------------------------------------------

    async def get_state(self, session: str) -> SessionView:
        """The session's whole state, once it is journaled."""
        view = await (await self._session(session)).ask(GetState())
        await self.bus.settled()  # a kill -9 keeps what was shown
        return view

    async def _session(self, session: str) -> ActorRef[SessionMessage]:
        """The session's actor: read from the registry while it runs (a command then reaches
        the session in one hop), else looked up by the manager, which starts it."""
        ref = self._registry.serving_ref(session)
        if ref is not None:
            return ref
        return await self._manager.ref.ask(Lookup(session=session))

    @property
    def provider_name(self) -> str:
        return self._provider.name

    def statistics(self) -> RuntimeStatistics:
        by_status: dict[str, int] = {}
        for summary in self.mirror.summaries():
            by_status[summary.status] = by_status.get(summary.status, 0) + 1
        supervision = self._sessions.statistics()
        bus = self.bus.statistics()
        return RuntimeStatistics(
            sessions=by_status,
            events_published=bus.published,
            restarts=supervision.restarts,
            given_up=supervision.given_up,
            clients=self._notifier_actor.clients,
            notifications_sent=self._notifier_actor.sent,
            sessions_in_memory=len(self.mirror.sessions),
            persistence=attrs.evolve(self._persistence_actor.stats),  # a snapshot, not live
            journal=attrs.evolve(self._journal_actor.stats),
            cluster=None if self.node is None else attrs.evolve(self.node.stats),
        )

    # -- clients ----------------------------------------------------------------------------

    @asynccontextmanager
    async def watch(
        self, name: str, *, capacity: int = DEFAULT_CLIENT_QUEUE
    ) -> AsyncIterator[Subscription]:
        """Every lifecycle event, for an observer inside the server (the serve command's log):
        not a client, so the notifier never counts it as one that saw a notification.
        Indexed, watching no session: the bus hands it the lifecycle events alone, rather
        than asking a filter about every event (every token) of every session."""
        events = self.bus.subscribe(name, capacity=capacity, indexed=True)
        try:
            yield events
        finally:
            events.close()

    @asynccontextmanager
    async def connect(
        self, name: str | None = None, *, capacity: int = DEFAULT_CLIENT_QUEUE
    ) -> AsyncIterator[Client]:
        """A client of the runtime, registered with the notifier for as long as it lasts."""
        client_name = name or f"c-{next(self._client_ids)}"
        subscribed: set[str] = set()
        # Indexed: every lifecycle event, the events of the sessions the client subscribes
        # to (Client.subscribe has the bus watch them), and its notifications (offered by
        # the notifier).
        events = self.bus.subscribe(client_name, capacity=capacity, indexed=True)
        try:
            pending = await self._notifier.ref.ask(
                Connect(client=client_name, subscription=events)
            )
            client = Client(
                name=client_name,
                events=events,
                pending_notifications=pending,
                subscribed=subscribed,
                runtime=self,
            )
            yield client
        finally:
            for session in list(subscribed):
                client.unsubscribe(session)
            events.close()
            # If the notifier is gone or full, it drops closed subscriptions by itself.
            with contextlib.suppress(ActorError):
                self._notifier.ref.tell_nowait(Disconnect(client=client_name))


@attrs.frozen(kw_only=True)
class Restored:
    """What the data folder held: the mirror (snapshots plus the journal's tail), the files
    moved aside, and the journal as read."""

    mirror: Mirror
    quarantined: tuple[QuarantinedFile, ...]
    journal: JournalRead


def journal_folder(config: Config) -> Path:
    return config.data_dir / "journal"


async def restore(config: Config) -> Restored:
    """Every snapshotted session, dormant (its messages stay on disk until needed), then the
    journal's events that the snapshots do not hold, applied. Corrupt snapshots and a corrupt
    journal tail are moved aside and reported."""
    store = SnapshotStore(config.data_dir)
    scan = await trio.to_thread.run_sync(store.scan)
    mirror = Mirror()
    quarantined = list(scan.quarantined)
    for session, payload in scan.snapshots:
        try:
            mirror.restore(session, dormant_from_payload(session, payload))
        except GreenroomError as error:
            moved = await trio.to_thread.run_sync(store.quarantine, session, str(error))
            quarantined.append(moved)
    partials, bad_partials = await trio.to_thread.run_sync(store.load_partials)
    if bad_partials is not None:
        quarantined.append(bad_partials)
    unusable: list[str] = []
    for session, payload in partials.items():
        # Streamed text newer than the session's own file (see greenroom.store.snapshots).
        own = mirror.dormant.get(session)
        try:
            newer = dormant_from_payload(session, payload)
        except GreenroomError as error:
            unusable.append(f"{session}: {error}")
            continue
        if own is None or newer.seq > own.seq:
            mirror.restore(session, newer, dirty=True)
    if unusable:  # kept aside as it is: the file is written again without them
        why = "unusable entries: " + "; ".join(unusable)
        quarantined.append(await trio.to_thread.run_sync(store.quarantine_partials, why))
    if partials:
        mirror.rewrite_partials()
    for bad in quarantined:
        logger.error("corrupt snapshot %s moved aside: %s", bad.name, bad.reason)
    journal = await trio.to_thread.run_sync(read_journal, journal_folder(config))
    for aside in journal.moved:
        logger.error("journal: %s; moved to %s", aside.reason, aside.path)
    recovered = await trio.to_thread.run_sync(
        mirror.recover, journal.events, config.projects_root
    )
    if scan.snapshots or recovered:
        logger.info(
            "restored %d sessions (%d events from the journal)",
            len(mirror.sessions) + len(mirror.dormant),
            recovered,
        )
    return Restored(mirror=mirror, quarantined=tuple(quarantined), journal=journal)


async def restore_mirror(config: Config) -> tuple[Mirror, tuple[QuarantinedFile, ...]]:
    """The mirror as the data folder left it (see :func:`restore`)."""
    restored = await restore(config)
    return restored.mirror, restored.quarantined


def _retain_for_replay(bus: EventBus, restored: Restored) -> None:
    """Retain the journal's events for clients that resume with ``since``. A session whose
    newest journaled event is not its seq (its journal was trimmed, or it was deleted) keeps
    nothing: a replay must never skip an event, so those clients reload instead."""
    bus.restore(restored.journal.events)
    mirror = restored.mirror
    for session in {e.session for e in restored.journal.events if e.session is not None}:
        state = mirror.sessions.get(session) or mirror.dormant.get(session)
        if state is None or bus.latest_seq(session) != state.seq:
            bus.forget(session)


@asynccontextmanager
async def open_runtime(
    config: Config, *, provider: Provider | None = None, data_lock: DataDirLock | None = None
) -> AsyncIterator[Runtime]:
    """Start the supervision tree; stop it in reverse order on exit.

    The data folder's lock is taken first (``data_lock``: one the caller already holds), so
    that a second server on the same folder reads nothing there."""
    own_lock = None
    if data_lock is None:
        own_lock = await trio.to_thread.run_sync(lock_data_dir, config.data_dir)
    try:
        async with _open_runtime(config, provider) as runtime:
            yield runtime
    finally:
        if own_lock is not None:
            own_lock.release()


@asynccontextmanager
async def _open_runtime(config: Config, provider: Provider | None) -> AsyncIterator[Runtime]:
    async with (
        contextlib.AsyncExitStack() as stack,
        _open_tree(config, provider, stack) as runtime,
    ):
        yield runtime


@asynccontextmanager
async def _open_tree(
    config: Config, provider: Provider | None, stack: contextlib.AsyncExitStack
) -> AsyncIterator[Runtime]:
    """The tree; what it opens first (the journal's files, or the cluster node) is entered
    on ``stack``, which closes it after the tree stopped."""
    rng = random.Random(config.seed)
    bus = EventBus()
    tally = Tally()
    journal_box = Mailbox[Event]("journal", capacity=65_536)
    persistence_box = Mailbox[PersistenceMessage]("persistence", capacity=4096)
    notifier_box = Mailbox[NotifierMessage]("notifier", capacity=4096)
    manager_box = Mailbox[ManagerMessage]("manager", capacity=4096, ask_timeout=config.ask_timeout)
    # Durable before visible: the journal writes every event before the mirror, the notifier
    # and the clients see it (see greenroom.actors.bus and greenroom.actors.journal).
    bus.set_gate(journal_box.ref)
    bus.attach(notifier_box.ref, notifier_wants)
    journal: JournalActor | StreamJournal
    node: Node | None = None
    shared: DatabaseStore | None = None
    if config.cluster is None:
        restored = await restore(config)
        mirror = restored.mirror
        quarantined = restored.quarantined
        _retain_for_replay(bus, restored)
        files = await trio.to_thread.run_sync(
            lambda: JournalFiles.open(journal_folder(config), restored.journal.segments)
        )

        async def close_files() -> None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(files.close)

        stack.push_async_callback(close_files)
        journal = JournalActor(
            files=files, mirror=mirror, bus=bus, sync_interval=config.flush_interval, tally=tally
        )
    else:
        # A cluster node: the journal and the snapshots are the shared engines'
        # (docs/cluster.md); the node starts with no session and claims its share.
        from greenroom.cluster.host import NodeHost, Seat
        from greenroom.cluster.journal import DatabaseStore, StreamJournal
        from greenroom.cluster.node import open_node

        node = await stack.enter_async_context(
            open_node(
                config.cluster,
                bus,
                projects_root=config.projects_root,
                ask_timeout=config.ask_timeout,
            )
        )
        mirror, quarantined = Mirror(), ()
        journal = StreamJournal(node=node, mirror=mirror, bus=bus, tally=tally)
        shared = DatabaseStore(node)

    sup = config.supervision
    subscribers: dict[str, int] = {}

    async def given_up(session: str, reason: str) -> None:
        await manager_box.ref.tell(GivenUp(session=session, reason=reason))

    sessions = DynamicSupervisor(
        intensity=Intensity(max_restarts=sup.max_restarts, period=sup.period),
        backoff=Backoff(initial=sup.backoff_initial, maximum=sup.backoff_max),
        rng=rng,
        on_give_up=given_up,
    )
    mcp = McpRegistry(
        data_dir=config.data_dir,
        projects_root=config.projects_root,
        servers=config.mcp_servers,
        timings=config.mcp_timings,
        rng=random.Random(config.seed),
    )
    await mcp.load()
    presets = PresetCatalog(presets=config.presets, projects_root=config.projects_root)
    manager = SessionManager(
        mcp=mcp,
        presets=presets,
        config=config,
        bus=bus,
        provider=provider or make_provider(config),
        persistence=persistence_box.ref,
        sessions=sessions,
        rng=rng,
        subscribers=subscribers,
        turn_slots=(
            trio.CapacityLimiter(config.limits.max_concurrent_turns)
            if config.limits.max_concurrent_turns is not None
            else None
        ),
        seat=None if node is None or shared is None else Seat(node=node, store=shared),
    )
    manager.adopt(mirror.summaries())
    persistence = PersistenceActor(
        mirror=mirror,
        store=SnapshotStore(config.data_dir),
        projects_root=config.projects_root,
        flush_interval=config.flush_interval,
        bus=bus,
        on_checkpoint=journal.checkpoint,
        stats=PersistenceStatistics(quarantined=quarantined),
        flush_seconds=tally.flush_seconds,
        shared=shared,
    )
    notifier = NotifierActor()

    async def run_sessions(
        restart: RestartInfo | None,
        *,
        task_status: trio.TaskStatus[DynamicSupervisor] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await sessions.run(task_status=task_status)

    # Stopped in reverse: the sessions' last events reach the journal, which writes them
    # before the persistence actor's last flush.
    children = [
        actor_child(persistence_box, persistence),
        actor_child(journal_box, journal),
        actor_child(notifier_box, notifier),
        ChildSpec(id="sessions", start=run_sessions, shutdown=sup.shutdown_timeout * 2),
        actor_child(manager_box, manager),
    ]
    async def tick_sweeps(
        restart: RestartInfo | None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        period = max(config.idle_unload_after / 4, 0.01)
        while True:
            await trio.sleep(period)
            await manager_box.ref.tell(Sweep())

    children.append(ChildSpec(id="idle-sweeper", start=tick_sweeps, shutdown=0))
    made = provider is None
    try:
        async with open_supervisor(children, rng=rng):
            runtime = Runtime(
                config=config,
                bus=bus,
                mirror=mirror,
                manager=manager_box,
                registry=manager,
                notifier=notifier_box,
                persistence=persistence_box,
                sessions=sessions,
                rng=rng,
                provider=manager.provider,
                notifier_actor=notifier,
                persistence_actor=persistence,
                journal_actor=journal,
                mcp=mcp,
                presets=presets,
                subscribers=subscribers,
                tally=tally,
                node=node,
            )
            if node is None or shared is None:
                yield runtime
            else:
                node.host = NodeHost(
                    node=node,
                    mirror=mirror,
                    manager=manager_box.ref,
                    store=shared,
                    execute=runtime.execute,
                )
                # The node's tasks stop first: nothing is claimed or forwarded while the
                # sessions stop and their last events and snapshots are written.
                async with trio.open_nursery() as nursery:
                    await nursery.start(node.run)
                    try:
                        yield runtime
                    finally:
                        nursery.cancel_scope.cancel()
    finally:
        # A provider built here (an HTTP client, for openai) is closed here; one passed in
        # belongs to the caller.
        close = getattr(manager.provider, "aclose", None)
        if made and close is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await close()
