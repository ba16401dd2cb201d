"""Scenario 7: floods of big queued texts to a client that stopped reading; RSS after each.

    python -m bench.flood                       # 3 rounds of 24 queued texts of 250,000 chars
    python -m bench.flood --rounds 5 --queued 32

A fresh ``greenroom serve`` (core 0) and, in ``python -m bench.driver flood`` (core 1), a
reading control client and, each round, a client that subscribes and never reads again, then a
session with a long turn and the texts queued behind it. Once every turn has ended the session
is deleted and the server's RSS read after a short settle. The figure to look at is
``rss_after_vs_before``: the server must come back to within 10% of where it started, round
after round, and the stalled client must be closed (``closed_slow``) rather than buffered.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.common import print_pairs, print_table, run_driver, serving, temp_folder, write_result

COLUMNS = ("round", "turns_ended", "turns_seconds", "closed_slow", "peak_rss_kib",
           "rss_after_kib", "rss_after_vs_before")  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flood",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queued", type=int, default=24, help="texts queued per round")
    parser.add_argument("--size", type=int, default=250_000, help="characters per text")
    parser.add_argument("--tokens", type=int, default=40, help="tokens of each turn")
    parser.add_argument("--rate", type=float, default=20.0, help="tokens/s of each turn")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before each RSS")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    args = parser.parse_args(argv)
    print(f"flood: {args.rounds} rounds of {args.queued} x {args.size:,} chars ...", flush=True)
    with temp_folder() as folder, serving(folder) as served:
        result = run_driver(
            ["flood", "--port", str(served.port), f"--token={served.token}",
             "--server-pid", str(served.pid), "--rounds", str(args.rounds),
             "--queued", str(args.queued), "--size", str(args.size),
             "--tokens", str(args.tokens), "--rate", str(args.rate),
             "--settle", str(args.settle)],
            timeout=args.rounds * (args.tokens / args.rate + 120 + args.queued * 10),
        )  # fmt: skip
    print()
    print_pairs(result)
    print_table(result["rounds"], COLUMNS)
    path_result = {"queued": args.queued, "size": args.size, **result}
    write_result("flood", path_result, args.out)
    return path_result


if __name__ == "__main__":
    main(sys.argv[1:])
