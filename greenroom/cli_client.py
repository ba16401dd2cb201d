"""The commands that talk to a running server: ``chat``, ``sessions``, ``projects``, ``watch``,
``stop``, ``delete``, ``new-chat`` and ``resume``.

Each finds the server (``--url``, else ``GREENROOM_URL``, else the local server's
``server.json``) and its token (``--token``, else ``GREENROOM_TOKEN``, else the token file),
connects, runs one small body and maps what went wrong to an exit code (``cli.EXIT_CODES``:
1 the server said no, 2 a usage error, 3 no server).

Wherever a command takes a session, a project name works too (the project's session).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Final

from greenroom.cli import (
    EXIT_FAILED,
    EXIT_OK,
    NoServer,
    UsageError,
    _setting,
    config_dir,
    discover,
    read_token,
)
from greenroom.transport.client import (
    CommandError,
    ConnectFailed,
    GreenroomClient,
    HandshakeRefused,
    connect,
    websocket_url,
)

NO_SERVER: Final = "no greenroom server found; start one with `greenroom serve`"
RECONNECT_TIMEOUT: Final = 10.0
"""Seconds a short command keeps reconnecting to a server that went away."""


def client_target(args: argparse.Namespace) -> tuple[str, str | None]:
    """The server's websocket URL and the token to show it."""
    directory = config_dir(args)
    given = _setting(args.url, os.environ, "GREENROOM_URL")
    if given is not None:
        try:
            url = websocket_url(given)
        except ValueError as error:
            raise UsageError(f"--url: {error}") from None
    else:
        found = discover(directory)
        if found is None:
            raise NoServer(NO_SERVER)
        url = found
    token = _setting(args.token, os.environ, "GREENROOM_TOKEN") or read_token(directory)
    return url, token


def print_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def short(value: object, limit: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def ago(when: object, now: float) -> str:
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
        approval = s.get("approval")
        if approval:
            status += f" (approve {approval.get('tool')}?)"
        if s.get("queued"):
            status += f" (+{len(s['queued'])} queued)"
        rows.append(
            [
                str(s.get("session")),
                str(s.get("project")),
                status,
                str(s.get("messageCount", 0)),
                ago(s.get("lastActivity"), now),
                short((s.get("preview") or "").replace("\n", " "), 50),
            ]
        )
    return format_table(rows)


def projects_table(projects: Sequence[Mapping[str, Any]]) -> str:
    """The ``greenroom projects`` table."""
    rows = [["PROJECT", "SESSION", "STATUS"]]
    for p in sorted(projects, key=lambda p: str(p.get("project"))):
        rows.append([str(p.get("project")), p.get("session") or "-", p.get("status") or "-"])
    return format_table(rows)


def presets_table(presets: Sequence[Mapping[str, Any]]) -> str:
    """The ``greenroom presets`` table."""
    rows = [["PRESET", "SOURCE", "MODEL", "DESCRIPTION"]]
    for p in presets:
        description = short((p.get("description") or "").replace("\n", " "), 60)
        rows.append([str(p.get("name")), str(p.get("source")), p.get("model") or "-", description])
    return format_table(rows)


Body = Callable[[GreenroomClient], Coroutine[Any, Any, int]]


async def with_client(
    args: argparse.Namespace, body: Body, *, reconnect_timeout: float = RECONNECT_TIMEOUT
) -> int:
    """Connect to the server and run ``body``; a failed connection is a one-line error."""
    url, token = client_target(args)
    try:
        async with connect(url, token, reconnect_timeout=reconnect_timeout) as client:
            return await body(client)
    except HandshakeRefused as refused:
        if refused.status == 401:
            raise UsageError(
                "the server refused the token; check `greenroom token` or pass --token"
            ) from None
        raise UsageError(refused.message) from None
    except ConnectFailed as failed:
        if args.url is None and os.environ.get("GREENROOM_URL") in (None, ""):
            raise NoServer(NO_SERVER) from None
        raise NoServer(failed.message) from None


async def session_of(client: GreenroomClient, target: str) -> str:
    """The session a user named: a session id, or a project name (its session)."""
    sessions = (await client.list_sessions())["sessions"]
    if any(s["session"] == target for s in sessions):
        return target
    for s in sessions:
        if s["project"] == target:
            return str(s["session"])
    raise CommandError("not_found", f"no session or project {target!r} with a session")


# -- the commands -------------------------------------------------------------------------------


async def cmd_chat(args: argparse.Namespace) -> int:
    from greenroom.cli_chat import RECONNECT_TIMEOUT as CHAT_RECONNECT
    from greenroom.cli_chat import (
        ask_on_tty,
        interactive,
        logs_on_their_own_line,
        one_message,
        open_chat,
        read_on_tty,
    )

    on_tty = sys.stdin.isatty() and sys.stderr.isatty()

    async def body(client: GreenroomClient) -> int:
        chat = await open_chat(
            client,
            args.project,
            sys.stdout,
            model=args.model,
            preset=args.preset,
            json_lines=args.json,
            ask=ask_on_tty if on_tty else None,
            answer=read_on_tty if on_tty else None,
        )
        with logs_on_their_own_line(chat.output):
            if args.message is None:
                prompts = sys.stdout if sys.stdout.isatty() else sys.stderr
                return await interactive(chat, prompts)
            return await one_message(chat, args.message)

    return await with_client(args, body, reconnect_timeout=CHAT_RECONNECT)


async def cmd_sessions(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        sessions = (await client.list_sessions())["sessions"]
        if args.json:
            print_json(sessions)
        elif not sessions:
            print("no sessions")
        else:
            print(sessions_table(sessions, time.time()))
        return EXIT_OK

    return await with_client(args, body)


async def cmd_projects(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        projects = (await client.list_projects())["projects"]
        if args.json:
            print_json(projects)
        elif not projects:
            print("no projects")
        else:
            print(projects_table(projects))
        return EXIT_OK

    return await with_client(args, body)


async def cmd_presets(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        listed = await client.list_presets(args.project)
        presets, error = listed["presets"], listed.get("error")
        if args.json:
            print_json(listed)
        elif not presets:
            print("no presets")
        else:
            print(presets_table(presets))
        if error:
            # The listing went through, but the project's own presets cannot be used.
            print_err(f"project {args.project}: {error}")
            return EXIT_FAILED
        return EXIT_OK

    return await with_client(args, body)


async def cmd_watch(args: argparse.Namespace) -> int:
    from greenroom.cli_watch import watch

    async def body(client: GreenroomClient) -> int:
        await watch(client, sys.stdout)
        return EXIT_OK

    return await with_client(args, body)


async def cmd_stop(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        session = await session_of(client, args.session)
        discarded = (await client.stop_generation(session)).get("discarded") or []
        if args.json:
            print_json({"session": session, "discarded": discarded})
        else:
            queued = f"; discarded {len(discarded)} queued" if discarded else ""
            print(f"stopped {session}{queued}")
        return EXIT_OK

    return await with_client(args, body)


async def cmd_delete(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        if args.project:
            projects = (await client.list_projects())["projects"]
            if not any(p.get("project") == args.target for p in projects):
                # The server's deleteProject is idempotent; a user who typed a name wants to
                # hear that there was nothing by that name.
                raise CommandError("not_found", f"no project {args.target!r}")
            await client.delete_project(args.target)
            result: dict[str, Any] = {"project": args.target, "folder": "removed"}
            text = f"deleted project {args.target} and its folder"
        else:
            session = await session_of(client, args.target)
            await client.delete_session(session)
            result = {"session": session}
            text = f"deleted session {session} (its history files stay in the project folder)"
        if args.json:
            print_json(result)
        else:
            print(text)
        return EXIT_OK

    return await with_client(args, body)


def prepare(args: argparse.Namespace) -> None:
    """What a command needs from the terminal, read before trio runs (plain blocking reads;
    Ctrl-C there is a KeyboardInterrupt): the message of ``chat``, the confirmation of
    ``delete --project``."""
    if args.command == "chat":
        args.message = chat_message(args.message)
    elif args.command == "delete" and args.project and not args.yes:
        confirm_project_deletion(args.target)


def chat_message(given: str | None) -> str | None:
    """The message to send: ``given``, else stdin when it is ``-`` or stdin is not a terminal;
    None for the interactive prompt."""
    if given is not None and given != "-":
        if not given.strip():
            raise UsageError("the message is empty")
        return given
    if given is None and sys.stdin.isatty():
        return None
    try:
        text = sys.stdin.buffer.read().decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise UsageError("the message on stdin is not UTF-8 text") from None
    if not text.strip():
        raise UsageError("no message: stdin was empty")
    return text


def confirm_project_deletion(project: str) -> None:
    """Ask on a terminal; refuse without ``--yes`` anywhere else (a script that deletes a folder
    says so on its command line)."""
    if not sys.stdin.isatty():
        raise UsageError(f"deleting project {project} removes its folder; add --yes to confirm")
    answer = input(f"delete project {project} and its folder, with every file in it? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UsageError("not deleted")


async def cmd_new_chat(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        session = await session_of(client, args.session)
        await client.new_chat(session)
        if args.json:
            print_json({"session": session})
        else:
            print(f"new chat in {session} (the old one's history file stays)")
        return EXIT_OK

    return await with_client(args, body)


async def cmd_resume(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        session = await session_of(client, args.session)
        await client.resume_session(session)
        if args.json:
            print_json({"session": session})
        else:
            print(f"resumed {session}; `greenroom watch` shows it")
        return EXIT_OK

    return await with_client(args, body)


async def cmd_approve(args: argparse.Namespace) -> int:
    if args.reason is not None and not args.deny:
        raise UsageError("--reason goes with --deny: it is what the model reads of a refusal")

    async def body(client: GreenroomClient) -> int:
        session = await session_of(client, args.session)
        summary = next(
            (s for s in (await client.list_sessions())["sessions"] if s["session"] == session),
            None,
        )
        pending = (summary or {}).get("approval")
        call = args.call or (pending or {}).get("call")
        if call is None:
            raise CommandError("conflict", f"session {session} is not waiting for an approval")
        allow = not args.deny
        await client.approve_tool_call(session, call, allow=allow, reason=args.reason)
        tool = (pending or {}).get("tool") if (pending or {}).get("call") == call else None
        if args.json:
            print_json({"session": session, "call": call, "allow": allow})
        else:
            print(f"{'allowed' if allow else 'denied'} {tool or 'the call'} ({call}) in {session}")
        return EXIT_OK

    return await with_client(args, body)


COMMANDS: Final[Mapping[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]]] = {
    "chat": cmd_chat,
    "sessions": cmd_sessions,
    "projects": cmd_projects,
    "presets": cmd_presets,
    "watch": cmd_watch,
    "stop": cmd_stop,
    "delete": cmd_delete,
    "new-chat": cmd_new_chat,
    "resume": cmd_resume,
    "approve": cmd_approve,
}
