"""A cluster node's journal and store: durable before visible, on the shared engines.

:class:`StreamJournal` takes the local journal's place (the bus's gate): each batch of events
is appended to the sessions' streams by the fenced append script, and only the events that
were accepted are applied to the mirror and released, on this node as on every other. The
events of a session whose append is refused (another node claimed it) are dropped, and the
node lets its copy go; those of a session the node lost while they were being appended are
shown as another node's are, once (its live stream reader may have shown them first). An
engine that is away holds everything back, retried with backoff: the
sessions wait once the mailbox is full, and nothing is shown that is not written.

:class:`DatabaseStore` is the persistence actor's store: each flush is one fenced transaction
(snapshots, history messages, deletions), and the messages of a dormant session are read back
from it.
"""

from __future__ import annotations

import logging

import attrs
import msgpack  # type: ignore[import-untyped]  # no stubs, no py.typed
import orjson
import trio

from greenroom.actors.bus import EventBus
from greenroom.actors.journal import JournalStatistics, release, write_batches
from greenroom.actors.mailbox import Inbox
from greenroom.actors.persistence import Batch, Mirror
from greenroom.actors.tally import Tally
from greenroom.cluster.database import MessageRow
from greenroom.cluster.errors import EngineUnavailable
from greenroom.cluster.node import Node, snapshot_bytes
from greenroom.cluster.streams import Append
from greenroom.protocol.chat import Message
from greenroom.protocol.events import Event
from greenroom.store.history import encode_lines, message_from_json
from greenroom.store.journal import encode_payload

logger = logging.getLogger("greenroom.cluster")

TRIM_EVERY = 1000
"""A session's stream is trimmed once its snapshot is this many events past the last trim."""
KEEP_EVENTS = 10_000
"""Events kept in a session's stream below its snapshot, for clients that resume with since."""


@attrs.define(eq=False)
class StreamJournal:
    """Appends each batch, then applies and releases what was accepted."""

    node: Node
    mirror: Mirror
    bus: EventBus
    stats: JournalStatistics = attrs.Factory(JournalStatistics)
    tally: Tally = attrs.Factory(Tally)
    _packer: msgpack.Packer = attrs.field(init=False, factory=msgpack.Packer)

    async def run(
        self,
        inbox: Inbox[Event],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        await write_batches(inbox, self._append_and_release)

    async def _append_and_release(self, batch: list[Event]) -> None:
        owned = self.node.owned
        pack = self._packer.pack
        entries: dict[str, list[tuple[int, bytes]]] = {}
        for event in batch:
            if event.session is not None and event.seq is not None and event.session in owned:
                record = encode_payload(event, pack)
                entries.setdefault(event.session, []).append((event.seq, record))
        owned_then = {session: owned[session] for session in entries}
        appends = [
            Append(session=session, epoch=owned_then[session], entries=tuple(items))
            for session, items in entries.items()
        ]
        delay = 0.05
        while True:
            try:
                fenced = await self.node.streams.append(appends) if appends else set()
                break
            except EngineUnavailable as failure:
                self.stats.write_failures += 1
                self.stats.last_failure = str(failure)
                self.node.stats.bus_ok = False
                logger.error("appending events failed (will retry): %s", failure)
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.node.stats.bus_ok = True
        for session in fenced:
            self.node.stats.fenced += 1
            self.node.lose(
                session, "its events were refused by a newer owner's epoch", owned_then[session]
            )
        self.stats.batches += 1
        self.stats.records += sum(len(items) for items in entries.values())
        mirror, bus, tally, node = self.mirror, self.bus, self.tally, self.node
        for event in batch:
            of = event.session
            shown = of is None or (of in entries and of not in fenced)
            if not shown and event.seq is not None:
                bus.discard()  # not this node's to show: refused, or lost before
                continue
            if of in owned_then and node.owned.get(of) != owned_then[of]:
                # Lost while the append was under way: to this node the session is now
                # another node's, whose events its live stream reader may have shown already.
                # Shown as that reader shows them (once, past the last seq shown); and not
                # applied here, as whoever takes the session rebuilds it from its stream.
                await node.show(event, owned_then[of])
                bus.discard()
                continue
            node.released_now(event)
            await release((event,), mirror, bus, tally)

    def checkpoint(self, applied: int) -> None:
        """Nothing to do: the streams are trimmed by the store after each flush."""


@attrs.define(eq=False)
class DatabaseStore:
    """The persistence actor's writes and reads, in PostgreSQL, fenced by the node's epochs."""

    node: Node
    _trimmed: dict[str, int] = attrs.Factory(dict)

    async def write(self, batch: Batch, mirror: Mirror) -> None:
        """Write ``batch`` in one transaction; raises EngineUnavailable (the caller gives the
        batch back). Sessions this node no longer owns are left out, and let go."""
        node = self.node
        owned = dict(node.owned)
        snapshots: dict[str, tuple[int, bytes]] = {}
        for source in (batch.partials or {}, batch.snapshots):
            for session, payload in source.items():
                if session in owned:
                    snapshots[session] = (int(payload["seq"]), snapshot_bytes(payload))
        sessions_of = _sessions_by_project(mirror) if batch.history else {}
        messages: dict[str, list[MessageRow]] = {}
        for (project, chat), items in batch.history.items():
            owner = sessions_of.get(project)
            if owner is None or owner not in owned:
                continue
            start = batch.history_start.get((project, chat), 0)
            rows = messages.setdefault(owner, [])
            for offset, message in enumerate(items):
                body = encode_lines([message]).rstrip(b"\n")
                rows.append(
                    MessageRow(project=project, chat=chat, position=start + offset, body=body)
                )
        deleted = [session for session in batch.deleted if session in owned]
        fenced = await node.db(node.database.write, owned, snapshots, messages, deleted)
        for session in fenced:
            node.stats.fenced += 1
            node.lose(session, "its writes were refused by a newer owner's epoch", owned[session])
        for session in deleted:
            if session not in fenced:
                node.owned.pop(session, None)
                await node.streams.forget(session)
        for session, (seq, _) in snapshots.items():
            keep_from = seq - KEEP_EVENTS
            if session not in fenced and keep_from - self._trimmed.get(session, 0) >= TRIM_EVERY:
                await node.streams.trim(session, keep_from)
                self._trimmed[session] = keep_from

    async def read_messages(self, project: str, chat: str, count: int) -> list[Message]:
        bodies = await self.node.db(self.node.database.messages, project, chat)
        return [message_from_json(orjson.loads(body)) for body in bodies[:count]]

    async def newest_chat(self, project: str) -> tuple[str, int] | None:
        return await self.node.db(self.node.database.newest_chat, project)

    async def forget_project(self, project: str) -> None:
        await self.node.db(self.node.database.forget_project, project)


def _sessions_by_project(mirror: Mirror) -> dict[str, str]:
    found = {state.project: session for session, state in mirror.sessions.items()}
    for session, dormant in mirror.dormant.items():
        found.setdefault(dormant.summary.project, session)
    return found
