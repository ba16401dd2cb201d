"""``greenroom watch`` and ``greenroom chat`` against an in-process server (real sockets)."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import trio

from greenroom.cli.chat import Chat, open_chat
from greenroom.cli.watch import WatchView, watch
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
    with trio.fail_after(60):
        async with (
            running_server(tmp_path) as (_, url, _),
            connect(url, TOKEN) as client,
            connect(url, TOKEN) as watcher,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(
                functools.partial(watch, watcher, out, redraw_every=0.01, use_rich=False)
            )
            session = (await client.open_session("blog"))["session"]["session"]
            # Four seconds: drawn running, however late a redraw comes.
            await client.send_message(session, "[[tokens:40]] [[rate:10]] hello")
            await out.shows("running")
            await out.shows("idle")
            nursery.cancel_scope.cancel()
    screen = out.screen()
    assert "blog" in screen and session in screen and "1 session;" in screen
    row = next(line for line in screen.splitlines() if line.startswith(session))
    assert row.rstrip().endswith("ago"), "the streaming column is cleared once idle"


def test_watch_view_clears_the_streaming_text_when_a_turn_ends() -> None:
    view = WatchView()

    def event(name: str, **data: object) -> dict[str, object]:
        return {"event": name, "session": "s-1", "project": "blog", "seq": 1, "data": data}

    summary = {"session": "s-1", "project": "blog", "status": "running", "lastActivity": 10.0}
    assert view.apply(event("sessionCreated", **summary)) == ["s-1"]
    view.apply(event("streamingUpdate", offset=0, delta="Hello"))
    view.apply(event("streamingUpdate", offset=5, delta=" world"))
    assert view.rows(now=12.0)[1][-2:] == ["2s ago", "Hello world"]
    view.apply(event("loadingChanged", loading=False, reason="completed"))
    assert view.rows(now=13.0)[1][-2:] == ["3s ago", ""]
    view.apply(event("sessionDeleted"))
    assert view.rows(now=13.0) == [list(view.rows(0)[0])]

    # A reconnect brings the sessions made meanwhile, to subscribe to, and drops the gone ones.
    view.apply(event("sessionCreated", **summary))
    view.apply(event("streamingUpdate", offset=0, delta="cut"))
    other = {**summary, "session": "s-2", "project": "shop"}
    welcome = {"event": "reconnected", "session": None, "project": None, "seq": None,
               "data": {"sessions": [other]}}  # fmt: skip
    assert view.apply(welcome) == ["s-2"]
    assert [row[0] for row in view.rows(now=13.0)[1:]] == ["s-2"] and view.text == {}


async def test_chat_streams_to_the_output(tmp_path: Path) -> None:
    out = io.StringIO()
    with trio.fail_after(10):
        async with running_server(tmp_path) as (_, url, _), connect(url, TOKEN) as client:
            chat: Chat = await open_chat(client, "blog", out)
            _keys, no_keys = trio.open_memory_channel[int](0)
            assert await chat.turn("hello", no_keys) == 0
            state = (await client.open_session("blog"))["session"]
            assert out.getvalue() == state["messages"][-1]["content"] + "\n"
            assert await chat.turn("[[fail-before:auth]] x", no_keys) == 1
