"""``greenroom watch`` on a pseudo-terminal against a real server, with rich and without it
(a ``rich`` package that fails to import stands in for a machine without rich); what the
terminal shows is rendered by pyte, a terminal emulator."""

from __future__ import annotations

import signal
from pathlib import Path

import pyte
import pytest
import trio

from greenroom.transport.client import connect
from tests.e2e.harness import Cli, Server, cli_env, open_cli, open_tty_cli, run_cli

ROWS, COLUMNS = 30, 160


class Screen:
    """What the terminal shows, replayed from everything the process wrote."""

    def __init__(self, cli: Cli) -> None:
        self.cli = cli

    def lines(self) -> list[str]:
        screen = pyte.Screen(COLUMNS, ROWS)
        stream = pyte.ByteStream(screen)
        stream.feed(bytes(self.cli.out.data))
        return [line.rstrip() for line in screen.display]

    def row(self, first: str) -> str | None:
        return next((line for line in self.lines() if line.startswith(first)), None)

    async def shows(
        self, first: str, wanted: str, *, streaming: bool = False, limit: float = 60
    ) -> str:
        """Wait for the row that starts with ``first`` to contain ``wanted`` (and, with
        ``streaming``, some streamed text in its last column, after the time)."""
        with trio.fail_after(limit):
            while True:
                row = self.row(first)
                if row is not None and wanted in row and not (streaming and row.endswith("ago")):
                    return row
                if self.cli.out.closed:
                    raise AssertionError(f"{wanted!r} never shown; screen: {self.lines()}")
                self.cli.out.changed = trio.Event()
                await self.cli.out.changed.wait()


def without_rich(tmp_path: Path, server: Server) -> dict[str, str]:
    """An environment where ``import rich`` fails, as where it is not installed."""
    shadow = tmp_path / "no-rich" / "rich"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("rich is not installed here")\n')
    return cli_env(server, PYTHONPATH=str(shadow.parent))


@pytest.mark.parametrize("rich", [True, False], ids=["rich", "ansi"])
async def test_watch_ticks_and_clears_the_streaming_column(
    server: Server, tmp_path: Path, rich: bool
) -> None:
    assert (await run_cli(server, "chat", "blog", "[[tokens:3]] hi")).returncode == 0
    async with connect(server.url, server.token) as client:
        session = (await client.open_session("blog"))["session"]["session"]
    env = cli_env(server) if rich else without_rich(tmp_path, server)
    async with open_tty_cli(server, "watch", env=env, rows=ROWS, columns=COLUMNS) as cli:
        screen = Screen(cli)
        assert (await screen.shows("SESSION", "LAST ACTIVITY")).split()[:3] == [
            "SESSION",
            "PROJECT",
            "STATUS",
        ]
        # Nothing happens, and LAST ACTIVITY still counts the seconds.
        await screen.shows(session, "2s ago")
        await screen.shows(session, "3s ago")

        async with connect(server.url, server.token) as client:
            await client.send_message(session, "[[tokens:60]] [[rate:20]] go on")
            await screen.shows(session, "running", streaming=True)
            idle = await screen.shows(session, "idle")
        assert idle.endswith("ago"), f"the streaming column is cleared once idle: {idle!r}"
        assert "1 session; Ctrl-C to quit" in screen.lines()
    written = bytes(cli.out.data)
    if rich:
        # rich.live rewrites the lines in place: it never clears the whole screen.
        assert b"\x1b[2J" not in written
    else:
        assert written.count(b"\x1b[H\x1b[2J") >= 3


async def test_watch_leaves_on_ctrl_c_when_started_with_sigint_ignored(server: Server) -> None:
    async with open_cli(server, "watch", sigint_ignored=True) as cli:
        await cli.out.shows("SESSION")
        cli.process.send_signal(signal.SIGINT)
        assert await cli.wait() == 0, "Ctrl-C leaves watch, a background job's too"


async def test_watch_into_a_pipe_writes_one_line_per_change(server: Server) -> None:
    assert (await run_cli(server, "chat", "blog", "[[tokens:3]] hi")).returncode == 0
    async with open_cli(server, "watch") as cli:
        await cli.out.shows("SESSION")
        await cli.out.shows("blog")
        async with connect(server.url, server.token) as client:
            session = (await client.open_session("blog"))["session"]["session"]
            await client.send_message(session, "[[tokens:3]] again")
            done = await cli.out.shows(f"session {session} blog: turn completed")
        cli.process.send_signal(signal.SIGINT)
        assert await cli.wait() == 0, "Ctrl-C is how one leaves watch"
    assert f"session {session} blog: turn started\n" in cli.out.text[:done]
    assert "\x1b[" not in cli.out.text, "no terminal codes into a pipe"
