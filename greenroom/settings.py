"""Where each setting comes from: defaults < ``<config dir>/config.toml`` < environment < flags.

One table (:data:`SETTINGS`) names every setting once: its key in the file (dotted for the
``[limits]`` and ``[simulated]`` tables), its environment variables, its flag and how its value
is checked. :func:`resolve` applies the layers and remembers each value's source, so that
``greenroom config`` can show what is in effect and why. Bad input is a :class:`SettingsError`
that names the key and where it came from; the CLI turns it into exit code 2.

The API key is best left in the environment (``GREENROOM_API_KEY``, else the provider's own
variable: ``OPENAI_API_KEY`` for openai, ``ANTHROPIC_API_KEY`` for anthropic). The file may hold
one, but there is deliberately no flag: a command line is visible to every user of the machine.
The key is masked wherever settings are shown, and so are the values of ``extra_headers``
(where a proxy's key may be).

``extra_headers``, ``extra_body`` and ``query`` are tables in the file, and JSON objects in
their environment variables; they have no flags.

(Over 500 lines because the table is: one entry per setting, each with its checks and help.)
"""

from __future__ import annotations

import difflib
import json
import math
import string
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from greenroom.agent.mcp.config import McpConfigError, McpServer, parse_servers
from greenroom.agent.policy import PolicyError, ToolPolicy, parse_policy
from greenroom.config import (
    ClusterConfig,
    Config,
    Limits,
    SimulatedConfig,
    default_data_dir,
    redact_url,
)
from greenroom.presets import Preset, PresetError, parse_presets
from greenroom.protocol.errors import InvalidArgument
from greenroom.protocol.values import MAX_TEMPERATURE, MAX_TOKENS
from greenroom.transport.auth import check_origin

CONFIG_FILE: Final = "config.toml"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8765
_TABLES: Final = ("limits", "simulated")


class SettingsError(InvalidArgument):
    """A setting in the file, the environment or a flag has a bad key or value."""


@attrs.frozen(kw_only=True)
class Kind:
    """How a setting's value is read: ``convert`` takes text (environment, flags) when
    ``text`` is true, else a TOML value, and raises ValueError; ``expect`` says what is wanted,
    ``choices`` the values allowed when there is a short list of them (shown in ``--help``)."""

    expect: str
    convert: Callable[[object, bool], Any]
    choices: tuple[str, ...] = ()


def _string(raw: object, text: bool) -> str:
    if not isinstance(raw, str):
        raise ValueError
    return raw


def _integer(low: int, high: int | None) -> Kind:
    def convert(raw: object, text: bool) -> int:
        if text and isinstance(raw, str):
            value = int(raw.strip())
        elif isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        else:
            raise ValueError
        if value < low or (high is not None and value > high):
            raise ValueError
        return value

    upper = "up" if high is None else f"to {high}"
    return Kind(expect=f"a whole number from {low} {upper}", convert=convert)


def _number(raw: object, text: bool) -> float:
    """A number: text (a flag, the environment), or a TOML integer or float but not a bool."""
    if text and isinstance(raw, str):
        return float(raw.strip())
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    raise ValueError


def _positive(raw: object, text: bool) -> float:
    value = _number(raw, text)
    if not value > 0:  # NaN is refused too
        raise ValueError
    return value


def _choice(*options: str) -> Kind:
    def convert(raw: object, text: bool) -> str:
        if raw not in options:
            raise ValueError
        return str(raw)

    return Kind(expect="one of " + ", ".join(options), convert=convert, choices=options)


def _temperature(raw: object, text: bool) -> float:
    value = _number(raw, text)
    if not (math.isfinite(value) and 0 <= value <= MAX_TEMPERATURE):
        raise ValueError
    return value


_TCHARS: Final = frozenset("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)
"""The characters of an HTTP header name (RFC 9110's token)."""


def _header_name(raw: object, text: bool) -> str:
    name = _string(raw, text)
    if not name or not set(name) <= _TCHARS:
        raise ValueError
    return name


def _object(raw: object, text: bool) -> dict[str, Any]:
    """A TOML table, or (from the environment) a JSON object's text."""
    if text and isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, or nested past what Python parses
            raise ValueError from None
    if not isinstance(raw, dict) or not all(isinstance(key, str) for key in raw):
        raise ValueError
    return dict(raw)


def _headers(raw: object, text: bool) -> dict[str, str]:
    headers = _object(raw, text)
    for name, value in headers.items():
        _header_name(name, False)
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise ValueError
    return headers


def _parameters(raw: object, text: bool) -> dict[str, str]:
    parameters = _object(raw, text)
    if not all(isinstance(value, str) for value in parameters.values()):
        raise ValueError
    return parameters


def _mcp_servers(raw: object, text: bool) -> tuple[McpServer, ...]:
    if text:
        raise ValueError  # a table, not a string: config.toml only
    try:
        return parse_servers(raw, where="mcp_servers", source="global")
    except McpConfigError as error:
        raise SettingsError(error.message) from None


def _presets(raw: object, text: bool) -> tuple[Preset, ...]:
    if text:
        raise ValueError  # tables, not a string: config.toml only
    try:
        return parse_presets(raw, where="presets", source="global")
    except PresetError as error:
        raise SettingsError(error.message) from None


def _tool_policy(raw: object, text: bool) -> ToolPolicy:
    if text:
        raise ValueError  # a table, not a string: config.toml only
    try:
        return parse_policy(raw, where="tool_policy")
    except PolicyError as error:
        raise SettingsError(error.message) from None


def _boolean(raw: object, text: bool) -> bool:
    if isinstance(raw, bool):
        return raw
    if text and isinstance(raw, str) and raw.strip().lower() in _BOOLEAN_WORDS:
        return _BOOLEAN_WORDS[raw.strip().lower()]
    raise ValueError


_BOOLEAN_WORDS: Final = {"true": True, "1": True, "yes": True, "on": True,
                         "false": False, "0": False, "no": False, "off": False}  # fmt: skip


def _origins(raw: object, text: bool) -> tuple[str, ...]:
    # Text (a flag, the environment) is a comma- or space-separated list; the file an array.
    if text and isinstance(raw, str):
        items: list[Any] = raw.replace(",", " ").split()
    elif isinstance(raw, list):
        items = raw
    else:
        raise ValueError
    if not all(isinstance(item, str) for item in items):
        raise ValueError
    return tuple(check_origin(str(item)) for item in items)  # ValueError for a bad one


STRING = Kind(expect="a string", convert=_string)
BOOLEAN = Kind(expect="true or false", convert=_boolean)
ORIGINS = Kind(
    expect="origins like https://greenroom.example.com (a list in the file; comma-separated "
    "in a flag or the environment)",
    convert=_origins,
)
def _path(raw: object, text: bool) -> Path:
    path = _string(raw, text)
    if "\0" in path:
        raise ValueError
    try:
        return Path(path).expanduser()
    except RuntimeError:  # ~user of no such user
        raise ValueError from None


PATH = Kind(expect="a path", convert=_path)
POSITIVE = Kind(expect="a number above 0 (inf for no limit)", convert=_positive)


@attrs.frozen(kw_only=True)
class Setting:
    """One setting. ``default`` is a value, or a function for one computed when needed."""

    key: str
    kind: Kind
    default: Any
    help: str
    env: tuple[str, ...] = ()
    flag: str | None = None
    secret: bool = False

    @property
    def dest(self) -> str:
        """The attribute that argparse gives the flag's value."""
        return (self.flag or "").removeprefix("--").replace("-", "_")

    def parse(self, raw: object, *, text: bool, source: str) -> Any:
        try:
            return self.kind.convert(raw, text)
        except SettingsError as error:  # a table's own checks say what is wrong; add where
            raise SettingsError(f"{source}: {error.message}") from None
        except ValueError:
            shown = "***" if self.secret else repr(raw)
            name = self.key.rpartition(".")[2]
            raise SettingsError(f"{source}: bad {name} {shown}: give {self.kind.expect}") from None


def _default(cls: type[Any], name: str) -> Any:
    return attrs.fields_dict(cls)[name].default


def _limit(name: str, low: int, help: str) -> Setting:
    """A ``[limits]`` setting: a whole number from ``low`` up, with the default of
    :class:`Limits`, and its variable and flag named after it."""
    return Setting(
        key=f"limits.{name}",
        kind=_integer(low, None),
        default=_default(Limits, name),
        env=(f"GREENROOM_{name.upper()}",),
        flag="--" + name.replace("_", "-"),
        help=help,
    )


SETTINGS: Final[tuple[Setting, ...]] = (
    Setting(key="provider", kind=_choice("simulated", "openai", "anthropic"),
            default="simulated", env=("GREENROOM_PROVIDER",), flag="--provider",
            help="model provider: simulated (offline), openai (any compatible server) or "
                 "anthropic (the Messages API)"),
    Setting(key="base_url", kind=STRING, default=None, env=("GREENROOM_BASE_URL",),
            flag="--base-url",
            help="the provider's server (default: api.openai.com/v1 or api.anthropic.com/v1)"),
    Setting(key="api_key", kind=STRING, default=None, secret=True, env=("GREENROOM_API_KEY",),
            help="the provider's key (environment only: no flag; else OPENAI_API_KEY or "
                 "ANTHROPIC_API_KEY, by provider)"),
    Setting(key="api_key_header", kind=Kind(expect="an HTTP header name", convert=_header_name),
            default=None, env=("GREENROOM_API_KEY_HEADER",), flag="--api-key-header",
            help="the header that carries the key (Azure: api-key; default: the provider's)"),
    Setting(key="model", kind=STRING, default=None, env=("GREENROOM_MODEL",), flag="--model",
            help="the model the provider asks for"),
    Setting(key="temperature",
            kind=Kind(expect=f"a number from 0 to {MAX_TEMPERATURE:g}", convert=_temperature),
            default=None, env=("GREENROOM_TEMPERATURE",), flag="--temperature",
            help="sampling temperature (default: the server's)"),
    Setting(key="max_tokens", kind=_integer(1, MAX_TOKENS), default=None,
            env=("GREENROOM_MAX_TOKENS",), flag="--max-tokens",
            help="a reply's length limit in tokens (default: the server's; anthropic: 8192)"),
    Setting(key="extra_headers",
            kind=Kind(expect="a table of header names to strings", convert=_headers),
            default=None, env=("GREENROOM_EXTRA_HEADERS",), secret=True,
            help="headers sent with every request to the provider"),
    Setting(key="extra_body", kind=Kind(expect="a table", convert=_object), default=None,
            env=("GREENROOM_EXTRA_BODY",),
            help="fields merged into every request body (they win over greenroom's)"),
    Setting(key="query", kind=Kind(expect="a table of strings", convert=_parameters),
            default=None, env=("GREENROOM_QUERY",),
            help="query parameters added to the provider's URL (Azure: api-version)"),
    Setting(key="system_prompt", kind=STRING, default=None, env=("GREENROOM_SYSTEM_PROMPT",),
            flag="--system-prompt", help="a system prompt sent first in every request"),
    Setting(key="max_steps", kind=_integer(1, None), default=_default(Config, "max_steps"),
            env=("GREENROOM_MAX_STEPS",), flag="--max-steps",
            help="model steps per turn at most"),
    Setting(key="flush_interval", kind=POSITIVE, default=_default(Config, "flush_interval"),
            env=("GREENROOM_FLUSH_INTERVAL",), flag="--flush-interval",
            help="seconds between snapshot writes of a changing session"),
    Setting(key="resume", kind=_choice("auto", "manual"), default=_default(Config, "resume"),
            env=("GREENROOM_RESUME",), flag="--resume", help="resume interrupted turns"),
    Setting(key="data_dir", kind=PATH, default=default_data_dir, env=("GREENROOM_DATA_DIR",),
            flag="--data-dir", help="where snapshots (and projects) live"),
    Setting(key="projects_dir", kind=PATH, default=None, env=("GREENROOM_PROJECTS_DIR",),
            flag="--projects-dir", help="where project folders live"),
    Setting(key="database_url", kind=STRING, default=None, env=("GREENROOM_DATABASE_URL",),
            flag="--database-url", help="the cluster's PostgreSQL (postgresql://user@host/db); "
            "with --bus-url, this server is a node of a cluster (docs/cluster.md)"),
    Setting(key="bus_url", kind=STRING, default=None, env=("GREENROOM_BUS_URL",),
            flag="--bus-url", help="the cluster's Valkey/Redis (redis://host:6379/0)"),
    Setting(key="node_id", kind=STRING, default=None, env=("GREENROOM_NODE_ID",),
            flag="--node-id", help="this node's name in the cluster (default: the host name)"),
    Setting(key="lease_seconds", kind=POSITIVE, default=_default(ClusterConfig, "lease_seconds"),
            env=("GREENROOM_LEASE_SECONDS",), flag="--lease-seconds",
            help="how long a cluster node may go silent before the others take its sessions"),
    Setting(key="host", kind=STRING, default=DEFAULT_HOST, env=("GREENROOM_HOST",),
            flag="--host", help="address to listen on"),
    Setting(key="port", kind=_integer(0, 65535), default=DEFAULT_PORT, env=("GREENROOM_PORT",),
            flag="--port", help="port to listen on (0: any free port)"),
    Setting(key="mcp_servers", kind=Kind(expect="a table of servers", convert=_mcp_servers),
            default=(), help="MCP servers every session gets ([mcp_servers.NAME] tables in "
            "config.toml: command, args, env, or type = \"http\" and url; see docs/mcp.md)"),
    Setting(key="presets", kind=Kind(expect="a table of presets", convert=_presets),
            default=(), help="session presets a client may open a session with ([presets.NAME] "
            "tables in config.toml: description, model, temperature, max_tokens, system_prompt, "
            "mcp_servers, tools; see docs/presets.md)"),
    Setting(key="tool_policy",
            kind=Kind(expect="a table of tool names to allow, ask or deny",
                      convert=_tool_policy),
            default=ToolPolicy(), help="which tool calls run, ask a user first or are refused "
            "([tool_policy] in config.toml: NAME = \"allow\" | \"ask\" | \"deny\", * for "
            "any characters; see docs/tools.md)"),
    Setting(key="allowed_origins", kind=ORIGINS, default=(),
            env=("GREENROOM_ALLOWED_ORIGINS",), flag="--allowed-origins",
            help="web origins allowed besides the local ones, comma-separated (the public "
            "https:// origin of a reverse proxy: its host passes the Host check too)"),
    Setting(key="metrics_public", kind=BOOLEAN, default=False,
            env=("GREENROOM_METRICS_PUBLIC",), flag="--metrics-public",
            help="serve /metrics without the token (true or false)"),
    _limit("max_sessions", 1, "sessions at most"),
    _limit("max_queued_messages", 0, "messages queued behind a running turn, per session"),
    _limit("max_message_chars", 1, "characters in one message at most"),
    _limit("max_concurrent_turns", 1,
           "turns streaming at once across all sessions (default: no limit)"),
    Setting(key="simulated.seed", kind=_integer(-(2**63), 2**63 - 1),
            default=_default(SimulatedConfig, "seed"), env=("GREENROOM_SIMULATED_SEED",),
            flag="--seed", help="the simulated provider's seed"),
    Setting(key="simulated.tokens_per_second", kind=POSITIVE,
            default=_default(SimulatedConfig, "tokens_per_second"),
            env=("GREENROOM_TOKENS_PER_SECOND",), flag="--tokens-per-second",
            help="the simulated provider's streaming rate"),
    Setting(key="simulated.reply_tokens", kind=_integer(0, 100_000),
            default=_default(SimulatedConfig, "reply_tokens"), env=("GREENROOM_REPLY_TOKENS",),
            flag="--reply-tokens", help="tokens in a simulated reply"),
)  # fmt: skip
BY_KEY: Final = {setting.key: setting for setting in SETTINGS}
VENDOR_KEYS: Final = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
"""The provider's own key variable, read when ``GREENROOM_API_KEY`` is not set: only the
chosen provider's, so that an OpenAI key is never sent to another vendor."""


@attrs.frozen(kw_only=True)
class Settings:
    """The resolved settings: ``values`` and ``sources`` by key (``default``, ``file``,
    ``env NAME`` or ``flag --name``), and the file that was read (or looked for)."""

    values: Mapping[str, Any] = attrs.field(repr=False)
    sources: Mapping[str, str]
    file: Path | None = None

    def config(self) -> Config:
        """The runtime's Config."""
        v = self.values
        return Config(
            data_dir=v["data_dir"],
            projects_dir=v["projects_dir"],
            provider=v["provider"],
            base_url=v["base_url"],
            api_key=v["api_key"],
            model=v["model"],
            system_prompt=v["system_prompt"],
            temperature=v["temperature"],
            max_tokens=v["max_tokens"],
            extra_headers=v["extra_headers"] or {},
            extra_body=v["extra_body"] or {},
            query=v["query"] or {},
            api_key_header=v["api_key_header"],
            max_steps=v["max_steps"],
            flush_interval=v["flush_interval"],
            resume=v["resume"],
            limits=Limits(**_table(v, "limits")),
            simulated=SimulatedConfig(**_table(v, "simulated")),
            mcp_servers=v["mcp_servers"],
            presets=v["presets"],
            tool_policy=v["tool_policy"],
            cluster=self._cluster(),
        )

    def _cluster(self) -> ClusterConfig | None:
        v = self.values
        database, bus = v["database_url"], v["bus_url"]
        if database is None and bus is None:
            return None
        if database is None or bus is None:
            missing = "bus_url" if bus is None else "database_url"
            raise SettingsError(
                f"{missing} is not set: a cluster node needs both database_url and bus_url "
                "(--database-url and --bus-url; see docs/cluster.md)"
            )
        node = v["node_id"]
        extra = {} if node is None else {"node_id": node}
        return ClusterConfig(
            database_url=database, bus_url=bus, lease_seconds=v["lease_seconds"], **extra
        )

    @property
    def address(self) -> tuple[str, int]:
        return self.values["host"], self.values["port"]


def _table(values: Mapping[str, Any], table: str) -> dict[str, Any]:
    prefix = table + "."
    return {key.removeprefix(prefix): v for key, v in values.items() if key.startswith(prefix)}


def load_file(path: Path) -> dict[str, Any]:
    """The settings in a config file, flattened to dotted keys and checked; {} if none."""
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise SettingsError(f"{path}: cannot read it: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not valid TOML: not UTF-8 text") from None
    except RecursionError:
        raise SettingsError(f"{path}: not valid TOML: nested too deeply") from None
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if key in _TABLES and isinstance(value, dict):
            flat.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            flat[key] = value
    values: dict[str, Any] = {}
    for key, value in flat.items():
        setting = BY_KEY.get(key)
        if setting is None:
            close = difflib.get_close_matches(key, list(BY_KEY), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SettingsError(f"{path}: unknown setting {key!r}{hint}")
        try:
            values[key] = setting.parse(value, text=False, source=str(path))
        except SettingsError as error:
            if error.message.startswith(f"{path}:"):
                raise
            # A table's own parser (presets, MCP servers) does not know the file's name.
            raise SettingsError(f"{path}: {error.message}") from None
    return values


def resolve(
    *,
    file: Path | None,
    env: Mapping[str, str],
    flags: Mapping[str, Any],
) -> Settings:
    """Apply defaults, the file (if ``file`` is given), ``env``, then ``flags`` (by dest; None
    means not given; values already checked by argparse)."""
    from_file = load_file(file) if file is not None else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        value, source = setting.default, "default"
        if callable(value):
            value = value()
        if setting.key in from_file:
            value, source = from_file[setting.key], "file"
        for name in setting.env:
            raw = env.get(name)
            if raw:  # an empty variable counts as unset, as shells make that easy
                value = setting.parse(raw, text=True, source=name)
                source = f"env {name}"
                break
        if setting.key == "api_key" and not source.startswith("env"):
            vendor = VENDOR_KEYS.get(values["provider"])
            if vendor and env.get(vendor):
                value = setting.parse(env[vendor], text=True, source=vendor)
                source = f"env {vendor}"
        flag = flags.get(setting.dest) if setting.flag else None
        if flag is not None:
            value, source = flag, f"flag {setting.flag}"
        values[setting.key] = value
        sources[setting.key] = source
    return Settings(values=values, sources=sources, file=file)


def argparse_type(setting: Setting) -> Callable[[str], Any]:
    """A ``type=`` for argparse: a bad flag is a usage error there, with the reason."""
    import argparse

    def convert(text: str) -> Any:
        try:
            return setting.kind.convert(text, True)
        except ValueError:
            raise argparse.ArgumentTypeError(f"give {setting.kind.expect}") from None

    convert.__name__ = setting.key
    return convert


def mask(secret: str) -> str:
    """A secret as shown: its last four characters only (nothing of a short one)."""
    return "..." + secret[-4:] if len(secret) >= 12 else "***"


def _shown(setting: Setting, value: Any) -> Any:
    if value is None:
        return None
    if setting.key == "mcp_servers":
        return [server.describe() for server in value]  # names of env and headers, no values
    if setting.key == "presets":
        return {preset.name: preset.describe() for preset in value}
    if isinstance(value, ToolPolicy):
        return value.describe()
    if setting.key in ("database_url", "bus_url"):
        return redact_url(str(value))
    if setting.secret and isinstance(value, dict):
        return {name: mask(str(item)) for name, item in value.items()}  # the names are useful
    if setting.secret:
        return mask(str(value))
    if isinstance(value, Path):
        return str(value)
    return value


def _effective(settings: Settings, setting: Setting) -> tuple[Any, str]:
    """The value in effect and its source, as shown. An unset projects_dir is shown as the
    folder in use (inside the data folder), since that is what a user looks for."""
    value, source = settings.values[setting.key], settings.sources[setting.key]
    if setting.key == "projects_dir" and value is None:
        return settings.config().projects_root, f"{source}: inside data_dir"
    return value, source


def _toml_value(value: Any) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, dict):  # a TOML inline table
        inner = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string, number or array


def render(settings: Settings) -> str:
    """The effective settings, TOML-like, each with its source; secrets masked."""
    where = "not given" if settings.file is None else str(settings.file)
    found = settings.file is not None and settings.file.is_file()
    lines = [
        "# greenroom settings: defaults < file < environment < flags",
        f"# file: {where}" + ("" if found else " (not found)"),
    ]
    table = ""
    for setting in SETTINGS:
        prefix, _, name = setting.key.rpartition(".")
        if prefix != table:
            lines += ["", f"[{prefix}]"]
            table = prefix
        value, source = _effective(settings, setting)
        value = _shown(setting, value)
        if value is None:
            lines.append(f"# {name} is not set  # {source}")
        else:
            lines.append(f"{name} = {_toml_value(value)}  # {source}")
        if setting.key == "api_key" and source == "file":
            lines.append("# (a key is safer in GREENROOM_API_KEY than in the file)")
    return "\n".join(lines)


def render_json(settings: Settings) -> str:
    """The effective settings as JSON: ``{key: {"value", "source"}}``; secrets masked."""
    shown: dict[str, Any] = {}
    for setting in SETTINGS:
        value, source = _effective(settings, setting)
        value = _shown(setting, value)
        if isinstance(value, float) and math.isinf(value):
            value = "inf"  # JSON has no infinity
        shown[setting.key] = {"value": value, "source": source}
    return json.dumps(shown, indent=2)
