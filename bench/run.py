"""Run one scenario of the bench suite by name, or all of them (quick figures).

    python bench/run.py stream [--sweep ...]     python -m bench.stream
    python bench/run.py idle                     python -m bench.idle
    python bench/run.py persist                  python -m bench.persist
    python bench/run.py crash                    python -m bench.crash
    python bench/run.py flood                    python -m bench.flood
    python bench/run.py ramp                     python -m bench.ramp
    python bench/run.py cluster                  python -m bench.cluster
    python bench/run.py pipeline                 python -m bench.pipeline
    python bench/run.py all                      every scenario in its quick configuration

The arguments after the scenario go to its own command (``--help`` lists them).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` and `greenroom` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import cluster, crash, flood, idle, persist, pipeline, ramp, stream

SCENARIOS = {"stream": stream.main, "idle": idle.main, "persist": persist.main,
             "crash": crash.main, "flood": flood.main, "ramp": ramp.main,
             "cluster": cluster.main, "pipeline": pipeline.main}  # fmt: skip
QUICK = {
    "stream": ["--sessions", "100", "--seconds", "3", "--peer-seconds", "2"],
    "idle": ["--sessions", "1000"],
    "persist": ["all", "--sessions", "100", "--seconds", "3", "--lengths", "10,100,1000",
                "--reply-tokens", "100,1000"],
    "crash": ["--sessions", "20", "--turns", "2", "--idle", "1000", "--busy", "20"],
    "flood": ["--rounds", "2"],
    "ramp": ["--sessions", "200", "--rounds", "1"],
    "cluster": ["--sessions", "50", "--seconds", "3", "--cross-sessions", "20", "--leases", "2"],
    "pipeline": ["--sessions", "200", "--tokens", "60"],
}  # fmt: skip


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in (*SCENARIOS, "all"):
        print(__doc__)
        return 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        for scenario, run in SCENARIOS.items():
            print(f"== {scenario}", flush=True)
            run(QUICK[scenario] + rest)
        return 0
    SCENARIOS[name](rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
