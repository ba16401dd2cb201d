"""A real MCP server written with the SDK, for the tests: stdio by default, or streamable
HTTP on 127.0.0.1 with ``--http PORT``."""

from __future__ import annotations

import base64
import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.types import ImageContent, TextContent, ToolAnnotations

server = MCPServer("demo")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@server.tool()
def pid() -> str:
    """The server's process id."""
    return str(os.getpid())


@server.tool()
def cwd() -> str:
    """The server's working folder."""
    return os.getcwd()


@server.tool()
def picture() -> list[TextContent | ImageContent]:
    """Text and an image."""
    data = base64.b64encode(b"\x89PNG" + b"\0" * 96).decode()
    return [
        TextContent(type="text", text="a picture:"),
        ImageContent(type="image", data=data, mime_type="image/png"),
    ]


@server.tool()
async def hang() -> str:
    """Never answers."""
    await anyio.sleep_forever()
    return "never"


@server.tool(annotations=ToolAnnotations(destructiveHint=True))
def erase(name: str) -> str:
    """Pretends to erase something: the server marks it destructive."""
    return f"erased {name}"


@server.tool(annotations=ToolAnnotations(destructiveHint=True, readOnlyHint=True))
def peek() -> str:
    """Read-only, whatever else its annotations say: not destructive."""
    return "peeked"


@server.tool()
def boom() -> str:
    """Always fails."""
    raise ValueError("kaput")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
