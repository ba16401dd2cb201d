"""``greenroom watch`` and ``greenroom chat`` against an in-process server (real sockets)."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import trio

from greenroom import cli
from greenroom.transport.client import connect
from tests.transport.test_client import TOKEN, running_server


class Terminal(io.StringIO):
    """A terminal to draw on, which can be waited on for a screen that shows something."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = trio.Event()

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.changed.set()
        return super().write(text)

    def screen(self) -> str:
        return self.getvalue().rsplit("\x1b[H\x1b[2J", 1)[-1]

    async def shows(self, text: str) -> None:
        while text not in self.screen():
            self.changed = trio.Event()
            await self.changed.wait()


async def test_watch_redraws_on_a_terminal(tmp_path: Path) -> None:
    out = Terminal()
    with trio.fail_after(10):
        async with (
            running_server(tmp_path) as (_, url, _),
            connect(url, TOKEN) as client,
            connect(url, TOKEN) as watcher,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(functools.partial(cli.watch, watcher, out, redraw_every=0.01))
            session = (await client.open_session("blog"))["session"]["session"]
            await client.send_message(session, "[[tokens:40]] hello")
            await out.shows("running")
            await out.shows("idle")
            nursery.cancel_scope.cancel()
    assert "blog" in out.screen() and session in out.screen() and "1 sessions" in out.screen()


async def test_chat_streams_to_the_output(tmp_path: Path) -> None:
    out = io.StringIO()
    with trio.fail_after(10):
        async with running_server(tmp_path) as (_, url, _), connect(url, TOKEN) as client:
            assert await cli.chat(client, "blog", "hello", out) == 0
            state = (await client.open_session("blog"))["session"]
            assert out.getvalue() == state["messages"][-1]["content"] + "\n"
            assert await cli.chat(client, "blog", "[[fail-before:auth]] x", out) == 1
