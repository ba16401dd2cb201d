"""A real HTTP server that plays an OpenAI-compatible chat-completions endpoint from a script.

Written with trio and h11, on 127.0.0.1 port 0. Each request gets the next :class:`Reply` of
the script: a status, headers, and body parts (server-sent events built with :func:`sse` and
:func:`chunk`), optionally cut mid-stream or stalled until the client goes away. Every request
is recorded (method, path, headers, JSON body), and ``disconnects`` counts clients that went
away before a reply was finished, so tests can see that a closed stream closed its connection.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import h11
import trio

JSON = dict[str, Any]


@attrs.frozen(kw_only=True)
class Reply:
    """One scripted response. ``cut``: close the connection after the parts, mid-body.
    ``stall``: after the parts, send nothing more until the client disconnects."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    parts: tuple[bytes, ...] = ()
    delay: float = 0.0  # before each part
    cut: bool = False
    stall: bool = False


@attrs.frozen(kw_only=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> JSON:
        value: JSON = json.loads(self.body)
        return value


def chunk(
    *,
    content: str | None = None,
    reasoning: str | None = None,
    reasoning_key: str = "reasoning_content",
    tool_calls: list[JSON] | None = None,
    finish: str | None = None,
    usage: JSON | None = None,
    no_choices: bool = False,
) -> JSON:
    """One ``chat.completion.chunk`` in OpenAI's shape."""
    delta: JSON = {}
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta[reasoning_key] = reasoning
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    obj: JSON = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "test-model",
        "choices": [] if no_choices else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        obj["usage"] = usage
    return obj


def tool_delta(
    index: int, *, id: str | None = None, name: str | None = None, arguments: str | None = None
) -> JSON:
    """One element of ``delta.tool_calls``."""
    call: JSON = {"index": index}
    if id is not None:
        call["id"], call["type"] = id, "function"
    function: JSON = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    if function:
        call["function"] = function
    return call


def usage(prompt: int = 10, completion: int = 5, cost: float | None = None) -> JSON:
    obj: JSON = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cost is not None:
        obj["cost"] = cost
    return obj


def sse(
    objs: Iterable[JSON | str], *, done: bool = True, newline: str = "\n", comments: bool = False
) -> tuple[bytes, ...]:
    """Server-sent events, one part per event; a str is sent as the data verbatim."""
    parts: list[bytes] = []
    if comments:
        parts.append(f": OPENROUTER PROCESSING{newline}{newline}".encode())
    for obj in objs:
        data = obj if isinstance(obj, str) else json.dumps(obj)
        parts.append(f"data: {data}{newline}{newline}".encode())
        if comments:
            parts.append(f": keep-alive{newline}".encode())
    if done:
        parts.append(f"data: [DONE]{newline}{newline}".encode())
    return tuple(parts)


def text_reply(text: str, pieces: int = 5, **extra: Any) -> Reply:
    """A streamed plain-text reply in ``pieces`` chunks, usage last, [DONE]."""
    size = len(text)
    bounds = [size * i // pieces for i in range(pieces + 1)]
    objs: list[JSON] = [chunk(content=text[a:b]) for a, b in itertools.pairwise(bounds)]
    objs.append(chunk(finish="stop"))
    objs.append(chunk(no_choices=True, usage=usage()))
    return Reply(parts=sse(objs), **extra)


def error_reply(
    status: int, message: str, type_: str, code: str | None = None, **extra: Any
) -> Reply:
    body = json.dumps({"error": {"message": message, "type": type_, "code": code, "param": None}})
    headers = (("content-type", "application/json"), *extra.pop("headers", ()))
    return Reply(status=status, headers=headers, parts=(body.encode(),), **extra)


class FakeOpenAI:
    """The server; start it with :func:`open_fake_openai`."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.received: list[Received] = []
        self.disconnects = 0
        self.connections = 0
        self.disconnected = trio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        self.connections += 1
        try:
            while True:
                request, body = await self._read_request(conn, stream)
                if request is None:
                    return
                self.received.append(
                    Received(
                        method=request.method.decode(),
                        path=request.target.decode(),
                        headers={k.decode().lower(): v.decode() for k, v in request.headers},
                        body=body,
                    )
                )
                reply = self.replies.popleft() if self.replies else Reply(status=599)
                if not await self._send(conn, stream, reply):
                    return
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            self._gone()
        finally:
            await stream.aclose()

    def _gone(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            else:  # ConnectionClosed between requests: the client is done
                return None, b""

    async def _send(self, conn: h11.Connection, stream: trio.SocketStream, reply: Reply) -> bool:
        """Send ``reply``; False when the connection must close after it."""
        headers = list(reply.headers)
        if reply.status == 200 and not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("content-type", "text/event-stream"))
        if reply.status != 200 and not reply.cut and not reply.stall:
            length = sum(len(p) for p in reply.parts)
            headers.append(("content-length", str(length)))
        await stream.send_all(conn.send(h11.Response(status_code=reply.status, headers=headers)))
        for part in reply.parts:
            if reply.delay:
                await trio.sleep(reply.delay)
            await stream.send_all(conn.send(h11.Data(data=part)))
        if reply.cut:
            return False
        if reply.stall:
            # Nothing more is sent: wait for the client to go away (EOF or a reset).
            while await stream.receive_some(65536):
                pass
            self._gone()
            return False
        await stream.send_all(conn.send(h11.EndOfMessage()))
        return True


@asynccontextmanager
async def open_fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A running fake server on 127.0.0.1 and a free port, stopped on exit."""
    fake = FakeOpenAI()
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, fake._handle, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        fake.port = listeners[0].socket.getsockname()[1]
        yield fake
        nursery.cancel_scope.cancel()
