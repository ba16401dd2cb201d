"""Plots of the results, with matplotlib (the ``bench`` extra); skipped without it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_stream(result: dict[str, Any], path: Path) -> Path | None:
    """Latency (p50, p99, max) and throughput against N, next to the JSON."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: install matplotlib, e.g. pip install -e '.[bench]')")
        return None
    runs = sorted(result["runs"], key=lambda r: r["sessions"])
    n = [r["sessions"] for r in runs]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max"),
                       ("p99_upper_ms", "p99 (upper bound)")):  # fmt: skip
        lat.plot(n, [r.get(key) or 0 for r in runs], marker="o", label=label)
    lat.axhline(100, color="grey", linestyle=":", label="target p99 100 ms")
    lat.set_xscale("log")
    lat.set_yscale("log")
    lat.set_xlabel("sessions (N)")
    lat.set_ylabel("token latency, ms")
    lat.set_title(f"latency, {result['rate']:g} tokens/s per session, {result['clients']} clients")
    lat.legend()
    for key, label in (("tokens_generated_per_s", "tokens generated/s"),
                       ("events_delivered_per_s", "events delivered/s"),
                       ("token_deliveries_per_s", "tokens delivered/s"),
                       ("frames_per_s", "frames/s")):  # fmt: skip
        thr.plot(n, [r.get(key) or 0 for r in runs], marker="o", label=label)
    for kind, peer in result.get("peers", {}).items():
        thr.axhline(peer["events_delivered_per_s"], linestyle="--",
                    color="red" if kind == "trio" else "purple",
                    label=f"{kind} one frame per event (max)")  # fmt: skip
    thr.set_xscale("log")
    thr.set_yscale("log")
    thr.set_xlabel("sessions (N)")
    thr.set_ylabel("per second")
    thr.set_title("throughput")
    thr.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
