"""What a command reads besides its arguments: environment variables, the config folder and
its ``config.toml``.

The server's settings come from defaults, then ``<config dir>/config.toml``, then environment
variables, then flags (see :mod:`greenroom.settings`). ``GREENROOM_CONFIG_DIR`` and
``GREENROOM_LOG_FORMAT`` are read here; ``GREENROOM_URL`` and ``GREENROOM_TOKEN`` by the client
commands (:mod:`greenroom.cli.client`) and ``serve``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from greenroom.cli.exits import UsageError
from greenroom.config import Config, default_config_dir
from greenroom.logs import LOG_FORMATS, setup_logging
from greenroom.settings import CONFIG_FILE, Settings, resolve


def setting(flag: Any, env: Mapping[str, str], name: str, default: Any = None) -> Any:
    """Flag, else environment variable, else default."""
    if flag is not None:
        return flag
    value = env.get(name)
    return value if value not in (None, "") else default


def config_dir(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Path:
    """Where config.toml, the token and server.json live."""
    return Path(setting(args.config_dir, env, "GREENROOM_CONFIG_DIR", default_config_dir()))


def load_settings(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Settings:
    """The server's settings: defaults < config.toml < environment < flags."""
    return resolve(file=config_dir(args, env) / CONFIG_FILE, env=env, flags=vars(args))


def build_config(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Config:
    """The server's Config (see :func:`load_settings`)."""
    return load_settings(args, env).config()


def server_address(
    args: argparse.Namespace, env: Mapping[str, str] = os.environ
) -> tuple[str, int]:
    """Where the server listens (see :func:`load_settings`)."""
    return load_settings(args, env).address


def configure_logging(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> None:
    """Logging as ``-v``, ``-q`` and ``--log-format`` (or ``GREENROOM_LOG_FORMAT``) say."""
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    log_format = setting(args.log_format, env, "GREENROOM_LOG_FORMAT", "text")
    if log_format not in LOG_FORMATS:
        raise UsageError(f"GREENROOM_LOG_FORMAT: give one of {', '.join(LOG_FORMATS)}")
    setup_logging(level, log_format)
