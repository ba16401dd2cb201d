"""The bus against a real Redis: fencing, replay, the live stream, forwarded commands."""

from __future__ import annotations

from collections.abc import AsyncIterator

import coredis
import pytest
import trio

from greenroom.cluster.errors import EngineUnavailable
from greenroom.cluster.streams import PAGE, Append, Entry, Streams
from greenroom.config import redact_url
from tests.engines import free_port

LIMIT = 60.0
"""A generous cap on each test: Redis answers in milliseconds, but the machine may be busy."""


@pytest.fixture
async def a(bus_url: str) -> AsyncIterator[Streams]:
    async with Streams(bus_url, "a") as streams:
        yield streams


@pytest.fixture
async def b(bus_url: str) -> AsyncIterator[Streams]:
    async with Streams(bus_url, "b") as streams:
        yield streams


def batch(session: str, epoch: int, *seqs: int) -> Append:
    return Append(
        session=session, epoch=epoch, entries=tuple((q, record(session, q)) for q in seqs)
    )


def record(session: str, seq: int) -> bytes:
    return f"{session}/{seq}".encode()


def seqs(entries: list[Entry]) -> list[int]:
    return [e.seq for e in entries]


async def live(streams: Streams) -> list[Entry]:
    """Everything on the live stream now."""
    _, entries = await streams.read_live(b"0-0", count=100_000, block=0)
    return entries


async def test_open_on_a_closed_port_names_redis_without_the_password() -> None:
    port = free_port()
    streams = Streams(f"redis://:hunter2@127.0.0.1:{port}/0", "a")
    with trio.fail_after(LIMIT), pytest.raises(EngineUnavailable) as caught:
        await streams.open()
    message = str(caught.value)
    assert message.startswith(f"Redis at redis://:***@127.0.0.1:{port}/0 is unreachable: ")
    assert "hunter2" not in message
    assert caught.value.code == "unavailable"


def test_redacted_keeps_everything_but_the_password() -> None:
    assert redact_url("redis://u:pw@bus:6379/2") == "redis://u:***@bus:6379/2"
    assert redact_url("redis://:pw@[::1]:6379/2") == "redis://:***@[::1]:6379/2"
    assert redact_url("redis://bus:6379/0") == "redis://bus:6379/0"


async def test_a_call_on_a_closed_streams_is_refused(bus_url: str) -> None:
    streams = Streams(bus_url, "a")
    async with streams:
        assert await streams.last_seq("s") is None
    with pytest.raises(trio.ClosedResourceError):
        await streams.last_seq("s")


async def test_the_owner_is_only_raised(a: Streams, b: Streams) -> None:
    with trio.fail_after(LIMIT):
        assert await a.raise_owner("s", 2)
        assert await a.raise_owner("s", 2)  # the same claim again: still ours
        assert not await b.raise_owner("s", 1)  # lower
        assert not await b.raise_owner("s", 2)  # equal, another node
        # the hash still says (a, 2): a's appends at 2 go through
        assert await a.append([batch("s", 2, 1)]) == set()
        assert await b.raise_owner("s", 3)
        assert not await a.raise_owner("s", 2)
        assert await a.append([batch("s", 2, 2)]) == {"s"}
        assert await b.append([batch("s", 3, 2)]) == set()
        assert seqs(await a.replay("s", 0)) == [1, 2]


async def test_the_owner_appends_to_its_stream_and_the_live_stream(a: Streams) -> None:
    with trio.fail_after(LIMIT):
        assert await a.raise_owner("s", 1)
        assert await a.append([batch("s", 1, 1, 2, 3)]) == set()
        assert await a.replay("s", 0) == [
            Entry(session="s", seq=q, record=record("s", q), epoch=1) for q in (1, 2, 3)
        ]
        assert await live(a) == await a.replay("s", 0)
        assert await a.last_seq("s") == 3


async def test_a_stale_epoch_or_another_node_appends_nothing(a: Streams, b: Streams) -> None:
    with trio.fail_after(LIMIT):
        assert await a.raise_owner("s", 1)
        assert await b.raise_owner("s", 2)
        assert await a.append([batch("s", 1, 1)]) == {"s"}  # a, stale epoch
        assert await a.append([batch("s", 2, 1)]) == {"s"}  # b's epoch, but a
        assert await b.append([batch("s", 1, 1)]) == {"s"}  # b, wrong epoch
        assert await b.append([batch("x", 2, 1)]) == {"x"}  # nobody claimed x
        assert await a.replay("s", 0) == []
        assert await a.last_seq("x") is None
        assert await live(a) == []
        # In one batch, the fenced session is reported and the other is appended.
        assert await a.raise_owner("t", 1)
        assert await a.append([batch("s", 1, 1), batch("t", 1, 1)]) == {"s"}
        assert [(e.session, e.seq) for e in await live(a)] == [("t", 1)]


async def test_a_duplicate_or_lower_seq_is_refused_and_nothing_after_it(a: Streams) -> None:
    with trio.fail_after(LIMIT):
        assert await a.raise_owner("s", 1)
        assert await a.append([batch("s", 1, 1, 2)]) == set()
        assert await a.append([batch("s", 1, 2, 3)]) == {"s"}  # a duplicate
        assert await a.append([batch("s", 1, 1, 4)]) == {"s"}  # a regression
        assert await a.append([batch("s", 1, 3, 3)]) == {"s"}  # a duplicate within a batch
        assert seqs(await a.replay("s", 0)) == [1, 2, 3]
        assert [e.seq for e in await live(a)] == [1, 2, 3]
        assert await a.append([batch("s", 1, 4)]) == set()
        assert seqs(await a.replay("s", 0)) == [1, 2, 3, 4]


async def test_replay_reads_past_a_seq_in_order_across_pages(a: Streams) -> None:
    total = PAGE * 2 + 7
    with trio.fail_after(LIMIT):
        assert await a.raise_owner("s", 1)
        half = total // 2
        assert await a.append([batch("s", 1, *range(1, half + 1))]) == set()
        assert await a.append([batch("s", 1, *range(half + 1, total + 1))]) == set()
        replayed = await a.replay("s", 10)
        assert seqs(replayed) == list(range(11, total + 1))
        assert all(e.record == record("s", e.seq) and e.session == "s" for e in replayed)
        assert seqs(await a.replay("s", PAGE)) == list(range(PAGE + 1, total + 1))
        assert await a.replay("s", total) == []
        assert await a.replay("missing", 0) == []


async def test_last_seq_trim_and_forget(a: Streams) -> None:
    with trio.fail_after(LIMIT):
        assert await a.last_seq("s") is None
        assert await a.raise_owner("s", 5)
        assert await a.append([batch("s", 5, 0, 1, 2, 3, 4, 5, 6)]) == set()
        assert await a.last_seq("s") == 6
        await a.trim("s", 4)
        assert seqs(await a.replay("s", -1)) == [4, 5, 6]
        assert await a.last_seq("s") == 6
        # Trimming does not reopen the seqs below: a regression is still refused.
        assert await a.append([batch("s", 5, 3)]) == {"s"}
        await a.forget("s")
        assert await a.last_seq("s") is None
        # The owner hash went too: a lower epoch may claim the name again.
        assert await a.raise_owner("s", 1)


async def test_read_live_sees_two_nodes_in_append_order_and_continues(
    a: Streams, b: Streams
) -> None:
    with trio.fail_after(LIMIT):
        assert await a.raise_owner("s", 1)
        assert await b.raise_owner("t", 1)
        cursor = await b.live_cursor()
        assert cursor == b"0-0"
        assert await a.append([batch("s", 1, 1)]) == set()
        assert await b.append([batch("t", 1, 1)]) == set()
        assert await a.append([batch("s", 1, 2)]) == set()
        cursor, first = await b.read_live(cursor, count=2)
        assert [(e.session, e.seq) for e in first] == [("s", 1), ("t", 1)]
        assert first[0].record == record("s", 1)
        cursor, second = await b.read_live(cursor)
        assert [(e.session, e.seq) for e in second] == [("s", 2)]
        # A reader that starts now begins after everything so far.
        assert await a.live_cursor() == cursor
        assert await a.read_live(cursor, block=0) == (cursor, [])
        assert await b.append([batch("t", 1, 2)]) == set()
        cursor, third = await a.read_live(cursor)
        assert [(e.session, e.seq) for e in third] == [("t", 2)]


async def test_commands_and_replies_go_between_nodes(a: Streams, b: Streams) -> None:
    with trio.fail_after(LIMIT):
        await a.send("b", b"one")
        await a.send("b", b"two")
        assert await a.receive(block=0) == []  # a's inbox is its own
        assert await b.receive() == [b"one", b"two"]
        assert await b.receive(block=0) == []
        await b.answer("a", b"done")
        assert await b.answers(block=0) == []
        assert await a.answers() == [b"done"]


async def test_receive_takes_a_bounded_batch(a: Streams, b: Streams) -> None:
    with trio.fail_after(LIMIT):
        for n in range(150):
            await a.send("b", b"%d" % n)
        first = await b.receive()
        assert first == [b"%d" % n for n in range(len(first))]
        assert 1 < len(first) < 150
        rest = await b.receive()
        assert first + rest == [b"%d" % n for n in range(150)]


async def blocked_commands(url: str, name: bytes) -> int:
    async with coredis.Redis.from_url(url, decode_responses=False) as client:
        clients = await client.client_list()
    return sum(1 for c in clients if c.get("cmd") == name.decode())


async def until_blocked(url: str, *names: bytes) -> None:
    """Until Redis shows a client blocked in each command named (polled: Redis has no event)."""
    while True:
        counts = [await blocked_commands(url, name) for name in names]
        if all(counts):
            return
        await trio.sleep(0.01)


async def test_blocked_readers_do_not_hold_up_an_append(bus_url: str, a: Streams) -> None:
    received: list[bytes] = []
    read: list[Entry] = []

    async def receive() -> None:
        received.extend(await a.receive(block=LIMIT * 2))

    async def read_live() -> None:
        read.extend((await a.read_live(b"0-0", block=LIMIT * 2))[1])

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            nursery.start_soon(read_live)
            await until_blocked(bus_url, b"blpop", b"xread")
            assert await a.raise_owner("s", 1)
            assert await a.append([batch("s", 1, 1)]) == set()
            assert received == []
            await a.send("a", b"wake")
        assert received == [b"wake"]
        assert [(e.session, e.seq) for e in read] == [("s", 1)]


async def test_an_entry_without_an_epoch_reads_as_epoch_unknown(a: Streams, bus_url: str) -> None:
    """Entries appended by a version that wrote no epoch (field ``p``), or a ``p`` that is
    not a number, read as epoch 0: never newer than any epoch a node knows."""
    with trio.fail_after(LIMIT):
        async with coredis.Redis.from_url(bus_url, decode_responses=False) as raw:
            for seq, fields in ((1, {"e": b"x"}), (2, {"e": b"y", "p": b"not a number"})):
                await raw.xadd(f"greenroom:session:s{seq}", fields, identifier=f"{seq}-1")
                await raw.xadd("greenroom:events", {"s": f"s{seq}", "q": str(seq), **fields})
        assert [(e.seq, e.epoch) for e in await live(a)] == [(1, 0), (2, 0)]
        assert [e.epoch for e in await a.replay("s1", 0) + await a.replay("s2", 0)] == [0, 0]
