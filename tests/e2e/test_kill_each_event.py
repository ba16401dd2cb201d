"""kill -9 right after a client sees each kind of event, then a restart on the same folder.

Durable before visible (docs/reliability.md): whatever a client received is on disk before it
could receive it. So the restarted server holds every event the client saw under the same
seq, and the client resumes with ``subscribe`` ``since`` its last seq: no ``reset``, no splice
(checked by :class:`tests.reliability.resume.Seen`), and the interrupted turn goes on under
new seqs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from greenroom.transport.client import ConnectionLost, GreenroomClient, connect
from tests.e2e.harness import kill_server, start_server, stop_server
from tests.reliability.resume import Seen

JSON = dict[str, Any]
LONG = "a long one [[tokens:150]] [[rate:50]]"
QUEUED = "queued " + "q" * 300  # longer than a summary's preview of it


def is_delta(event: JSON) -> bool:
    return event["event"] == "streamingUpdate" and event["data"]["offset"] > 20


def is_reply(event: JSON) -> bool:
    return event["event"] == "messageAdded" and event["data"]["message"]["role"] == "assistant"


def is_tool_result(event: JSON) -> bool:
    return event["event"] == "messageAdded" and event["data"]["message"]["role"] == "tool"


def is_turn_start(event: JSON) -> bool:
    return event["event"] == "loadingChanged" and event["data"]["loading"]


def is_queued(event: JSON) -> bool:
    return event["event"] == "sessionUpdated" and bool(event["data"]["queued"])


def is_deleted(event: JSON) -> bool:
    return event["event"] == "sessionDeleted"


async def send(client: GreenroomClient, session: str, *texts: str) -> None:
    for text in texts:
        await client.send_message(session, text)


KINDS: dict[str, tuple[Callable[[GreenroomClient, str], Awaitable[None]], Any]] = {
    "delta mid-stream": (lambda c, s: send(c, s, LONG), is_delta),
    "commit": (lambda c, s: send(c, s, "short [[tokens:3]] [[rate:100]]"), is_reply),
    "tool result": (lambda c, s: send(c, s, "create file k.txt with v1"), is_tool_result),
    "status change": (lambda c, s: send(c, s, LONG), is_turn_start),
    "queued message": (lambda c, s: send(c, s, LONG, QUEUED), is_queued),
    "delete": (lambda c, s: send(c, s, LONG), None),  # deleted once streaming: below
}


@attrs.define
class Watch:
    """What the follower waits for now, and the event it sets when it comes."""

    until: Callable[[JSON], bool] | None = None
    done: trio.Event = attrs.Factory(trio.Event)

    def expect(self, until: Callable[[JSON], bool]) -> None:
        self.until, self.done = until, trio.Event()

    async def wait(self) -> None:
        with trio.fail_after(20):
            await self.done.wait()


async def follow(client: GreenroomClient, seen: Seen, watch: Watch) -> None:
    with contextlib.suppress(ConnectionLost):
        async for event in client.events():
            seen.see(event)
            until = watch.until
            if until is not None and event.get("session") == seen.session and until(event):
                watch.until = None
                watch.done.set()


@pytest.mark.parametrize("kind", list(KINDS))
async def test_kill_9_right_after_an_event_keeps_what_the_client_saw(
    tmp_path: Path, kind: str
) -> None:
    act, until = KINDS[kind]
    server = await start_server(tmp_path)
    try:
        async with (
            connect(server.url, server.token, reconnect=False) as client,
            trio.open_nursery() as nursery,
        ):
            state = (await client.open_session("k"))["session"]
            seen = Seen.of(state)
            watch = Watch()
            nursery.start_soon(follow, client, seen, watch)
            await client.subscribe(seen.session, since=state["seq"])
            watch.expect(until or is_delta)
            await act(client, seen.session)
            await watch.wait()
            if kind == "delete":
                watch.expect(is_deleted)
                await client.delete_session(seen.session)
                await watch.wait()
            await kill_server(server)  # right after the client saw it
            nursery.cancel_scope.cancel()
        last_seen = seen.last
        server = await start_server(tmp_path)
        async with (
            connect(server.url, server.token, reconnect=False) as client,
            trio.open_nursery() as nursery,
        ):
            listed = {s["session"]: s for s in (await client.list_sessions())["sessions"]}
            if kind == "delete":
                assert seen.deleted and seen.session not in listed
                return
            assert seen.session in listed
            nursery.start_soon(follow, client, seen, Watch())
            reply = await client.subscribe(seen.session, since=last_seen)
            assert not reply.get("reset"), reply
            assert reply["seq"] >= last_seen
            with trio.fail_after(60):  # the resumed turn ends; every event checked on the way
                while (await client.list_sessions())["sessions"][0]["status"] != "idle":  # noqa: ASYNC110 - polling the server
                    await trio.sleep(0.1)
            state = (await client.open_session("k"))["session"]
            assert seen.check_state(state) > 0
            assert seen.last == state["seq"] >= last_seen
            if kind != "commit":  # (a short turn may have ended before the kill)
                assert state["seq"] > last_seen  # the interrupted turn went on, under new seqs
            if kind == "queued message":
                # The queued text was whole on disk: its turn ran with it.
                assert {"role": "user", "content": QUEUED} in state["messages"]
                assert all(len(q) <= 200 for q in listed[seen.session]["queued"])
            nursery.cancel_scope.cancel()
        assert await stop_server(server) == 0
    finally:
        if server.process.returncode is None:
            server.process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await server.process.wait()
