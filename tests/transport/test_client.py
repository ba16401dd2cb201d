"""The Python client against the real in-process server (real sockets on 127.0.0.1, real
clock: every test is capped with fail_after)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from greenroom.config import SimulatedConfig
from greenroom.protocol import commands as cmd
from greenroom.protocol.events import (
    Event,
    LoadingChanged,
    MessageAdded,
    SessionUpdated,
    StreamingUpdate,
)
from greenroom.runtime import Runtime
from greenroom.transport.client import (
    CommandError,
    EventStream,
    GreenroomClient,
    HandshakeRefused,
    connect,
)
from greenroom.transport.server import ServerSettings, serve
from tests.conftest import make_config, open_test_runtime

JSON = dict[str, Any]
TOKEN = "test-token"


@asynccontextmanager
async def running_server(
    tmp_path: Path, **settings: Any
) -> AsyncIterator[tuple[Runtime, str, trio.CancelScope]]:
    """The whole server on a free port; yields the runtime, the URL and the server's scope."""
    config = make_config(
        tmp_path, simulated=SimulatedConfig(seed=1, tokens_per_second=200, reply_tokens=10)
    )
    async with open_test_runtime(config) as runtime, trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def run(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await serve(
                    runtime,
                    ServerSettings(host="127.0.0.1", port=0, token=TOKEN, **settings),
                    task_status=task_status,
                )

        address = await nursery.start(run)
        yield runtime, f"ws://127.0.0.1:{address.port}/ws", scope
        nursery.cancel_scope.cancel()


async def next_event(
    events: EventStream, match: Callable[[JSON], bool], collected: list[JSON] | None = None
) -> JSON:
    async for event in events:
        if collected is not None:
            collected.append(event)
        if match(event):
            return event
    raise AssertionError("the event stream ended")


def turn_ended(session: str) -> Callable[[JSON], bool]:
    return lambda e: (
        e["event"] == "loadingChanged" and e["session"] == session and not e["data"]["loading"]
    )


async def open_subscribed(client: GreenroomClient, project: str) -> str:
    session: str = (await client.open_session(project))["session"]["session"]
    await client.subscribe(session)
    return session


def text_of(events: list[JSON], session: str) -> str:
    """The streamed text, rebuilt from the deltas at their offsets (a single message): equal
    to the committed text only if no delta was lost."""
    text = ""
    for e in events:
        if e["event"] == "streamingUpdate" and e["session"] == session:
            offset, delta = e["data"]["offset"], e["data"]["delta"]
            text = text[:offset] + delta
    return text


async def test_a_turn_streams_and_commits(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with (
            running_server(tmp_path) as (_, url, _),
            connect(url, TOKEN) as client,
        ):
            assert client.welcome["server"] == "greenroom"
            assert client.welcome["protocol"] == 1
            session = await open_subscribed(client, "blog")
            assert await client.send_message(session, "hello") == {"queued": False}
            seen: list[JSON] = []
            end = await next_event(client.events(), turn_ended(session), seen)
            assert end["data"]["reason"] == "completed"
            added = [e["data"]["message"] for e in seen if e["event"] == "messageAdded"]
            assert [m["role"] for m in added] == ["user", "assistant"]
            assert added[1]["content"] == text_of(seen, session)
            seqs = [e["seq"] for e in seen if e["session"] == session and e["seq"] is not None]
            assert seqs == sorted(set(seqs))
            state = (await client.open_session("blog"))["session"]
            assert state["messageCount"] == 2 and state["seq"] >= seqs[-1]


async def test_typed_events_of_a_turn(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with (
            running_server(tmp_path) as (_, url, _),
            connect(url, TOKEN) as client,
        ):
            session = await open_subscribed(client, "blog")
            await client.send_message(session, "hello")
            kinds: list[type[Any]] = []
            async for event in client.typed_events():
                assert isinstance(event, Event)
                if event.session != session:
                    continue
                kinds.append(type(event.data))
                if isinstance(event.data, LoadingChanged) and not event.data.loading:
                    assert event.data.reason == "completed"
                    break
            assert kinds.count(MessageAdded) == 2 and StreamingUpdate in kinds
            assert SessionUpdated in kinds


async def test_every_command(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with running_server(tmp_path) as (_, url, _), connect(url, TOKEN) as client:
            assert await client.ping() == {}
            assert await client.create_project("site") == {"project": "site"}
            projects = (await client.list_projects())["projects"]
            assert {"project": "site", "session": None, "status": None} in projects
            session = await open_subscribed(client, "site")
            sessions = (await client.list_sessions())["sessions"]
            assert [s["session"] for s in sessions] == [session]
            assert await client.focus_project("site") == {}
            assert await client.send_message(session, "[[tokens:2000]] long") == {"queued": False}
            assert await client.send_message(session, "next") == {"queued": True}
            assert await client.stop_generation(session) == {"discarded": ["next"]}
            await next_event(client.events(), turn_ended(session))
            with pytest.raises(CommandError) as caught:  # a stopped turn is not resumable
                await client.resume_session(session)
            assert caught.value.code == "conflict"
            await client.stop_all()
            await client.new_chat(session)
            assert isinstance(await client.stats(), dict)
            assert await client.unsubscribe(session) == {}
            assert await client.delete_session(session) == {}
            with pytest.raises(CommandError) as caught:
                await client.stop_generation(session)
            assert caught.value.code == "not_found"
            with pytest.raises(CommandError) as caught:
                await client.create_project("Bad Name")
            assert caught.value.code == "invalid_argument"
            assert await client.delete_project("site") == {}


async def test_refused_without_the_token(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with running_server(tmp_path) as (_, url, _):
            with pytest.raises(HandshakeRefused) as refused:
                async with connect(url, "wrong"):
                    pass
            assert refused.value.status == 401
            with pytest.raises(HandshakeRefused) as refused:
                async with connect(url, TOKEN, origin="http://evil.example"):
                    pass
            assert refused.value.status == 403
            async with connect(f"{url}?token={TOKEN}") as client:
                assert await client.ping() == {}


async def test_msgpack_subprotocol(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with (
            running_server(tmp_path) as (_, url, _),
            connect(url, TOKEN, subprotocol="greenroom.v1.msgpack") as client,
        ):
            session = await open_subscribed(client, "blog")
            await client.send_message(session, "hi")
            end = await next_event(client.events(), turn_ended(session))
            assert end["data"]["reason"] == "completed"


async def test_reconnect_after_server_restart_has_no_gap_and_no_duplicate(
    tmp_path: Path,
) -> None:
    """The server stops (1001) mid-stream and starts again on the same port: the client
    resumes from its last seq and rebuilds exactly the text the session committed."""
    config = make_config(
        tmp_path, simulated=SimulatedConfig(seed=1, tokens_per_second=200, reply_tokens=10)
    )
    with trio.fail_after(20):
        async with open_test_runtime(config) as runtime, trio.open_nursery() as nursery:

            async def run(
                port: int, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
            ) -> None:
                settings = ServerSettings(host="127.0.0.1", port=port, token=TOKEN)
                await serve(runtime, settings, task_status=task_status)

            first = trio.CancelScope()

            async def run_first(*, task_status: trio.TaskStatus[Any]) -> None:
                with first:
                    await run(0, task_status=task_status)

            address = await nursery.start(run_first)
            url = f"ws://127.0.0.1:{address.port}/ws"
            async with connect(url, TOKEN) as client:
                session = await open_subscribed(client, "blog")
                await client.send_message(session, "[[tokens:200]] a long one")
                seen: list[JSON] = []
                events = client.events()
                await next_event(events, lambda e: e["event"] == "streamingUpdate", seen)
                first.cancel()  # the server goes away; the session keeps streaming
                await trio.sleep(0.2)
                await nursery.start(run, address.port)
                await next_event(events, turn_ended(session), seen)
                assert client.reconnects == 1
                assert "reconnected" in [e["event"] for e in seen]
                seqs = [e["seq"] for e in seen if e["session"] == session]
                assert seqs == sorted(set(seqs))  # no duplicate (merged deltas skip seqs)
                assert "resync" not in [e["event"] for e in seen]
                state = (await client.open_session("blog"))["session"]
                assert text_of(seen, session) == state["messages"][-1]["content"]
            nursery.cancel_scope.cancel()


FLOOD = 30_000  # tokens: megabytes of frames, more than the kernels hold


async def test_too_slow_client_is_closed_and_resumes(tmp_path: Path) -> None:
    """A client that does not read is closed with 4008; it resumes with since and loses
    nothing."""
    with trio.fail_after(60):
        # One frame per event, a small kernel buffer and a flood bigger than what the kernels
        # and the client hold: the server's writer is stuck in a send, its outbox overflows.
        async with (
            running_server(
                tmp_path, send_queue_bytes=4096, send_buffer_bytes=4096, send_interval=0
            ) as (_, url, _),
            connect(url, TOKEN, event_buffer=1) as client,
        ):
            session = await open_subscribed(client, "blog")
            await client.send_message(session, f"[[tokens:{FLOOD}]] [[rate:inf]] flood")
            # Read nothing meanwhile, until the server gives up on us (asked on another
            # connection, which reads).
            async with connect(url, TOKEN) as other:
                while (await other.stats())["closedSlow"] < 1:  # noqa: ASYNC110 - a count
                    await trio.sleep(0.05)
            seen: list[JSON] = []
            # The turn's end, or a resync when what we missed is no longer retained (the end
            # is then in the session's state).
            await next_event(
                client.events(), lambda e: turn_ended(session)(e) or e["event"] == "resync", seen
            )
            seqs = [e["seq"] for e in seen if e["session"] == session and e["seq"] is not None]
            assert seqs == sorted(set(seqs))  # merged deltas skip seqs; nothing repeats
            assert client.reconnects >= 1
            async with trio.open_nursery() as nursery:  # keep reading while we call
                nursery.start_soon(next_event, client.events(), lambda e: False)
                state = (await client.open_session("blog"))["session"]
                nursery.cancel_scope.cancel()
            reply = state["messages"][-1]
            assert reply["role"] == "assistant" and len(reply["content"].split()) == FLOOD
            if "resync" not in [e["event"] for e in seen]:
                assert text_of(seen, session) == reply["content"]


async def test_execute_sends_any_command_and_keeps_the_clients_bookkeeping(
    tmp_path: Path,
) -> None:
    with trio.fail_after(10):
        async with running_server(tmp_path) as (_, url, _), connect(url, TOKEN) as client:
            assert await client.execute(cmd.Ping()) == {}
            opened = await client.execute(cmd.OpenSession(project="site"))
            session = opened["session"]["session"]
            # A subscribe through execute is resubscribed after a reconnect, like subscribe().
            assert await client.execute(cmd.Subscribe(session=session)) == {"seq": 1}
            assert client.subscribed == {session}
            sent = await client.execute(cmd.SendMessage(session=session, content="hi"))
            assert sent == {"queued": False}
            await next_event(client.events(), turn_ended(session))
            assert await client.execute(cmd.Unsubscribe(session=session)) == {}
            assert client.subscribed == frozenset()
            with pytest.raises(CommandError) as caught:
                await client.execute(cmd.CreateProject(project="Bad Name"))
            assert caught.value.code == "invalid_argument"
