"""Bare websocket servers that push the stream scenario's events, one frame per event, with
no greenroom in the way: the ceiling of the stack greenroom runs on, and a peer on another.

    python -m bench.peers trio       --sessions N --seconds S
    python -m bench.peers websockets --sessions N --seconds S

``trio`` is trio-websocket on trio (greenroom's own stack); ``websockets`` is the
``websockets`` library on asyncio (the ``bench`` extra). Each prints
``serving at ws://127.0.0.1:PORT/`` and then, for every client that connects and sends one
message, pushes ``streamingUpdate`` events of N sessions in turn, as fast as the connection
takes them, each encoded as JSON when it is sent and sent as its own frame, until S seconds
after the first client started; then it closes the connection (1000). Every event carries ``t``, the
``time.monotonic()`` of its sending, for the client's latency figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

WORDS = ("the", "garden", "river", "light", "stone", "quiet", "morning", "window", "paper",
         "story", "music", "bridge")  # fmt: skip


def events(sessions: int) -> Iterator[Callable[[], str]]:
    """Round-robin over the sessions; each yields a function giving the frame to send now."""
    ids = [f"s-{i:08x}" for i in range(sessions)]
    offsets = [0] * sessions
    seqs = [3] * sessions
    k = 0
    while True:
        i = k % sessions
        word = WORDS[k % len(WORDS)] + " "
        offset, seq = offsets[i], seqs[i]
        offsets[i] += len(word)
        seqs[i] += 1
        event: dict[str, Any] = {
            "event": "streamingUpdate", "session": ids[i], "project": f"p{i:05}", "seq": seq,
            "data": {"offset": offset, "delta": word, "toolCalls": None},
        }  # fmt: skip

        def frame(event: dict[str, Any] = event) -> str:
            event["t"] = time.monotonic()
            return json.dumps(event)

        yield frame
        k += 1


def run_trio(port: int, sessions: int, seconds: float) -> None:
    import trio
    import trio_websocket

    start: list[float] = []

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.get_message()
            if not start:
                start.append(time.monotonic())
            end = start[0] + seconds
            source = events(sessions)
            while time.monotonic() < end:
                await ws.send_message(next(source)())
            await ws.aclose(1000)
        except trio_websocket.ConnectionClosed:
            pass

    async def main() -> None:
        with trio.fail_after(seconds + 600):
            async with trio.open_nursery() as nursery:
                servers = await nursery.start(
                    trio_websocket.serve_websocket, handler, "127.0.0.1", port, None
                )
                print(f"serving at ws://127.0.0.1:{servers.port}/", flush=True)

    trio.run(main)


def run_websockets(port: int, sessions: int, seconds: float) -> None:
    import asyncio

    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    start: list[float] = []

    async def handler(ws: ServerConnection) -> None:
        try:
            await ws.recv()
            if not start:
                start.append(time.monotonic())
            end = start[0] + seconds
            source = events(sessions)
            while time.monotonic() < end:
                await ws.send(next(source)())
            await ws.close(1000)
        except ConnectionClosed:
            pass

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, compression=None) as server:
            bound = next(iter(server.sockets)).getsockname()[1]
            print(f"serving at ws://127.0.0.1:{bound}/", flush=True)
            await asyncio.sleep(seconds + 600)

    asyncio.run(main())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("kind", choices=("trio", "websockets"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.kind == "trio":
        run_trio(args.port, args.sessions, args.seconds)
    else:
        run_websockets(args.port, args.sessions, args.seconds)


if __name__ == "__main__":
    main(sys.argv[1:])
