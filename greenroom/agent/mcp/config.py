"""MCP server lists: the global one (config.toml) and a project's ``.mcp.json``.

Both use Claude Code's shape: ``{"NAME": {"command": ..., "args": [...], "env": {...}}}`` for a
program spoken to over stdio, ``{"type": "http", "url": ..., "headers": {...}}`` for streamable
HTTP. A project file holds them under ``mcpServers``. Parsing is pure; reading the project's
file (:func:`read_project_file`) touches the disk, so call it from a worker thread.

A project's file starts programs, so it counts only once a client has approved its exact
contents: :attr:`ProjectFile.hash` is what a client approves (see
:mod:`greenroom.store.trust`).

This module parses JSON itself: ``.mcp.json`` is a user's file, not a wire frame or a snapshot.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from greenroom.protocol.errors import InvalidArgument

PROJECT_FILE = ".mcp.json"
MAX_PROJECT_FILE_BYTES = 256 * 1024
MAX_SERVERS = 32
TOOL_PREFIX = "mcp__"
MAX_TOOL_NAME = 64
"""The longest function name the OpenAI API accepts; Anthropic's limit is the same."""

_SERVER_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")

Transport = Literal["stdio", "http"]
TrustState = Literal["none", "trusted", "untrusted", "invalid"]


class McpConfigError(InvalidArgument):
    """A server list is malformed; the message says where and why."""


@attrs.frozen(kw_only=True)
class McpTimings:
    """How long to wait for a server, and how it is restarted."""

    start: float = 30.0
    """To start (or reach) a server, initialize it and list its tools."""
    call: float = 300.0
    """For one tool call's answer."""
    ping_every: float = 30.0
    ping: float = 10.0
    retry_after: float = 60.0
    """A server given up is started again by the first step this long after."""
    shutdown: float = 5.0
    max_restarts: int = 5
    """Restarts within ``period`` seconds before a server is given up (until ``retry_after``)."""
    period: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


@attrs.frozen(kw_only=True)
class McpServer:
    """One configured server. ``source`` is ``global`` (config.toml) or ``project``."""

    name: str
    transport: Transport
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=False)
    source: Literal["global", "project"] = "global"

    def describe(self) -> dict[str, Any]:
        """What a client is shown to approve: the program and its arguments, or the URL, and
        the names (not the values) of the environment variables and headers it sets."""
        shown: dict[str, Any] = {"name": self.name, "type": self.transport}
        if self.transport == "stdio":
            shown.update(command=self.command, args=list(self.args))
            shown["env"] = [key for key, _ in self.env]
        else:
            shown.update(url=self.url, headers=[key for key, _ in self.headers])
        return shown


@attrs.frozen(kw_only=True)
class ProjectFile:
    """A project's ``.mcp.json`` as found: its hash (sha256 of the bytes, hex), and either its
    servers or why it is unusable."""

    hash: str
    servers: tuple[McpServer, ...] = ()
    error: str | None = None


def _strings(value: object, where: str, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise McpConfigError(f"{where}: {what} must be a list of strings")
    return tuple(value)


def _string_map(value: object, where: str, what: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise McpConfigError(f"{where}: {what} must map names to strings")
    return tuple(sorted(value.items()))


def parse_server(
    name: object, entry: object, *, where: str, source: Literal["global", "project"]
) -> McpServer:
    """One server entry, checked."""
    if not isinstance(name, str) or not _SERVER_NAME.fullmatch(name) or "__" in name:
        raise McpConfigError(
            f"{where}: bad server name {name!r}: use 1 to 32 of A-Z a-z 0-9 _ - "
            "(no '__', which separates the server from the tool in a tool's name)"
        )
    where = f"{where}: server {name!r}"
    if not isinstance(entry, Mapping):
        raise McpConfigError(f"{where} must be an object")
    kind = entry.get("type", "stdio" if "command" in entry else None)
    if kind == "stdio":
        command = entry.get("command")
        if not isinstance(command, str) or not command:
            raise McpConfigError(f"{where}: 'command' must be a non-empty string")
        unknown = set(entry) - {"type", "command", "args", "env"}
        server = McpServer(
            name=name,
            transport="stdio",
            command=command,
            args=_strings(entry.get("args", []), where, "'args'"),
            env=_string_map(entry.get("env", {}), where, "'env'"),
            source=source,
        )
    elif kind in ("http", "streamable-http"):
        url = entry.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise McpConfigError(f"{where}: 'url' must be an http:// or https:// URL")
        unknown = set(entry) - {"type", "url", "headers"}
        server = McpServer(
            name=name,
            transport="http",
            url=url,
            headers=_string_map(entry.get("headers", {}), where, "'headers'"),
            source=source,
        )
    elif kind is None:
        raise McpConfigError(f"{where}: give a 'command' (stdio) or 'type': 'http' and a 'url'")
    else:
        raise McpConfigError(
            f"{where}: unsupported type {kind!r}: greenroom speaks 'stdio' and 'http'"
        )
    if unknown:
        raise McpConfigError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    return server


def parse_servers(
    servers: object, *, where: str, source: Literal["global", "project"]
) -> tuple[McpServer, ...]:
    """A ``{NAME: entry}`` table of servers, checked, in name order."""
    if not isinstance(servers, Mapping):
        raise McpConfigError(f"{where}: the servers must be an object of name: server")
    if len(servers) > MAX_SERVERS:
        raise McpConfigError(f"{where}: more than {MAX_SERVERS} servers")
    return tuple(
        parse_server(name, servers[name], where=where, source=source)
        for name in sorted(servers, key=str)
    )


def parse_project_file(data: bytes) -> ProjectFile:
    """A project's ``.mcp.json`` from its bytes; a bad file is a ProjectFile with ``error``."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return ProjectFile(hash=digest, error=f"{PROJECT_FILE} is not valid JSON")
    try:
        if not isinstance(document, dict) or not isinstance(
            document.get("mcpServers", {}), dict
        ):
            raise McpConfigError(f"{PROJECT_FILE}: expected {{\"mcpServers\": {{...}}}}")
        servers = parse_servers(
            document.get("mcpServers", {}), where=PROJECT_FILE, source="project"
        )
    except McpConfigError as error:
        return ProjectFile(hash=digest, error=error.message)
    return ProjectFile(hash=digest, servers=servers)


def read_project_file(project_dir: Path) -> ProjectFile | None:
    """The project's ``.mcp.json``, or None when it has none. Blocking."""
    path = project_dir / PROJECT_FILE
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PROJECT_FILE_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        digest = hashlib.sha256(b"").hexdigest()
        return ProjectFile(
            hash=digest, error=f"cannot read {PROJECT_FILE}: {error.strerror or 'error'}"
        )
    if len(data) > MAX_PROJECT_FILE_BYTES:
        return ProjectFile(
            hash=hashlib.sha256(data).hexdigest(),
            error=f"{PROJECT_FILE} is over {MAX_PROJECT_FILE_BYTES} bytes",
        )
    return parse_project_file(data)


def tool_name(server: str, tool: str) -> str:
    """The name the model sees: ``mcp__<server>__<tool>``, with characters the model APIs
    refuse replaced by ``_`` and a long name cut, keeping it unique with a short hash."""
    name = TOOL_PREFIX + server + "__" + _NOT_NAME_CHARS.sub("_", tool)
    if len(name) <= MAX_TOOL_NAME and _NOT_NAME_CHARS.sub("_", tool) == tool:
        return name
    digest = hashlib.sha256(tool.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return name[: MAX_TOOL_NAME - 9] + "_" + digest


def server_of(name: str) -> str | None:
    """The server named in a tool name ``mcp__<server>__...``, or None."""
    if not name.startswith(TOOL_PREFIX):
        return None
    server, separator, _ = name[len(TOOL_PREFIX) :].partition("__")
    return server if separator and server else None


@attrs.frozen(kw_only=True)
class ProjectMcpStatus:
    """What a client is shown of a project's ``.mcp.json``: whether it exists, is approved,
    its hash (what ``trustMcpConfig`` approves) and its servers (or why it is unusable)."""

    state: TrustState
    hash: str | None = None
    servers: tuple[McpServer, ...] = ()
    error: str | None = None
