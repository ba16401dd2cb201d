"""cancelQueued over real sockets: the raw websocket protocol (both encodings) and the client."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from greenroom.protocol.codec import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, Subprotocol
from greenroom.protocol.convert import QUEUED_PREVIEW_CHARS
from greenroom.transport.client import CommandError, connect
from tests.transport.test_client import TOKEN, open_subscribed, running_server
from tests.transport.test_server_support import open_client, open_server, turn_ended

BOTH = pytest.mark.parametrize("subprotocol", [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK])


@BOTH
async def test_cancel_queued_over_the_websocket(tmp_path: Path, subprotocol: Subprotocol) -> None:
    long = "x" * (QUEUED_PREVIEW_CHARS + 10)
    with trio.fail_after(20):
        async with (
            open_server(tmp_path) as running,
            open_client(running.address, subprotocol=subprotocol) as client,
        ):
            assert (await client.next_item())["event"] == "welcome"
            session = (await client.call("openSession", project="blog"))["session"]["session"]
            await client.call("subscribe", session=session)
            await client.call("sendMessage", session=session, content="busy [[stall]]")
            for text in ("one", long, "three"):
                await client.call("sendMessage", session=session, content=text)
            summary = (
                await client.event(
                    lambda e: e["event"] == "sessionUpdated"
                    and len(e["data"]["queued"]) == 3
                )
            )["data"]
            preview = summary["queued"][1]
            assert preview == long[:QUEUED_PREVIEW_CHARS]

            result = await client.call(
                "cancelQueued", session=session, index=1, preview=preview
            )
            assert result == {"removed": long}
            updated = await client.event(
                lambda e: e["event"] == "sessionUpdated"
                and e["data"]["queued"] == ["one", "three"]
            )
            assert updated["session"] == session

            # The same click again: the queue moved, nothing more is removed.
            assert await client.error(
                "cancelQueued", session=session, index=1, preview=preview
            ) == "conflict"
            assert await client.error(
                "cancelQueued", session=session, index=5, preview="one"
            ) == "conflict"
            assert await client.error(
                "cancelQueued", session=session, index=-1, preview="one"
            ) == "invalid_argument"
            assert await client.error(
                "cancelQueued", session=session, index="0", preview="one"
            ) == "bad_request"
            assert await client.error(
                "cancelQueued", session="s-nope", index=0, preview="one"
            ) == "not_found"
            state = (await client.call("openSession", project="blog"))["session"]
            assert state["queued"] == ["one", "three"]

            await client.call("stopGeneration", session=session)
            await client.event(turn_ended(session))


async def test_the_client_cancels_a_queued_message(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with running_server(tmp_path) as (_, url, _), connect(url, TOKEN) as client:
            session = await open_subscribed(client, "site")
            await client.send_message(session, "busy [[stall]]")
            await client.send_message(session, "first")
            await client.send_message(session, "second")
            assert await client.cancel_queued(session, 0, "first") == {"removed": "first"}
            with pytest.raises(CommandError) as caught:
                await client.cancel_queued(session, 0, "first")
            assert caught.value.code == "conflict"
            state = (await client.open_session("site"))["session"]
            assert state["queued"] == ["second"]
            assert await client.stop_generation(session) == {"discarded": ["second"]}
