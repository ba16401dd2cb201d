"""``greenroom chat`` on a terminal: the prompt, questions asked on it, and Ctrl-C.

Ctrl-C arrives as a channel (:func:`ctrl_c`) rather than as ``KeyboardInterrupt``, so that a
turn can stop the reply instead of dying; what a press means is decided by
:meth:`greenroom.cli.chat.Chat.turn` and the prompt (:func:`interactive`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Final, TextIO

import trio

from greenroom.cli.chat import Chat
from greenroom.cli.render import print_err
from greenroom.transport.client import CommandError

PROMPT: Final = ">>> "
LEAVE: Final = frozenset({"/bye", "/exit", "/quit"})


async def read_on_tty(question: str) -> str:
    """Ask on the terminal; what was typed (a thread reads it: a cancelled question leaves
    it waiting for the line, which is fine for a process about to end)."""

    def read() -> str:
        sys.stderr.write(question)
        sys.stderr.flush()
        return sys.stdin.readline()

    return await trio.to_thread.run_sync(read, abandon_on_cancel=True)


async def ask_on_tty(question: str) -> bool:
    """Ask on the terminal; anything but y or yes is no."""
    return (await read_on_tty(question)).strip().lower() in ("y", "yes")


@contextlib.asynccontextmanager
async def ctrl_c() -> AsyncIterator[trio.abc.ReceiveChannel[int]]:
    """Ctrl-C presses as a channel, instead of KeyboardInterrupt, while the block runs."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        send, receive = trio.open_memory_channel[int](16)  # presses beyond 16 are dropped

        async def forward() -> None:
            async for signum in signals:
                with contextlib.suppress(trio.WouldBlock):
                    send.send_nowait(signum)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(forward)
            yield receive
            nursery.cancel_scope.cancel()


async def one_message(chat: Chat, content: str) -> int:
    """``greenroom chat PROJECT MESSAGE``: one turn; its exit code."""
    async with ctrl_c() as interrupts:
        return await chat.turn(content, interrupts)


class _Lines:
    """Lines typed on stdin, read by trio so that waiting for one can be cancelled."""

    def __init__(self, stream: trio.lowlevel.FdStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def readline(self) -> str | None:
        """The next line without its newline, or None at end of input (Ctrl-D)."""
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some(4096)
            if not chunk:
                if not self.buffer:
                    return None
                break
            self.buffer += chunk
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer[:] = rest
        return line.decode("utf-8", "replace").rstrip("\r")


async def interactive(chat: Chat, prompt_out: TextIO) -> int:
    """``greenroom chat PROJECT`` on a terminal: a prompt that keeps the session."""
    print_err(
        f"chatting in project {chat.project} (session {chat.session}); "
        "Ctrl-C stops a reply, /bye or Ctrl-D leaves"
    )
    # A duplicate, so that closing the stream (which restores the blocking mode) leaves the
    # process's stdin open.
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stream, ctrl_c() as keys:
        lines = _Lines(stream)
        if chat.answer is not None:
            # The prompt's reader owns stdin (non-blocking now): questions are read by it too.

            async def answer(question: str) -> str:
                prompt_out.write(question)
                prompt_out.flush()
                return await lines.readline() or ""

            chat.answer = answer
        while True:
            line = await _prompt(lines, keys, prompt_out)
            if line is None:
                prompt_out.write("\n")
                prompt_out.flush()
                return 0
            text = line.strip()
            if not text:
                continue
            if text in LEAVE:
                return 0
            try:
                code = await chat.turn(line, keys)
            except CommandError as error:  # refused (too long, queue full): the prompt stays
                print_err(f"greenroom: {error}")
                continue
            if chat.left:
                return code


async def _prompt(lines: _Lines, keys: trio.abc.ReceiveChannel[int], out: TextIO) -> str | None:
    out.write(PROMPT)
    out.flush()
    line: str | None = None
    async with trio.open_nursery() as nursery:

        async def hint() -> None:
            async for _ in keys:
                out.write(f"\n(Ctrl-D or /bye leaves; Ctrl-C stops a reply)\n{PROMPT}")
                out.flush()

        async def read() -> None:
            nonlocal line
            line = await lines.readline()
            nursery.cancel_scope.cancel()

        nursery.start_soon(hint)
        nursery.start_soon(read)
    return line
