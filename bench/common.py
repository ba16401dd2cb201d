"""What the scenarios share: starting ``greenroom serve`` and the drivers as subprocesses,
reading a process's CPU, memory and disk counters from /proc, and writing results.

Every subprocess started here is killed in a ``finally``; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import attrs

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
SERVE_PREFIX = "greenroom serving at "
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` figure in KiB (VmRSS, VmHWM, ...)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def io_counters(pid: int) -> dict[str, int]:
    """``/proc/PID/io``: write_bytes (to the storage layer), wchar (write syscalls), ..."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/io") as io:
            for line in io:
                key, _, value = line.partition(":")
                out[key.strip()] = int(value)
    except OSError:
        pass
    return out


def host_cpu_times() -> tuple[int, int]:
    """``(steal, total)`` jiffies of the whole host so far, from the first line of /proc/stat:
    the time a hypervisor gave this machine's CPUs to someone else, and all time."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    steal = fields[7] if len(fields) > 7 else 0
    return steal, sum(fields[:8])


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def pin(pid: int, cpu: int) -> None:
    """Keep ``pid`` on one core (server on 0, clients on 1) when there are two or more."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {cpus[cpu % len(cpus)]})


# -- subprocesses -----------------------------------------------------------------------------


def read_line(stream: IO[bytes], deadline: float) -> str:
    """One line from a child's pipe, or TimeoutError at ``deadline`` (time.monotonic)."""
    data = b""
    fd = stream.fileno()
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no line in time; got {data!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        byte = os.read(fd, 1)
        if not byte:
            raise EOFError(f"the process ended; got {data!r}")
        data += byte
    return data.decode().rstrip("\n")


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> int | None:
    """SIGTERM, wait up to ``grace``, then SIGKILL. Returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for pipe in (process.stdout, process.stderr, process.stdin):
        if pipe is not None:
            pipe.close()
    return process.returncode


@attrs.define(eq=False)
class Served:
    """A running ``greenroom serve``."""

    process: subprocess.Popen[bytes]
    url: str  # ws://127.0.0.1:PORT/ws, no token
    token: str
    host: str
    port: int
    data_dir: Path
    started: float  # time.monotonic() just before the process was started
    serving_after: float  # seconds from start to the "serving at" line

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def temp_folder(prefix: str = "greenroom-bench-") -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def start_server(
    folder: Path,
    *extra: str,
    timeout: float = 120.0,
    cpu: int | None = 0,
    env: dict[str, str] | None = None,
) -> Served:
    """``greenroom serve --port 0`` on 127.0.0.1 with data and config under ``folder``; of
    this process's GREENROOM_* variables only those in ``env`` reach it (the token given as
    GREENROOM_TOKEN is then ``Served.token``)."""
    data_dir, config_dir = folder / "data", folder / "config"
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "serve.log").open("ab")
    given = env or {}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for key in list(env):
        if key.startswith("GREENROOM_"):
            del env[key]
    env.update(given)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "greenroom", "serve", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(data_dir), "--config-dir", str(config_dir), *extra],
        stdout=subprocess.PIPE, stderr=log, cwd=REPO, env=env,
    )  # fmt: skip
    log.close()
    try:
        if cpu is not None:
            pin(process.pid, cpu)
        assert process.stdout is not None
        line = read_line(process.stdout, started + timeout)
        serving_after = time.monotonic() - started
        if not line.startswith(SERVE_PREFIX):
            raise RuntimeError(f"unexpected first line from greenroom serve: {line!r}")
        # "URL?token=T", or "URL (token: GREENROOM_TOKEN)" when the token was given.
        url, _, token = line.removeprefix(SERVE_PREFIX).split(" ", 1)[0].partition("?token=")
        token = token or given.get("GREENROOM_TOKEN", "")
        hostport = url.removeprefix("ws://").split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        return Served(
            process=process,
            url=url,
            token=token,
            host=host,
            port=int(port),
            data_dir=data_dir,
            started=started,
            serving_after=serving_after,
        )
    except BaseException:
        process.kill()
        stop_process(process)
        raise


@contextlib.contextmanager
def serving(folder: Path, *extra: str, timeout: float = 120.0) -> Iterator[Served]:
    served = start_server(folder, *extra, timeout=timeout)
    try:
        yield served
    finally:
        stop_process(served.process)


def run_driver(
    args: Sequence[str], *, timeout: float, cpu: int | None = 1, module: str = "bench.driver"
) -> dict[str, Any]:
    """Run ``python -m MODULE ARGS`` (the websocket clients, in their own process: by default
    bench.driver's) and return the JSON it prints last."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        if cpu is not None:
            pin(process.pid, cpu)
        out, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    if process.returncode != 0:
        raise RuntimeError(f"{module} {args[0]} exited {process.returncode}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


# -- results ----------------------------------------------------------------------------------


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max, in milliseconds."""
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] * 1000, 2)

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 2)}


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [[str(c) for c in columns]]
    for row in rows:
        cells.append([_cell(row.get(c)) for c in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        print("  ".join(cell.rjust(widths[i]) for i, cell in enumerate(line)))


def print_pairs(result: dict[str, Any]) -> None:
    flat = {k: v for k, v in result.items() if not isinstance(v, dict | list)}
    width = max((len(k) for k in flat), default=0)
    for key, value in flat.items():
        print(f"{key:<{width}}  {_cell(value)}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def write_result(name: str, result: dict[str, Any], out_dir: Path | None = None) -> Path:
    folder = out_dir or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    result = {"scenario": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "machine": machine(), **result}  # fmt: skip
    path = folder / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    latest = folder / f"{name}-latest.json"
    latest.write_text(json.dumps(result, indent=2) + "\n")
    print(f"(results: {path})")
    return path


@contextlib.contextmanager
def profiling(pid: int, out: Path | None) -> Iterator[None]:
    """py-spy record of the server (collapsed stacks, for bench/hotspots.py) while inside."""
    if out is None:
        yield
        return
    spy = subprocess.Popen(
        [py_spy(), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
         "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(timeout=10)


def py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
