"""Private PostgreSQL and Redis servers for the cluster's tests.

Each is started on a free 127.0.0.1 port with its files in a temporary folder, and stopped
(and its folder removed) when the test session ends. PostgreSQL refuses to run as root: as
root, the server runs as the ``postgres`` system user that Debian's package makes. The
binaries are Debian's (``.ci/run`` installs ``postgresql`` and ``redis-server``; run as root
with apt, the tests install them when they are missing, as they do Chromium).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

from tests.debian import install_from_debian

START_SECONDS = 60.0
"""How long a server may take to accept connections (a loaded machine is slow to fork)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}: {log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the server did not listen on {port}: {log.read_text()}")


def _stop(process: subprocess.Popen[bytes], how: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(how)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _postgres_bin(name: str) -> str:
    if not glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        install_from_debian(Path("/usr/lib/postgresql/none"), "postgresql")
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version)
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (Debian: postgresql)")
    return on_path


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


@attrs.define(eq=False)
class Engine:
    """A running server: its URL, and how to stop it and start it again on the same port and
    files (a test of what greenroom does while an engine is away)."""

    url: str
    port: int
    folder: Path
    argv: list[str]
    log: Path
    as_user: dict[str, object]
    process: subprocess.Popen[bytes] | None = None
    stop_signal: int = signal.SIGTERM
    """PostgreSQL's is SIGINT: its SIGTERM waits for every client to leave."""

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, **self.as_user  # type: ignore[call-overload]
            )
        _wait_for_port(self.port, self.process, self.log)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, self.stop_signal)
            self.process = None


@contextlib.contextmanager
def running_postgres() -> Iterator[Engine]:
    """A fresh PostgreSQL cluster with a database ``greenroom`` (trust auth on loopback)."""
    root = os.geteuid() == 0
    user = pwd.getpwnam("postgres") if root else None
    folder = Path(tempfile.mkdtemp(prefix="greenroom-pg-"))
    data, log = folder / "data", folder / "server.log"
    as_user: dict[str, object] = {}
    if user is not None:
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    port = free_port()
    engine = Engine(
        url=f"postgresql://gr@127.0.0.1:{port}/greenroom", port=port, folder=folder,
        argv=[_postgres_bin("postgres"), "-D", str(data), "-p", str(port),
              "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
              "-c", "fsync=off", "-c", "max_connections=200"],
        log=log, as_user=as_user, stop_signal=signal.SIGINT,
    )  # fmt: skip
    try:
        subprocess.run(
            [_postgres_bin("initdb"), "-D", str(data), "--auth=trust", "--username=gr",
             "--encoding=UTF8", "--no-sync"],
            check=True, capture_output=True, **as_user,  # type: ignore[call-overload]
        )  # fmt: skip
        log.touch()
        if user is not None:
            os.chown(log, user.pw_uid, user.pw_gid)
        engine.start()
        try:
            subprocess.run(
                [_postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "gr",
                 "greenroom"],
                check=True, capture_output=True,
            )  # fmt: skip
            yield engine
        finally:
            engine.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def redis_binary() -> str:
    if not (shutil.which("valkey-server") or shutil.which("redis-server")):
        install_from_debian(Path("/usr/bin/redis-server"), "redis-server")
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
        if found:
            return found
    raise RuntimeError("no redis-server or valkey-server is installed (Debian: redis-server)")


@contextlib.contextmanager
def running_redis(*, durable: bool = False) -> Iterator[Engine]:
    """A private Redis (or Valkey) on loopback; ``durable``: every write in its append-only
    file, so that a restart keeps everything (as a cluster's Redis must be run)."""
    folder = Path(tempfile.mkdtemp(prefix="greenroom-redis-"))
    port = free_port()
    engine = Engine(
        url=f"redis://127.0.0.1:{port}/0", port=port, folder=folder,
        argv=[redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "yes" if durable else "no", "--appendfsync", "always",
              "--dir", str(folder), "--protected-mode", "no"],
        log=folder / "server.log", as_user={},
    )  # fmt: skip
    try:
        engine.start()
        try:
            yield engine
        finally:
            engine.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_databases = iter(range(1, 1_000_000))


def fresh_database(engine: Engine) -> str:
    """A new empty database on ``engine``; its URL."""
    name = f"test_{next(_databases)}"
    subprocess.run(
        [_postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(engine.port), "-U", "gr", name],
        check=True, capture_output=True,
    )  # fmt: skip
    return f"postgresql://gr@127.0.0.1:{engine.port}/{name}"


def flush_redis(engine: Engine) -> None:
    """Empty every database of the Redis at ``engine`` (a plain RESP command)."""
    with socket.create_connection(("127.0.0.1", engine.port), timeout=30) as sock:
        sock.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
        reply = sock.recv(64)
    if not reply.startswith(b"+OK"):
        raise RuntimeError(f"FLUSHALL answered {reply!r}")
