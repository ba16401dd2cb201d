"""Closing a connection lingers, so that a peer still sending is not cut off with a reset."""

from __future__ import annotations

import attrs
import trio

from greenroom.web.http import close_lingering

PAYLOAD = b"x" * (8 << 20)  # far more than the socket buffers hold


@attrs.define
class Peer:
    sent_all: bool = False
    received: bytes = b""


async def close_while_the_peer_sends(*, linger: bool) -> Peer:
    """The server writes its last words and closes while the peer is still sending (as a
    client does with a frame over the size limit): what the peer got through."""
    peer = Peer()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            client = await trio.open_tcp_stream("127.0.0.1", port)

            async def client_side() -> None:
                try:
                    await client.send_all(PAYLOAD)
                    peer.sent_all = True
                    received = bytearray()
                    while chunk := await client.receive_some(1 << 16):
                        received += chunk
                    peer.received = bytes(received)
                except trio.BrokenResourceError:
                    pass  # reset by the server
                finally:
                    await client.aclose()

            nursery.start_soon(client_side)
            stream = await listeners[0].accept()
            await stream.receive_some(1)  # the peer is sending
            await stream.send_all(b"bye")
            if linger:
                await close_lingering(stream, 30)
            else:
                await stream.aclose()
    await listeners[0].aclose()
    return peer


async def test_a_lingering_close_lets_the_peer_finish_and_read_the_last_words() -> None:
    assert await close_while_the_peer_sends(linger=True) == Peer(sent_all=True, received=b"bye")


async def test_without_lingering_the_peer_is_reset_mid_send() -> None:
    # What lingering prevents: the close resets the connection under the peer's send.
    assert not (await close_while_the_peer_sends(linger=False)).sent_all


async def test_a_peer_that_never_closes_is_given_up_after_the_linger(
    autojump_clock: trio.abc.Clock,
) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    stream = await listeners[0].accept()
    started = trio.current_time()
    with trio.fail_after(60):
        await close_lingering(stream, 5)  # the peer stays open and silent
    assert 5 <= trio.current_time() - started < 6
    assert await client.receive_some(10) == b""  # it sees the close
    await client.aclose()
    await listeners[0].aclose()
