"""The codec alone, in process: what encoding and decoding frames costs, in ns per item.

    python -m bench.codec                 # best of 7 rounds of each case
    python -m bench.codec --rounds 15

Each case runs in a loop on objects made beforehand, with a fresh codec and no shared
encodings (so every event is really encoded; the server shares an event's encoding between
its connections, which divides the encode figures by the number of clients). The best round
is taken: the figure least disturbed by whatever else the machine does.

- ``encode_delta``: a text ``streamingUpdate`` (most of all traffic), alone in a frame.
- ``encode_batch_of_50``: fifty deltas of fifty sessions in one frame, per delta.
- ``encode_tool_delta``: a ``streamingUpdate`` with a partial tool call.
- ``encode_listing``: a ``listSessions`` reply of 1,000 summaries, per summary (each new).
- ``encode_message_added``: a ``messageAdded`` of a 2,000-character reply.
- ``decode_send_message``: a client's ``sendMessage`` frame.
- ``decode_server_batch``: a frame of fifty deltas read by the Python client, per delta.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from bench.common import print_table, write_result


def cases() -> dict[str, tuple[int, Callable[[str], Callable[[], Any]]]]:
    """name -> (items per call, a maker of the call for a subprotocol)."""
    import attrs

    from greenroom.protocol.chat import Message
    from greenroom.protocol.codec import Codec, Reply, sessions_result
    from greenroom.protocol.events import (
        Event,
        MessageAdded,
        PartialToolCall,
        StreamingUpdate,
        Summary,
    )

    def delta(n: int) -> Event:
        return Event(
            session=f"s-{n:08x}", project=f"project-{n}", seq=1000 + n,
            data=StreamingUpdate(offset=5000 + n, delta="words "),
        )  # fmt: skip

    tool = Event(
        session="s-0000abcd", project="tools", seq=77,
        data=StreamingUpdate(offset=0, delta="", tool_calls=(
            PartialToolCall(index=0, id="call_1", name="write_file",
                            arguments='{"path": "notes.txt", "content": "hel'),
        )),
    )  # fmt: skip
    added = Event(
        session="s-0000abcd", project="blog", seq=78,
        data=MessageAdded(index=3, message=Message(role="assistant", content="word " * 400)),
    )
    summaries = [
        Summary(
            session=f"s-{n:08x}", project=f"project-{n}", name="2026-12-06T10-00-00Z-abc",
            status="idle", loading=False, message_count=40, last_activity=1.7e9 + n,
            preview=None,
        )
        for n in range(1000)
    ]

    def encode_delta(protocol: str) -> Callable[[], Any]:
        codec, event = Codec(protocol), delta(1)  # type: ignore[arg-type]
        return lambda: codec.encode([event])

    def encode_batch(protocol: str) -> Callable[[], Any]:
        codec, events = Codec(protocol), [delta(n) for n in range(50)]  # type: ignore[arg-type]
        return lambda: codec.encode(events)

    def encode_tool(protocol: str) -> Callable[[], Any]:
        codec = Codec(protocol)  # type: ignore[arg-type]
        return lambda: codec.encode([tool])

    def encode_listing(protocol: str) -> Callable[[], Any]:
        codec = Codec(protocol)  # type: ignore[arg-type]

        def call() -> Any:
            # New summary objects each time: a listing after a restart, none memoized.
            fresh = [attrs.evolve(s) for s in summaries]
            return codec.encode([Reply(re=1, result=sessions_result(fresh))])

        return call

    def encode_added(protocol: str) -> Callable[[], Any]:
        codec = Codec(protocol)  # type: ignore[arg-type]
        return lambda: codec.encode([added])

    def decode_send(protocol: str) -> Callable[[], Any]:
        from greenroom.protocol.commands import SendMessage

        client = Codec(protocol)  # type: ignore[arg-type]
        frame = client.encode_command(7, SendMessage(session="s-0000abcd", content="add a footer"))
        server = Codec(protocol)  # type: ignore[arg-type]
        return lambda: server.decode(frame)

    def decode_batch(protocol: str) -> Callable[[], Any]:
        codec = Codec(protocol)  # type: ignore[arg-type]
        frame = codec.encode([delta(n) for n in range(50)])
        return lambda: codec.decode_server(frame)

    return {
        "encode_delta": (1, encode_delta),
        "encode_batch_of_50": (50, encode_batch),
        "encode_tool_delta": (1, encode_tool),
        "encode_listing": (1000, encode_listing),
        "encode_message_added": (1, encode_added),
        "decode_send_message": (1, decode_send),
        "decode_server_batch": (50, decode_batch),
    }


PROTOCOLS = (("greenroom.v1.json", "json_ns"), ("greenroom.v1.msgpack", "msgpack_ns"))


def measure(call: Callable[[], Any], items: int, rounds: int, budget: float = 0.2) -> float:
    """ns per item: the best of ``rounds`` rounds of about ``budget`` seconds each."""
    loops = 1
    while True:  # calibrate: enough calls for one round to last about the budget
        started = time.perf_counter()
        for _ in range(loops):
            call()
        took = time.perf_counter() - started
        if took >= budget / 4:
            break
        loops *= 4
    loops = max(1, int(loops * budget / took))
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(loops):
            call()
        best = min(best, (time.perf_counter() - started) / (loops * items))
    return best * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rows = []
    for name, (items, make) in cases().items():
        row: dict[str, Any] = {"case": name}
        for protocol, column in PROTOCOLS:
            row[column] = round(measure(make(protocol), items, args.rounds))
        rows.append(row)
    print_table(rows, ["case", "json_ns", "msgpack_ns"])
    write_result("codec", {"rounds": args.rounds, "rows": rows})


if __name__ == "__main__":
    main()
