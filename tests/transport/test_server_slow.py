"""A client that cannot keep up is closed with 4008 and resumes with since; shutdown is 1001."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket

from greenroom.protocol import commands as cmd
from tests.transport.test_server_support import (
    WireClient,
    open_client,
    open_server,
    read_up_to,
    reassemble,
    turn_ended,
)

SESSIONS = 20
TURN = "[[tokens:400]] [[rate:2000]] stream"


def by_session(events: list[dict[str, Any]], session: str) -> list[dict[str, Any]]:
    return [e for e in events if e["session"] == session]


def text_of_turn(events: list[dict[str, Any]], after: int) -> tuple[str, str]:
    """(the text the streamingUpdates after seq ``after`` build, the reply committed)."""
    events = [e for e in events if e["seq"] > after]
    updates = [e for e in events if e["event"] == "streamingUpdate"]
    added = [e["data"]["message"] for e in events if e["event"] == "messageAdded"]
    assert [m["role"] for m in added] == ["user", "assistant"]
    return reassemble(updates), added[1]["content"]


async def test_a_slow_reader_is_closed_with_4008_and_resumes_with_since(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with (
            open_server(tmp_path, send_queue_bytes=16_384, close_timeout=20) as running,
            open_client(running.address) as fast,
        ):
            start: dict[str, int] = {}
            for n in range(SESSIONS):
                state = (await fast.call("openSession", project=f"p{n}"))["session"]
                start[state["session"]] = state["seq"]
            sessions = list(start)
            for session, seq in start.items():
                await fast.call("subscribe", session=session, since=seq)

            # The slow client reads nothing from here on: trio-websocket's queue of one message
            # fills, then the small socket buffers, then the server's writer blocks.
            async with open_client(
                running.address, message_queue_size=1, receive_buffer=4096
            ) as slow:
                for session, seq in start.items():
                    await slow.call("subscribe", session=session, since=seq)
                for session in sessions:
                    await fast.call("sendMessage", session=session, content=TURN)
                for session in sessions:
                    fast.events.append(await fast.event(turn_ended(session)))

                # Every turn ended while the slow client was not reading: it slowed nobody.
                stats = running.server.statistics()
                assert stats.closed_slow == 1
                assert stats.merged_deltas > 0
                for session in sessions:
                    text, committed = text_of_turn(by_session(fast.events, session), start[session])
                    assert text == committed

                closed = await read_until_closed(slow)
                assert closed.code == 4008
                assert closed.reason == "client too slow: reconnect and subscribe with since"

            # It reconnects and resumes each session from the last seq it saw.
            seen = {
                s: max((e["seq"] for e in by_session(slow.events, s)), default=start[s])
                for s in sessions
            }
            async with open_client(running.address) as again:
                ends: dict[str, int] = {}
                for session in sessions:
                    result = await again.call("subscribe", session=session, since=seen[session])
                    assert "reset" not in result
                    ends[session] = result["seq"]
                for session in sessions:
                    await read_up_to(again, session, ends[session])
            for session in sessions:
                await read_up_to(fast, session, ends[session])

    for session in sessions:
        missed = [e for e in by_session(again.events, session) if e["seq"] <= ends[session]]
        # Every seq after the last seen, but those inside a replayed run of deltas.
        seqs = [e["seq"] for e in missed]
        assert seqs == sorted(set(seqs)) and seqs[-1] == ends[session]
        for earlier, later in itertools.pairwise([seen[session], *seqs]):
            if later - earlier > 1:
                assert missed[seqs.index(later)]["event"] == "streamingUpdate"
        everything = [*by_session(slow.events, session), *missed]
        text, committed = text_of_turn(everything, start[session])
        assert text == committed
        # Every event but the (merged) deltas is there, as the fast client saw it.
        assert solid(everything, start[session], ends[session]) == solid(
            by_session(fast.events, session), start[session], ends[session]
        )


def solid(events: list[dict[str, Any]], after: int, until: int) -> list[Any]:
    """The events but deltas, in seq order (``fast.event`` takes a turn's end out of the
    kept events and appends it again, after any that came while another turn was awaited)."""
    return sorted(
        (
            (e["seq"], e["event"], e["data"])
            for e in events
            if e["event"] != "streamingUpdate" and after < e["seq"] <= until
        ),
        key=lambda event: event[0],
    )


async def read_until_closed(client: WireClient) -> trio_websocket.CloseReason:
    """Read (keeping events) until the server closes the connection; how it closed."""
    with pytest.raises(trio_websocket.ConnectionClosed) as closed:
        while True:
            for item in await client.items():
                if "event" in item:
                    client.events.append(item)
    reason = closed.value.reason
    assert reason is not None
    return reason


async def test_a_full_runtime_subscription_closes_with_4008_too(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_server(tmp_path, subscription_capacity=4) as running:
            runtime = running.runtime
            sessions = [
                (await runtime.execute(cmd.OpenSession(project=f"p{n}"))).summary.session
                for n in range(20)
            ]
            async with open_client(running.address) as client:
                for session in sessions:
                    await client.call("subscribe", session=session)
                # Twenty sessions streaming with no pause publish more events between two
                # steps of the connection's pump than its subscription holds.
                for session in sessions:
                    await runtime.execute(
                        cmd.SendMessage(session=session, content="[[tokens:200]] [[rate:inf]] go")
                    )
                closed = await read_until_closed(client)
            assert closed.code == 4008
            assert running.server.statistics().closed_slow == 1


async def test_stopping_the_server_closes_clients_with_1001(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with (
            open_server(tmp_path, close_timeout=5) as running,
            open_client(running.address) as one,
            open_client(running.address) as two,
        ):
            await one.call("ping")
            await two.call("ping")
            running.stop()
            assert (await read_until_closed(one)).code == 1001
            assert (await read_until_closed(two)).code == 1001


async def test_big_queued_texts_stay_small_on_the_wire_and_a_stalled_reader_is_closed(
    tmp_path: Path,
) -> None:
    # Texts that JSON makes twice as long (each quote is escaped): what counts against the
    # send queue is the bytes sent, not the characters.
    texts = [f"{n:02} " + '"' * 250_000 for n in range(24)]
    with trio.fail_after(60):
        async with (
            open_server(tmp_path, send_queue_bytes=65_536, close_timeout=20) as running,
            open_client(running.address) as fast,
        ):
            state = (await fast.call("openSession", project="flood"))["session"]
            session = state["session"]
            async with open_client(
                running.address, message_queue_size=1, receive_buffer=4096
            ) as stalled:
                await fast.call("sendMessage", session=session, content="[[stall]] wait")
                for text in texts:
                    assert (await fast.call("sendMessage", session=session, content=text))["queued"]
                update = await fast.event(
                    lambda e: (
                        e["event"] == "sessionUpdated"
                        and e["session"] == session
                        and len(e["data"]["queued"]) == len(texts)
                    )
                )
                # A summary carries previews of the queue, 200 characters each.
                assert update["data"]["queued"] == [t[:200] for t in texts]
                # The whole texts are there on demand.
                full = (await fast.call("openSession", project="flood"))["session"]
                assert full["queued"] == texts
                closed = await read_until_closed(stalled)
                assert closed.code == 4008
            assert running.server.statistics().closed_slow == 1
            await fast.call("stopGeneration", session=session)
