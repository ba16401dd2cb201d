"""Where the cluster meets the runtime: the node's :class:`~greenroom.cluster.node.Host`
(taking a session over, letting one go, running a forwarded command), the session manager's
:class:`~greenroom.actors.manager.Seat`, and :func:`execute_wire`, which runs a command
where its session lives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from greenroom.actors.mailbox import ActorRef
from greenroom.actors.manager import Adopt, LetGo, ManagerMessage, Moved
from greenroom.actors.persistence import Mirror
from greenroom.cluster.database import SessionRow
from greenroom.cluster.errors import Unavailable
from greenroom.cluster.journal import DatabaseStore
from greenroom.cluster.node import SESSION_COMMANDS, Claim, Node, snapshot_bytes
from greenroom.protocol import commands as cmd
from greenroom.protocol.codec import result_to_wire
from greenroom.protocol.commands import Command
from greenroom.protocol.events import SessionCreated, Summary
from greenroom.store.snapshots import Dormant, snapshot_payload, wake
from greenroom.supervisor import RestartInfo

Execute = Callable[[Command[Any]], Awaitable[Any]]

ATTEMPTS = 3
"""How often a command follows its session when it moves while the command is under way."""


@attrs.define(eq=False)
class NodeHost:
    """The runtime as the node sees it."""

    node: Node
    mirror: Mirror
    manager: ActorRef[ManagerMessage]
    store: DatabaseStore
    execute: Execute

    async def adopt(self, claim: Claim) -> None:
        """Rebuild the session in the mirror (its snapshot, then the events its stream holds
        past it), show this node's clients the events they have not seen, and have the
        manager start it as restarted."""
        row, events, mirror = claim.row, claim.events, self.mirror
        session = row.session
        mirror.forget(session)
        if not (events and isinstance(events[0].data, SessionCreated)):
            dormant = claim.dormant
            if events:
                summary = dormant.summary
                messages = await self.store.read_messages(
                    summary.project, summary.name, summary.message_count
                )
                mirror.sessions[session] = wake(dormant, messages)
            else:
                mirror.dormant[session] = dormant
        for event in events:
            mirror.apply(event)
        for event in events:
            await self.node.show(event)
        state = mirror.sessions.get(session)
        summary = state.summary() if state is not None else mirror.dormant[session].summary
        whence = f"node {claim.previous}" if claim.previous else "a node that left"
        restart = RestartInfo(reason=f"taken over from {whence}", restarts=1)
        await self.manager.ask(Adopt(summary=summary, restart=restart))

    async def let_go(self, session: str) -> Summary | None:
        await self.manager.ask(LetGo(session=session))
        return self.mirror.forget(session)

    async def serve(self, command: Command[Any]) -> dict[str, Any]:
        if isinstance(command, SESSION_COMMANDS) and not await self.node.claim(command.session):
            raise Unavailable(f"session {command.session} moved to another node; try again")
        return result_to_wire(command, await self.execute(command))


@attrs.define(eq=False)
class Seat:
    """The session manager's view of the cluster."""

    node: Node
    store: DatabaseStore

    async def make(self, summary: Summary) -> str | None:
        payload = snapshot_payload(Dormant(summary=summary, seq=0))
        row = SessionRow(
            session=summary.session,
            project=summary.project,
            owner=None,
            epoch=0,
            seq=0,
            snapshot=snapshot_bytes(payload),
        )
        made = await self.node.make(row)
        if made.session != summary.session:
            return made.owner or ""
        return None

    async def newest_chat(self, project: str) -> tuple[str, int] | None:
        return await self.store.newest_chat(project)

    async def forget_project(self, project: str) -> None:
        await self.store.forget_project(project)

    def summaries(self) -> list[Summary]:
        return self.node.summaries()


async def execute_wire(node: Node, execute: Execute, command: Command[Any]) -> dict[str, Any]:
    """Run ``command`` on the node that owns its session (here, or forwarded) and return its
    wire result. ``stopAll`` runs on every live node."""
    if isinstance(command, cmd.StopAll):
        stopped: int = await execute(command)
        for other in await node.db(node.database.live_nodes):
            if other != node.name:
                stopped += int((await node.forward(other, command)).get("stopped", 0))
        return result_to_wire(command, stopped)
    for _ in range(ATTEMPTS):
        owner = await node.owner_of(command)
        if owner is None:
            try:
                return result_to_wire(command, await execute(command))
            except Moved as moved:
                if not moved.node:
                    continue
                owner = moved.node
        return await node.forward(owner, command)
    raise Unavailable(f"{command.op}: the session kept moving between nodes; try again")
