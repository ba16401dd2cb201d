"""Hot spots of a py-spy profile in collapsed-stack form (``py-spy record --format raw``).

    python -m bench.hotspots bench/results/profile-1000.txt [--top 25]

Prints, per function (file:function), its share of the samples as the innermost frame (self)
and anywhere on the stack (total), so the figures can go straight into a report.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path


def _name(frame: str) -> str:
    frame = frame.strip()
    match = re.match(r"^(.*?) \((.*)\)$", frame)
    if not match:
        return frame
    func, where = match.groups()
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "greenroom/", "lib/python3"):
        if marker in path:
            path = path[path.index(marker) :]
            break
    return f"{path}:{func}"


def hotspots(text: str) -> tuple[int, Counter[str], Counter[str]]:
    total = 0
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            anywhere[name] += count
    return total, own, anywhere


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotspots", description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    total, own, anywhere = hotspots(args.profile.read_text())
    print(f"{total} samples")
    print("\nself (innermost frame):")
    for name, count in own.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("\ntotal (anywhere on the stack):")
    for name, count in anywhere.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
