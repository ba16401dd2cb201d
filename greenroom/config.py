"""greenroom's configuration: one frozen value, built once and handed to the runtime."""

from __future__ import annotations

import socket
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs
import platformdirs

from greenroom.agent.mcp.config import McpServer, McpTimings
from greenroom.agent.policy import ToolPolicy

if TYPE_CHECKING:  # greenroom.presets checks its values against the limits defined here
    from greenroom.presets import Preset

APP_NAME = "greenroom"

ResumePolicy = Literal["auto", "manual"]



def default_data_dir() -> Path:
    """Where snapshots (and, by default, project folders) live: the user's data folder."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_config_dir() -> Path:
    """Where the token and the configuration file live: the user's config folder."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe for logs and errors."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@attrs.frozen(kw_only=True)
class ClusterConfig:
    """A node of a cluster (docs/cluster.md): the engines it shares with the other nodes,
    its own name, and the lease after which the others take its sessions over."""

    database_url: str = attrs.field(repr=redact_url)
    bus_url: str = attrs.field(repr=redact_url)
    node_id: str = attrs.field(factory=socket.gethostname)
    lease_seconds: float = 10.0


@attrs.frozen(kw_only=True)
class Limits:
    """Bounds that protect the server; reaching one is a clear ``limit_reached`` or
    ``too_large`` error, never a crash."""

    max_sessions: int = 10_000
    max_queued_messages: int = 32
    max_message_chars: int = 256_000
    # Turns that may stream at once across all sessions (None: no limit). A turn beyond it
    # waits for a slot, and its session's summary says so (``waiting``).
    max_concurrent_turns: int | None = None


@attrs.frozen(kw_only=True)
class SupervisionConfig:
    """How sessions are restarted: at most ``max_restarts`` within ``period`` seconds each,
    with jittered exponential backoff between ``backoff_initial`` and ``backoff_max``."""

    max_restarts: int = 3
    period: float = 30.0
    backoff_initial: float = 0.05
    backoff_max: float = 5.0
    shutdown_timeout: float = 5.0


@attrs.frozen(kw_only=True)
class SimulatedConfig:
    """The simulated provider: deterministic for a seed, streaming on trio's clock."""

    seed: int = 0
    tokens_per_second: float = 50.0
    reply_tokens: int = 40


@attrs.frozen(kw_only=True)
class Config:
    """Everything the runtime needs.

    ``flush_interval``: each changed session is written to disk at most once per interval
    (a throttle: a session streaming for minutes is still written every interval).
    ``idle_unload_after``: a session not running and with no subscriber for this long is
    dropped from memory and reloaded on demand. ``now`` gives the wall-clock time that is
    stored or shown (``lastActivity``, history file names); injected so tests control it.
    ``base_url``, ``api_key`` and ``model`` configure the ``openai`` and ``anthropic``
    providers, and so do the rest of the provider settings: ``temperature`` and ``max_tokens``
    (each session may set its own), ``extra_headers``, ``extra_body``, ``query`` (parameters
    added to the URL) and ``api_key_header`` (the header that carries the key, when not the
    provider's own). See :mod:`greenroom.settings` for where each setting may come from, and
    docs/providers.md."""

    data_dir: Path = attrs.field(factory=default_data_dir)
    projects_dir: Path | None = None
    provider: str = "simulated"
    base_url: str | None = None
    # Never shown: not in reprs, logs, snapshots or `greenroom config` (which masks it).
    api_key: str | None = attrs.field(default=None, repr=False)
    model: str | None = None
    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    # Headers may carry credentials too (a proxy's key): never in reprs either.
    extra_headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    extra_body: Mapping[str, object] = attrs.field(factory=dict)
    query: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    api_key_header: str | None = None
    simulated: SimulatedConfig = SimulatedConfig()
    max_steps: int = 50
    flush_interval: float = 1.0
    idle_unload_after: float = 600.0
    resume: ResumePolicy = "auto"
    limits: Limits = Limits()
    supervision: SupervisionConfig = SupervisionConfig()
    ask_timeout: float = 10.0
    # MCP servers every session gets (config.toml's [mcp_servers.NAME]), and their timings.
    mcp_servers: tuple[McpServer, ...] = ()
    mcp_timings: McpTimings = attrs.Factory(McpTimings)
    # Session presets from config.toml's [presets.NAME] (a project's own are read on demand).
    presets: tuple[Preset, ...] = ()
    # Which tool calls run, ask first or are refused (config.toml's [tool_policy]); each
    # project's .ai/tools.toml is laid over it (see greenroom.agent.policy).
    tool_policy: ToolPolicy = attrs.Factory(ToolPolicy)
    # Set for a node of a cluster (PostgreSQL and Valkey/Redis); None: one server on local files.
    cluster: ClusterConfig | None = None
    seed: int | None = None
    now: Callable[[], float] = time.time

    @property
    def projects_root(self) -> Path:
        """The folder that holds one folder per project."""
        return self.projects_dir if self.projects_dir is not None else self.data_dir / "projects"
