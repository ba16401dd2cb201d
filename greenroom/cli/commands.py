"""The commands that talk to a running server: ``chat``, ``sessions``, ``projects``,
``presets``, ``watch``, ``stop``, ``delete``, ``new-chat``, ``resume`` and ``approve``.

Each connects (:func:`~greenroom.cli.client.with_client`), runs one small body and returns its
exit code; :data:`COMMANDS` maps each name to its command. ``chat`` and ``watch`` keep their
workings in modules of their own.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Final

import trio

from greenroom.cli.chat import RECONNECT_TIMEOUT as CHAT_RECONNECT
from greenroom.cli.chat import logs_on_their_own_line, open_chat
from greenroom.cli.client import session_of, with_client
from greenroom.cli.exits import EXIT_FAILED, EXIT_OK, UsageError
from greenroom.cli.prompt import ask_on_tty, ctrl_c, interactive, one_message, read_on_tty
from greenroom.cli.render import (
    presets_table,
    print_err,
    print_json,
    projects_table,
    sessions_table,
)
from greenroom.cli.watch import watch
from greenroom.transport.client import CommandError, GreenroomClient


async def cmd_chat(args: argparse.Namespace) -> int:
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


def _print_listing(
    args: argparse.Namespace, listed: object, items: Sequence[object], kind: str,
    table: Callable[[], str],
) -> None:
    """Print what a listing command got: ``listed`` as JSON with ``--json``, else the table of
    its ``items``, or that there are no ``kind``."""
    if args.json:
        print_json(listed)
    elif not items:
        print(f"no {kind}")
    else:
        print(table())


async def cmd_sessions(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        sessions = (await client.list_sessions())["sessions"]
        now = time.time()
        _print_listing(args, sessions, sessions, "sessions", lambda: sessions_table(sessions, now))
        return EXIT_OK

    return await with_client(args, body)


async def cmd_projects(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        projects = (await client.list_projects())["projects"]
        _print_listing(args, projects, projects, "projects", lambda: projects_table(projects))
        return EXIT_OK

    return await with_client(args, body)


async def cmd_presets(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        listed = await client.list_presets(args.project)
        presets, error = listed["presets"], listed.get("error")
        _print_listing(args, listed, presets, "presets", lambda: presets_table(presets))
        if error:
            # The listing went through, but the project's own presets cannot be used.
            print_err(f"project {args.project}: {error}")
            return EXIT_FAILED
        return EXIT_OK

    return await with_client(args, body)


async def cmd_watch(args: argparse.Namespace) -> int:
    async def body(client: GreenroomClient) -> int:
        # Ctrl-C (how one leaves watch) cancels the watch, rather than raising
        # KeyboardInterrupt wherever the code happens to be, which could be halfway through
        # the client's own bookkeeping.
        async with ctrl_c() as interrupts, trio.open_nursery() as nursery:

            async def leave_on_ctrl_c() -> None:
                await interrupts.receive()
                nursery.cancel_scope.cancel()

            nursery.start_soon(leave_on_ctrl_c)
            await watch(client, sys.stdout)
            nursery.cancel_scope.cancel()  # the server went away
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


async def cmd_new_chat(args: argparse.Namespace) -> int:
    return await _on_session(
        args,
        lambda client, session: client.new_chat(session),
        "new chat in {session} (the old one's history file stays)",
    )


async def cmd_resume(args: argparse.Namespace) -> int:
    return await _on_session(
        args,
        lambda client, session: client.resume_session(session),
        "resumed {session}; `greenroom watch` shows it",
    )


async def _on_session(
    args: argparse.Namespace,
    act: Callable[[GreenroomClient, str], Awaitable[object]],
    done: str,
) -> int:
    """Do ``act`` to the session ``args.session`` names, and say so: ``done`` (its
    ``{session}`` filled in), or the session as JSON."""

    async def body(client: GreenroomClient) -> int:
        session = await session_of(client, args.session)
        await act(client, session)
        if args.json:
            print_json({"session": session})
        else:
            print(done.format(session=session))
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
