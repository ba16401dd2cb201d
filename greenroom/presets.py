"""Session presets: named bundles of a model, its settings, a system prompt, a tool policy and
a choice of MCP servers, which ``openSession`` applies to a session by name.

Presets come from config.toml (``[presets.NAME]`` tables, read once at start: a bad one stops
``greenroom serve`` like any bad setting) and from a project's ``.ai/presets.toml`` (the same
tables, read again whenever a client asks: a bad file is logged and reported to the client,
and the server goes on). A project's preset replaces a global one of the same name.

A project's file cannot widen what the project may do: a preset only *selects* among the MCP
servers already configured (config.toml's, and the project's approved ``.mcp.json``), and the
file tools may not write ``.ai/`` (see :mod:`greenroom.agent.tools`). The ``tools`` table is the
preset's tool policy (tool name -> ``allow``, ``ask`` or ``deny``), kept with the session for
the tool approval policy to apply; this module only checks it.

This module parses TOML itself: ``.ai/presets.toml`` is a user's file, not a wire frame.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from greenroom.protocol.errors import InvalidArgument, NotFound
from greenroom.protocol.values import MAX_TEMPERATURE, MAX_TOKENS, PRESET_NAME
from greenroom.store.reading import read_up_to

logger = logging.getLogger("greenroom.presets")

PROJECT_FILE: Final = ".ai/presets.toml"
MAX_FILE_BYTES: Final = 256 * 1024
MAX_PRESETS: Final = 50
"""Per file. With the other bounds, a listing of a project's presets and the global ones
stays well under a frame's megabyte."""
MAX_NAME_CHARS: Final = 64
MAX_MODEL_CHARS: Final = 200
MAX_DESCRIPTION_CHARS: Final = 500
MAX_SYSTEM_PROMPT_CHARS: Final = 32_000
"""The prompt is kept in the session's summary record, which the journal writes with every
change of the summary: the bound keeps that cost small."""
MAX_TOOL_RULES: Final = 64
SHOWN_PROMPT_CHARS: Final = 200
"""How much of a system prompt a listing shows."""
POLICIES: Final = ("allow", "ask", "deny")

NAME: Final = PRESET_NAME
_TOOL: Final = re.compile(r"[A-Za-z0-9_*-]{1,64}")
"""A tool's name as the model sees it (``*`` too, for the policy's patterns)."""
_SERVER: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")

Source = Literal["global", "project"]
Policy = Literal["allow", "ask", "deny"]


class PresetError(InvalidArgument):
    """A preset is malformed; the message says where and why."""


@attrs.frozen(kw_only=True)
class Preset:
    """One preset. A None setting is not set by the preset: the server's applies.

    ``mcp_servers`` None: every configured server, as without a preset; a tuple: only those
    (an empty one: none). ``tools``: the preset's tool policy, tool name -> policy word.
    """

    name: str
    source: Source = "global"
    description: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    system_prompt: str | None = None
    mcp_servers: tuple[str, ...] | None = None
    tools: Mapping[str, Policy] = attrs.field(factory=dict)

    def describe(self) -> dict[str, Any]:
        """The preset as ``listPresets`` and ``greenroom config`` show it (camelCase, as on the
        wire): its system prompt cut to its first :data:`SHOWN_PROMPT_CHARS` characters."""
        prompt = self.system_prompt
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "model": self.model,
            "temperature": self.temperature,
            "maxTokens": self.max_tokens,
            "systemPrompt": None if prompt is None else prompt[:SHOWN_PROMPT_CHARS],
            "mcpServers": None if self.mcp_servers is None else list(self.mcp_servers),
            "tools": dict(self.tools),
        }

    def session_settings(self) -> dict[str, Any]:
        """What the preset sets on a session, by the summary's field names: every field, so
        that switching presets leaves nothing of the previous one."""
        return {
            "preset": self.name,
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "system_prompt": self.system_prompt,
            "mcp_servers": self.mcp_servers,
            "tools": dict(self.tools),
        }


_KEYS: Final = (
    "description", "model", "temperature", "max_tokens", "system_prompt", "mcp_servers", "tools",
)  # fmt: skip


def _text(value: object, where: str, key: str, limit: int) -> str:
    if not isinstance(value, str):
        raise PresetError(f"{where}: {key} must be a string")
    if not 0 < len(value) <= limit:
        raise PresetError(f"{where}: {key} must be 1 to {limit} characters")
    return value


def parse_preset(name: object, table: object, *, where: str, source: Source) -> Preset:
    """One ``[presets.NAME]`` table, checked."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise PresetError(
            f"{where}: bad preset name {name!r}: use 1 to {MAX_NAME_CHARS} letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    where = f"{where}: preset {name!r}"
    if not isinstance(table, dict):
        raise PresetError(f"{where}: must be a table ([presets.{name}])")
    for key in table:
        if key not in _KEYS:
            close = difflib.get_close_matches(str(key), _KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PresetError(f"{where}: unknown key {key!r}{hint}; known: {', '.join(_KEYS)}")
    fields: dict[str, Any] = {}
    if "description" in table:
        fields["description"] = _text(
            table["description"], where, "description", MAX_DESCRIPTION_CHARS
        )
    if "model" in table:
        model = _text(table["model"], where, "model", MAX_MODEL_CHARS)
        if not model.isprintable():
            raise PresetError(f"{where}: model must be printable characters")
        fields["model"] = model
    if "temperature" in table:
        value = table["temperature"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (math.isfinite(value) and 0 <= value <= MAX_TEMPERATURE)
        ):
            raise PresetError(
                f"{where}: temperature must be a number from 0 to {MAX_TEMPERATURE:g}"
            )
        fields["temperature"] = float(value)
    if "max_tokens" in table:
        value = table["max_tokens"]
        if type(value) is not int or not 1 <= value <= MAX_TOKENS:
            raise PresetError(f"{where}: max_tokens must be a whole number from 1 to {MAX_TOKENS}")
        fields["max_tokens"] = value
    if "system_prompt" in table:
        fields["system_prompt"] = _text(
            table["system_prompt"], where, "system_prompt", MAX_SYSTEM_PROMPT_CHARS
        )
    if "mcp_servers" in table:
        fields["mcp_servers"] = _servers(table["mcp_servers"], where)
    if "tools" in table:
        fields["tools"] = _tools(table["tools"], where)
    return Preset(name=name, source=source, **fields)


def _servers(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PresetError(
            f"{where}: mcp_servers must be a list of the names of configured MCP servers"
        )
    for item in value:
        if not _SERVER.fullmatch(item):
            raise PresetError(f"{where}: mcp_servers: {item!r} is not an MCP server's name")
    return tuple(dict.fromkeys(value))


def _tools(value: object, where: str) -> dict[str, Policy]:
    if not isinstance(value, dict):
        raise PresetError(
            f'{where}: tools must be a table of tool names to "allow", "ask" or "deny"'
        )
    if len(value) > MAX_TOOL_RULES:
        raise PresetError(f"{where}: tools has {len(value)} entries; at most {MAX_TOOL_RULES}")
    rules: dict[str, Policy] = {}
    for tool, policy in value.items():
        if not _TOOL.fullmatch(tool):
            raise PresetError(f"{where}: tools: {tool!r} is not a tool's name")
        if policy not in POLICIES:
            raise PresetError(f'{where}: tools: {tool} = {policy!r}: give "allow", "ask" or "deny"')
        rules[tool] = policy
    return rules


def parse_presets(value: object, *, where: str, source: Source) -> tuple[Preset, ...]:
    """The presets of a ``presets`` table (``{NAME: {...}}``), in the file's order."""
    if not isinstance(value, dict):
        raise PresetError(f"{where}: presets must be a table of [presets.NAME] tables")
    if len(value) > MAX_PRESETS:
        raise PresetError(f"{where}: {len(value)} presets; at most {MAX_PRESETS}")
    return tuple(
        parse_preset(name, table, where=where, source=source) for name, table in value.items()
    )


def parse_project_file(data: bytes, where: str = PROJECT_FILE) -> tuple[Preset, ...]:
    """A project's ``.ai/presets.toml``: ``[presets.NAME]`` tables and nothing else."""
    if len(data) > MAX_FILE_BYTES:
        raise PresetError(f"{where}: over {MAX_FILE_BYTES // 1024} KiB")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise PresetError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise PresetError(f"{where}: not valid TOML: {error}") from None
    unknown = [key for key in document if key != "presets"]
    if unknown:
        raise PresetError(
            f"{where}: unknown key {unknown[0]!r}: the file holds [presets.NAME] tables only"
        )
    return parse_presets(document.get("presets", {}), where=where, source="project")


@attrs.frozen(kw_only=True)
class ProjectPresets:
    """A project's presets file as found: its presets, or why it is unusable (None: no file)."""

    presets: tuple[Preset, ...] = ()
    error: str | None = None


def read_project_file(project_dir: Path) -> ProjectPresets:
    """Read and check ``<project>/.ai/presets.toml``. Blocking: call it from a worker thread."""
    path = project_dir / PROJECT_FILE
    try:
        # Non-blocking, and a regular file only: a FIFO put there would hang the thread.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return ProjectPresets(error=f"{PROJECT_FILE}: not a regular file")
            data = read_up_to(fd, MAX_FILE_BYTES)
        finally:
            os.close(fd)
    except (FileNotFoundError, NotADirectoryError):
        return ProjectPresets()
    except OSError as error:
        return ProjectPresets(error=f"{PROJECT_FILE}: cannot read it: {error.strerror}")
    try:
        return ProjectPresets(presets=parse_project_file(data))
    except PresetError as error:
        return ProjectPresets(error=error.message)


@attrs.frozen(kw_only=True)
class PresetListing:
    """The presets a project's sessions may use (project ones replace global ones of the same
    name), and why its own file is unusable, if it is."""

    presets: tuple[Preset, ...]
    error: str | None = None

    def find(self, name: str) -> Preset:
        """The preset called ``name``; NotFound if there is none. While the project's file is
        unusable, InvalidArgument for every name: the file might define or replace it, and
        a session must not quietly get another preset than the one its project means."""
        if self.error is not None:
            raise InvalidArgument(f"cannot use preset {name!r}: {self.error}")
        for preset in self.presets:
            if preset.name == name:
                return preset
        known = ", ".join(preset.name for preset in self.presets) or "none"
        raise NotFound(f"no preset {name!r} (presets: {known})")


@attrs.define(eq=False)
class PresetCatalog:
    """The global presets, and each project's read on demand (a file is small, and a client
    that asks wants what it holds now). Logs each distinct problem of a project's file once."""

    presets: tuple[Preset, ...]
    projects_root: Path
    _reported: dict[str, str] = attrs.Factory(dict)

    async def visible(self, project: str | None) -> PresetListing:
        """The presets of ``project`` (None: the global ones only). The name must be valid."""
        if project is None:
            return PresetListing(presets=self.presets)
        # Imported here: the codec uses this module's names, and must not load trio.
        import trio

        found = await trio.to_thread.run_sync(read_project_file, self.projects_root / project)
        if found.error is not None and self._reported.get(project) != found.error:
            logger.error("project %s: presets unusable: %s", project, found.error)
        if found.error is None:
            self._reported.pop(project, None)
        else:
            self._reported[project] = found.error
        own = {preset.name for preset in found.presets}
        merged = tuple(p for p in self.presets if p.name not in own) + found.presets
        return PresetListing(presets=merged, error=found.error)
