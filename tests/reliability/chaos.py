"""The pieces of the chaos tests: a seeded driver, resuming recorders, and the invariants.

A :class:`Recorder` is a client that keeps reconnecting: each connection lives a random while,
subscribes to every known session with ``since`` the last seq it saw of it, and records every
event of those sessions. The seq rule it checks (docs/reliability.md, "Seq"): after the
subscribe reply, the seqs of a session strictly increase; a jump from ``a`` to ``b > a + 1``
is allowed only when every event ``a+1 .. b`` was a ``streamingUpdate`` (merged into the one
that arrives with seq ``b``, which is itself a streamingUpdate). A non-streaming event is
never skipped, never repeated. A ``reset`` reply (what was missed is no longer retained)
starts the record of that session again.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from collections.abc import Callable
from typing import Any

import attrs
import trio
import trio_websocket

from greenroom.protocol.codec import SUBPROTOCOL_JSON, Codec
from greenroom.transport.server import ServerAddress
from tests.transport.test_server_support import open_client

JSON = dict[str, Any]
CHAOS_SECONDS = float(os.environ.get("GREENROOM_CHAOS_SECONDS", "0") or 0)


def seconds(default: float) -> float:
    """How long a chaos phase drives: GREENROOM_CHAOS_SECONDS, else ``default``."""
    return CHAOS_SECONDS or default


@attrs.define(eq=False)
class Recorder:
    """A resuming client: see the module docstring."""

    address: ServerAddress
    token: str | None
    rng: random.Random
    sessions: Callable[[], list[str]]
    last: dict[str, int] = attrs.Factory(dict)
    seen: dict[str, list[list[tuple[int, str]]]] = attrs.Factory(dict)  # runs between resets
    violations: list[str] = attrs.Factory(list)
    connections: int = 0
    resets: int = 0
    events: int = 0

    async def run(self, lifetime: tuple[float, float] = (0.2, 1.5)) -> None:
        """Connect, record, disconnect, again, until cancelled. Connection failures (the
        server being killed) are waited out."""
        while True:
            try:
                with trio.move_on_after(self.rng.uniform(*lifetime)):
                    await self._connection()
            except (trio_websocket.HandshakeError, OSError, trio_websocket.ConnectionClosed):
                await trio.sleep(0.1)
            except BaseExceptionGroup as group:
                rest = group.split(
                    (trio_websocket.HandshakeError, OSError, trio_websocket.ConnectionClosed)
                )[1]
                if rest is not None:
                    raise rest from None
                await trio.sleep(0.1)

    async def _connection(self) -> None:
        codec = Codec(SUBPROTOCOL_JSON)
        async with open_client(self.address, token=self.token, message_queue_size=4096) as wire:
            self.connections += 1
            pending: dict[int, tuple[str, int | None]] = {}
            active: set[str] = set()
            for i, session in enumerate(self.sessions()):
                since = self.last.get(session)
                pending[i] = (session, since)
                command: JSON = {"id": i, "op": "subscribe", "session": session}
                if since is not None:
                    command["since"] = since
                await wire.ws.send_message(json.dumps(command))
            while True:
                for item in codec.decode_server(await wire.ws.get_message()):
                    if "re" in item:
                        self._reply(item, pending, active)
                    elif item.get("session") in active:
                        self._event(item)

    def _reply(
        self, reply: JSON, pending: dict[int, tuple[str, int | None]], active: set[str]
    ) -> None:
        if reply["re"] not in pending:
            return
        session, since = pending.pop(reply["re"])
        if not reply["ok"]:
            return  # deleted meanwhile
        result = reply["result"]
        runs = self.seen.setdefault(session, [[]])
        if since is None or result.get("reset"):
            if since is not None:
                self.resets += 1
            runs.append([])
            self.last[session] = result["seq"]
        active.add(session)

    def _event(self, event: JSON) -> None:
        session, seq, name = event["session"], event["seq"], event["event"]
        last = self.last[session]
        if seq <= last:
            self.violations.append(f"{session}: {name} seq {seq} after {last}")
            return
        self.last[session] = seq
        self.seen[session][-1].append((seq, name))
        self.events += 1


def check_seqs(recorder: Recorder, truth: dict[str, dict[int, str]]) -> int:
    """Check the seq rule against ``truth`` (every published event: session -> seq -> name);
    returns how many merged jumps were seen."""
    assert not recorder.violations, recorder.violations[:5]
    merged = 0
    for session, runs in recorder.seen.items():
        published = truth.get(session, {})
        for run in runs:
            for (a, _), (b, name) in itertools.pairwise(run):
                assert b > a
                if b == a + 1:
                    assert published.get(b, name) == name, (session, b)
                    continue
                merged += 1
                skipped = [published.get(s) for s in range(a + 1, b + 1)]
                assert name == "streamingUpdate", (session, a, b, name, skipped)
                assert all(n == "streamingUpdate" for n in skipped), (session, a, b, skipped)
    return merged
