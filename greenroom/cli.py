"""The ``greenroom`` command: run the server, and talk to it from a terminal.

``greenroom serve`` runs the supervision tree and the websocket server, prints the URL with the
token, and writes ``<config dir>/server.json`` (the URL without the token, the pid, the port)
so that ``chat``, ``sessions``, ``watch`` and ``stop`` find the local server by themselves;
they read the token from ``<config dir>/token``. The server's settings come from defaults, then
``<config dir>/config.toml``, then environment variables, then flags (see
:mod:`greenroom.settings`; ``greenroom config`` shows the result and where each value came
from). ``GREENROOM_CONFIG_DIR``, and ``GREENROOM_URL``, ``GREENROOM_TOKEN`` for the client
commands, are read here.

Exit codes: 0 success, 1 a turn or command failed, 2 usage errors and no server, 130 Ctrl-C
(``watch`` exits 0 on Ctrl-C: that is how one leaves it).

One file of some 700 lines: each subcommand is small, and they share the settings, the
discovery of the local server and the output helpers.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import trio

from greenroom import __version__
from greenroom.config import Config, default_config_dir
from greenroom.errors import GreenroomError
from greenroom.logs import LOG_FORMATS, add_secret, setup_logging
from greenroom.settings import (
    BOOLEAN,
    CONFIG_FILE,
    SETTINGS,
    Settings,
    argparse_type,
    render,
    render_json,
    resolve,
)
from greenroom.transport.auth import TOKEN_FILE, load_or_create_token
from greenroom.transport.client import (
    ClientError,
    CommandError,
    ConnectFailed,
    GreenroomClient,
    HandshakeRefused,
    connect,
)

if TYPE_CHECKING:  # the server's modules load only when it runs
    from greenroom.store.lock import DataDirLock
    from greenroom.transport.server import ServerSettings

logger = logging.getLogger("greenroom")

DISCOVERY_FILE: Final = "server.json"
NO_SERVER: Final = "no greenroom server found; start one with `greenroom serve`"
MIN_TOKEN_CHARS: Final = 16
SHUTDOWN_GRACE: Final = 15.0
"""Seconds a stopping server gets to commit and flush before it is cut short."""
LIFECYCLE_LOGGED: Final = frozenset(
    {"sessionCreated", "loadingChanged", "sessionRestarted", "sessionFailed", "sessionDeleted"}
)


class UsageError(Exception):
    """A problem the user fixes (a bad setting, no server): one line on stderr, exit 2."""


# -- settings ---------------------------------------------------------------------------------


def _setting(flag: Any, env: Mapping[str, str], name: str, default: Any = None) -> Any:
    """Flag, else environment variable, else default."""
    if flag is not None:
        return flag
    value = env.get(name)
    return value if value not in (None, "") else default


def config_dir(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Path:
    """Where the token and server.json live."""
    return Path(_setting(args.config_dir, env, "GREENROOM_CONFIG_DIR", default_config_dir()))


def load_settings(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Settings:
    """The server's settings: defaults < config.toml < environment < flags."""
    return resolve(file=config_dir(args, env) / CONFIG_FILE, env=env, flags=vars(args))


def build_config(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Config:
    """The server's Config (see :func:`load_settings`)."""
    return load_settings(args, env).config()


def server_address(
    args: argparse.Namespace, env: Mapping[str, str] = os.environ
) -> tuple[str, int]:
    """Where the server listens (see :func:`load_settings`)."""
    return load_settings(args, env).address


def _url_host(host: str) -> str:
    """The host a local client dials: a wildcard address means this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except OSError:
        return False
    return True


def discover(directory: Path) -> str | None:
    """The URL of the local server, from server.json, if its process still runs."""
    try:
        info = json.loads((directory / DISCOVERY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("url"), str):
        return None
    pid = info.get("pid")
    if isinstance(pid, int) and not _pid_alive(pid):
        return None
    return str(info["url"])


def read_token(directory: Path) -> str | None:
    try:
        return (directory / TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


# -- serve ------------------------------------------------------------------------------------


def _describe(event: Mapping[str, Any]) -> str | None:
    """The log line of a lifecycle event, or None for events not logged."""
    name, data = event.get("event"), event.get("data") or {}
    if name not in LIFECYCLE_LOGGED:
        return None
    what: str
    if name == "sessionCreated":
        what = "created"
    elif name == "sessionDeleted":
        what = "deleted"
    elif name == "loadingChanged":
        if data.get("loading"):
            what = "turn started"
        else:
            what = f"turn {data.get('reason')}"
            if data.get("error"):
                what += f" ({data['error']})"
    elif name == "sessionRestarted":
        what = f"restarted ({data.get('reason')}, restart {data.get('restarts')})"
    else:
        what = f"failed: supervisor gave up ({data.get('reason')})"
    return f"session {event.get('session')} {event.get('project')}: {what}"


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
    from greenroom.convert import event_to_wire

    while True:
        async with runtime.watch("cli-log") as events:
            while True:
                try:
                    event = await events.receive()
                except trio.EndOfChannel:
                    break  # overflowed (a burst of thousands): connect again
                wire = event_to_wire(event)
                line = _describe(wire)
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
        lock.describe(url=f"ws://{_url_host(host)}:{bound}/ws")
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
                    url = f"ws://{_url_host(address.host)}:{address.port}/ws"
                    ui = f"http://{_url_host(address.host)}:{address.port}/"
                    info = {"url": url, "ui": ui, "pid": os.getpid(), "port": address.port}
                    _write_private(discovery, json.dumps(info))
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
                _remove_discovery(discovery)
                outer.cancel_scope.cancel()


def _remove_discovery(path: Path) -> None:
    """Remove server.json if it is still this process's."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if info.get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


# -- client commands --------------------------------------------------------------------------


def _client_target(args: argparse.Namespace) -> tuple[str, str | None]:
    directory = config_dir(args)
    url = _setting(args.url, os.environ, "GREENROOM_URL") or discover(directory)
    if url is None:
        raise UsageError(NO_SERVER)
    token = _setting(args.token, os.environ, "GREENROOM_TOKEN") or read_token(directory)
    return url, token


def _print_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Output:
    """Streams a session's reply text to ``out``: appends deltas at their offsets."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.printed = 0  # characters of the current partial message already written
        self.at_line_start = True

    def write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self.at_line_start = text.endswith("\n")

    def newline(self) -> None:
        if not self.at_line_start:
            self.write("\n")

    def streaming(self, data: Mapping[str, Any]) -> None:
        offset, delta = int(data.get("offset", 0)), str(data.get("delta", ""))
        if offset + len(delta) <= self.printed:
            return  # already shown (a merged or repeated update)
        self.write(delta[max(0, self.printed - offset) :])
        self.printed = offset + len(delta)

    def message(self, message: Mapping[str, Any]) -> None:
        """A committed message: finish the streamed text, show tool calls and results."""
        role = message.get("role")
        if role == "assistant":
            content = message.get("content") or ""
            if len(content) > self.printed:
                self.write(content[self.printed :])
            self.printed = 0
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                self.newline()
                self.write(f"-> {function.get('name')}({_short(function.get('arguments'), 80)})\n")
        elif role == "tool":
            self.newline()
            first = str(message.get("content") or "").splitlines() or [""]
            self.write(f"<- {_short(first[0], 100)}\n")


def _short(value: object, limit: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


Ask = Callable[[str], Awaitable[bool]]
"""Asks the user a yes-or-no question (``chat`` on a terminal)."""


async def ask_on_tty(question: str) -> bool:
    """Ask on the terminal; anything but y or yes is no."""

    def read() -> str:
        sys.stderr.write(question)
        sys.stderr.flush()
        return sys.stdin.readline()

    answer = await trio.to_thread.run_sync(read, abandon_on_cancel=True)
    return answer.strip().lower() in ("y", "yes")


def describe_mcp_servers(servers: list[dict[str, Any]]) -> str:
    """The servers of a ``.mcp.json`` as a user is shown them before approving."""
    lines = []
    for server in servers:
        if server.get("type") == "http":
            what = str(server.get("url"))
        else:
            what = " ".join([str(server.get("command")), *map(str, server.get("args") or ())])
        names = server.get("env") or server.get("headers") or []
        extra = f" (sets {', '.join(map(str, names))})" if names else ""
        lines.append(f"  {server.get('name')}: {what}{extra}")
    return "\n".join(lines)


async def approve_mcp(
    client: GreenroomClient, project: str, mcp: dict[str, Any] | None, ask: Ask | None
) -> None:
    """Ask whether to start the servers of the project's unapproved ``.mcp.json`` (with no
    ``ask``, as when stdin is not a terminal, only say that they do not start)."""
    if not mcp or mcp.get("state") not in ("untrusted", "invalid"):
        return
    if mcp.get("state") == "invalid":
        _print_err(f"{project}/.mcp.json is unusable, its MCP servers do not start: {mcp['error']}")
        return
    shown = describe_mcp_servers(mcp.get("servers") or [])
    if ask is None:
        _print_err(
            f"{project}/.mcp.json is not approved, so its MCP servers do not start:\n{shown}\n"
            "(run greenroom chat on a terminal to approve it)"
        )
        return
    question = (
        f"{project}/.mcp.json would start these MCP servers:\n{shown}\n"
        "Approve them (they run with your permissions)? [y/N] "
    )
    if await ask(question):
        await client.trust_mcp_config(project, str(mcp["hash"]))
        _print_err("approved")
    else:
        _print_err("not approved: its MCP servers do not start")


async def chat(
    client: GreenroomClient, project: str, content: str, out: TextIO, ask: Ask | None = None
) -> int:
    """Send ``content`` to the project's session and stream the turn it starts; first ask
    (with ``ask``) to approve the project's MCP servers if it has unapproved ones."""
    opened = await client.open_session(project)
    await approve_mcp(client, project, opened.get("mcp"), ask)
    session = opened["session"]["session"]
    await client.subscribe(session)
    reply = await client.send_message(session, content)
    if reply.get("queued"):
        _print_err("(queued behind the running turn)")
    output = _Output(out)
    ours = False  # whether our message was committed: what follows is our turn
    async for event in client.events():
        if event.get("session") != session:
            continue
        name, data = event.get("event"), event.get("data") or {}
        if name == "messageAdded":
            message = data.get("message") or {}
            if not ours:
                ours = message.get("role") == "user" and message.get("content") == content
                continue
            output.message(message)
        elif name == "streamingUpdate" and ours:
            output.streaming(data)
        elif name == "resync":
            _print_err("(missed part of the stream; some text may be lost)")
        elif name == "sessionDeleted":
            output.newline()
            _print_err("the session was deleted")
            return 1
        elif name == "loadingChanged" and not data.get("loading"):
            if not ours:
                if data.get("reason") in ("stopped", "interrupted"):
                    _print_err("the running turn was stopped and the message discarded")
                    return 1
                continue  # the turn we were queued behind ended
            output.newline()
            reason = data.get("reason")
            if reason == "completed":
                return 0
            error = data.get("error")
            if reason == "truncated" and not error:
                error = "the reply was cut off at the model's length limit (raise max_tokens)"
            _print_err(f"turn {reason}" + (f": {error}" if error else ""))
            return 1
    _print_err("connection closed before the turn ended")
    return 1


def _ago(when: object, now: float) -> str:
    if not isinstance(when, int | float):
        return "-"
    seconds = max(0, int(now - when))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell (the last one is not padded)."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def sessions_table(summaries: Sequence[Mapping[str, Any]], now: float) -> str:
    """The ``greenroom sessions`` table."""
    rows = [["SESSION", "PROJECT", "STATUS", "MESSAGES", "LAST ACTIVITY", "PREVIEW"]]
    for s in sorted(summaries, key=lambda s: str(s.get("project"))):
        status = str(s.get("status"))
        if s.get("queued"):
            status += f" (+{len(s['queued'])} queued)"
        rows.append(
            [
                str(s.get("session")),
                str(s.get("project")),
                status,
                str(s.get("messageCount", 0)),
                _ago(s.get("lastActivity"), now),
                _short((s.get("preview") or "").replace("\n", " "), 50),
            ]
        )
    return format_table(rows)


async def watch(client: GreenroomClient, out: TextIO, *, redraw_every: float = 0.25) -> None:
    """A live view of every session until cancelled: a redrawn block on a terminal, one
    line per lifecycle change otherwise."""
    tty = out.isatty()
    sessions: dict[str, dict[str, Any]] = {s["session"]: dict(s) for s in client.welcome.get(
        "sessions", ())}  # fmt: skip
    text: dict[str, str] = {}

    async def subscribe(session: str) -> None:
        with contextlib.suppress(CommandError):  # deleted meanwhile
            await client.subscribe(session)

    def draw() -> None:
        now = time.time()
        rows = [["SESSION", "PROJECT", "STATUS", "MESSAGES", "LAST ACTIVITY", "STREAMING"]]
        for s in sorted(sessions.values(), key=lambda s: str(s.get("project"))):
            streaming = text.get(s["session"], "")[-60:].replace("\n", " ")
            rows.append(
                [
                    str(s["session"]),
                    str(s.get("project")),
                    str(s.get("status")),
                    str(s.get("messageCount", 0)),
                    _ago(s.get("lastActivity"), now),
                    streaming,
                ]
            )
        out.write("\x1b[H\x1b[2J" + format_table(rows) + "\n")
        out.write(f"\n{len(sessions)} sessions; Ctrl-C to quit\n")
        out.flush()

    async with trio.open_nursery() as nursery:
        for sid in sessions:
            nursery.start_soon(subscribe, sid)
        dirty = True
        next_draw = trio.current_time()
        if not tty:
            out.write(sessions_table(list(sessions.values()), time.time()) + "\n")
            out.flush()
        events = client.events()
        while True:
            with trio.move_on_at(next_draw if dirty and tty else float("inf")):
                try:
                    event = await events.__anext__()
                except StopAsyncIteration:
                    return
                name, data = event.get("event"), event.get("data") or {}
                session = event.get("session")
                if name in ("sessionCreated", "sessionUpdated"):
                    sessions[data["session"]] = dict(data)
                    if name == "sessionCreated":
                        nursery.start_soon(subscribe, data["session"])
                elif name == "sessionDeleted" and isinstance(session, str):
                    sessions.pop(session, None)
                    text.pop(session, None)
                elif name == "streamingUpdate" and isinstance(session, str):
                    current = text.get(session, "")
                    offset = int(data.get("offset", 0))
                    text[session] = current[:offset] + str(data.get("delta", ""))
                elif name == "loadingChanged" and data.get("loading") and isinstance(session, str):
                    text[session] = ""
                elif name == "reconnected":
                    sessions = {s["session"]: dict(s) for s in data.get("sessions", ())}
                if not tty:
                    line = _describe(event)
                    if line is not None:
                        out.write(line + "\n")
                        out.flush()
                dirty = True
                continue
            if tty and dirty:
                draw()
                dirty = False
                next_draw = trio.current_time() + redraw_every


async def _with_client(
    args: argparse.Namespace, body: Callable[[GreenroomClient], Coroutine[Any, Any, int]]
) -> int:
    url, token = _client_target(args)
    try:
        async with connect(url, token, reconnect_timeout=10.0) as client:
            return await body(client)
    except HandshakeRefused as refused:
        if refused.status == 401:
            raise UsageError(
                "the server refused the token; check `greenroom token` or pass --token"
            ) from None
        raise UsageError(refused.message) from None
    except ConnectFailed:
        raise UsageError(NO_SERVER) from None


async def _cmd_chat(args: argparse.Namespace) -> int:
    ask = ask_on_tty if sys.stdin.isatty() and sys.stderr.isatty() else None
    return await _with_client(
        args, lambda client: chat(client, args.project, args.message, sys.stdout, ask)
    )


async def _cmd_sessions(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        result = await client.list_sessions()
        if args.json:
            print(json.dumps(result["sessions"], indent=2))
        elif not result["sessions"]:
            print("no sessions")
        else:
            print(sessions_table(result["sessions"], time.time()))
        return 0

    return await _with_client(args, body)


async def _cmd_watch(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        await watch(client, sys.stdout)
        return 0

    return await _with_client(args, body)


async def _cmd_stop(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        target = args.session
        sessions = (await client.list_sessions())["sessions"]
        if not any(s["session"] == target for s in sessions):
            # A project name works too.
            named = [s["session"] for s in sessions if s["project"] == target]
            if named:
                target = named[0]
        result = await client.stop_generation(target)
        discarded = result.get("discarded") or []
        print(f"stopped {target}" + (f"; discarded {len(discarded)} queued" if discarded else ""))
        return 0

    return await _with_client(args, body)


# -- the parser and main ----------------------------------------------------------------------


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    """The server's settings as flags, from the one table in greenroom.settings."""
    for setting in SETTINGS:
        if setting.flag is not None:
            default = setting.default if not callable(setting.default) else None
            shown = "" if default is None else f" (default {default})"
            # A true-or-false setting may be given bare (--metrics-public).
            bare: dict[str, Any] = {"nargs": "?", "const": True} if setting.kind is BOOLEAN else {}
            parser.add_argument(
                setting.flag, type=argparse_type(setting), help=setting.help + shown, **bare
            )
    parser.add_argument("--config-dir", help="where config.toml, the token and server.json live")


def _client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="server URL (default: from server.json)")
    parser.add_argument("--token", help="access token (default: from the token file)")
    parser.add_argument("--config-dir", help="where the token and server.json live")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenroom", description="Run and watch many supervised AI chat sessions."
    )
    parser.add_argument("--version", action="version", version=f"greenroom {__version__}")
    _logging_flags(parser, default=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser("serve", help="run the server")
    _settings_flags(serve)

    config = sub.add_parser("config", help="print the effective settings and where each came from")
    config.add_argument("--json", action="store_true", help="print them as JSON")
    _settings_flags(config)

    token = sub.add_parser("token", help="print the access token")
    token.add_argument("--config-dir", help="where the token lives")

    chat_ = sub.add_parser("chat", help="send a message to a project and stream the reply")
    chat_.add_argument("project")
    chat_.add_argument("message")
    _client_flags(chat_)

    sessions = sub.add_parser("sessions", help="list the sessions")
    sessions.add_argument("--json", action="store_true", help="print the summaries as JSON")
    _client_flags(sessions)

    watch_ = sub.add_parser("watch", help="a live view of every session")
    _client_flags(watch_)

    stop = sub.add_parser("stop", help="stop a session's running turn")
    stop.add_argument("session", help="session id (or project name)")
    _client_flags(stop)
    for command in sub.choices.values():  # -v, -q and --log-format after the command too
        _logging_flags(command, default=argparse.SUPPRESS)
    return parser


def _logging_flags(parser: argparse.ArgumentParser, *, default: Any) -> None:
    """``default`` is None on the main parser; SUPPRESS on a command's, so that a flag given
    before the command is not undone by the command's default."""
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="debug logging"
    )
    loud.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="warnings and errors only"
    )
    parser.add_argument(
        "--log-format", choices=LOG_FORMATS, default=default,
        help="text, or json: one object per line (env GREENROOM_LOG_FORMAT)",
    )  # fmt: skip


def _setup_logging(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    log_format = _setting(args.log_format, env, "GREENROOM_LOG_FORMAT", "text")
    if log_format not in LOG_FORMATS:
        raise UsageError(f"GREENROOM_LOG_FORMAT: give one of {', '.join(LOG_FORMATS)}")
    setup_logging(level, log_format)


def _run(args: argparse.Namespace) -> int:
    if args.command == "token":
        print(load_or_create_token(config_dir(args)))
        return 0
    if args.command == "config":
        settings = load_settings(args)
        print(render_json(settings) if args.json else render(settings))
        return 0
    if args.command == "serve":
        settings = load_settings(args)
        config = settings.config()
        host, port = settings.address
        serve = functools.partial(
            run_server,
            token=token_from_env(),
            allowed_origins=settings.values["allowed_origins"],
            metrics_public=settings.values["metrics_public"],
        )
        try:
            trio.run(serve, config, host, port, config_dir(args))
        except BaseExceptionGroup as group:
            # Starting failed inside the task tree: report the one cause plainly.
            cause = _only_leaf(group)
            if isinstance(cause, OSError):
                raise UsageError(f"cannot listen on {host}:{port}: {cause.strerror}") from None
            if isinstance(cause, GreenroomError | KeyboardInterrupt):
                raise cause from None
            raise
        return 0
    commands = {
        "chat": _cmd_chat,
        "sessions": _cmd_sessions,
        "watch": _cmd_watch,
        "stop": _cmd_stop,
    }
    try:
        result: int = trio.run(commands[args.command], args)
    except BaseException as error:
        if isinstance(error, BaseExceptionGroup):
            error = _only_leaf(error) or error
        if isinstance(error, KeyboardInterrupt) and args.command == "watch":
            return 0  # Ctrl-C is how one leaves watch
        raise
    return result


def _only_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single exception inside (nested) groups, or None when there are several."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    return leaves[0] if len(leaves) == 1 else None


def main(argv: Sequence[str] | None = None) -> int:
    """The ``greenroom`` entry point; returns the exit code."""
    args = make_parser().parse_args(argv)
    try:
        _setup_logging(args)
        return _run(args)
    except BaseExceptionGroup as group:
        cause = _only_leaf(group)
        if not isinstance(cause, KeyboardInterrupt | UsageError | GreenroomError):
            raise
        return _report(cause)
    except (KeyboardInterrupt, UsageError, GreenroomError) as error:
        return _report(error)


def _report(error: BaseException) -> int:
    """One line on stderr, and the exit code for ``error``."""
    if isinstance(error, KeyboardInterrupt):
        _print_err("interrupted")
        return 130
    if isinstance(error, UsageError):
        _print_err(f"greenroom: {error}")
        return 2
    if isinstance(error, CommandError):
        _print_err(f"greenroom: {error}")
        return 1
    if isinstance(error, ClientError):
        _print_err(f"greenroom: {error.message}")
        return 1
    assert isinstance(error, GreenroomError)
    _print_err(f"greenroom: {error.message}")  # a bad setting found at start (the provider)
    return 2
