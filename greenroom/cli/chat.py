"""``greenroom chat``: send messages to a project's session and stream the replies.

One message (given, ``-`` for stdin, or piped in) runs one turn; no message on a terminal
opens a prompt that keeps the session until ``/bye`` or Ctrl-D, as ``ollama run`` does
(:mod:`greenroom.cli.prompt`).

Decisions (docs/cli.md says the same for users):

- **Ctrl-C** stops the running turn (``stopGeneration``) and waits for it to end; a second
  Ctrl-C leaves at once without waiting for the stop (the server may be unreachable just then)
  and says how to stop the turn later. At the prompt, Ctrl-C only says how to leave.
- **A restart of the server** is not the end of the turn: the client reconnects and resumes the
  session's events from the last one shown; an ``interrupted`` turn is followed to its end.
  Under ``resume = "auto"`` the server resumes it by itself; under ``manual`` the chat asks for
  it (``resumeSession``), since its user is waiting for that very reply. A resume that finds
  the turn already running or finished is refused by the server, and that is fine.
- **Logs never split a reply**: only warnings are shown by default, on stderr, and on a
  terminal a log line first ends the reply's current line.
- ``--json`` prints every event of the session, one JSON object per line, instead of the text.
- **A tool call that waits for approval** (its summary's ``approval``, so a call still waiting
  after a restart of the server is asked about too) is asked about on a terminal: ``y`` allows
  it, anything else denies it, and text other than ``n`` is the reason the model reads. A call
  answered elsewhere (the web UI, ``greenroom approve``) withdraws the question. Without a
  terminal, the chat says how to answer with ``greenroom approve`` and keeps following.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final, TextIO

import attrs
import trio

from greenroom.cli.exits import EXIT_INTERRUPTED
from greenroom.cli.render import print_err, short
from greenroom.transport.client import (
    ClientError,
    CommandError,
    EventStream,
    GreenroomClient,
)

RECONNECT_TIMEOUT: Final = 120.0
"""Seconds ``chat`` keeps reconnecting to a server that went away (a restart takes a few)."""


class Output:
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
                self.write(f"-> {function.get('name')}({short(function.get('arguments'), 80)})\n")
        elif role == "tool":
            self.newline()
            first = str(message.get("content") or "").splitlines() or [""]
            self.write(f"<- {short(first[0], 100)}\n")


class _EndLineFirst(logging.Filter):
    """Ends the reply's current line on the terminal before a log line is written."""

    def __init__(self, output: Output) -> None:
        super().__init__()
        self.output = output

    def filter(self, record: logging.LogRecord) -> bool:
        self.output.newline()
        return True


@contextlib.contextmanager
def logs_on_their_own_line(output: Output) -> Iterator[None]:
    """While the chat runs, a log line (stderr) never lands in the middle of a reply line
    (stdout) on a shared terminal. Output to a pipe is left exactly as the server sent it."""
    if not output.out.isatty():
        yield
        return
    handlers = list(logging.getLogger().handlers)
    guard = _EndLineFirst(output)
    for handler in handlers:
        handler.addFilter(guard)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(guard)


Answer = Callable[[str], Awaitable[str]]
"""Asks the user a question and returns what they typed (``chat`` on a terminal)."""


ANSWER_SECONDS = 30.0
"""How long ``chat`` waits to send a user's approval answer once the turn it was for ended."""


def parse_approval(answer: str) -> tuple[bool, str | None]:
    """What a typed answer to "allow this call?" means: allowed, or denied with a reason."""
    text = answer.strip()
    if text.lower() in ("y", "yes"):
        return True, None
    return False, (None if text.lower() in ("", "n", "no") else text)


@attrs.define(eq=False)
class Chat:
    """One project's session, opened for chatting on a connected client."""

    client: GreenroomClient
    project: str
    session: str
    out: TextIO
    json_lines: bool = False
    answer: Answer | None = None
    """Asks about tool calls that wait for approval; None: only say how to answer them."""
    events: EventStream = attrs.field(init=False)
    output: Output = attrs.field(init=False)
    left: bool = attrs.field(init=False, default=False)
    """Whether the user left a turn with a second Ctrl-C (the prompt ends too)."""

    def __attrs_post_init__(self) -> None:
        self.events = self.client.events()
        self.output = Output(self.out)

    async def turn(self, content: str, interrupts: trio.abc.ReceiveChannel[int]) -> int:
        """Send ``content`` and follow the turn it starts to its end, Ctrl-C included: the
        exit code (0 completed, 1 failed, 130 stopped or left by Ctrl-C)."""
        reply = await self.client.send_message(self.session, content)
        if reply.get("queued"):
            print_err("(queued behind the running turn)")
        code: int | None = None
        stopping = False
        async with trio.open_nursery() as nursery:

            async def follow() -> None:
                nonlocal code
                code = await self._follow(content, nursery)
                nursery.cancel_scope.cancel()

            async def stop() -> None:
                with contextlib.suppress(ClientError, CommandError):
                    await self.client.stop_generation(self.session)

            async def on_ctrl_c() -> None:
                nonlocal code, stopping
                async for _ in interrupts:
                    self.output.newline()
                    if not stopping:
                        stopping = True
                        print_err("stopping the turn (press Ctrl-C again to leave without waiting)")
                        nursery.start_soon(stop)
                        continue
                    print_err(
                        "left without waiting for the turn to stop; if it still runs, "
                        f"`greenroom stop {self.project}` stops it"
                    )
                    code, self.left = EXIT_INTERRUPTED, True
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(follow)
            nursery.start_soon(on_ctrl_c)
        assert code is not None
        if stopping and code != 0:
            return EXIT_INTERRUPTED
        return code

    def _note(self, text: str) -> None:
        """A status line on stderr, on a line of its own when the reply is on a terminal."""
        if self.out.isatty():
            self.output.newline()
        print_err(text)

    async def _resume(self) -> None:
        """Ask for the interrupted turn to go on (see the module docstring): refused, and
        harmless, when the server resumed it already or it has ended since."""
        with contextlib.suppress(ClientError, CommandError):
            await self.client.resume_session(self.session)

    async def _approval(self, call: str, tool: str, scope: trio.CancelScope) -> None:
        """Ask whether the waiting call may run, and say what was answered; ``scope`` is
        cancelled when the call is answered elsewhere or the turn ends, which withdraws the
        question. Once the user has answered, the answer is sent and said whatever comes
        meanwhile: the summary that says the call is answered (by this answer) may come before
        the reply to it."""
        typed: str | None = None
        with scope:
            if self.answer is None:
                self._note(
                    f"{tool} waits for approval (call {call}): `greenroom approve "
                    f"{self.project}` allows it, `greenroom approve {self.project} --deny "
                    '--reason "..."` denies it'
                )
                return
            if self.out.isatty():
                self.output.newline()
            typed = await self.answer(f"allow {tool}? [y/N, or a reason to deny] ")
        if typed is None:
            return  # withdrawn before the user answered
        allow, reason = parse_approval(typed)
        # Shielded: the turn goes on at once and may end, which ends the chat's nursery,
        # before the reply comes. Bounded, for a server that went away meanwhile.
        with trio.move_on_after(ANSWER_SECONDS) as sending:
            sending.shield = True
            try:
                await self.client.approve_tool_call(
                    self.session, call, allow=allow, reason=reason
                )
            except (CommandError, ClientError) as error:  # answered elsewhere, or gone
                print_err(f"greenroom: {error}")
                return
            print_err(f"allowed {tool}" if allow else f"denied {tool}")

    async def _follow(self, content: str, nursery: trio.Nursery) -> int:
        ours = False  # whether our message was committed: what follows is our turn
        interrupted = False  # our turn was cut by a restart of the server, not resumed yet
        asked: set[str] = set()  # the calls asked about (each once)
        question: trio.CancelScope | None = None
        async for event in self.events:
            name, data = event.get("event"), event.get("data") or {}
            if name == "reconnected":
                self._note("(reconnected to the server)")
                if interrupted:
                    nursery.start_soon(self._resume)
                continue
            if event.get("session") != self.session:
                continue
            if self.json_lines:
                self.out.write(json.dumps(event, ensure_ascii=False) + "\n")
                self.out.flush()
            if name in ("sessionUpdated", "sessionCreated"):
                approval = data.get("approval")
                if approval is None and question is not None:
                    question.cancel()  # answered (here or elsewhere), or the turn ended
                    question = None
                elif approval is not None and approval.get("call") not in asked:
                    asked.add(str(approval.get("call")))
                    question = trio.CancelScope()
                    nursery.start_soon(
                        self._approval, str(approval["call"]), str(approval["tool"]), question
                    )
            if name == "messageAdded":
                message = data.get("message") or {}
                if not ours:
                    ours = message.get("role") == "user" and message.get("content") == content
                elif not self.json_lines:
                    self.output.message(message)
            elif name == "streamingUpdate" and ours and not self.json_lines:
                self.output.streaming(data)
            elif name == "resync":
                self._note("(missed part of the stream; some text may be lost)")
            elif name == "sessionDeleted":
                self.output.newline()
                print_err("the session was deleted")
                return 1
            elif name == "loadingChanged" and data.get("loading"):
                if interrupted:
                    interrupted = False
                    self._note("(the turn resumed)")
            elif name == "loadingChanged":
                reason = data.get("reason")
                if reason == "interrupted":
                    # The server went down mid-turn: the turn (or the one we are queued behind)
                    # goes on once it is back.
                    self.output.newline()
                    if ours:
                        print_err("(the server restarted; following the resumed turn)")
                        interrupted = True
                        nursery.start_soon(self._resume)
                    else:  # under resume=manual, it waits for `greenroom resume`
                        print_err("(the server restarted; the message waits behind its turn)")
                    continue
                if not ours:
                    if reason == "stopped":
                        print_err("the running turn was stopped and the message discarded")
                        return 1
                    continue  # the turn we were queued behind ended
                self.output.newline()
                if reason == "completed":
                    return 0
                error = data.get("error")
                if reason == "truncated" and not error:
                    error = "the reply was cut off at the model's length limit (raise max_tokens)"
                print_err(f"turn {reason}" + (f": {error}" if error else ""))
                return EXIT_INTERRUPTED if reason == "stopped" else 1
        self.output.newline()
        print_err("connection closed before the turn ended")
        return 1


Ask = Callable[[str], Awaitable[bool]]
"""Asks the user a yes-or-no question (``chat`` on a terminal)."""


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
        print_err(f"{project}/.mcp.json is unusable, its MCP servers do not start: {mcp['error']}")
        return
    shown = describe_mcp_servers(mcp.get("servers") or [])
    if ask is None:
        print_err(
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
        print_err("approved")
    else:
        print_err("not approved: its MCP servers do not start")


async def open_chat(
    client: GreenroomClient,
    project: str,
    out: TextIO,
    *,
    model: str | None = None,
    preset: str | None = None,
    json_lines: bool = False,
    ask: Ask | None = None,
    answer: Answer | None = None,
) -> Chat:
    """The project's session, subscribed; a project that does not exist yet is created, and
    stderr says so (a typo in a project name should not go unnoticed). A project whose
    ``.mcp.json`` is not approved yet is asked about first (with ``ask``); tool calls that wait
    for approval are asked about with ``answer``. With ``preset``, the session is opened with
    that preset (``model`` wins over the preset's)."""
    projects = (await client.list_projects())["projects"]
    if not any(p.get("project") == project for p in projects):
        if preset is not None:
            # A new project has no presets of its own: a name the server lacks would leave an
            # empty project behind a failed open.
            names = [p["name"] for p in (await client.list_presets())["presets"]]
            if preset not in names:
                known = ", ".join(names) or "none"
                raise CommandError("not_found", f"no preset {preset!r} (presets: {known})")
        try:
            await client.create_project(project)
        except CommandError as error:
            if error.code != "conflict":  # made meanwhile by someone else: fine
                raise
        else:
            print_err(f"created project {project}")
    opened = await client.open_session(project, model=model, preset=preset)
    await approve_mcp(client, project, opened.get("mcp"), ask)
    session = opened["session"]["session"]
    await client.subscribe(session)
    return Chat(
        client=client,
        project=project,
        session=session,
        out=out,
        json_lines=json_lines,
        answer=answer,
    )
