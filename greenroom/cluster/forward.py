"""Commands one node forwards to another (docs/cluster.md, "Which node does what").

The asker pushes ``{asker, frame}`` (the command as a client's frame) onto the owner's inbox
list; the owner decodes it with the codec's own checks, runs it, and pushes ``{id, result}``
(the wire result) or ``{id, error}`` onto the asker's replies list. The asker waits at most
``ask_timeout`` for it; a command whose owner does not answer is ``unavailable``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import msgpack  # type: ignore[import-untyped]  # no stubs, no py.typed
import orjson
import trio

from greenroom.cluster.errors import EngineUnavailable, RemoteError, Unavailable
from greenroom.cluster.streams import Streams
from greenroom.protocol.codec import ErrorReply, Incoming, Reply, command_from_wire, to_wire
from greenroom.protocol.commands import Command, command_to_wire
from greenroom.protocol.errors import GreenroomError

logger = logging.getLogger("greenroom.cluster")

Run = Callable[[Command[Any]], Awaitable[dict[str, Any]]]


class Counts(Protocol):
    forwarded: int
    served: int


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


class Backoff:
    """Waits that double from 50 ms to 2 s while an engine is away."""

    def __init__(self) -> None:
        self.delay = 0.05

    async def wait(self) -> None:
        await trio.sleep(self.delay)
        self.delay = min(self.delay * 2, 2.0)

    def reset(self) -> None:
        self.delay = 0.05


async def each_batch(
    receive: Callable[[], Awaitable[list[bytes]]], handle: Callable[[list[bytes]], Awaitable[None]]
) -> None:
    """Hand every batch ``receive`` gives to ``handle``, forever; while the bus is away,
    try again with backoff."""
    backoff = Backoff()
    while True:
        try:
            batch = await receive()
        except EngineUnavailable:
            await backoff.wait()
            continue
        backoff.reset()
        await handle(batch)


@attrs.define(eq=False)
class _Waiting:
    done: trio.Event = attrs.Factory(trio.Event)
    reply: dict[str, Any] | None = None


@attrs.define(eq=False)
class Forwarder:
    """Both ends of forwarding for one node: :meth:`forward` asks, :meth:`serve_forever`
    runs what others ask with ``run``, :meth:`read_answers` hands replies to the askers."""

    name: str
    instance: str
    streams: Streams
    ask_timeout: float
    stats: Counts
    run: Run
    _waiting: dict[str, _Waiting] = attrs.Factory(dict)
    _ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(1))

    async def forward(self, node: str, command: Command[Any]) -> dict[str, Any]:
        """Run ``command`` on ``node``; its wire result, or the error the owner replied."""
        ident = f"{self.name}-{self.instance}-{next(self._ids)}"
        waiting = self._waiting[ident] = _Waiting()
        frame = command_to_wire(ident, command)
        try:
            await self.streams.send(node, pack({"asker": self.name, "frame": frame}))
            self.stats.forwarded += 1
            with trio.move_on_after(self.ask_timeout):
                await waiting.done.wait()
        finally:
            del self._waiting[ident]
        reply = waiting.reply
        if reply is None:
            raise Unavailable(
                f"node {node} did not answer {command.op} within {self.ask_timeout:g} s"
            )
        if "error" in reply:
            error = reply["error"]
            raise RemoteError(str(error.get("code", "internal")), str(error.get("message")))
        result: dict[str, Any] = orjson.loads(reply["result"])
        return result

    async def serve_forever(self) -> None:
        async with trio.open_nursery() as nursery:

            async def serve(payloads: list[bytes]) -> None:
                for payload in payloads:
                    nursery.start_soon(self._serve_one, payload)

            await each_batch(self.streams.receive, serve)

    async def _serve_one(self, payload: bytes) -> None:
        try:
            request = unpack(payload)
            asker, frame = str(request["asker"]), request["frame"]
        except Exception:
            logger.error("a forwarded command could not be read; dropped")
            return
        decoded = command_from_wire(frame)
        if isinstance(decoded, ErrorReply):
            reply: dict[str, Any] = {
                "id": decoded.re,
                "error": {"code": decoded.code, "message": decoded.message},
            }
        else:
            reply = await self._run(decoded)
        self.stats.served += 1
        try:
            await self.streams.answer(asker, pack(reply))
        except EngineUnavailable as error:
            logger.error("the reply to node %s was lost: %s", asker, error)

    async def _run(self, incoming: Incoming) -> dict[str, Any]:
        try:
            result = await self.run(incoming.command)
        except GreenroomError as error:
            return {"id": incoming.id, "error": {"code": error.code, "message": error.message}}
        except Exception:
            logger.exception("forwarded %s failed", incoming.command.op)
            return {"id": incoming.id, "error": {"code": "internal", "message": "internal error"}}
        # As a client would get it: listings as plain objects, not the codec's lazy ones.
        plain = to_wire(Reply(re=incoming.id, result=result))["result"]
        return {"id": incoming.id, "result": orjson.dumps(plain)}

    async def read_answers(self) -> None:
        await each_batch(self.streams.answers, self._hand_over)

    async def _hand_over(self, payloads: list[bytes]) -> None:
        for payload in payloads:
            try:
                reply = unpack(payload)
                waiting = self._waiting.get(str(reply["id"]))
            except Exception:
                logger.error("a reply to a forwarded command could not be read; dropped")
                continue
            if waiting is not None:
                waiting.reply = reply
                waiting.done.set()
