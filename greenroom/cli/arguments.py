"""The ``greenroom`` command line: the parser of every command, with its help and examples.

The server's settings become flags from the one table in :mod:`greenroom.settings`; the
client commands share ``--url``, ``--token`` and ``--config-dir``; ``-v``, ``-q`` and
``--log-format`` go before or after the command.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, Final

from greenroom import __version__
from greenroom.logs import LOG_FORMATS
from greenroom.settings import BOOLEAN, SETTINGS, argparse_type


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
    """The parser of ``greenroom`` and its commands."""
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

    def session_command(name: str, help: str, *examples: str) -> None:
        """A command that takes one session and prints a result."""
        parser = command(name, help, *examples)
        parser.add_argument("session", help=SESSION_HELP)
        _client_flags(parser, json_help="print the result as JSON")

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

    session_command(
        "stop",
        "stop a session's running turn (and discard its queued messages)",
        "greenroom stop demo",
        "greenroom stop s-2fdb034a --json",
    )

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

    session_command(
        "new-chat",
        "start an empty chat in a session (the old chat's history file stays)",
        "greenroom new-chat demo",
    )

    session_command(
        "resume",
        "continue a turn that was interrupted (under --resume manual) or failed",
        "greenroom resume demo",
    )

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
