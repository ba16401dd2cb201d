"""One connection to an MCP server, through the official SDK (anyio-based; it runs on trio).

The only module that imports ``mcp`` (the ``greenroom[mcp]`` extra), and the place where the
SDK's exceptions become greenroom's: :class:`McpServerError` for a server that cannot be
started or reached or stops answering, :class:`~greenroom.protocol.errors.ToolError` for a call that
failed while the server is fine. Results become the text the model reads: text blocks as they
are, a short note for images, audio and resources, structured content as JSON when there is
nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TextIO, cast

import attrs
import trio

from greenroom.agent.mcp.config import McpServer
from greenroom.protocol.errors import GreenroomError, ToolError

MAX_RESULT_CHARS = 100_000
"""A tool result longer than this is cut (with a note): it all goes into the context."""
MAX_TOOLS_PER_SERVER = 256


class McpServerError(GreenroomError, code="unavailable"):
    """A server could not be started or reached, or stopped answering."""


def available() -> str | None:
    """None when the SDK can be imported, else why not."""
    try:
        import mcp  # noqa: F401
    except ImportError as error:
        return f"the MCP SDK is not installed (pip install 'greenroom[mcp]'): {error}"
    return None


def describe(error: BaseException) -> str:
    """A short reason for a failure, without a traceback."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(describe(leaf) for leaf in error.exceptions)
    if isinstance(error, GreenroomError):
        return error.message
    mcp_error = getattr(error, "error", None)
    message = getattr(mcp_error, "message", None)
    if isinstance(message, str):
        return message
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@attrs.frozen(kw_only=True)
class RemoteTool:
    """A tool as the server lists it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    destructive: bool = False
    """The server marks it so (``destructiveHint: true`` and not ``readOnlyHint: true``);
    the spec's default (true when unsaid) is not taken: only a tool said to destroy asks."""


@attrs.define(eq=False)
class Connection:
    """An initialized session with one server, and the tools it listed."""

    server: McpServer
    tools: tuple[RemoteTool, ...]
    _session: Any

    async def ping(self, within: float) -> None:
        """Raise McpServerError unless the server answers a ping within ``within`` seconds."""
        try:
            with trio.fail_after(within):
                await self._session.send_ping()
        except trio.TooSlowError:
            raise McpServerError(f"it did not answer a ping within {within:g} s") from None
        except Exception as error:
            raise McpServerError(describe(error)) from None

    async def call(self, tool: str, arguments: dict[str, Any], within: float) -> str:
        """The text of a call's result. ToolError when the tool failed; McpServerError when
        the server did not answer (it may be dead)."""
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        try:
            with trio.fail_after(within):
                result = await self._session.call_tool(tool, arguments)
        except trio.TooSlowError:
            raise McpServerError(f"it did not answer within {within:g} s") from None
        except MCPError as error:
            if error.code in (CONNECTION_CLOSED, REQUEST_TIMEOUT):
                raise McpServerError(describe(error)) from None
            raise ToolError(describe(error)) from None
        except Exception as error:
            raise McpServerError(describe(error)) from None
        text = result_text(result)
        if result.is_error:
            raise ToolError(text or "the tool failed and said nothing")
        return text


@asynccontextmanager
async def open_connection(
    server: McpServer, cwd: Path, *, within: float, errlog: TextIO | None = None
) -> AsyncIterator[Connection]:
    """Start (stdio) or reach (http) the server, initialize and list its tools within
    ``within`` seconds; closing stops the program (stdin closed, then terminated, then killed: the
    SDK's sequence) or ends the HTTP session. Setup failures raise McpServerError."""
    from mcp import ClientSession, StdioServerParameters, stdio_client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async with AsyncExitStack() as stack:
        # The contexts are entered outside the deadline: they open nurseries, which must not
        # outlive a cancel scope entered after them. Entering them only spawns or connects.
        try:
            if server.transport == "stdio":
                assert server.command is not None
                params = StdioServerParameters(
                    command=server.command, args=list(server.args), env=dict(server.env), cwd=cwd
                )
                streams = await stack.enter_async_context(
                    stdio_client(params, errlog=errlog or _stderr())
                )
            else:
                assert server.url is not None
                client = await stack.enter_async_context(
                    create_mcp_http_client(headers=dict(server.headers))
                )
                streams = await stack.enter_async_context(
                    streamable_http_client(server.url, http_client=client)
                )
            read, write = streams
            session = await stack.enter_async_context(ClientSession(read, write))
            with trio.fail_after(within):
                await session.initialize()
                tools = await _list_tools(session)
        except trio.TooSlowError:
            raise McpServerError(
                f"it did not start and list its tools within {within:g} s"
            ) from None
        except Exception as error:
            if isinstance(error, OSError) and server.transport == "stdio":
                # The program could not be run: say which, as the user wrote it.
                raise McpServerError(f"cannot run {server.command!r}: {describe(error)}") from None
            raise McpServerError(describe(error)) from None
        yield Connection(server=server, tools=tools, session=session)


def _stderr() -> TextIO:
    """Where a program's stderr goes: greenroom's own, which must be a real file (a test's
    captured stream or a closed one is not); else nowhere."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.fileno()
                return stream
        except (OSError, ValueError, AttributeError):
            continue
    # The SDK hands this to the process spawner, which takes a file or a descriptor.
    return cast(TextIO, subprocess.DEVNULL)


async def _list_tools(session: Any) -> tuple[RemoteTool, ...]:
    from mcp.types import PaginatedRequestParams

    tools: list[RemoteTool] = []
    cursor: str | None = None
    while len(tools) < MAX_TOOLS_PER_SERVER:
        params = PaginatedRequestParams(cursor=cursor) if cursor is not None else None
        listing = await session.list_tools(params=params)
        for tool in listing.tools:
            schema = dict(tool.input_schema or {})
            schema.setdefault("type", "object")
            schema.setdefault("properties", {})
            annotations = getattr(tool, "annotations", None)
            destructive = getattr(annotations, "destructive_hint", None) is True and (
                getattr(annotations, "read_only_hint", None) is not True
            )
            tools.append(
                RemoteTool(
                    name=tool.name,
                    description=tool.description or tool.title or "",
                    input_schema=schema,
                    destructive=destructive,
                )
            )
        cursor = listing.next_cursor
        if cursor is None:
            break
    return tuple(tools[:MAX_TOOLS_PER_SERVER])


def result_text(result: Any) -> str:
    """The text the model reads for a ``CallToolResult``."""
    from mcp.types import (
        AudioContent,
        EmbeddedResource,
        ImageContent,
        ResourceLink,
        TextContent,
        TextResourceContents,
    )

    parts: list[str] = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, ImageContent | AudioContent):
            kind = "image" if isinstance(block, ImageContent) else "audio"
            padding = len(block.data) - len(block.data.rstrip("="))
            size = len(block.data) * 3 // 4 - padding
            parts.append(f"[{kind} {block.mime_type}, {size} bytes, not shown]")
        elif isinstance(block, ResourceLink):
            parts.append(f"[resource link {block.uri} ({block.name})]")
        elif isinstance(block, EmbeddedResource):
            contents = block.resource
            length = (
                f"{len(contents.text)} characters"
                if isinstance(contents, TextResourceContents)
                else "binary"
            )
            mime = contents.mime_type or "unknown type"
            parts.append(f"[resource {contents.uri} ({mime}, {length}), not shown]")
        else:
            parts.append(f"[{getattr(block, 'type', 'unknown')} content, not shown]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(parts)
    if len(text) > MAX_RESULT_CHARS:
        cut = len(text) - MAX_RESULT_CHARS
        text = text[:MAX_RESULT_CHARS] + f"\n... ({cut} more characters cut)"
    return text
