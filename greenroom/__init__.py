"""greenroom: a headless runtime for many concurrent AI agent sessions, supervised on trio.

The public API, imported on first use (so that ``import greenroom`` stays cheap)::

    from greenroom import Config, open_runtime     # the whole runtime, in process
    from greenroom import open_client              # a websocket client of a running server
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Config", "GreenroomClient", "Runtime", "open_client", "open_runtime"]

_HOMES = {
    "Config": "greenroom.config",
    "Runtime": "greenroom.runtime",
    "open_runtime": "greenroom.runtime",
    "GreenroomClient": "greenroom.transport.client",
    "open_client": "greenroom.transport.client",
}

if TYPE_CHECKING:
    from greenroom.config import Config
    from greenroom.runtime import Runtime, open_runtime
    from greenroom.transport.client import GreenroomClient, open_client


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'greenroom' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
