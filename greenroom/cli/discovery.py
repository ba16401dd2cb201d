"""How client commands find the local server: the ``server.json`` that ``serve`` writes into
the config folder (the URL without the token, the pid, the port), and the token file beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

from greenroom.transport.auth import TOKEN_FILE

DISCOVERY_FILE: Final = "server.json"


def url_host(host: str) -> str:
    """The host a local client dials: a wildcard address means this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def write_discovery(path: Path, info: dict[str, Any]) -> None:
    """Write server.json with mode 0600, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(json.dumps(info))
    os.replace(temp, path)


def remove_discovery(path: Path) -> None:
    """Remove server.json if it is still this process's."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if info.get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except OSError:
        return False
    return True


def discover(directory: Path) -> str | None:
    """The URL of the local server, from server.json, if its process still runs."""
    try:
        info = json.loads((directory / DISCOVERY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("url"), str):
        return None
    pid = info.get("pid")
    if isinstance(pid, int) and not _pid_alive(pid):
        return None
    return str(info["url"])


def read_token(directory: Path) -> str | None:
    """The token file's token, or None when there is none."""
    try:
        return (directory / TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
