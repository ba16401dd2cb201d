"""The cluster's PostgreSQL side, against a real PostgreSQL (a fresh database per test).

A lapsed lease is made by setting a node's heartbeat back in SQL, never by waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from greenroom.cluster.database import (
    SCHEMA_VERSION,
    Database,
    EngineUnavailable,
    MessageRow,
    SchemaTooNew,
    SessionRow,
)
from greenroom.protocol.errors import InvalidArgument
from tests.engines import free_port

Nodes = Callable[[str], Database]


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on its own connection (autocommit); its rows, if it returns any."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def lapse(url: str, node: str) -> None:
    """Put ``node``'s heartbeat an hour back: its lease has lapsed."""
    sql(url, "UPDATE nodes SET heartbeat = now() - interval '1 hour' WHERE id = %s", (node,))


@pytest.fixture
def nodes(database_url: str) -> Iterator[Nodes]:
    """Opens a Database per node id asked for (heartbeat done); closes them all at the end."""
    opened: list[Database] = []

    def node(name: str) -> Database:
        database = Database(database_url, name)
        database.open()
        opened.append(database)
        assert database.heartbeat(f"{name}-instance")
        return database

    yield node
    for database in opened:
        database.close()


def new_session(session: str, project: str, *, seq: int = 0, data: bytes = b"") -> SessionRow:
    return SessionRow(session=session, project=project, owner=None, epoch=0, seq=seq, snapshot=data)


# -- schema and connection ------------------------------------------------------------------------


def test_schema_is_created_once(database_url: str) -> None:
    first = Database(database_url, "a")
    first.open()
    second = Database(database_url, "b")
    second.open()  # the tables exist: it uses them
    try:
        assert sql(database_url, "SELECT version FROM greenroom_schema") == [(SCHEMA_VERSION,)]
        tables = sql(
            database_url,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
        )
        assert [name for (name,) in tables] == [
            "greenroom_schema", "messages", "nodes", "sessions", "settings",
        ]  # fmt: skip
        assert second.heartbeat("b1") and second.live_nodes() == ["b"]
    finally:
        first.close()
        second.close()


def test_nodes_starting_at_once_make_the_schema_once(database_url: str) -> None:
    databases = [Database(database_url, f"n{i}") for i in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(databases))

    def open_one(database: Database) -> None:
        start.wait()
        try:
            database.open()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_one, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for database in databases:
        database.close()
    assert errors == []
    assert sql(database_url, "SELECT version FROM greenroom_schema") == [(SCHEMA_VERSION,)]


def test_a_newer_schema_is_refused(database_url: str) -> None:
    first = Database(database_url, "a")
    first.open()
    first.close()
    sql(database_url, "UPDATE greenroom_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew) as raised:
        Database(database_url, "a").open()
    assert raised.value.message == (
        f"the database's schema version {SCHEMA_VERSION + 1} is newer than this greenroom's"
        f" ({SCHEMA_VERSION}); upgrade greenroom"
    )
    assert raised.value.code == "internal"


def test_an_unreachable_database_is_named_without_its_password() -> None:
    port = free_port()
    database = Database(f"postgresql://gr:hunter2@127.0.0.1:{port}/greenroom", "a")
    with pytest.raises(EngineUnavailable) as raised:
        database.open()
    message = raised.value.message
    assert message.startswith(
        f"PostgreSQL at postgresql://gr@127.0.0.1:{port}/greenroom is unreachable: "
    )
    assert "hunter2" not in message and "hunter2" not in str(raised.value)
    assert raised.value.code == "unavailable"


def test_a_bad_url_is_refused_clearly() -> None:
    with pytest.raises(InvalidArgument, match="the PostgreSQL URL is not valid"):
        Database("not a url", "a")


def test_a_closed_database_is_unavailable(database_url: str) -> None:
    database = Database(database_url, "a")
    with pytest.raises(EngineUnavailable, match="is not open"):
        database.sessions()


def test_a_lost_connection_is_unavailable_and_writes_nothing(
    database_url: str, nodes: Nodes
) -> None:
    a = nodes("a")
    made = a.create_session(new_session("s1", "p1"))
    sql(
        database_url,
        """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid()""",
    )
    with pytest.raises(EngineUnavailable, match=r"^PostgreSQL at .* is unreachable: "):
        a.write({"s1": made.epoch}, {"s1": (5, b"new")}, {}, [])
    assert sql(database_url, "SELECT seq, snapshot FROM sessions") == [(0, b"")]
    # The broken connection was dropped: the retry goes through.
    assert a.write({"s1": made.epoch}, {"s1": (5, b"new")}, {}, []) == set()
    assert sql(database_url, "SELECT seq, snapshot FROM sessions") == [(5, b"new")]


# -- nodes ----------------------------------------------------------------------------------------


def test_one_node_id_cannot_have_two_live_instances(database_url: str) -> None:
    first, second = Database(database_url, "a"), Database(database_url, "a")
    first.open()
    second.open()
    try:
        assert first.heartbeat("one")
        assert not second.heartbeat("two")
        assert sql(database_url, "SELECT id, instance FROM nodes") == [("a", "one")]
        assert first.heartbeat("one")  # renewing its own lease

        lapse(database_url, "a")
        assert first.live_nodes() == []
        assert second.heartbeat("two")  # the first one's lease lapsed: replaced
        assert sql(database_url, "SELECT id, instance FROM nodes") == [("a", "two")]
        assert not first.heartbeat("one")  # and it cannot come back while the second lives
        assert first.live_nodes() == ["a"]
    finally:
        first.close()
        second.close()


def test_a_heartbeat_keeps_started_and_moves_heartbeat(database_url: str, nodes: Nodes) -> None:
    a = nodes("a")
    lapse(database_url, "a")
    sql(database_url, "UPDATE nodes SET started = now() - interval '2 hours'")
    assert a.heartbeat("a-instance")
    [(fresh, old)] = sql(
        database_url,
        "SELECT heartbeat > now() - interval '1 minute', started < now() - interval '1 hour'"
        " FROM nodes",
    )
    assert fresh and old


def test_live_nodes_are_those_inside_the_lease(database_url: str, nodes: Nodes) -> None:
    a, _b, _c = nodes("a"), nodes("b"), nodes("c")
    assert a.live_nodes() == ["a", "b", "c"]
    lapse(database_url, "b")
    assert a.live_nodes() == ["a", "c"]


# -- sessions and claims --------------------------------------------------------------------------


def test_create_session_twice_for_one_project_returns_the_first(nodes: Nodes) -> None:
    a, b = nodes("a"), nodes("b")
    first = a.create_session(new_session("s1", "p", seq=3, data=b"one"))
    assert first == SessionRow(
        session="s1", project="p", owner="a", epoch=1, seq=3, snapshot=b"one"
    )
    assert b.create_session(new_session("s2", "p", data=b"two")) == first
    assert a.sessions() == [first]
    assert a.get("s1") == first and a.get("s2") is None
    assert a.of_project("p") == first and a.of_project("q") is None


def test_claim_waits_for_the_owners_lease(database_url: str, nodes: Nodes) -> None:
    a, b = nodes("a"), nodes("b")
    a.create_session(new_session("s1", "p", seq=7, data=b"snap"))
    assert b.claim("s1") is None  # a is live
    assert b.claim("missing") is None
    lapse(database_url, "a")
    taken = b.claim("s1")
    assert taken == SessionRow(
        session="s1", project="p", owner="b", epoch=2, seq=7, snapshot=b"snap"
    )
    assert b.owned() == {"s1": 2} and a.owned() == {}


def test_a_restarted_instance_reclaims_its_own(database_url: str, nodes: Nodes) -> None:
    a = nodes("a")
    a.create_session(new_session("s1", "p"))
    again = Database(database_url, "a")
    again.open()
    try:
        claimed = again.claim("s1")
        assert claimed is not None and claimed.owner == "a" and claimed.epoch == 2
    finally:
        again.close()


def test_an_unowned_session_is_claimed(database_url: str, nodes: Nodes) -> None:
    a, b = nodes("a"), nodes("b")
    a.create_session(new_session("s1", "p"))
    sql(database_url, "UPDATE sessions SET owner = NULL")
    claimed = b.claim("s1")
    assert claimed is not None and claimed.owner == "b" and claimed.epoch == 2


def test_claim_orphans_takes_only_the_orphans(database_url: str, nodes: Nodes) -> None:
    a, b, dead = nodes("a"), nodes("b"), nodes("dead")
    a.create_session(new_session("mine", "p1"))
    b.create_session(new_session("theirs", "p2"))
    dead.create_session(new_session("lapsed", "p3"))
    dead.create_session(new_session("free", "p4"))
    sql(database_url, "UPDATE sessions SET owner = NULL WHERE id = 'free'")
    lapse(database_url, "dead")
    claimed = a.claim_orphans(10)
    assert [(row.session, row.owner, row.epoch) for row in claimed] == [
        ("free", "a", 2), ("lapsed", "a", 2),
    ]  # fmt: skip
    assert a.owned() == {"mine": 1, "free": 2, "lapsed": 2}
    assert b.claim_orphans(10) == []


def test_claim_orphans_respects_the_limit_and_skips_locked_rows(
    database_url: str, nodes: Nodes
) -> None:
    # Were the locked rows waited on, the claim would fail after this instead of hanging.
    name = database_url.rsplit("/", 1)[1]
    sql(database_url, f"ALTER DATABASE {name} SET lock_timeout = '60s'")
    dead, a = nodes("dead"), nodes("a")
    for i in range(6):
        dead.create_session(new_session(f"s{i}", f"p{i}"))
    lapse(database_url, "dead")
    # Another node is in the middle of claiming s0 and s1: they are left to it, not waited on.
    with psycopg.connect(database_url) as other:
        other.execute("SELECT id FROM sessions WHERE id IN ('s0', 's1') FOR UPDATE")
        assert [row.session for row in a.claim_orphans(3)] == ["s2", "s3", "s4"]
        other.rollback()
    assert [row.session for row in a.claim_orphans(10)] == ["s0", "s1", "s5"]


def test_nodes_claiming_orphans_at_once_split_them(database_url: str, nodes: Nodes) -> None:
    dead = nodes("dead")
    claimers = [nodes(f"n{i}") for i in range(3)]
    sessions = {f"s{i:02}" for i in range(30)}
    for session in sorted(sessions):
        dead.create_session(new_session(session, f"p-{session}"))
    lapse(database_url, "dead")
    taken: dict[str, list[str]] = {}
    start = threading.Barrier(len(claimers))

    def claim_all(database: Database) -> None:
        start.wait()
        got: list[str] = []
        while batch := database.claim_orphans(4):
            got += [row.session for row in batch]
        taken[database.node] = got

    threads = [threading.Thread(target=claim_all, args=(db,)) for db in claimers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [session for got in taken.values() for session in got]
    assert sorted(every) == sorted(sessions)  # each taken, none twice
    owners = sql(database_url, "SELECT owner, epoch FROM sessions")
    assert {epoch for _, epoch in owners} == {2}
    assert sum(len(db.owned()) for db in claimers) == len(sessions)


# -- writes ---------------------------------------------------------------------------------------


def message(project: str, chat: str, position: int) -> MessageRow:
    return MessageRow(
        project=project, chat=chat, position=position, body=f"{chat}{position}".encode()
    )


def test_a_stale_epoch_is_fenced(database_url: str, nodes: Nodes) -> None:
    a, b = nodes("a"), nodes("b")
    a.create_session(new_session("s1", "p", seq=1, data=b"a's"))
    lapse(database_url, "a")
    taken = b.claim("s1")
    assert taken is not None and taken.epoch == 2

    fenced = a.write({"s1": 1}, {"s1": (9, b"late")}, {"s1": [message("p", "main", 0)]}, ["s1"])
    assert fenced == {"s1"}
    assert b.get("s1") == taken  # nothing of a's was written, nor deleted
    assert b.messages("p", "main") == []

    assert b.write({"s1": 2}, {"s1": (9, b"b's")}, {"s1": [message("p", "main", 0)]}, []) == set()
    row = b.get("s1")
    assert row is not None and (row.seq, row.snapshot) == (9, b"b's")
    assert b.messages("p", "main") == [b"main0"]


def test_a_wrong_epoch_of_the_owner_is_fenced(nodes: Nodes) -> None:
    a = nodes("a")
    made = a.create_session(new_session("s1", "p"))
    assert a.write({"s1": made.epoch + 1}, {"s1": (1, b"x")}, {}, []) == {"s1"}
    assert a.write({}, {"s1": (1, b"x")}, {}, []) == {"s1"}  # no epoch named: fenced
    assert a.write({"gone": 1}, {"gone": (1, b"x")}, {}, []) == {"gone"}
    assert a.get("s1") == made


def test_one_write_keeps_the_owned_and_fences_the_rest(database_url: str, nodes: Nodes) -> None:
    a, b = nodes("a"), nodes("b")
    a.create_session(new_session("mine", "p1"))
    b.create_session(new_session("theirs", "p2"))
    fenced = a.write(
        {"mine": 1, "theirs": 1},
        {"mine": (4, b"m"), "theirs": (4, b"t")},
        {"mine": [message("p1", "c", 0)], "theirs": [message("p2", "c", 0)]},
        [],
    )
    assert fenced == {"theirs"}
    assert sql(database_url, "SELECT id, seq FROM sessions ORDER BY id") == [
        ("mine", 4), ("theirs", 0),
    ]  # fmt: skip
    assert sql(database_url, "SELECT project FROM messages") == [("p1",)]


def test_messages_and_the_newest_chat(nodes: Nodes) -> None:
    a = nodes("a")
    a.create_session(new_session("s1", "p"))
    assert a.newest_chat("p") is None
    # Positions out of order in one write: read back in position order.
    batch = [message("p", "old", 1), message("p", "old", 0), message("p", "old", 2)]
    assert a.write({"s1": 1}, {}, {"s1": batch}, []) == set()
    assert a.messages("p", "old") == [b"old0", b"old1", b"old2"]
    assert a.newest_chat("p") == ("old", 3)

    assert a.write({"s1": 1}, {}, {"s1": [message("p", "new", 0)]}, []) == set()
    assert a.newest_chat("p") == ("new", 1)
    assert a.write({"s1": 1}, {}, {"s1": [message("p", "old", 3)]}, []) == set()
    assert a.newest_chat("p") == ("old", 4)
    assert a.newest_chat("other") is None
    assert a.messages("p", "none") == []


def test_a_retried_write_does_not_duplicate(nodes: Nodes) -> None:
    a = nodes("a")
    a.create_session(new_session("s1", "p"))
    batch = [message("p", "c", 0), message("p", "c", 1)]
    for _ in range(2):
        assert a.write({"s1": 1}, {"s1": (2, b"snap")}, {"s1": batch}, []) == set()
    assert a.write({"s1": 1}, {}, {"s1": [*batch, message("p", "c", 2)]}, []) == set()
    assert a.messages("p", "c") == [b"c0", b"c1", b"c2"]
    assert a.newest_chat("p") == ("c", 3)


def test_deleting_a_session_and_forgetting_its_project(database_url: str, nodes: Nodes) -> None:
    a = nodes("a")
    a.create_session(new_session("s1", "p"))
    a.create_session(new_session("s2", "q"))
    a.write(
        {"s1": 1, "s2": 1}, {}, {"s1": [message("p", "c", 0)], "s2": [message("q", "c", 0)]}, []
    )
    assert a.write({"s1": 1}, {}, {}, ["s1"]) == set()
    assert a.get("s1") is None and a.of_project("p") is None
    assert a.messages("p", "c") == [b"c0"]  # the history outlives the session
    a.forget_project("p")
    assert a.messages("p", "c") == [] and a.newest_chat("p") is None
    assert a.messages("q", "c") == [b"c0"]
    assert a.create_session(new_session("s3", "p")).session == "s3"  # the project is free again
    assert a.write({}, {}, {}, []) == set()


# -- leaving and the marker -----------------------------------------------------------------------


def test_leave_releases_the_claims(database_url: str, nodes: Nodes) -> None:
    a, b = nodes("a"), nodes("b")
    a.create_session(new_session("s1", "p1"))
    a.create_session(new_session("s2", "p2"))
    b.create_session(new_session("s3", "p3"))
    a.leave()
    assert sql(database_url, "SELECT id FROM nodes") == [("b",)]
    assert sql(database_url, "SELECT id, owner FROM sessions ORDER BY id") == [
        ("s1", None), ("s2", None), ("s3", "b"),
    ]  # fmt: skip
    # Released, so taken at once (no lease to wait for), at the next epoch.
    assert [(row.session, row.epoch) for row in b.claim_orphans(10)] == [("s1", 2), ("s2", 2)]


def test_a_replaced_instance_leaves_nothing_of_the_new_ones(
    database_url: str, nodes: Nodes
) -> None:
    a = nodes("a")
    a.create_session(new_session("s1", "p"))
    lapse(database_url, "a")
    again = Database(database_url, "a")
    again.open()
    try:
        assert again.heartbeat("new")
        a.leave()  # the old process, waking up: the row and the claim are the new one's
        assert sql(database_url, "SELECT id, instance FROM nodes") == [("a", "new")]
        assert again.owned() == {"s1": 1}
    finally:
        again.close()


def test_the_marker_is_the_first_nodes(nodes: Nodes) -> None:
    a, b = nodes("a"), nodes("b")
    assert a.marker("first") == "first"
    assert b.marker("second") == "first"
    assert a.marker("third") == "first"
