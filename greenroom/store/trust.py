"""Which projects' ``.mcp.json`` a client has approved: one file in the data folder.

A project's MCP servers start only once a client has approved the exact contents of its
``.mcp.json`` (the sha256 of its bytes). The record lives in the data folder, outside every
project, so that nothing a project holds (nor a model writing into it) can approve itself.
One hash per project: a changed file needs a new approval, and approving it forgets the old
one.

The file is ``mcp-trust.json``: ``{"projects": {"<project>": "<sha256 hex>"}}``, replaced
atomically. It is JSON (not msgpack like the snapshots) so that a user can read and edit it; a
file that cannot be read approves nothing, and the next approval rewrites it whole.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from greenroom.store.atomic import write_files_atomically

TRUST_FILE = "mcp-trust.json"

logger = logging.getLogger("greenroom.trust")


def _path(data_dir: Path) -> Path:
    return data_dir / TRUST_FILE


def read_trust(data_dir: Path) -> dict[str, str]:
    """The approved hash of each project. Blocking."""
    path = _path(data_dir)
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as error:
        logger.error("%s is unreadable, so no project's MCP servers are approved: %s", path, error)
        return {}
    projects = document.get("projects") if isinstance(document, dict) else None
    if not isinstance(projects, dict):
        return {}
    return {k: v for k, v in projects.items() if isinstance(k, str) and isinstance(v, str)}


def trusted_hash(data_dir: Path, project: str) -> str | None:
    """The hash of the project's approved ``.mcp.json``, or None. Blocking."""
    return read_trust(data_dir).get(project)


def set_trust(data_dir: Path, project: str, digest: str | None) -> None:
    """Approve ``digest`` for ``project`` (None: withdraw the approval). Blocking; atomic.

    The caller serializes writes (the runtime does, through the session manager)."""
    projects = read_trust(data_dir)
    if digest is None:
        projects.pop(project, None)
    else:
        projects[project] = digest
    data = json.dumps({"projects": dict(sorted(projects.items()))}, indent=1).encode() + b"\n"
    write_files_atomically({_path(data_dir): data})
