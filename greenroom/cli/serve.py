"""``greenroom serve``: run the supervision tree and the websocket server until a signal.

It prints the URL with the token, writes ``server.json`` for the client commands (see
:mod:`greenroom.cli.discovery`), logs one line per session lifecycle change, and on SIGINT or
SIGTERM shuts down gracefully within :data:`SHUTDOWN_GRACE` seconds.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import trio

from greenroom.cli.discovery import DISCOVERY_FILE, remove_discovery, url_host, write_discovery
from greenroom.cli.environment import config_dir, load_settings
from greenroom.cli.exits import EXIT_OK, UsageError, only_leaf
from greenroom.cli.render import LIFECYCLE_LOGGED, describe
from greenroom.config import Config
from greenroom.logs import add_secret
from greenroom.protocol.errors import GreenroomError
from greenroom.transport.auth import load_or_create_token

if TYPE_CHECKING:  # the server's modules load only when it runs
    from greenroom.store.lock import DataDirLock
    from greenroom.transport.server import ServerSettings

logger = logging.getLogger("greenroom")

MIN_TOKEN_CHARS: Final = 16
SHUTDOWN_GRACE: Final = 15.0
"""Seconds a stopping server gets to commit and flush before it is cut short."""


def serve(args: argparse.Namespace) -> int:
    """``greenroom serve`` with the settings of ``args``, the environment and config.toml."""
    settings = load_settings(args)
    config = settings.config()
    host, port = settings.address
    run = functools.partial(
        run_server,
        token=token_from_env(),
        allowed_origins=settings.values["allowed_origins"],
        metrics_public=settings.values["metrics_public"],
    )
    try:
        trio.run(run, config, host, port, config_dir(args))
    except BaseExceptionGroup as group:
        # Starting failed inside the task tree: report the one cause plainly.
        cause = only_leaf(group)
        if isinstance(cause, OSError):
            if cause.filename is not None:  # a file that cannot be used, not the port
                raise UsageError(f"cannot use {cause.filename}: {cause.strerror}") from None
            raise UsageError(f"cannot listen on {host}:{port}: {cause.strerror}") from None
        if isinstance(cause, GreenroomError | KeyboardInterrupt):
            raise cause from None
        raise
    return EXIT_OK


def _event_fields(event: Mapping[str, Any]) -> dict[str, Any]:
    """A lifecycle line's fields for ``--log-format json``."""
    data = event.get("data") or {}
    fields = {"event": event.get("event"), "session": event.get("session"),
              "project": event.get("project")}  # fmt: skip
    for name in ("loading", "reason", "error", "restarts"):
        if data.get(name) is not None:
            fields[name] = data[name]
    return fields


async def _log_lifecycle(runtime: Any) -> None:
    """Log one line per session lifecycle change, for as long as the server runs."""
    from greenroom.protocol.convert import event_to_wire

    while True:
        async with runtime.watch("cli-log") as events:
            while True:
                try:
                    event = await events.receive()
                except trio.EndOfChannel:
                    break  # overflowed (a burst of thousands): connect again
                if event.data.name not in LIFECYCLE_LOGGED:
                    continue  # most are sessionUpdated: not made into a line, nor encoded
                wire = event_to_wire(event)
                line = describe(wire)
                if line is not None:
                    logger.info("%s", line, extra=_event_fields(wire))
        logger.warning("lifecycle log fell behind; some lines were skipped")


GC_THRESHOLDS: Final = (10_000, 50, 100)
"""The collector's thresholds while serving (Python's defaults are 700, 10, 10)."""


def tune_gc() -> None:
    """Collect less often: a server's heap is mostly long-lived (the mirror, the retained
    events), and at the default thresholds a full collection of it ran every couple of seconds
    under load, each the longest pause the server had (about 100 ms at 500 streaming
    sessions). Per-token objects are freed by reference counting anyway; cycles (exceptions,
    cancelled tasks) are still collected, after 10,000 allocations rather than 700."""
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_startup_heap() -> None:
    """Move what startup made (modules, the restored mirror: a million objects at 100,000
    sessions) out of the collector's sight: it lives as long as the server does."""
    gc.collect()
    gc.freeze()


def token_from_env(env: Mapping[str, str] = os.environ) -> str | None:
    """``GREENROOM_TOKEN`` for ``greenroom serve`` (containers, systemd), checked; None if
    unset. It must be safe in a URL and not trivially guessed."""
    token = env.get("GREENROOM_TOKEN", "").strip()
    if not token:
        return None
    if len(token) < MIN_TOKEN_CHARS or not re.fullmatch(r"[A-Za-z0-9._~-]+", token):
        raise UsageError(
            f"GREENROOM_TOKEN must be at least {MIN_TOKEN_CHARS} characters of A-Z a-z 0-9 . _ ~ -"
            " (make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


async def run_server(
    config: Config,
    host: str,
    port: int,
    directory: Path,
    *,
    out: TextIO = sys.stdout,
    token: str | None = None,
    allowed_origins: tuple[str, ...] = (),
    metrics_public: bool = False,
) -> None:
    """``greenroom serve``: run until SIGINT or SIGTERM, then shut down gracefully.

    In this order: the data folder's lock (a second server on the folder stops here, having
    read nothing), the listening socket (a port in use stops here, having restored nothing),
    then the sessions are restored and served. ``token`` (from ``GREENROOM_TOKEN``) is used
    as given and never printed; without it, the token file's is used (made on first start)."""
    from greenroom.allocator import pin_mmap_threshold
    from greenroom.store.lock import lock_data_dir
    from greenroom.transport.server import ServerSettings

    tune_gc()
    pin_mmap_threshold()
    settings = ServerSettings(
        host=host,
        port=port,
        token=token or load_or_create_token(directory),
        allowed_origins=allowed_origins,
        metrics_public=metrics_public,
    )
    add_secret(settings.token)
    add_secret(config.api_key)
    with lock_data_dir(config.data_dir) as lock:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        lock.describe(url=f"ws://{url_host(host)}:{bound}/ws")
        await _serve_restored(
            config, directory, settings, out, lock, listeners, show_token=token is None
        )


async def _serve_restored(
    config: Config,
    directory: Path,
    settings: ServerSettings,
    out: TextIO,
    lock: DataDirLock,
    listeners: list[trio.SocketListener],
    *,
    show_token: bool,
) -> None:
    """Restore the sessions (the folder locked, the port bound: meanwhile the server answers
    /healthz, and /readyz says it is restoring) and serve until a signal."""
    from greenroom.runtime import open_runtime
    from greenroom.transport.server import Server

    # The token is shown only when it is the token file's: one given in the environment is
    # the operator's own, and stdout may well be a shared log.
    with_token = f"?token={settings.token}" if show_token else ""
    from_env = "" if show_token else " (token: GREENROOM_TOKEN)"
    discovery = directory / DISCOVERY_FILE
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as outer:

            async def on_signals() -> None:
                async for signum in signals:
                    if stop.is_set():  # a second signal: stop at once
                        outer.cancel_scope.cancel()
                        return
                    logger.info("%s received: shutting down", signal.Signals(signum).name)
                    stop.set()
                    # The graceful part (commit, flush) is bounded too.
                    outer.cancel_scope.deadline = trio.current_time() + SHUTDOWN_GRACE

            outer.start_soon(on_signals)
            server = Server(settings=settings, listeners=listeners)
            address = await outer.start(server.run)
            try:
                async with (
                    open_runtime(config, data_lock=lock) as runtime,
                    server.serving(runtime),
                    trio.open_nursery() as nursery,
                ):
                    freeze_startup_heap()
                    url = f"ws://{url_host(address.host)}:{address.port}/ws"
                    ui = f"http://{url_host(address.host)}:{address.port}/"
                    info = {"url": url, "ui": ui, "pid": os.getpid(), "port": address.port}
                    write_discovery(discovery, info)
                    provider: str = runtime.provider_name
                    if provider == "simulated":
                        label = " (offline replies, no model is called)"
                    else:
                        label = f" (model {config.model} at {config.base_url or 'the default URL'})"
                    print(f"greenroom serving at {url}{with_token}{from_env}", file=out)
                    print(f"provider: {provider}{label}", file=out)
                    print(f"open {ui}{with_token} in a browser{from_env}", file=out)
                    out.flush()
                    nursery.start_soon(_log_lifecycle, runtime)
                    await stop.wait()
                    nursery.cancel_scope.cancel()
                # Leaving serving() closes every websocket (1001) and makes /readyz say 503;
                # leaving open_runtime stops the sessions, which commit their partial text, and
                # flushes every snapshot.
            finally:
                remove_discovery(discovery)
                outer.cancel_scope.cancel()
