"""Tokens through the runtime in this process, with no websocket: what a token costs before
any connection touches it.

    python -m bench.pipeline                          # 1,000 sessions x 20 tokens/s, 10 s
    python -m bench.pipeline --rate 2000 --tokens 500 --sessions 200   # bursts
    python -m bench.pipeline --flush-interval 5       # the partials file written less often

N sessions each run one turn of T tokens at R tokens/s (the simulated provider, paced as in
the stream scenario), in a runtime opened here on a temporary folder, with one in-process
client subscribed to all of them. Reports the CPU seconds this process used per token
generated (all threads: the persistence thread's writes count), and the wall time. Compare
with the stream scenario's ``cpu_us_per_token`` (one client over a websocket, or ten) to see
what the transport adds to the pipeline: sessions, journal, mirror, bus, persistence.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import trio

from bench.common import print_pairs, temp_folder, write_result
from greenroom.config import Config
from greenroom.protocol import commands as cmd
from greenroom.protocol.events import LoadingChanged
from greenroom.runtime import open_runtime


async def run_pipeline(
    folder: Path, sessions: int, tokens: int, rate: float, flush_interval: float = 1.0
) -> dict[str, Any]:
    config = Config(
        data_dir=folder / "data", projects_dir=folder / "projects", flush_interval=flush_interval
    )
    limit = 120 + sessions / 20 + tokens / rate * 4
    with trio.fail_after(limit):
        async with (
            open_runtime(config) as runtime,
            runtime.connect("bench", capacity=1 << 22) as client,
        ):
            ids = []
            for i in range(sessions):
                opened = await runtime.execute(cmd.OpenSession(project=f"p{i:05}"))
                ids.append(opened.summary.session)
                client.subscribe(ids[-1])
            started, used = time.monotonic(), time.process_time()
            content = f"[[tokens:{tokens}]] [[rate:{rate:g}]] go"
            for session in ids:
                await runtime.execute(cmd.SendMessage(session=session, content=content))
            ended = 0
            while ended < sessions:
                if not await client.events.wait():
                    raise RuntimeError("the client's subscription overflowed")
                for event in client.events.take():
                    data = event.data
                    if isinstance(data, LoadingChanged) and not data.loading:
                        ended += 1
            wall, cpu = time.monotonic() - started, time.process_time() - used
    generated = sessions * tokens
    return {
        "sessions": sessions,
        "tokens": generated,
        "rate": rate,
        "flush_interval": flush_interval,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 3),
        "cpu_us_per_token": round(cpu / generated * 1e6, 1),
        "tokens_per_s": round(generated / wall),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=200, help="per session")
    parser.add_argument("--rate", type=float, default=20.0, help="tokens/s per session")
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=1.0,
        help="seconds between the persistence's writes (the server's default: 1)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    print(f"pipeline: {args.sessions} sessions x {args.tokens} tokens at {args.rate:g}/s ...")
    with temp_folder() as folder:
        result = trio.run(
            run_pipeline, folder, args.sessions, args.tokens, args.rate, args.flush_interval
        )
    print_pairs(result)
    write_result("pipeline", result, Path(args.out) if args.out else None)


if __name__ == "__main__":
    main()
