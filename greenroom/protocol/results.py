"""What executing a command gives back, in process: the values the runtime returns and the
codec turns into a reply's ``result``.

Most results are plain (``bool``, ``str``, a tuple of summaries); the few that need a class
are here. What is made above this layer (the MCP registry's status, the presets' listing) is
named by the shape the codec reads of it, as a :class:`typing.Protocol`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import attrs

from greenroom.protocol.events import Event
from greenroom.protocol.state import SessionView

__all__ = [
    "Describes",
    "McpStatusLike",
    "OpenedSession",
    "PresetListingLike",
    "ProjectInfo",
    "Subscribed",
]


@attrs.frozen(kw_only=True)
class ProjectInfo:
    """A project, its session (if it has one) and that session's status."""

    project: str
    session: str | None = None
    status: str | None = None


class Describes(Protocol):
    """A thing shown as the plain object its ``describe`` makes (an MCP server, a preset)."""

    def describe(self) -> dict[str, Any]: ...


class McpStatusLike(Protocol):
    """What ``mcpConfig`` shows of a project's ``.mcp.json`` (the MCP registry's status)."""

    @property
    def state(self) -> str: ...
    @property
    def hash(self) -> str | None: ...
    @property
    def servers(self) -> Sequence[Describes]: ...
    @property
    def error(self) -> str | None: ...


class PresetListingLike(Protocol):
    """What ``listPresets`` shows (the presets module's listing)."""

    @property
    def presets(self) -> Sequence[Describes]: ...
    @property
    def error(self) -> str | None: ...


@attrs.frozen(kw_only=True)
class OpenedSession(SessionView):
    """The session's whole state, as ``openSession`` returns it, and its project's
    ``.mcp.json`` status (the reply shows both)."""

    mcp: McpStatusLike = attrs.field(eq=False, repr=False)


@attrs.frozen(kw_only=True)
class Subscribed:
    """The session's current ``seq``, and the retained events after ``since`` (None when some
    are no longer retained: reload the state with ``openSession``)."""

    seq: int
    replay: tuple[Event, ...] | None
