"""The session manager: the registry of sessions, one per project.

It opens or creates a project's session, starts its actor under the session supervisor, routes
commands to it (by handing out its ``ActorRef``), deletes sessions and projects, and enforces the
session limit. Everything that changes the registry goes through its mailbox, one message at a
time, so two clients opening the same project get the same session.

(Just over 500 lines: opening, restoring, deleting and limiting sessions all change the one
registry, which is the point of having one actor for them.)
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import attrs
import trio

from greenroom.actors.bus import EventBus
from greenroom.actors.mailbox import ActorRef, Inbox, Mailbox, Reply, Request
from greenroom.actors.persistence import (
    Flush,
    ListSummaries,
    LoadState,
    PersistenceMessage,
    Unload,
)
from greenroom.actors.session import SessionActor, SessionMessage, SetSettings
from greenroom.agent.mcp.hub import McpRegistry
from greenroom.agent.provider import Provider
from greenroom.config import Config
from greenroom.presets import Preset, PresetCatalog
from greenroom.protocol import commands as cmd
from greenroom.protocol.errors import (
    ActorError,
    Conflict,
    DiskError,
    GreenroomError,
    InvalidArgument,
    LimitReached,
    NotFound,
)
from greenroom.protocol.events import (
    Event,
    EventData,
    LoadingChanged,
    MessageAdded,
    SessionCreated,
    SessionDeleted,
    SessionFailed,
    Summary,
)
from greenroom.protocol.results import ProjectInfo
from greenroom.protocol.state import SessionState
from greenroom.store.history import history_name, history_path, newest_history, read_history
from greenroom.store.projects import (
    make_project,
    project_names,
    remove_project,
    validate_project_name,
)
from greenroom.supervisor import ChildSpec, DynamicSupervisor, Restart, RestartInfo

logger = logging.getLogger("greenroom.manager")


@attrs.frozen(kw_only=True)
class Lookup:
    """The actor of a session, started again if the supervisor had given it up."""

    session: str
    reply: Reply[ActorRef[SessionMessage]] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class GivenUp:
    """The session supervisor gave up on a session (sent by its callback)."""

    session: str
    reason: str


@attrs.frozen(kw_only=True)
class Sweep:
    """Unload the sessions idle for longer than ``idle_unload_after`` (sent periodically)."""


@attrs.frozen(kw_only=True)
class Adopt:
    """A cluster node took this session over (its state is in the mirror already): register
    it, and start it now if it must be recovered, telling its subscribers why."""

    summary: Summary
    restart: RestartInfo | None
    reply: Reply[None] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class LetGo:
    """Another cluster node owns this session now: stop its actor, forget it here."""

    session: str
    reply: Reply[None] = attrs.field(factory=Reply, eq=False, repr=False)


ManagerMessage = Request[Any] | Lookup | Sweep | GivenUp | Adopt | LetGo
"""The manager's commands come as they are, in a :class:`Request`: ``openSession`` (replies
the session id), ``deleteSession``, ``stopAll`` (how many sessions it stopped),
``listProjects``, ``createProject`` and ``deleteProject`` (None)."""


class Moved(GreenroomError):
    """The project's session was just made by another cluster node: ask that one."""

    def __init__(self, node: str) -> None:
        super().__init__(f"the session is owned by node {node}")
        self.node = node


class Seat(Protocol):
    """A cluster node's part in the registry (greenroom.cluster.node): the one session of a
    project for the whole cluster, the chats kept in the database, the other nodes' sessions."""

    async def make(self, summary: Summary) -> str | None:
        """Record a new session for its project, owned here; None, or the node that owns the
        project's session already."""

    async def newest_chat(self, project: str) -> tuple[str, int] | None: ...

    async def forget_project(self, project: str) -> None: ...

    def summaries(self) -> list[Summary]:
        """The sessions other nodes own."""


@attrs.define(eq=False)
class _Entry:
    project: str
    mailbox: Mailbox[SessionMessage]
    last_used: float = attrs.Factory(trio.current_time)


@attrs.define(eq=False)
class SessionManager:
    """Owns the registry; its state outlives its own restarts (it is held by the runtime)."""

    config: Config
    bus: EventBus
    provider: Provider
    persistence: ActorRef[PersistenceMessage]
    sessions: DynamicSupervisor
    rng: random.Random
    # How many clients subscribe to each session (kept by the runtime's clients).
    subscribers: Mapping[str, int] = attrs.Factory(dict)
    turn_slots: trio.CapacityLimiter | None = None
    mcp: McpRegistry | None = None
    presets: PresetCatalog | None = None
    make_session_id: Callable[[], str] = attrs.field(default=lambda: f"s-{secrets.token_hex(4)}")
    seat: Seat | None = None
    """Set on a cluster node."""
    _entries: dict[str, _Entry] = attrs.Factory(dict)
    _by_project: dict[str, str] = attrs.Factory(dict)
    _to_recover: list[str] = attrs.Factory(list)
    unloaded: int = 0

    def adopt(self, summaries: Iterable[Summary]) -> None:
        """Register the sessions restored from disk, before the manager runs. Those that were
        running when the server went down are started again at once (to be marked interrupted,
        and resumed under policy auto, or whatever the policy when they wait for an approval),
        and so are, under auto, idle ones with texts queued (they run); the others wait until
        they are used."""
        auto = self.config.resume == "auto"
        for summary in summaries:
            self._register(summary.session, summary.project)
            if _needs_recovery(summary, auto=auto):
                self._to_recover.append(summary.session)

    async def run(
        self,
        inbox: Inbox[ManagerMessage],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        for session in self._to_recover:
            try:
                await self._start(session)
            except GreenroomError as error:
                logger.error("session %s could not be recovered: %s", session, error)
        self._to_recover.clear()
        async for message in inbox:
            try:
                try:
                    await self._handle(message)
                except OSError as error:  # the disk refused: the command fails, not the manager
                    raise DiskError.of(error) from error
            except GreenroomError as error:
                if isinstance(message, GivenUp | Sweep):
                    logger.error("%s failed: %s", type(message).__name__, error)
                else:
                    message.reply.fail(error)

    async def _handle(self, message: ManagerMessage) -> None:
        match message:
            case Sweep():
                await self._sweep()
            case Request(command=command, reply=reply):
                reply.send(await self._execute(command))
            case Lookup(session=session, reply=reply):
                reply.send(await self._lookup(session))
            case GivenUp(session=session, reason=reason):
                await self._announce_failed(session, reason)
            case Adopt(summary=summary, restart=restart, reply=reply):
                self._register(summary.session, summary.project)
                if _needs_recovery(summary, auto=self.config.resume == "auto"):
                    await self._start(summary.session, first=restart)
                reply.send(None)
            case LetGo(session=session, reply=reply):
                await self._let_go(session)
                reply.send(None)

    async def _execute(self, command: cmd.Command[Any]) -> Any:
        match command:
            case cmd.OpenSession():
                return await self._open(command)
            case cmd.DeleteSession(session=session):
                await self._remove(session)
            case cmd.StopAll():
                return await self._stop_all()
            case cmd.ListProjects():
                return await self._list_projects()
            case cmd.CreateProject(project=project):
                await self._create_project(project)
            case cmd.DeleteProject(project=project):
                await self._delete_project(project)
            case _:
                raise InvalidArgument(f"the session manager does not execute {command.op}")
        return None

    # -- sessions ---------------------------------------------------------------------------

    async def _open(self, opening: cmd.OpenSession) -> str:
        project = opening.project
        validate_project_name(project)
        preset: Preset | None = None
        if opening.preset is not None:
            catalog = self.presets or PresetCatalog(
                presets=self.config.presets, projects_root=self.config.projects_root
            )
            preset = (await catalog.visible(project)).find(opening.preset)
        existing = self._by_project.get(project)
        if existing is not None:
            ref = await self._lookup(existing)
            settings = SetSettings(
                preset=preset,
                model=opening.model,
                temperature=opening.temperature,
                max_tokens=opening.maxTokens,
            )
            if settings != SetSettings():
                await ref.ask(settings)
            return existing
        if len(self._entries) >= self.config.limits.max_sessions:
            raise LimitReached(f"the server holds {len(self._entries)} sessions, its limit")
        root = self.config.projects_root

        def prepare() -> tuple[str | None, int]:
            """Make the folder; find its newest history file and count its messages."""
            try:
                folder = make_project(root, project, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise Conflict(f"project {project} exists and is not a folder") from None
            if self.seat is not None:
                return None, 0  # a cluster's chats are in its database
            newest = newest_history(folder)
            if newest is None:
                return None, 0
            return newest, len(read_history(history_path(folder, newest)))

        # The project's history may still have lines waiting to be written (a session of it
        # deleted just now): write them first, or the count below would miss them.
        await self.persistence.ask(Flush(project=project))
        newest, count = await trio.to_thread.run_sync(prepare)
        if self.seat is not None:
            newest, count = await self.seat.newest_chat(project) or (None, 0)
        session = self.make_session_id()
        chosen = {} if preset is None else preset.session_settings()
        explicit = {
            "model": opening.model,
            "temperature": opening.temperature,
            "max_tokens": opening.maxTokens,
        }
        chosen.update({name: value for name, value in explicit.items() if value is not None})
        summary = Summary(
            session=session,
            project=project,
            name=newest or history_name(self.config.now(), self.rng),
            status="idle",
            loading=False,
            message_count=count,
            last_activity=self.config.now(),
            preview=None,
            **chosen,
        )
        if self.seat is not None:
            owner = await self.seat.make(summary)
            if owner is not None:
                raise Moved(owner)
        await self.bus.publish(
            Event(session=session, project=project, seq=1, data=SessionCreated(summary=summary))
        )
        self._register(session, project)
        await self._start(session)
        return session

    def _register(self, session: str, project: str) -> _Entry:
        mailbox = Mailbox[SessionMessage](f"session {session}", ask_timeout=self.config.ask_timeout)
        entry = self._entries[session] = _Entry(project=project, mailbox=mailbox)
        self._by_project[project] = session
        return entry

    async def _start(self, session: str, *, first: RestartInfo | None = None) -> None:
        """Start the session's actor; ``first``: why its first start is a restart (a cluster
        node that took it over from another)."""
        entry = self._entries[session]
        mailbox = entry.mailbox
        folder = self.config.projects_root / entry.project
        persistence, bus, provider, config = self.persistence, self.bus, self.provider, self.config
        turn_slots, mcp = self.turn_slots, self.mcp
        failure: GreenroomError | None = None  # why, if it is given up before it ever started

        async def start(
            restart: RestartInfo | None,
            *,
            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
        ) -> None:
            nonlocal failure
            try:
                state = await persistence.ask(LoadState(session=session))
            except GreenroomError as error:
                failure = error
                raise
            if state is None:
                raise NotFound(f"no session {session}")
            actor = SessionActor(
                state=state,
                bus=bus,
                provider=provider,
                config=config,
                project_dir=folder,
                restart=restart or first,
                turn_slots=turn_slots,
                mcp=mcp,
            )
            with mailbox.serve() as inbox:
                await actor.run(inbox, task_status=task_status)

        started = await self.sessions.start_child(
            ChildSpec(
                id=session,
                start=start,
                restart=Restart.TRANSIENT,
                shutdown=self.config.supervision.shutdown_timeout,
                stop=mailbox.request_stop,
            )
        )
        if not started and failure is not None:
            raise failure  # the command that started it is told why, not "not running"

    def serving_ref(self, session: str) -> ActorRef[SessionMessage] | None:
        """The actor of ``session`` when one is running, without a message to the manager:
        the runtime's one-hop route for a session's commands (same thread, so a plain read);
        None when it must be looked up (unknown, dormant, given up, or being stopped: the
        lookup waits for the stop and starts it again), as :class:`Lookup` does. Counts as a
        use, as a lookup does, for the idle sweep."""
        entry = self._entries.get(session)
        if entry is None or not entry.mailbox.accepting:
            return None
        entry.last_used = trio.current_time()
        return entry.mailbox.ref

    async def _lookup(self, session: str) -> ActorRef[SessionMessage]:
        entry = self._entries.get(session)
        if entry is None:
            raise NotFound(f"no session {session}")
        entry.last_used = trio.current_time()
        if session not in self.sessions.which_children():
            await self._start(session)  # given up earlier: a new command gives it a new chance
        return entry.mailbox.ref

    async def _remove(self, session: str) -> None:
        entry = self._entries.get(session)
        if entry is None:
            raise NotFound(f"no session {session}")
        if entry.mailbox.serving:
            await entry.mailbox.ref.ask(Request.of(cmd.DeleteSession(session=session)))
        else:
            await self._publish_for(session, SessionDeleted())
        await self._let_go(session)

    async def _let_go(self, session: str) -> None:
        """Stop the session's actor and forget it here (deleted, or owned by another node)."""
        entry = self._entries.get(session)
        if entry is None:
            return
        if session in self.sessions.which_children():
            await self.sessions.terminate_child(session)
        entry.mailbox.close()
        del self._entries[session]
        if self._by_project.get(entry.project) == session:
            del self._by_project[entry.project]

    async def _sweep(self) -> None:
        now = trio.current_time()
        limit = self.config.idle_unload_after
        running = set(self.sessions.which_children())
        summaries = {s.session: s for s in await self.persistence.ask(ListSummaries())}
        for session, entry in list(self._entries.items()):
            summary = summaries.get(session)
            if session not in running or summary is None:
                continue
            if summary.loading or self.subscribers.get(session, 0):
                entry.last_used = now
                continue
            if now - entry.last_used >= limit:
                await self.sessions.terminate_child(session)
                await self.persistence.ask(Unload(session=session))
                self.bus.forget(session)
                self.unloaded += 1

    async def _stop_all(self) -> int:
        stopped = 0
        for session, entry in list(self._entries.items()):
            if entry.mailbox.serving:
                try:
                    await entry.mailbox.ref.ask(Request.of(cmd.StopGeneration(session=session)))
                except ActorError:
                    continue  # it crashed meanwhile; its supervisor deals with it
                stopped += 1
        return stopped

    async def _announce_failed(self, session: str, reason: str) -> None:
        """The supervisor gave up: commit the partial text, end the turn it was running, then
        say why."""
        state = await self.persistence.ask(LoadState(session=session))
        if state is None:
            return
        events: list[EventData] = []
        partial = state.partial_message()
        if partial is not None and partial.content:
            events.append(MessageAdded(index=len(state.messages), message=partial))
        if state.loading:
            error = f"the session crashed too often: {reason}"
            events.append(LoadingChanged(loading=False, reason="failed", error=error))
        events.append(SessionFailed(reason=reason))
        await self._publish_for(session, *events, state=state)

    async def _publish_for(
        self, session: str, *events: EventData, state: SessionState | None = None
    ) -> None:
        """Publish events of a session whose actor is not running, with its next seqs."""
        if state is None:
            state = await self.persistence.ask(LoadState(session=session))
        if state is None:
            return
        for seq, data in enumerate(events, start=state.seq + 1):
            await self.bus.publish(
                Event(session=session, project=state.project, seq=seq, data=data)
            )

    # -- projects ---------------------------------------------------------------------------

    async def _list_projects(self) -> tuple[ProjectInfo, ...]:
        root = self.config.projects_root
        names = set(await trio.to_thread.run_sync(project_names, root)) | set(self._by_project)
        listed = [*await self.persistence.ask(ListSummaries())]
        if self.seat is not None:
            listed += self.seat.summaries()
            names |= {summary.project for summary in listed}
        summaries = {s.project: s for s in listed}
        return tuple(
            ProjectInfo(
                project=name,
                session=summaries[name].session if name in summaries else None,
                status=summaries[name].status if name in summaries else None,
            )
            for name in sorted(names)
        )

    async def _delete_project(self, project: str) -> None:
        validate_project_name(project)
        if project in self._by_project:
            await self._remove(self._by_project[project])
        # History lines still waiting for a flush (of this session, or of one deleted just
        # before) would make the folder again after it is removed: write them first.
        await self.persistence.ask(Flush(project=project))
        await trio.to_thread.run_sync(remove_project, self.config.projects_root, project)
        if self.seat is not None:
            await self.seat.forget_project(project)
        if self.mcp is not None:
            # A new project of the same name must be approved anew.
            await self.mcp.forget(project)

    async def _create_project(self, project: str) -> None:
        try:
            await trio.to_thread.run_sync(make_project, self.config.projects_root, project)
        except FileExistsError:
            raise Conflict(f"project {project} already exists") from None




def _needs_recovery(summary: Summary, *, auto: bool) -> bool:
    """Whether a restored (or taken over) session is started at once: it was running, or is
    interrupted and resumes under policy auto (or waits for an approval), or, under auto,
    is idle with texts queued (they run)."""
    waiting = summary.approval is not None
    return (
        summary.status in ("running", "stopping")
        or (summary.status == "interrupted" and (auto or waiting))
        or (auto and summary.status == "idle" and bool(summary.queued))
    )
