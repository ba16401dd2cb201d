"""A minimal websocket client on a raw trio socket, for the load drivers.

The bench's clients must not be the bottleneck they measure, so this one does the least a
client can: one HTTP upgrade, then a frame parser over a byte buffer (server frames are not
masked), pongs for the server's pings, and masked text frames out. No extensions, no
fragmentation on send. It is for 127.0.0.1 benchmarks only, not a general client.
"""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import AsyncIterator

import trio

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RECEIVE_BYTES = 1 << 18


class Closed(Exception):
    """The server closed the websocket (``code`` from its close frame, None if none)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


class HandshakeFailed(Exception):
    pass


class WsClient:
    """One websocket connection. ``frames()`` yields ``(opcode, payload)`` of whole messages."""

    def __init__(self, stream: trio.SocketStream, rest: bytes) -> None:
        self.stream = stream
        self._buffer = bytearray(rest)
        self._send_lock = trio.Lock()
        self.bytes_received = 0
        self.frames_received = 0

    @classmethod
    async def connect(
        cls, host: str, port: int, path: str, *, subprotocol: str | None = None
    ) -> WsClient:
        stream = await trio.open_tcp_stream(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if subprotocol:
            lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in response:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    raise HandshakeFailed("connection closed in the handshake")
                response += chunk
        head, _, rest = response.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            await stream.aclose()
            raise HandshakeFailed(status.decode(errors="replace"))
        return cls(stream, rest)

    async def send(self, payload: str | bytes) -> None:
        """One masked frame (text for str, binary for bytes)."""
        if isinstance(payload, str):
            data, opcode = payload.encode(), OP_TEXT
        else:
            data, opcode = payload, OP_BINARY
        await self._send_frame(opcode, data)

    async def _send_frame(self, opcode: int, data: bytes) -> None:
        length = len(data)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        mask = os.urandom(4)
        repeated = (mask * (length // 4 + 1))[:length]
        masked = (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
            length, "big"
        )
        async with self._send_lock:
            await self.stream.send_all(header + mask + masked)

    async def close(self, code: int = 1000) -> None:
        try:
            with trio.move_on_after(2):
                await self._send_frame(OP_CLOSE, struct.pack("!H", code))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await self.stream.aclose()

    async def frames(self) -> AsyncIterator[tuple[int, bytes]]:
        """Whole messages, pings answered; raises Closed when the server closes."""
        buffer = self._buffer
        pos = 0
        partial: bytearray | None = None
        partial_op = 0
        while True:
            # Parse every complete frame in the buffer.
            while True:
                available = len(buffer) - pos
                if available < 2:
                    break
                b0, b1 = buffer[pos], buffer[pos + 1]
                length = b1 & 0x7F
                head = 2
                if length == 126:
                    if available < 4:
                        break
                    length = (buffer[pos + 2] << 8) | buffer[pos + 3]
                    head = 4
                elif length == 127:
                    if available < 10:
                        break
                    length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                    head = 10
                masked = b1 & 0x80
                if masked:
                    head += 4
                if available < head + length:
                    break
                payload = bytes(buffer[pos + head : pos + head + length])
                if masked:
                    key = buffer[pos + head - 4 : pos + head]
                    repeated = (bytes(key) * (length // 4 + 1))[:length]
                    payload = (
                        int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
                    ).to_bytes(length, "big")
                pos += head + length
                opcode = b0 & 0x0F
                fin = b0 & 0x80
                self.frames_received += 1
                if opcode == OP_PING:
                    await self._send_frame(OP_PONG, payload)
                    continue
                if opcode == OP_PONG:
                    continue
                if opcode == OP_CLOSE:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    raise Closed(code)
                if opcode == OP_CONT:
                    if partial is None:
                        continue
                    partial += payload
                    if fin:
                        yield partial_op, bytes(partial)
                        partial = None
                    continue
                if not fin:
                    partial, partial_op = bytearray(payload), opcode
                    continue
                yield opcode, payload
            if pos:
                del buffer[:pos]
                pos = 0
            try:
                chunk = await self.stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise Closed(None) from None
            if not chunk:
                raise Closed(None)
            self.bytes_received += len(chunk)
            buffer += chunk
