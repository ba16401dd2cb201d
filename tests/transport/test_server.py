"""The websocket server over real sockets on 127.0.0.1: welcome, every op, frames, streaming."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import attrs
import msgpack  # type: ignore[import-untyped]
import pytest
import trio
import trio_websocket

from greenroom.protocol import commands as cmd
from greenroom.protocol.codec import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, Subprotocol
from greenroom.transport.connection import ConnectionSettings
from greenroom.transport.server import ServerSettings
from tests.transport.test_server_support import (
    open_client,
    open_server,
    read_up_to,
    reassemble,
    turn_ended,
)

BOTH = pytest.mark.parametrize("subprotocol", [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK])


async def test_welcome_is_the_first_frame(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path) as running:
            await running.runtime.execute(cmd.OpenSession(project="blog"))
            async with open_client(running.address) as client:
                first = await client.items()
    assert len(first) == 1
    welcome = first[0]
    assert welcome["event"] == "welcome" and welcome["seq"] is None
    data = welcome["data"]
    assert data["server"] == "greenroom" and data["protocol"] == 1
    assert data["connection"].startswith("c-") and data["notifications"] == []
    assert [s["project"] for s in data["sessions"]] == ["blog"]
    assert data["provider"] == "simulated"


@BOTH
async def test_every_op(tmp_path: Path, subprotocol: Subprotocol) -> None:
    with trio.fail_after(10):
        async with (
            open_server(tmp_path) as running,
            open_client(running.address, subprotocol=subprotocol) as client,
        ):
            assert client.ws.subprotocol == subprotocol
            assert (await client.next_item())["event"] == "welcome"
            assert await client.call("ping") == {}
            assert await client.call("createProject", project="blog") == {"project": "blog"}
            assert await client.error("createProject", project="blog") == "conflict"
            assert await client.error("createProject", project=".bad") == "invalid_argument"
            projects = (await client.call("listProjects"))["projects"]
            assert projects == [{"project": "blog", "session": None, "status": None}]

            state = (await client.call("openSession", project="blog"))["session"]
            session = state["session"]
            assert state["messages"] == [] and state["status"] == "idle"
            assert (await client.call("listSessions"))["sessions"][0]["session"] == session

            subscribed = await client.call("subscribe", session=session)
            assert subscribed == {"seq": state["seq"]}
            assert await client.error("subscribe", session="s-nope") == "not_found"
            assert await client.call("focusProject", project="blog") == {}
            assert await client.call("focusProject") == {}

            assert await client.call("sendMessage", session=session, content="hi") == {
                "queued": False
            }
            queued = await client.call("sendMessage", session=session, content="then this")
            assert queued == {"queued": True}
            stopped = await client.call("stopGeneration", session=session)
            assert stopped == {"discarded": ["then this"]}
            await client.event(turn_ended(session))
            await client.call("sendMessage", session=session, content="[[fail:server]] more")
            failed = await client.event(turn_ended(session))
            assert failed["data"]["reason"] == "failed"
            assert await client.call("resumeSession", session=session) == {}
            resumed = await client.event(turn_ended(session))
            assert resumed["data"]["reason"] == "completed"
            assert await client.error("resumeSession", session=session) == "conflict"

            assert await client.call("newChat", session=session) == {}
            await client.call("sendMessage", session=session, content="[[tokens:5000]] long")
            assert await client.call("stopAll") == {"stopped": 1}
            assert (await client.event(turn_ended(session)))["data"]["reason"] == "stopped"
            stats = await client.call("stats")
            assert stats["connections"] == 1 and stats["framesSent"] > 0
            assert stats["eventsSent"] > 0 and stats["sessions"] == {"idle": 1}
            assert "eventsPublished" in stats and "restarts" in stats

            assert await client.call("unsubscribe", session=session) == {}
            assert await client.call("deleteSession", session=session) == {}
            await client.event(lambda e: e["event"] == "sessionDeleted")
            assert await client.error("sendMessage", session=session, content="x") == "not_found"
            assert await client.call("deleteProject", project="blog") == {}
            assert (await client.call("listProjects"))["projects"] == []


async def test_a_streamed_turn_arrives_in_order_and_whole(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path) as running, open_client(running.address) as client:
            state = (await client.call("openSession", project="blog"))["session"]
            session = state["session"]
            await client.call("subscribe", session=session, since=state["seq"])
            await client.call("sendMessage", session=session, content="[[tokens:300]] go")
            await client.event(turn_ended(session))
    mine = [e for e in client.events if e["session"] == session and e["seq"] > state["seq"]]
    seqs = [e["seq"] for e in mine]
    assert seqs == sorted(set(seqs)) and seqs[0] == state["seq"] + 1
    updates = [e for e in mine if e["event"] == "streamingUpdate"]
    added = [e["data"]["message"] for e in mine if e["event"] == "messageAdded"]
    assert [m["role"] for m in added] == ["user", "assistant"]
    assert reassemble(updates) == added[1]["content"]


async def test_bad_frames_get_bad_frame_and_the_connection_stays(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path) as running, open_client(running.address) as client:
            for frame in ("not json", "[1, 2]", '{"op": "ping"}', b"\x81\xa2id\x01"):
                await client.ws.send_message(frame)
                reply = await client.reply(None)
                assert not reply["ok"]
                code = reply["error"]["code"]
                assert code == ("bad_request" if frame == '{"op": "ping"}' else "bad_frame")
            await client.ws.send_message(json.dumps({"id": 9, "op": "fly"}))
            assert (await client.reply(9))["error"]["code"] == "unknown_op"
            assert await client.call("ping") == {}


async def test_a_text_frame_on_msgpack_is_a_bad_frame(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with (
            open_server(tmp_path) as running,
            open_client(running.address, subprotocol=SUBPROTOCOL_MSGPACK) as client,
        ):
            await client.ws.send_message('{"id": 1, "op": "ping"}')
            assert (await client.reply(None))["error"]["code"] == "bad_frame"
            await client.ws.send_message(msgpack.packb({"id": 2, "op": "ping"}))
            assert (await client.reply(2))["ok"]


async def test_a_frame_over_the_limit_closes_with_1009(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with (
            open_server(tmp_path, max_frame_bytes=1000) as running,
            open_client(running.address) as client,
        ):
            assert await client.call("ping") == {}
            await client.ws.send_message(json.dumps({"id": 1, "op": "ping", "pad": "x" * 2000}))
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                while True:
                    await client.items()
            assert closed.value.reason.code == 1009


async def test_multibyte_text_over_the_byte_limit_closes_with_1009(tmp_path: Path) -> None:
    # 600 characters but 1800 bytes: trio-websocket counts characters, the server bytes.
    with trio.fail_after(10):
        async with (
            open_server(tmp_path, max_frame_bytes=1000) as running,
            open_client(running.address) as client,
        ):
            await client.ws.send_message(
                json.dumps({"id": 1, "pad": "€" * 600}, ensure_ascii=False)
            )
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                while True:
                    await client.items()
            assert closed.value.reason.code == 1009


async def test_subscribe_with_since_gets_exactly_what_was_missed(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path) as running:
            async with open_client(running.address) as watcher:
                state = (await watcher.call("openSession", project="blog"))["session"]
                session = state["session"]
                await watcher.call("subscribe", session=session, since=state["seq"])
                async with open_client(running.address) as client:
                    await client.call("subscribe", session=session, since=state["seq"])
                    await client.call("sendMessage", session=session, content="[[tokens:200]] a")
                    first = await client.event(lambda e: e["event"] == "streamingUpdate")
                    seen = [e for e in client.events if e["session"] == session] + [first]
                last_seen = max(e["seq"] for e in seen)

                watcher.events.append(await watcher.event(turn_ended(session)))
                # The turn went on while nobody listened for it on this client.
                async with open_client(running.address) as again:
                    result = await again.call("subscribe", session=session, since=last_seen)
                    assert "reset" not in result
                    end = result["seq"]
                    await read_up_to(again, session, end)
                await read_up_to(watcher, session, end)
            reference = [
                e for e in watcher.events if e["session"] == session and e["seq"] > state["seq"]
            ]

    replayed = [e for e in again.events if e["session"] == session]
    # The missed seqs in order, then live ones after them: no duplicate, and no gap but inside
    # a merged run of deltas (the replay retains runs of deltas as one update).
    seqs = [e["seq"] for e in replayed]
    assert seqs == sorted(set(seqs)) and end in seqs
    for before, after in itertools.pairwise([last_seen, *seqs]):
        skipped = after - before > 1
        assert not skipped or replayed[seqs.index(after)]["event"] == "streamingUpdate"
    replayed = [e for e in replayed if e["seq"] <= end]
    everything = [*seen, *replayed]
    updates = [e for e in everything if e["event"] == "streamingUpdate"]
    added = [e["data"]["message"] for e in everything if e["event"] == "messageAdded"]
    assert reassemble(updates) == added[-1]["content"]

    # What the client has is what a watcher that never left saw (deltas aside: they merge).
    def solid(events: list[dict[str, Any]]) -> list[Any]:
        return [
            (e["seq"], e["event"], e["data"]) for e in events if e["event"] != "streamingUpdate"
        ]

    assert solid(everything) == solid([e for e in reference if e["seq"] <= end])


async def test_notifications_reach_clients_viewing_other_projects(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with (
            open_server(tmp_path) as running,
            open_client(running.address) as viewer,
            open_client(running.address) as elsewhere,
        ):
            session = (await viewer.call("openSession", project="blog"))["session"]["session"]
            await viewer.call("focusProject", project="blog")
            await elsewhere.call("focusProject", project="shop")
            await viewer.call("sendMessage", session=session, content="hello")
            note = await elsewhere.event(lambda e: e["event"] == "notification")
            assert note["project"] == "blog" and note["data"]["kind"] == "completed"
            await viewer.event(turn_ended(session))
            # Anything the viewer was sent with the other's notification comes before this.
            await viewer.call("ping")
            assert not [e for e in viewer.events if e["event"] == "notification"]


def test_each_connection_gets_the_server_settings_of_the_same_names() -> None:
    values: dict[str, Any] = {
        "max_frame_bytes": 1000,
        "send_queue_bytes": 2000,
        "subscription_capacity": 30,
        "send_interval": 0.5,
        "ping_interval": 6.0,
        "ping_timeout": 7.0,
        "close_timeout": 8.0,
    }
    settings = ServerSettings(token="t", **values)
    assert settings.connection_settings() == ConnectionSettings(**values)
    # Every field a connection has is one the server's settings set (none left at a default).
    assert {field.name for field in attrs.fields(ConnectionSettings)} == set(values)
