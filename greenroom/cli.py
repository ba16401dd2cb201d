"""The ``greenroom`` command: run the server, and talk to it from a terminal.

``greenroom serve`` runs the supervision tree and the websocket server, prints the URL with the
token, and writes ``<config dir>/server.json`` (the URL without the token, the pid, the port)
so that the client commands (``chat``, ``sessions``, ``watch``, ...) find the local server;
they read the token from ``<config dir>/token``. The server's settings come from defaults, then
``<config dir>/config.toml``, then environment variables, then flags (see
:mod:`greenroom.settings`; ``greenroom config`` shows the result and where each value came
from). ``GREENROOM_CONFIG_DIR``, and ``GREENROOM_URL``, ``GREENROOM_TOKEN`` for the client
commands, are read here.

Exit codes (:data:`EXIT_CODES`, docs/cli.md): 0 success, 1 the server said no or the turn
failed, 2 usage errors, 3 no server, 130 Ctrl-C (``watch`` exits 0 on Ctrl-C: that is how one
leaves it).

This module holds the parser, the settings, ``serve``, ``config`` and ``token``; the commands
that talk to a running server are in :mod:`greenroom.cli_client`, with ``chat`` and ``watch`` in
modules of their own. They are imported when they run, and import what they share from here.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import trio

from greenroom import __version__
from greenroom.config import Config, default_config_dir
from greenroom.logs import LOG_FORMATS, add_secret, setup_logging
from greenroom.protocol.errors import GreenroomError
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


EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_NO_SERVER: Final = 3
EXIT_INTERRUPTED: Final = 130


class UsageError(Exception):
    """A problem the user fixes (a bad setting, a bad URL): one line on stderr, exit 2."""


class NoServer(UsageError):
    """No server to talk to: exit 3, so that a script can tell it from a usage error."""


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
    from greenroom.protocol.convert import event_to_wire

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


def _print_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the parser and main ----------------------------------------------------------------------


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    """The server's settings as flags, from the one table in greenroom.settings; each help
    names the setting's environment variable, and a setting with a short list of values shows
    them (argparse ``choices``)."""
    for setting in SETTINGS:
        if setting.flag is None:
            continue
        default = setting.default if not callable(setting.default) else None
        notes = [f"env {' or '.join(setting.env)}"] if setting.env else []
        if default is not None:
            notes.append(f"default {default}")
        shown = f" ({'; '.join(notes)})" if notes else ""
        if setting.kind.choices:
            parser.add_argument(
                setting.flag, choices=setting.kind.choices, help=setting.help + shown
            )
        else:
            # A true-or-false setting may be given bare (--metrics-public).
            bare: dict[str, Any] = {"nargs": "?", "const": True} if setting.kind is BOOLEAN else {}
            parser.add_argument(
                setting.flag, type=argparse_type(setting), help=setting.help + shown, **bare
            )
    parser.add_argument(
        "--config-dir",
        help="where config.toml, the token and server.json live (env GREENROOM_CONFIG_DIR)",
    )


def _client_flags(parser: argparse.ArgumentParser, *, json_help: str | None = None) -> None:
    if json_help is not None:
        parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument(
        "--url",
        help="the server: ws://HOST:PORT/ws, http://HOST:PORT or HOST:PORT "
        "(env GREENROOM_URL; default: the local server, from server.json)",
    )
    parser.add_argument(
        "--token", help="access token (env GREENROOM_TOKEN; default: from the token file)"
    )
    parser.add_argument(
        "--config-dir", help="where the token and server.json live (env GREENROOM_CONFIG_DIR)"
    )


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


EXIT_CODES: Final = """exit codes:
  0    done
  1    the server said no (unknown session or project, conflict) or the turn failed
  2    usage error: bad arguments or settings, bad --url, token refused, not confirmed
  3    no server: none found, nothing answers, or it went away for good
  130  Ctrl-C (watch exits 0 on Ctrl-C)

docs/cli.md has the details."""

SESSION_HELP: Final = "a session id (s-...) or a project name (its session)"


class _Intermixed(argparse.ArgumentParser):
    """A command's parser that takes its options anywhere among its positionals:
    ``greenroom chat demo --json "hi"`` sends "hi" (plain argparse stops filling an optional
    positional at the first option, and then refuses "hi")."""

    _parsing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._parsing:  # parse_known_intermixed_args calls this method, twice
            return super().parse_known_args(args, namespace)
        self._parsing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False


def make_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="greenroom",
        description="Run and watch many supervised AI chat sessions.",
        epilog=_examples(
            "greenroom serve",
            'greenroom chat demo "create file notes.txt with buy milk"',
            "greenroom sessions",
            "greenroom watch",
        )
        + "\n\n"
        + EXIT_CODES,
        formatter_class=raw,
    )
    parser.add_argument("--version", action="version", version=f"greenroom {__version__}")
    _logging_flags(parser, default=None)
    sub = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        help="what to do (greenroom COMMAND --help shows its options and examples)",
        parser_class=_Intermixed,
    )
    sub.required = True

    def command(name: str, help: str, *examples: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help, description=help, epilog=_examples(*examples), formatter_class=raw
        )

    serve = command(
        "serve",
        "run the server",
        "greenroom serve",
        "greenroom serve --port 0 --data-dir ./data",
        "greenroom serve --provider openai --base-url http://localhost:11434/v1 --model llama3.2",
        "GREENROOM_API_KEY=sk-... greenroom serve --provider openai --model gpt-4o-mini",
    )
    _settings_flags(serve)

    config = command(
        "config",
        "print the effective settings and where each came from",
        "greenroom config",
        "greenroom config --json",
        "GREENROOM_PORT=9000 greenroom config --provider openai",
    )
    config.add_argument("--json", action="store_true", help="print them as JSON")
    _settings_flags(config)

    token = command("token", "print the access token", "greenroom token")
    token.add_argument("--config-dir", help="where the token lives (env GREENROOM_CONFIG_DIR)")

    chat = command(
        "chat",
        "send a message to a project and stream the reply; no message on a terminal: a prompt",
        'greenroom chat demo "hello"',
        "greenroom chat demo                      # a prompt; /bye or Ctrl-D leaves",
        "git diff | greenroom chat demo           # the message from stdin",
        'greenroom chat demo --json "hi" | jq -c .event',
        'greenroom chat demo --preset review "look at main.py"',
    )
    chat.add_argument("project", help="the project to chat in (created if it does not exist yet)")
    chat.add_argument(
        "message",
        nargs="?",
        help="the message; - (or no message, with stdin not a terminal): read it from stdin",
    )
    chat.add_argument("--model", help="the model this session's turns use (default: the server's)")
    chat.add_argument(
        "--preset",
        help="open the session with this preset (see `greenroom presets`); --model wins over it",
    )
    _client_flags(chat, json_help="print the session's events as JSON lines, not the text")

    sessions = command(
        "sessions", "list the sessions", "greenroom sessions", "greenroom sessions --json"
    )
    _client_flags(sessions, json_help="print the summaries as JSON")

    projects = command(
        "projects",
        "list the projects, with their sessions",
        "greenroom projects",
        "greenroom projects --json",
    )
    _client_flags(projects, json_help="print the projects as JSON")

    presets = command(
        "presets",
        "list the session presets (with a project, its own too)",
        "greenroom presets",
        "greenroom presets demo --json",
    )
    presets.add_argument(
        "project", nargs="?", help="also list this project's presets (.ai/presets.toml)"
    )
    _client_flags(presets, json_help="print the presets (and the project file's error) as JSON")

    watch = command(
        "watch",
        "a live view of every session (Ctrl-C leaves)",
        "greenroom watch",
        "greenroom watch | tee sessions.log        # one line per change",
    )
    _client_flags(watch)

    stop = command(
        "stop",
        "stop a session's running turn (and discard its queued messages)",
        "greenroom stop demo",
        "greenroom stop s-2fdb034a --json",
    )
    stop.add_argument("session", help=SESSION_HELP)
    _client_flags(stop, json_help="print the result as JSON")

    delete = command(
        "delete",
        "delete a session (its history files stay), or with --project a project and its folder",
        "greenroom delete demo",
        "greenroom delete demo --project          # asks first",
        "greenroom delete demo --project --yes",
    )
    delete.add_argument("target", help=SESSION_HELP + "; with --project, the project to delete")
    delete.add_argument(
        "--project",
        action="store_true",
        help="delete the project: its session and its folder, with every file in it",
    )
    delete.add_argument(
        "-y", "--yes", action="store_true", help="do not ask before deleting a project"
    )
    _client_flags(delete, json_help="print the result as JSON")

    new_chat = command(
        "new-chat",
        "start an empty chat in a session (the old chat's history file stays)",
        "greenroom new-chat demo",
    )
    new_chat.add_argument("session", help=SESSION_HELP)
    _client_flags(new_chat, json_help="print the result as JSON")

    resume = command(
        "resume",
        "continue a turn that was interrupted (under --resume manual) or failed",
        "greenroom resume demo",
    )
    resume.add_argument("session", help=SESSION_HELP)
    _client_flags(resume, json_help="print the result as JSON")

    approve = command(
        "approve",
        "allow (or with --deny refuse) the tool call a session waits for approval of",
        "greenroom approve demo",
        'greenroom approve demo --deny --reason "keep that file"',
    )
    approve.add_argument("session", help=SESSION_HELP)
    approve.add_argument(
        "call", nargs="?", help="the tool call's id (default: the one the session waits for)"
    )
    approve.add_argument("--deny", action="store_true", help="refuse the call: it does not run")
    approve.add_argument("--reason", help="with --deny: why, as the model reads it")
    _client_flags(approve, json_help="print the result as JSON")
    for each in sub.choices.values():  # -v, -q and --log-format after the command too
        _logging_flags(each, default=argparse.SUPPRESS)
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
    from greenroom.cli_client import COMMANDS, prepare

    if not args.verbose:
        # Only warnings, so that nothing but a problem lands between the lines of a reply.
        logging.getLogger().setLevel(logging.WARNING)
    prepare(args)
    try:
        result: int = trio.run(COMMANDS[args.command], args)
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
        return EXIT_NO_SERVER if isinstance(error, NoServer) else EXIT_USAGE
    if isinstance(error, CommandError):
        _print_err(f"greenroom: {error}")
        return EXIT_FAILED
    if isinstance(error, ClientError):  # the server went away, and reconnecting gave up
        _print_err(f"greenroom: {error.message}")
        return EXIT_NO_SERVER
    assert isinstance(error, GreenroomError)
    _print_err(f"greenroom: {error.message}")  # a bad setting found at start (the provider)
    return 2
