"""The bench suite still runs: each scenario in its quickest configuration, a few seconds each.

No timing is asserted (timings belong in bench/); only that every scenario completes and writes
the JSON keys that bench/README.md describes.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

from bench import cluster, crash, flood, idle, persist, pipeline, ramp, stream


def _written(folder: Path, name: str) -> dict[str, object]:
    data = json.loads((folder / f"{name}-latest.json").read_text())
    assert isinstance(data, dict)
    assert data["scenario"] == name and "machine" in data
    return data


def test_stream_runs_and_reports(tmp_path: Path) -> None:
    stream.main(["--sessions", "10", "--seconds", "1", "--clients", "2", "--repeat", "2",
                 "--peer-seconds", "0.5", "--out", str(tmp_path)])  # fmt: skip
    data = _written(tmp_path, "stream")
    run = data["runs"][0]  # type: ignore[index]
    for key in ("tokens_generated_per_s", "events_delivered_per_s", "frames_per_s", "latency",
                "p99_ms", "server_cpu", "server_peak_rss_kib", "merged_deltas", "closed_slow",
                "vs_trio", "cpu_us_per_token", "client_cpu", "steal", "p99_range"):  # fmt: skip
        assert key in run
    assert run["sessions_completed_min"] == 10
    assert run["runs"] == 2 and len(run["p99_ms_all"]) == 2
    # Every event went through the journal: written in batches, some bytes each second.
    assert run["journal_writes_per_s"] > 0 and run["journal_bytes_per_s"] > 0
    assert "trio" in data["peers"]  # type: ignore[operator]


def test_idle_runs_and_reports(tmp_path: Path) -> None:
    idle.main(["--sessions", "200", "--out", str(tmp_path)])
    run = _written(tmp_path, "idle")["runs"][0]  # type: ignore[index]
    keys = ("serving_after_start_seconds", "welcome_after_start_seconds",
            "rss_bytes_per_idle_session", "list_sessions_seconds", "open_cold_seconds")  # fmt: skip
    for key in keys:
        assert key in run
    assert run["listed"] == 200


def test_persist_runs_and_reports(tmp_path: Path) -> None:
    persist.main(["all", "--sessions", "10", "--seconds", "1", "--rates", "50", "--lengths",
                  "10,100", "--reply-tokens", "10,100", "--out", str(tmp_path)])  # fmt: skip
    data = _written(tmp_path, "persist")
    assert "writes_per_session_per_s" in data["server"][0]  # type: ignore[index]
    assert "fsyncs_per_second" in data["in_process"]  # type: ignore[operator]
    disk = data["naive"]["disk"]  # type: ignore[index]
    assert [row["history_messages"] for row in disk] == [10, 100]


def test_crash_runs_and_reports(tmp_path: Path) -> None:
    collector = gc.get_threshold()
    crash.main(["--sessions", "5", "--turns", "1", "--probability", "1", "--backoff", "0",
                "--idle", "200", "--busy", "5", "--out", str(tmp_path)])  # fmt: skip
    assert gc.get_threshold() == collector  # tuned for the run only, in this process
    data = _written(tmp_path, "crash")
    restart = data["restart"][0]  # type: ignore[index]
    assert restart["committed_lost_live"] == 0 and restart["committed_lost_after_reopen"] == 0
    assert "crash_to_restarted" in restart
    kill = data["kill"]  # type: ignore[index]
    assert kill["restart_sessions_with_lost_messages"] == 0


def test_flood_runs_and_reports(tmp_path: Path) -> None:
    flood.main(["--rounds", "1", "--queued", "3", "--size", "100000", "--tokens", "4",
                "--rate", "50", "--settle", "0.2", "--out", str(tmp_path)])  # fmt: skip
    data = _written(tmp_path, "flood")
    (round_,) = data["rounds"]  # type: ignore[misc]
    assert round_["turns_ended"] == 4  # the long turn and the three queued behind it
    assert data["rss_before_kib"] > 0 and round_["rss_after_kib"] > 0  # type: ignore[operator]


def test_ramp_runs_and_reports(tmp_path: Path) -> None:
    ramp.main(["--sessions", "20", "--rounds", "2", "--out", str(tmp_path)])
    data = _written(tmp_path, "ramp")
    rows = {row["command"]: row for row in data["rows"]}  # type: ignore[attr-defined]
    assert set(rows) == {"sendMessage", "stopGeneration"}
    assert all(row["sessions"] == 20 and row["best_seconds"] > 0 for row in rows.values())
    assert len(data["times"]["send"]) == 2  # type: ignore[index]


def test_ramp_in_process_runs_and_reports(tmp_path: Path) -> None:
    ramp.main(["--in-process", "--sessions", "20", "--rounds", "2", "--out", str(tmp_path)])
    data = _written(tmp_path, "ramp")
    assert data["in_process"] is True
    rows = {row["command"]: row for row in data["rows"]}  # type: ignore[attr-defined]
    assert all(row["sessions"] == 20 and row["best_seconds"] > 0 for row in rows.values())
    assert len(data["times"]["stop"]) == 2  # type: ignore[index]


def test_cluster_runs_and_reports(tmp_path: Path) -> None:
    cluster.main(["--sessions", "4", "--clients", "2", "--seconds", "1", "--cross-sessions", "2",
                  "--leases", "1", "--failover-sessions", "2", "--out", str(tmp_path)])  # fmt: skip
    data = _written(tmp_path, "cluster")
    one, two = data["scale"]  # type: ignore[misc]
    assert (one["nodes"], two["nodes"]) == (1, 2)
    for row in (one, two):
        assert row["sessions_completed_min"] == 4 and not row["timed_out"]
        assert len(row["node_cpu"]) == row["nodes"] and "node_cores" in row
    # With two nodes, each client got the other node's sessions through the bus.
    assert one["cross_p99_ms"] is None and two["cross_p99_ms"] is not None
    across = data["cross"]["rows"][1]  # type: ignore[index]
    assert across["client"] == "on b (across)" and across["tokens"] == 2 * 20
    (failover,) = data["failover"]  # type: ignore[misc]
    assert failover["lease_seconds"] == 1 and failover["not_resumed"] == 0
    assert failover["seq_gaps"] == failover["seq_regressions"] == 0
    assert failover["streaming_max_ms"] is not None


def test_pipeline_runs_and_reports(tmp_path: Path) -> None:
    pipeline.main(["--sessions", "5", "--tokens", "10", "--rate", "100", "--out", str(tmp_path)])
    data = _written(tmp_path, "pipeline")
    assert data["tokens"] == 50 and data["cpu_us_per_token"] > 0
    for key in ("cpu_us_per_token", "wall_seconds", "tokens_per_s"):
        assert key in data
