"""The cluster's PostgreSQL: nodes and their leases, session claims, snapshots, history.

What must outlast any node lives here (docs/cluster.md, "Tables"): which node owns each
session at which epoch (the fencing token), the session's snapshot and the append-only rows of
its history. Every time that decides a lease is the database's ``now()``, never a node's clock.

The code is blocking, on psycopg's sync API and a thread-safe connection pool: psycopg's async
mode runs on asyncio only, so the trio side calls each method in ``trio.to_thread.run_sync``.
Each method is one transaction. A lost or refused connection is raised as
:class:`EngineUnavailable` once, here, and nothing is ever half-written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

import attrs
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from greenroom.cluster.errors import EngineUnavailable
from greenroom.protocol.errors import Conflict, GreenroomError, InvalidArgument

SCHEMA_VERSION = 1
"""The version of the tables below; a node refuses a database whose version is higher."""

CONNECT_SECONDS = 5
"""How long one connection attempt may take (libpq's ``connect_timeout``, whole seconds)."""

POOL_WAIT_SECONDS = 10.0
"""How long a call waits for a pooled connection before the database counts as unreachable."""

_SCHEMA_LOCK = 0x67726E726D
"""The advisory lock key that serialises schema creation across nodes starting at once."""

_MARKER_KEY = "projects_marker"

_SCHEMA = (
    "CREATE TABLE greenroom_schema (version integer NOT NULL)",
    """CREATE TABLE nodes (
        id text PRIMARY KEY,
        instance text NOT NULL,
        heartbeat timestamptz NOT NULL,
        started timestamptz NOT NULL
    )""",
    """CREATE TABLE sessions (
        id text PRIMARY KEY,
        project text NOT NULL UNIQUE,
        owner text,
        epoch bigint NOT NULL,
        seq bigint NOT NULL,
        snapshot bytea NOT NULL
    )""",
    "CREATE INDEX sessions_owner ON sessions (owner)",
    """CREATE TABLE messages (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        project text NOT NULL,
        chat text NOT NULL,
        position bigint NOT NULL,
        body bytea NOT NULL,
        UNIQUE (project, chat, position)
    )""",
    "CREATE INDEX messages_newest ON messages (project, id)",
    "CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL)",
)

# A session's owner is live while its node row's heartbeat is inside the lease.
_OWNER_LIVE = """EXISTS (
    SELECT 1 FROM nodes
    WHERE nodes.id = sessions.owner
      AND nodes.heartbeat > now() - make_interval(secs => %(lease)s)
)"""

_RETURNING = (
    "RETURNING sessions.id, sessions.project, sessions.owner, sessions.epoch, sessions.seq,"
    " sessions.snapshot"
)
_SELECT = "SELECT id, project, owner, epoch, seq, snapshot FROM sessions"

# A claim succeeds only where no other live node owns the session; a restarted instance of this
# node takes its own back (the epoch fences the old instance).
_CLAIM = f"""UPDATE sessions SET owner = %(node)s, epoch = epoch + 1
WHERE id = %(session)s
  AND (owner IS NULL OR owner = %(node)s OR NOT {_OWNER_LIVE})
{_RETURNING}"""

# SKIP LOCKED: a row another node is claiming right now is left to it, so nodes that claim at
# once split the orphans instead of queueing behind each other.
_CLAIM_ORPHANS = f"""WITH orphans AS (
    SELECT id FROM sessions
    WHERE owner IS NULL OR (owner <> %(node)s AND NOT {_OWNER_LIVE})
    ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE sessions SET owner = %(node)s, epoch = sessions.epoch + 1
FROM orphans WHERE sessions.id = orphans.id
{_RETURNING}"""


class SchemaTooNew(GreenroomError):
    """The database was set up by a newer greenroom than this one."""


@attrs.frozen(kw_only=True)
class SessionRow:
    """A session as the database holds it: its owner, epoch and latest snapshot."""

    session: str
    project: str
    owner: str | None
    epoch: int
    seq: int
    """The seq the snapshot holds."""
    snapshot: bytes
    """Opaque to the database (the caller's msgpack payload)."""


@attrs.frozen(kw_only=True)
class MessageRow:
    """One message of a chat's history, at its index in the chat."""

    project: str
    chat: str
    position: int
    body: bytes
    """Opaque to the database (the caller's JSON of the message)."""


def public_url(url: str) -> str:
    """``url`` as ``postgresql://user@host:port/db``, without its password (for messages).

    Raises InvalidArgument when ``url`` is no PostgreSQL URL or connection string.
    """
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        reason = " ".join(str(error).split())
        raise InvalidArgument(f"the PostgreSQL URL is not valid: {reason}") from error
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    database = f"/{parts['dbname']}" if parts.get("dbname") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}{database}"


def _session_row(row: TupleRow) -> SessionRow:
    session, project, owner, epoch, seq, snapshot = row
    return SessionRow(
        session=session, project=project, owner=owner, epoch=epoch, seq=seq, snapshot=snapshot
    )


class Database:
    """One node's view of the cluster's PostgreSQL; every method blocks (run it in a thread)."""

    def __init__(self, url: str, node: str, *, lease: float = 10.0, pool_size: int = 4) -> None:
        self.url = url
        self.public_url = public_url(url)
        self.node = node
        self.lease = lease
        self.pool_size = pool_size
        self._pool: ConnectionPool[psycopg.Connection[TupleRow]] | None = None
        # The lease's own connection: a heartbeat never waits behind the writes.
        self._lease_pool: ConnectionPool[psycopg.Connection[TupleRow]] | None = None
        self._instance: str | None = None

    # -- lifetime -------------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, and create the tables if this is the cluster's first node."""
        if self._pool is not None:
            return
        with self._unavailable():
            with psycopg.connect(self.url, connect_timeout=CONNECT_SECONDS) as conn:
                self._set_up(conn)
            pool = self._make_pool("", self.pool_size, POOL_WAIT_SECONDS)
            try:
                lease_pool = self._make_pool("-lease", 1, self.lease / 4)
            except BaseException:
                pool.close(timeout=0)
                raise
        self._pool, self._lease_pool = pool, lease_pool

    def _make_pool(
        self, suffix: str, size: int, wait: float
    ) -> ConnectionPool[psycopg.Connection[TupleRow]]:
        # Keepalives: a peer that vanished without a word (a network split) is noticed in
        # seconds, not after the system's TCP timeout of many minutes.
        pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
            self.url,
            kwargs={
                "connect_timeout": CONNECT_SECONDS,
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 3,
            },
            min_size=1,
            max_size=size,
            timeout=wait,
            name=f"greenroom-{self.node}{suffix}",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=POOL_WAIT_SECONDS)
        except BaseException:
            pool.close(timeout=0)
            raise
        return pool

    def close(self) -> None:
        """Close the pools' connections (a call still running in a thread finishes first)."""
        pools = (self._pool, self._lease_pool)
        self._pool = self._lease_pool = None
        for pool in pools:
            if pool is not None:
                pool.close(timeout=CONNECT_SECONDS)

    def _set_up(self, conn: psycopg.Connection[TupleRow]) -> None:
        # The lock is held to the end of this transaction: a second node starting at the same
        # moment waits here, then finds the tables made.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        exists = conn.execute("SELECT to_regclass('greenroom_schema')").fetchone()
        if exists is None or exists[0] is None:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO greenroom_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
            return
        row = conn.execute("SELECT max(version) FROM greenroom_schema").fetchone()
        version = row[0] if row is not None else None
        if version is not None and version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the database's schema version {version} is newer than this greenroom's"
                f" ({SCHEMA_VERSION}); upgrade greenroom"
            )

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        """Raise a lost or refused connection as EngineUnavailable, naming PostgreSQL."""
        try:
            yield
        except psycopg.OperationalError as error:
            reason = " ".join(str(error).split()) or type(error).__name__
            raise EngineUnavailable(
                f"PostgreSQL at {self.public_url} is unreachable: {reason}"
            ) from error

    @contextlib.contextmanager
    def _transaction(self, *, lease: bool = False) -> Iterator[psycopg.Connection[TupleRow]]:
        """A pooled connection in one transaction: committed on success, else rolled back.
        ``lease``: the lease's own connection (heartbeats and ownership checks)."""
        pool = self._lease_pool if lease else self._pool
        if pool is None:
            raise EngineUnavailable(f"PostgreSQL at {self.public_url} is not open")
        with self._unavailable(), pool.connection() as conn:
            yield conn

    # -- nodes ----------------------------------------------------------------------------------

    def heartbeat(self, instance: str) -> bool:
        """Renew this node's lease; False when another live process holds this node's id."""
        with self._transaction(lease=True) as conn:
            row = conn.execute(
                """INSERT INTO nodes AS n (id, instance, heartbeat, started)
                VALUES (%(node)s, %(instance)s, now(), now())
                ON CONFLICT (id) DO UPDATE SET
                    instance = excluded.instance,
                    heartbeat = now(),
                    started = CASE WHEN n.instance = excluded.instance
                                   THEN n.started ELSE now() END
                WHERE n.instance = excluded.instance
                   OR n.heartbeat <= now() - make_interval(secs => %(lease)s)
                RETURNING id""",
                {"node": self.node, "instance": instance, "lease": self.lease},
            ).fetchone()
        if row is not None:
            self._instance = instance
        return row is not None

    def live_nodes(self) -> list[str]:
        with self._transaction(lease=True) as conn:
            rows = conn.execute(
                """SELECT id FROM nodes
                WHERE heartbeat > now() - make_interval(secs => %s)
                ORDER BY id""",
                (self.lease,),
            ).fetchall()
        return [node for (node,) in rows]

    def leave(self) -> None:
        """Release every claim of this node and delete its row, if this process holds it.

        A process whose row another instance has since taken releases nothing: the claims are
        the new instance's now.
        """
        if self._instance is None:
            return
        with self._transaction() as conn:
            conn.execute(
                """WITH gone AS (
                    DELETE FROM nodes WHERE id = %s AND instance = %s RETURNING id
                )
                UPDATE sessions SET owner = NULL WHERE owner IN (SELECT id FROM gone)""",
                (self.node, self._instance),
            )
        self._instance = None

    # -- sessions -------------------------------------------------------------------------------

    def create_session(self, row: SessionRow) -> SessionRow:
        """Make the project's session, owned by this node; the existing one if it has one."""
        with self._transaction() as conn:
            try:
                made = conn.execute(
                    "INSERT INTO sessions (id, project, owner, epoch, seq, snapshot)"
                    " VALUES (%s, %s, %s, 1, %s, %s)"
                    " ON CONFLICT (project) DO NOTHING " + _RETURNING,
                    (row.session, row.project, self.node, row.seq, row.snapshot),
                ).fetchone()
            except psycopg.errors.UniqueViolation as error:
                raise Conflict(f"a session {row.session!r} already exists") from error
            if made is None:
                # Another node made it first; its row is committed (the insert waited for it).
                made = conn.execute(_SELECT + " WHERE project = %s", (row.project,)).fetchone()
        if made is None:
            raise Conflict(f"the session of project {row.project!r} was deleted as it was made")
        return _session_row(made)

    def get(self, session: str) -> SessionRow | None:
        with self._transaction() as conn:
            row = conn.execute(_SELECT + " WHERE id = %s", (session,)).fetchone()
        return None if row is None else _session_row(row)

    def of_project(self, project: str) -> SessionRow | None:
        with self._transaction() as conn:
            row = conn.execute(_SELECT + " WHERE project = %s", (project,)).fetchone()
        return None if row is None else _session_row(row)

    def sessions(self) -> list[SessionRow]:
        with self._transaction() as conn:
            rows = conn.execute(_SELECT + " ORDER BY id").fetchall()
        return [_session_row(row) for row in rows]

    def claim(self, session: str) -> SessionRow | None:
        """Take ``session`` at the next epoch, unless another live node owns it."""
        with self._transaction() as conn:
            row = conn.execute(
                _CLAIM,
                {"node": self.node, "session": session, "lease": self.lease},
            ).fetchone()
        return None if row is None else _session_row(row)

    def claim_orphans(self, limit: int) -> list[SessionRow]:
        """Take up to ``limit`` sessions with no live owner; nodes claiming at once split them."""
        with self._transaction() as conn:
            rows = conn.execute(
                _CLAIM_ORPHANS,
                {"node": self.node, "limit": limit, "lease": self.lease},
            ).fetchall()
        return sorted((_session_row(row) for row in rows), key=lambda row: row.session)

    def owned(self) -> dict[str, int]:
        """The sessions this node owns now, with their epochs."""
        with self._transaction(lease=True) as conn:
            rows = conn.execute(
                "SELECT id, epoch FROM sessions WHERE owner = %s", (self.node,)
            ).fetchall()
        return dict(rows)

    def write(
        self,
        epochs: Mapping[str, int],
        snapshots: Mapping[str, tuple[int, bytes]],
        messages: Mapping[str, Sequence[MessageRow]],
        deleted: Iterable[str],
    ) -> set[str]:
        """Write what this node still owns at the epochs given; return the fenced sessions.

        A session is fenced when its row is gone, or another node or a later epoch holds it:
        nothing of it is written. The rows are locked before the check, so no claim slips in
        between; a retried write is harmless (a message row already there is kept).
        """
        deleted = set(deleted)
        named = sorted(set(snapshots) | set(messages) | deleted)
        if not named:
            return set()
        with self._transaction() as conn:
            held = conn.execute(
                # In id order, so two writers lock rows in one order and never deadlock.
                """SELECT id, epoch FROM sessions
                WHERE id = ANY(%s) AND owner = %s
                ORDER BY id FOR UPDATE""",
                (named, self.node),
            ).fetchall()
            kept = {session for session, epoch in held if epochs.get(session) == epoch}
            self._write_kept(conn, kept, snapshots, messages, deleted)
        return set(named) - kept

    @staticmethod
    def _write_kept(
        conn: psycopg.Connection[TupleRow],
        kept: set[str],
        snapshots: Mapping[str, tuple[int, bytes]],
        messages: Mapping[str, Sequence[MessageRow]],
        deleted: set[str],
    ) -> None:
        snapshot_rows = [
            (seq, data, session) for session, (seq, data) in snapshots.items() if session in kept
        ]
        message_rows = [
            (row.project, row.chat, row.position, row.body)
            for session, rows in messages.items()
            if session in kept
            for row in rows
        ]
        with conn.cursor() as cursor:
            cursor.executemany(
                "UPDATE sessions SET seq = %s, snapshot = %s WHERE id = %s", snapshot_rows
            )
            cursor.executemany(
                """INSERT INTO messages (project, chat, position, body)
                VALUES (%s, %s, %s, %s)
                ON CONFLICT (project, chat, position) DO NOTHING""",
                message_rows,
            )
            cursor.execute("DELETE FROM sessions WHERE id = ANY(%s)", (sorted(deleted & kept),))

    # -- history --------------------------------------------------------------------------------

    def messages(self, project: str, chat: str) -> list[bytes]:
        """The bodies of a chat's messages, in position order."""
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT body FROM messages WHERE project = %s AND chat = %s ORDER BY position",
                (project, chat),
            ).fetchall()
        return [body for (body,) in rows]

    def newest_chat(self, project: str) -> tuple[str, int] | None:
        """The chat whose last message was written last, and its message count."""
        with self._transaction() as conn:
            row = conn.execute(
                """SELECT newest.chat, (
                    SELECT count(*) FROM messages
                    WHERE project = newest.project AND chat = newest.chat
                )
                FROM (
                    SELECT project, chat FROM messages
                    WHERE project = %s ORDER BY id DESC LIMIT 1
                ) AS newest""",
                (project,),
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def forget_project(self, project: str) -> None:
        """Delete the project's history (its project was deleted)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM messages WHERE project = %s", (project,))

    # -- settings -------------------------------------------------------------------------------

    def marker(self, value: str) -> str:
        """The projects folder's marker: ``value`` if none is stored yet, else the stored one."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (_MARKER_KEY, value),
            )
            row = conn.execute(
                "SELECT value FROM settings WHERE key = %s", (_MARKER_KEY,)
            ).fetchone()
        if row is None:
            raise EngineUnavailable(f"PostgreSQL at {self.public_url} lost the marker")
        stored: str = row[0]
        return stored
