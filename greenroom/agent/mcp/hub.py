"""One session's MCP servers, supervised, and the registry they all share.

:class:`McpRegistry` (one per runtime) holds the global servers, the approved hash of each
project's ``.mcp.json`` (kept in the data folder by :mod:`greenroom.store.trust`) and a version
per project that an approval bumps, so that a session picks the change up at its next step.

:class:`McpHub` (one per session, opened by the session actor for as long as it runs) starts
the servers when a step first asks for tools, and runs each as a child of its own
:class:`~greenroom.supervisor.DynamicSupervisor`: restarted with jittered backoff when it dies
(its connection breaks or a ping goes unanswered), given up past its restart intensity, and
tried again a while later. Closing the hub stops them all. The project's ``.mcp.json`` is read
again at the first step of every turn (and after an approval), so a changed file stops its
servers until it is approved again. A server that cannot be started or
stops answering never fails the session: its tools are left out, a call to one of them is a
clear tool error for the model, and the log says why.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TextIO

import attrs
import trio

from greenroom.agent.mcp.client import (
    Connection,
    McpServerError,
    RemoteTool,
    available,
    describe,
    open_connection,
)
from greenroom.agent.mcp.config import (
    PROJECT_FILE,
    McpServer,
    McpTimings,
    ProjectFile,
    ProjectMcpStatus,
    TrustState,
    read_project_file,
    server_of,
    tool_name,
)
from greenroom.agent.provider import ToolSchema
from greenroom.protocol.errors import Conflict, NotFound, ToolError
from greenroom.store.trust import read_trust, set_trust
from greenroom.supervisor import (
    Backoff,
    ChildSpec,
    DynamicSupervisor,
    Intensity,
    Restart,
    RestartInfo,
)

logger = logging.getLogger("greenroom.mcp")


@attrs.define(eq=False)
class McpRegistry:
    """Shared by every session of a runtime. Safe to use from any task."""

    data_dir: Path
    projects_root: Path
    servers: tuple[McpServer, ...] = ()
    timings: McpTimings = attrs.Factory(McpTimings)
    rng: random.Random = attrs.Factory(random.Random)
    errlog: TextIO | None = None
    _trust: dict[str, str] = attrs.Factory(dict)
    _versions: dict[str, int] = attrs.Factory(dict)
    _lock: trio.Lock = attrs.Factory(trio.Lock)

    async def load(self) -> None:
        """Read the approvals from the data folder (once, at start)."""
        self._trust = await trio.to_thread.run_sync(read_trust, self.data_dir)

    def version(self, project: str) -> int:
        return self._versions.get(project, 0)

    def approved(self, project: str) -> str | None:
        return self._trust.get(project)

    async def status(self, project: str) -> ProjectMcpStatus:
        """The project's ``.mcp.json`` as it is now, and whether it is approved."""
        return self._status(project, await self._read(project))

    async def _read(self, project: str) -> ProjectFile | None:
        """The project's ``.mcp.json``, read in a worker thread; but most projects have
        none, and that a stat in the event loop tells (every turn asks at its first step: a
        thread hop each cost more than the rest of a turn's start)."""
        folder = self.projects_root / project
        try:
            os.stat(folder / PROJECT_FILE)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:
            pass  # the read says why
        return await trio.to_thread.run_sync(read_project_file, folder)

    def _status(self, project: str, found: ProjectFile | None) -> ProjectMcpStatus:
        if found is None:
            return ProjectMcpStatus(state="none")
        if found.error is not None:
            return ProjectMcpStatus(state="invalid", hash=found.hash, error=found.error)
        state: TrustState = "trusted" if self.approved(project) == found.hash else "untrusted"
        return ProjectMcpStatus(state=state, hash=found.hash, servers=found.servers)

    async def trust(self, project: str, digest: str) -> ProjectMcpStatus:
        """Approve the project's ``.mcp.json`` whose contents hash to ``digest``; refused
        (Conflict) when the file is not, or no longer, those contents."""
        async with self._lock:
            status = await self.status(project)
            if status.hash is None:
                raise NotFound(f"project {project} has no .mcp.json")
            if status.hash != digest:
                raise Conflict(
                    f"the .mcp.json of {project} has changed: its hash is now {status.hash}; "
                    "show it again and approve that"
                )
            if status.state == "invalid":
                raise Conflict(f"the .mcp.json of {project} is unusable: {status.error}")
            await trio.to_thread.run_sync(set_trust, self.data_dir, project, digest)
            self._trust[project] = digest
            self._versions[project] = self.version(project) + 1
            logger.info("project %s: .mcp.json %s approved", project, digest[:12])
            return attrs.evolve(status, state="trusted")

    async def forget(self, project: str) -> None:
        """Withdraw the project's approval (its folder is gone)."""
        async with self._lock:
            if self._trust.pop(project, None) is not None:
                await trio.to_thread.run_sync(set_trust, self.data_dir, project, None)
                self._versions[project] = self.version(project) + 1


@attrs.define(eq=False)
class _Server:
    """One server of the hub, across its restarts."""

    spec: McpServer
    child: str
    state: Literal["starting", "running", "restarting", "failed"] = "starting"
    error: str | None = None
    connection: Connection | None = None
    tools: dict[str, str] = attrs.Factory(dict)
    """The name the model sees -> the server's name for the tool."""
    destructive: frozenset[str] = frozenset()
    """The names (as the model sees them) of the tools the server marks destructive."""
    schemas: tuple[ToolSchema, ...] = ()
    settled: trio.Event = attrs.Factory(trio.Event)
    """Set once the first attempt has an outcome (running, or failed)."""
    wake: trio.Event = attrs.Factory(trio.Event)
    stopping: bool = False
    failed_at: float | None = None


@attrs.define(eq=False)
class McpHub:
    """The MCP servers of one session (see the module docstring). Use :func:`open_mcp_hub`."""

    registry: McpRegistry
    project: str
    project_dir: Path
    _supervisor: DynamicSupervisor
    _nursery: trio.Nursery
    _servers: dict[str, _Server] = attrs.Factory(dict)
    _seen_version: int | None = None
    _wanted: dict[str, McpServer] = attrs.Factory(dict)
    _generation: int = 0
    _warned: str | None = None
    _warned_unknown: tuple[str, ...] = ()
    _only: tuple[str, ...] | None = None

    # -- what the model is offered ----------------------------------------------------------

    async def tools(
        self, *, reload: bool = False, only: tuple[str, ...] | None = None
    ) -> tuple[ToolSchema, ...]:
        """The tools of the servers that run, starting those that should and waiting (at most
        the start timeout) for their first outcome. The project's ``.mcp.json`` is read again
        with ``reload`` (the first step of a turn), and after an approval. ``only`` keeps the
        configured servers of those names (a session's preset), None all of them."""
        version = self.registry.version(self.project)
        if reload or version != self._seen_version or only != self._only:
            self._seen_version = version
            self._only = only
            await self._reload()
        if not self._wanted:
            return ()
        now = trio.current_time()
        timings = self.registry.timings
        for name, spec in self._wanted.items():
            server = self._servers.get(name)
            if server is None or (
                server.state == "failed"
                and server.failed_at is not None
                and now - server.failed_at >= timings.retry_after
            ):
                if server is not None:
                    await self._stop(server)
                self._launch(spec)
        with trio.move_on_after(timings.start + 1):
            for server in list(self._servers.values()):
                await server.settled.wait()
        return tuple(
            schema
            for server in self._servers.values()
            if server.state == "running"
            for schema in server.schemas
        )

    async def _reload(self) -> None:
        """Work out which servers this session wants: the global ones, and the project's when
        its ``.mcp.json`` is approved as it is now (a project server replaces a global one of
        the same name). Servers no longer wanted, or changed, are stopped."""
        status = await self.registry.status(self.project)
        wanted = {server.name: server for server in self.registry.servers}
        if status.state == "trusted":
            wanted.update({server.name: server for server in status.servers})
        elif status.state == "untrusted" and status.hash != self._warned:
            self._warned = status.hash  # once per version of the file, not every turn
            logger.warning(
                "project %s: .mcp.json is not approved (hash %s); its servers do not start "
                "until a client approves it (trustMcpConfig)",
                self.project,
                status.hash,
            )
        elif status.state == "invalid" and status.hash != self._warned:
            self._warned = status.hash
            logger.error("project %s: %s", self.project, status.error)
        if self._only is not None:
            unknown = tuple(name for name in self._only if name not in wanted)
            if unknown and unknown != self._warned_unknown:  # once, not every turn
                logger.warning(
                    "project %s: the session's preset names MCP servers that are not "
                    "configured (or not approved): %s",
                    self.project,
                    ", ".join(unknown),
                )
            self._warned_unknown = unknown
            wanted = {name: server for name, server in wanted.items() if name in self._only}
        if wanted and (missing := available()) is not None:
            logger.error("project %s: MCP servers configured, but %s", self.project, missing)
        self._wanted = wanted
        for name, server in list(self._servers.items()):
            if wanted.get(name) != server.spec:
                await self._stop(server)

    # -- calls ------------------------------------------------------------------------------

    def handles(self, name: str) -> bool:
        return server_of(name) is not None

    def destructive(self, name: str) -> bool:
        """Whether the server of the tool the model knows as ``name`` marks it destructive
        (False when that server is not running: a call to it fails anyway)."""
        server = self._servers.get(server_of(name) or "")
        return server is not None and name in server.destructive

    async def call(self, name: str, arguments: str) -> str:
        """Call the tool the model knows as ``name``; ToolError on any failure."""
        server_name = server_of(name)
        server = self._servers.get(server_name or "")
        if server is None:
            if server_name in self._wanted:
                raise ToolError(f"MCP server {server_name!r} has not been started")
            raise ToolError(f"unknown tool {name!r}: there is no MCP server {server_name!r}")
        if server.state != "running" or server.connection is None:
            why = f": {server.error}" if server.error else ""
            raise ToolError(
                f"MCP server {server.spec.name!r} is not available ({server.state}){why}"
            )
        tool = server.tools.get(name)
        if tool is None:
            raise ToolError(f"MCP server {server.spec.name!r} has no tool {name!r}")
        parsed = _parse_arguments(name, arguments)
        try:
            return await server.connection.call(tool, parsed, self.registry.timings.call)
        except McpServerError as error:
            logger.error(
                "project %s: MCP server %s failed a call to %s: %s",
                self.project,
                server.spec.name,
                tool,
                error.message,
            )
            server.state, server.error = "restarting", error.message
            server.wake.set()  # check it now; a dead server is restarted
            raise ToolError(
                f"MCP server {server.spec.name!r} failed: {error.message}"
            ) from None

    # -- supervision ------------------------------------------------------------------------

    def _launch(self, spec: McpServer) -> None:
        self._generation += 1
        server = _Server(spec=spec, child=f"{spec.name}#{self._generation}")
        self._servers[spec.name] = server
        missing = available()
        if missing is not None:
            server.state, server.error = "failed", missing
            server.failed_at = trio.current_time()
            server.settled.set()
            return
        child = ChildSpec(
            id=server.child,
            start=functools.partial(self._run_server, server),
            restart=Restart.PERMANENT,
            shutdown=self.registry.timings.shutdown,
            stop=functools.partial(self._nudge, server),
        )
        self._nursery.start_soon(self._start_child, child)

    async def _start_child(self, child: ChildSpec) -> None:
        try:
            await self._supervisor.start_child(child)
        except trio.ClosedResourceError:
            pass  # the hub is closing: nothing more starts
        except Exception:
            logger.exception("MCP child %s could not be added", child.id)

    @staticmethod
    def _nudge(server: _Server) -> None:
        server.stopping = True
        server.wake.set()

    async def _stop(self, server: _Server) -> None:
        if self._servers.get(server.spec.name) is server:
            del self._servers[server.spec.name]
        if server.child in self._supervisor.which_children():
            await self._supervisor.terminate_child(server.child)

    async def _run_server(
        self,
        server: _Server,
        restart: RestartInfo | None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        spec = server.spec
        timings = self.registry.timings
        if restart is not None:
            server.state = "restarting"
        try:
            async with open_connection(
                spec, self.project_dir, within=timings.start, errlog=self.registry.errlog
            ) as connection:
                server.connection = connection
                server.tools, server.schemas = _offered(spec.name, connection.tools)
                server.destructive = frozenset(
                    exposed
                    for exposed, tool in server.tools.items()
                    if any(t.name == tool and t.destructive for t in connection.tools)
                )
                server.state, server.error = "running", None
                server.settled.set()
                logger.info(
                    "project %s: MCP server %s running (%d tools)",
                    self.project,
                    spec.name,
                    len(server.schemas),
                )
                task_status.started()
                await self._watch(server, connection)
        except Exception as error:
            server.state, server.error = "restarting", describe(error)
            server.settled.set()
            logger.error("project %s: MCP server %s: %s", self.project, spec.name, server.error)
            raise
        finally:
            server.connection = None
            if server.state == "running":
                server.state = "restarting"

    async def _watch(self, server: _Server, connection: Connection) -> None:
        """Return when asked to stop; raise McpServerError when the server stops answering."""
        timings = self.registry.timings
        while True:
            with trio.move_on_after(timings.ping_every):
                await server.wake.wait()
            if server.stopping:
                return
            server.wake = trio.Event()
            await connection.ping(timings.ping)
            server.state, server.error = "running", None

    async def _given_up(self, child: str, reason: str) -> None:
        for server in self._servers.values():
            if server.child == child:
                server.state = "failed"
                server.error = f"it failed too often and was given up: {server.error or reason}"
                server.failed_at = trio.current_time()
                server.settled.set()
                logger.error(
                    "project %s: MCP server %s given up (tried again in %g s): %s",
                    self.project,
                    server.spec.name,
                    self.registry.timings.retry_after,
                    reason,
                )

    def statuses(self) -> dict[str, tuple[str, str | None]]:
        """Each server's state and last error, by name (for tests and diagnostics)."""
        return {name: (s.state, s.error) for name, s in self._servers.items()}


def _offered(
    server: str, tools: Iterable[RemoteTool]
) -> tuple[dict[str, str], tuple[ToolSchema, ...]]:
    names: dict[str, str] = {}
    schemas: list[ToolSchema] = []
    for tool in tools:
        exposed = tool_name(server, tool.name)
        if exposed in names:
            logger.warning("MCP server %s: tool %r left out: its name clashes", server, tool.name)
            continue
        names[exposed] = tool.name
        schemas.append(
            ToolSchema(name=exposed, description=tool.description, parameters=tool.input_schema)
        )
    return names, tuple(schemas)


def _parse_arguments(name: str, arguments: str) -> dict[str, Any]:
    text = arguments.strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise ToolError(f"the arguments of {name} are not valid JSON") from None
    if not isinstance(value, dict):
        raise ToolError(f"the arguments of {name} must be a JSON object")
    return value


@asynccontextmanager
async def open_mcp_hub(
    registry: McpRegistry, project: str, project_dir: Path
) -> AsyncIterator[McpHub]:
    """A hub for one session; on exit its servers are stopped (shielded, bounded)."""
    timings = registry.timings
    hub: McpHub | None = None

    async def given_up(child: str, reason: str) -> None:
        if hub is not None:
            await hub._given_up(child, reason)

    supervisor = DynamicSupervisor(
        intensity=Intensity(max_restarts=timings.max_restarts, period=timings.period),
        backoff=Backoff(initial=timings.backoff_initial, maximum=timings.backoff_max),
        rng=registry.rng,
        on_give_up=given_up,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        hub = McpHub(
            registry=registry,
            project=project,
            project_dir=project_dir,
            supervisor=supervisor,
            nursery=nursery,
        )
        try:
            yield hub
        finally:
            with trio.CancelScope(shield=True):
                await supervisor.aclose()
            nursery.cancel_scope.cancel()

