"""The tools one session offers its model: the file tools, and its MCP servers' tools.

A session runs every call through :meth:`Toolbox.run`, which never raises a greenroom error:
a failure is the ``error: <reason>`` text the model reads. File tools are short and run
shielded (a tool that ran gets its result committed, so a resumed turn never runs it twice);
an MCP call may take long, so it is not shielded, and the session answers a call that a stop
cut short as stopped (see :mod:`greenroom.actors.session`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from greenroom.agent.mcp.hub import McpHub, McpRegistry, open_mcp_hub
from greenroom.agent.policy import (
    Decision,
    PolicyError,
    ToolPolicy,
    read_project_policy,
    tightened,
)
from greenroom.agent.provider import ToolSchema
from greenroom.agent.tools import TOOLS, run_tool
from greenroom.protocol.errors import GreenroomError

logger = logging.getLogger("greenroom.mcp")
policy_logger = logging.getLogger("greenroom.policy")

STOPPED_CALL = "error: the call was stopped before it finished; it may have had effects"


@attrs.define(eq=False)
class Toolbox:
    project_dir: Path
    mcp: McpHub | None = None

    async def schemas(
        self, *, first_step: bool = False, servers: tuple[str, ...] | None = None
    ) -> tuple[ToolSchema, ...]:
        """The tools to offer for the next step (the MCP configuration is read again at the
        first step of a turn); ``servers`` names the MCP servers to use (None: all those
        configured; a session's preset may choose)."""
        if self.mcp is None:
            return TOOLS
        try:
            return TOOLS + await self.mcp.tools(reload=first_step, only=servers)
        except Exception:
            # MCP must never fail a turn: the step goes on with the file tools.
            logger.exception("the MCP servers of %s could not be prepared", self.project_dir.name)
            return TOOLS

    async def decide(
        self, name: str, policy: ToolPolicy, preset: ToolPolicy | None = None
    ) -> Decision:
        """Whether a call of ``name`` runs, asks first or is refused: as ``policy`` (the
        global one) decides, made stricter by the session's ``preset`` table and the project's
        ``.ai/tools.toml`` (read again for every call, so that an edit counts at once); see
        greenroom.agent.policy. A file that cannot be used is logged, and every call then asks
        (see :meth:`ToolPolicy.stricter`)."""
        try:
            project = await trio.to_thread.run_sync(read_project_policy, self.project_dir)
        except PolicyError as error:
            policy_logger.error("project %s: %s", self.project_dir.name, error.message)
            policy, project = policy.stricter(), ToolPolicy()
        destructive = self.mcp is not None and self.mcp.destructive(name)
        decision = policy.decide(name, destructive=destructive)
        return tightened(decision, name, *(p for p in (preset, project) if p is not None))

    def is_mcp(self, name: str) -> bool:
        return self.mcp is not None and self.mcp.handles(name)

    async def run(self, name: str, arguments: str) -> str:
        """The result the model reads for one call."""
        try:
            if self.mcp is not None and self.mcp.handles(name):
                return await self.mcp.call(name, arguments)
            with trio.CancelScope(shield=True):
                result = await run_tool(self.project_dir, name, arguments)
        except GreenroomError as failure:
            return f"error: {failure.message}"
        return result


@asynccontextmanager
async def open_toolbox(
    project_dir: Path, project: str, registry: McpRegistry | None
) -> AsyncIterator[Toolbox]:
    """The session's toolbox; with a registry, its MCP servers live until this exits."""
    if registry is None:
        yield Toolbox(project_dir=project_dir)
        return
    async with open_mcp_hub(registry, project, project_dir) as hub:
        yield Toolbox(project_dir=project_dir, mcp=hub)
