"""``greenroom watch``: a live view of every session.

On a terminal, a table redrawn at most every quarter second while events come, and every
second without them, so that LAST ACTIVITY ticks. With ``rich`` importable (an optional extra)
the table is redrawn in place (``rich.live``), without the flicker of clearing the screen;
without it, plain ANSI clears and redraws. Anywhere else (a pipe, a file), the table once, then
one line per lifecycle change.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, Protocol, TextIO

import attrs
import trio

from greenroom.cli.render import ago, describe, format_table, sessions_table
from greenroom.transport.client import CommandError, GreenroomClient

HEADER: Final = ("SESSION", "PROJECT", "STATUS", "MESSAGES", "LAST ACTIVITY", "STREAMING")
STREAMING_SHOWN: Final = 60
"""Characters of the streamed text shown: the newest ones."""


@attrs.define(eq=False)
class WatchView:
    """What ``watch`` knows: every session's summary and the text streaming in each."""

    sessions: dict[str, dict[str, Any]] = attrs.Factory(dict)
    text: dict[str, str] = attrs.Factory(dict)

    def apply(self, event: Mapping[str, Any]) -> list[str]:
        """Take one event in; the sessions that have just appeared, to subscribe to (the ones
        already subscribed to are subscribed again by the client after a reconnect)."""
        name, data = event.get("event"), event.get("data") or {}
        session = event.get("session")
        if name in ("sessionCreated", "sessionUpdated"):
            self.sessions[data["session"]] = dict(data)
            return [str(data["session"])] if name == "sessionCreated" else []
        if not isinstance(session, str):
            if name == "reconnected":  # sessions may have come and gone meanwhile
                known = set(self.sessions)
                self.sessions = {s["session"]: dict(s) for s in data.get("sessions", ())}
                for gone in known - set(self.sessions):
                    self.text.pop(gone, None)
                return [s for s in self.sessions if s not in known]
            return []
        if name == "sessionDeleted":
            self.sessions.pop(session, None)
            self.text.pop(session, None)
        elif name == "streamingUpdate":
            current = self.text.get(session, "")
            offset = int(data.get("offset", 0))
            self.text[session] = current[:offset] + str(data.get("delta", ""))
        elif name == "loadingChanged":
            # A new turn starts blank; a session that went idle streams nothing.
            self.text.pop(session, None)
        return []

    def rows(self, now: float) -> list[list[str]]:
        rows = [list(HEADER)]
        for s in sorted(self.sessions.values(), key=lambda s: str(s.get("project"))):
            streaming = self.text.get(s["session"], "")[-STREAMING_SHOWN:].replace("\n", " ")
            rows.append(
                [
                    str(s["session"]),
                    str(s.get("project")),
                    str(s.get("status")),
                    str(s.get("messageCount", 0)),
                    ago(s.get("lastActivity"), now),
                    streaming,
                ]
            )
        return rows

    def footer(self) -> str:
        count = len(self.sessions)
        return f"{count} session{'' if count == 1 else 's'}; Ctrl-C to quit"


class Screen(Protocol):
    def draw(self, rows: Sequence[Sequence[str]], footer: str) -> None: ...


@attrs.define(eq=False)
class AnsiScreen:
    """Clears the terminal and draws the table again."""

    out: TextIO

    def draw(self, rows: Sequence[Sequence[str]], footer: str) -> None:
        self.out.write("\x1b[H\x1b[2J" + format_table(rows) + f"\n\n{footer}\n")
        self.out.flush()


@attrs.define(eq=False)
class RichScreen:
    """Redraws the table in place with rich.live: only what changed is rewritten."""

    live: Any  # rich.live.Live: rich is optional, so it is not named in the types

    def draw(self, rows: Sequence[Sequence[str]], footer: str) -> None:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for i, title in enumerate(rows[0]):
            last = i == len(rows[0]) - 1
            table.add_column(title, no_wrap=True, overflow="ellipsis" if last else "fold")
        for row in rows[1:]:
            table.add_row(*row)
        self.live.update(Group(table, Text(""), Text(footer)), refresh=True)


@contextlib.contextmanager
def open_screen(out: TextIO, *, use_rich: bool | None = None) -> Iterator[Screen]:
    """A rich screen when rich is importable (and ``use_rich`` is not False), else ANSI."""
    live_type: Any = None
    if use_rich is not False:
        try:
            from rich.console import Console
            from rich.live import Live
        except ImportError:
            if use_rich:
                raise
        else:
            live_type = Live
    if live_type is None:
        yield AnsiScreen(out)
        return
    console = Console(file=out, force_terminal=True)
    with live_type(console=console, auto_refresh=False, redirect_stderr=False) as live:
        yield RichScreen(live)


async def watch(
    client: GreenroomClient,
    out: TextIO,
    *,
    redraw_every: float = 0.25,
    tick: float = 1.0,
    use_rich: bool | None = None,
) -> None:
    """A live view of every session until cancelled: a redrawn table on a terminal (at most
    every ``redraw_every`` seconds while events come, every ``tick`` seconds without), one
    line per lifecycle change otherwise."""
    view = WatchView()
    for summary in client.welcome.get("sessions", ()):
        view.sessions[summary["session"]] = dict(summary)

    async with trio.open_nursery() as nursery:
        for sid in view.sessions:
            nursery.start_soon(_subscribe, client, sid)
        if out.isatty():
            with open_screen(out, use_rich=use_rich) as screen:
                await _redraw(client, view, screen, nursery, redraw_every, tick)
        else:
            await _lines(client, view, out, nursery)
        nursery.cancel_scope.cancel()


async def _redraw(
    client: GreenroomClient,
    view: WatchView,
    screen: Screen,
    nursery: trio.Nursery,
    redraw_every: float,
    tick: float,
) -> None:
    events = client.events()
    dirty = True
    drawn = -float("inf")
    while True:
        with trio.move_on_at(drawn + (redraw_every if dirty else tick)):
            try:
                event = await events.__anext__()
            except StopAsyncIteration:
                return
            for new in view.apply(event):
                nursery.start_soon(_subscribe, client, new)
            dirty = True
            continue
        screen.draw(view.rows(time.time()), view.footer())
        dirty = False
        drawn = trio.current_time()


async def _lines(
    client: GreenroomClient, view: WatchView, out: TextIO, nursery: trio.Nursery
) -> None:
    out.write(sessions_table(list(view.sessions.values()), time.time()) + "\n")
    out.flush()
    async for event in client.events():
        for new in view.apply(event):
            nursery.start_soon(_subscribe, client, new)
        line = describe(event)
        if line is not None:
            out.write(line + "\n")
            out.flush()


async def _subscribe(client: GreenroomClient, session: str) -> None:
    with contextlib.suppress(CommandError):  # deleted meanwhile
        await client.subscribe(session)
