"""Running the real ``greenroom serve`` as a subprocess, for the end-to-end tests."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

REPO = Path(__file__).resolve().parents[2]
WAIT = 60.0
"""The bound on a process's start, stop or line: far above what a loaded machine needs."""


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


async def start_server(
    tmp_path: Path,
    *extra: str,
    provider: str = "simulated",
    env: dict[str, str] | None = None,
    limit: float = WAIT,
) -> Server:
    """``greenroom serve`` on a free port, with ``extra`` arguments; ``provider`` is the one
    its banner must name. ``env``: the process's environment (a ``GREENROOM_TOKEN`` in it is
    the token); ``limit``: how long it may take to print its banner."""
    config_dir, data_dir = tmp_path / "config", tmp_path / "data"
    tmp_path.mkdir(parents=True, exist_ok=True)
    stderr = tmp_path / f"serve-{len(list(tmp_path.glob('serve-*')))}.log"
    with stderr.open("wb") as err:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "greenroom", "serve", "--port", "0",
             "--data-dir", str(data_dir), "--config-dir", str(config_dir), *extra],
            stdout=subprocess.PIPE, stderr=err, cwd=REPO, env=env,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        buffer = bytearray()
        with trio.fail_after(limit):
            first = await _read_line(process.stdout, buffer)
            second = await _read_line(process.stdout, buffer)
    except BaseException:
        process.kill()
        raise
    prefix = "greenroom serving at "
    assert first.startswith(prefix), first
    url, _, token = first.removeprefix(prefix).partition("?token=")
    if env is not None and "GREENROOM_TOKEN" in env:  # not printed: the operator's own
        url, token = url.removesuffix(" (token: GREENROOM_TOKEN)"), env["GREENROOM_TOKEN"]
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
    with trio.fail_after(WAIT):
        return await server.process.wait()


async def start_node(
    tmp_path: Path, node: str, database_url: str, bus_url: str, *extra: str
) -> Server:
    """``greenroom serve`` as node ``node`` of a cluster on the given engines: its own config
    and data folders (``tmp_path/node``), the projects folder and the token
    (:data:`CLUSTER_TOKEN`) every node shares. A node restarted with the same id waits out its
    killed predecessor's lease before it prints its banner, hence the long limit."""
    env = cli_env(None, GREENROOM_TOKEN=CLUSTER_TOKEN)
    return await start_server(
        tmp_path / node,
        "--database-url", database_url, "--bus-url", bus_url, "--node-id", node,
        "--projects-dir", str(tmp_path / "projects"), *extra,
        env=env, limit=90,
    )  # fmt: skip


CLUSTER_TOKEN = "cluster-token-0123456789abcdefghijklmnopqrstuvwxyz"
"""The token every node of a test's cluster accepts."""


async def kill_server(server: Server) -> None:
    """SIGKILL: no cleanup, no flush, as a crash or the OOM killer would."""
    if server.process.returncode is None:
        server.process.kill()
    with trio.fail_after(WAIT):
        await server.process.wait()


async def logged(server: Server, text: str) -> None:
    """Wait until ``server`` has logged ``text`` (its lifecycle log says what happened)."""
    with trio.fail_after(WAIT):
        while text not in server.stderr.read_text(errors="replace"):  # noqa: ASYNC110 - a file
            await trio.sleep(0.1)


def log_tail(log: Path, lines: int = 30) -> str:
    """The last ``lines`` of a server's log, for a failure's message."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# -- the CLI as a subprocess ----------------------------------------------------------------------


def cli_env(server: Server | None, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: the test's own config folder (so that it finds
    ``server`` by its server.json and token), none of the caller's GREENROOM_ variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENROOM_")}
    if server is not None:
        env["GREENROOM_CONFIG_DIR"] = str(server.config_dir)
    env.update(extra)
    return env


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "greenroom", *args]


async def run_cli(
    server: Server | None, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``greenroom ARGS`` to its end, stdin and the outputs being pipes."""
    with trio.fail_after(60):
        return await trio.run_process(
            cli_argv(*args),
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env if env is not None else cli_env(server),
            cwd=REPO,
        )


@attrs.define(eq=False)
class Output:
    """What a running CLI process wrote on one stream, to be waited on."""

    data: bytearray = attrs.Factory(bytearray)
    changed: trio.Event = attrs.Factory(trio.Event)
    closed: bool = False

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    async def pump(self, stream: trio.abc.ReceiveStream) -> None:
        try:
            while chunk := await stream.receive_some(65536):
                self.data += chunk
                self.changed.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # a pty whose other side closed reads as EIO
        self.closed = True
        self.changed.set()

    async def shows(self, text: str, *, after: int = 0, limit: float = 60) -> int:
        """Wait until ``text`` is written (at or after offset ``after``); where it ends."""
        with trio.fail_after(limit):
            while True:
                found = self.text.find(text, after)
                if found >= 0:
                    return found + len(text)
                if self.closed:
                    raise AssertionError(f"{text!r} never came; got {self.text!r}")
                self.changed = trio.Event()
                await self.changed.wait()


@attrs.define(eq=False)
class Cli:
    """A running CLI process: its outputs, and its stdin (a pipe, or the pty's other side)."""

    process: trio.Process
    out: Output
    err: Output
    typing: trio.abc.SendStream | None

    async def type(self, text: str) -> None:
        assert self.typing is not None
        await self.typing.send_all(text.encode())

    async def wait(self, limit: float = 60) -> int:
        with trio.fail_after(limit):
            return await self.process.wait()


@asynccontextmanager
async def open_cli(
    server: Server | None,
    *args: str,
    env: dict[str, str] | None = None,
    sigint_ignored: bool = False,
) -> AsyncIterator[Cli]:
    """``greenroom ARGS`` running, with its outputs as pipes (stdin: /dev/null); killed on
    the way out if it still runs. ``sigint_ignored``: started with SIGINT ignored, as a shell
    script starts a job in the background."""
    argv = cli_argv(*args)
    if sigint_ignored:
        argv = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *argv]
    process = await trio.lowlevel.open_process(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env if env is not None else cli_env(server),
        cwd=REPO,
    )
    assert process.stdout is not None and process.stderr is not None
    cli = Cli(process=process, out=Output(), err=Output(), typing=None)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cli.out.pump, process.stdout)
            nursery.start_soon(cli.err.pump, process.stderr)
            try:
                yield cli
            finally:
                await _end(process)
    finally:
        await _end(process)
        with trio.CancelScope(shield=True):  # its pipes: the pumps are done with them
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    await pipe.aclose()


@asynccontextmanager
async def open_tty_cli(
    server: Server | None,
    *args: str,
    env: dict[str, str] | None = None,
    rows: int = 40,
    columns: int = 160,
) -> AsyncIterator[Cli]:
    """``greenroom ARGS`` on a pseudo-terminal (stdin, stdout and stderr), as in a terminal
    window of ``rows`` x ``columns``. ``out`` has what it draws (stdout and stderr together,
    as a terminal shows them); ``err`` stays empty."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    environment = env if env is not None else cli_env(server)
    environment.update(TERM="xterm-256color", COLUMNS=str(columns), LINES=str(rows))
    try:
        process = await trio.lowlevel.open_process(
            cli_argv(*args),
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env=environment,
            cwd=REPO,
            start_new_session=True,  # a session of its own, as a shell gives a job
        )
    finally:
        os.close(follower)
    terminal = trio.lowlevel.FdStream(leader)
    cli = Cli(process=process, out=Output(), err=Output(), typing=terminal)
    try:
        async with terminal, trio.open_nursery() as nursery:
            nursery.start_soon(cli.out.pump, terminal)
            try:
                yield cli
            finally:
                await _end(process)
                nursery.cancel_scope.cancel()
    finally:
        await _end(process)


async def _end(process: trio.Process) -> None:
    if process.returncode is None:
        process.kill()
    with trio.CancelScope(shield=True), trio.move_on_after(10):
        await process.wait()
