"""Running the real ``greenroom serve`` as a subprocess, for the end-to-end tests."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import attrs
import trio

REPO = Path(__file__).resolve().parents[2]


@attrs.frozen(kw_only=True)
class Server:
    process: trio.Process
    url: str  # without the token
    token: str
    config_dir: Path
    data_dir: Path
    stderr: Path


async def _read_line(stream: trio.abc.ReceiveStream, buffer: bytearray) -> str:
    while b"\n" not in buffer:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise AssertionError(f"greenroom serve exited early; stdout: {bytes(buffer)!r}")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line.decode()


async def start_server(tmp_path: Path, *extra: str, provider: str = "simulated") -> Server:
    """``greenroom serve`` on a free port, with ``extra`` arguments; ``provider`` is the one
    its banner must name."""
    config_dir, data_dir = tmp_path / "config", tmp_path / "data"
    stderr = tmp_path / f"serve-{len(list(tmp_path.glob('serve-*')))}.log"
    with stderr.open("wb") as err:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "greenroom", "serve", "--port", "0",
             "--data-dir", str(data_dir), "--config-dir", str(config_dir), *extra],
            stdout=subprocess.PIPE, stderr=err, cwd=REPO,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        buffer = bytearray()
        with trio.fail_after(15):
            first = await _read_line(process.stdout, buffer)
            second = await _read_line(process.stdout, buffer)
    except BaseException:
        process.kill()
        raise
    prefix = "greenroom serving at "
    assert first.startswith(prefix), first
    url, _, token = first.removeprefix(prefix).partition("?token=")
    assert second.startswith(f"provider: {provider}"), second
    assert provider != "simulated" or "no model" in second
    return Server(
        process=process,
        url=url,
        token=token,
        config_dir=config_dir,
        data_dir=data_dir,
        stderr=stderr,
    )


async def stop_server(server: Server, sig: int = signal.SIGTERM) -> int:
    """Signal the server and wait (bounded) for its exit code."""
    if server.process.returncode is None:
        server.process.send_signal(sig)
    with trio.fail_after(10):
        return await server.process.wait()


async def kill_server(server: Server) -> None:
    """SIGKILL: no cleanup, no flush, as a crash or the OOM killer would."""
    if server.process.returncode is None:
        server.process.kill()
    with trio.fail_after(10):
        await server.process.wait()
