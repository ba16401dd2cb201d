"""Project folders: listed, made and removed here, and nowhere else. Every function touches
the disk: call them from a worker thread. (What a valid project name is, is the protocol's:
protocol/values.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path

from greenroom.protocol.errors import InvalidArgument
from greenroom.protocol.values import validate_project_name

__all__ = [
    "make_project",
    "project_names",
    "project_path",
    "remove_project",
    "validate_project_name",
]


def project_path(root: Path, name: str) -> Path:
    """The folder of project ``name`` under ``root`` (the name is validated first)."""
    return root / validate_project_name(name)


def project_names(root: Path) -> list[str]:
    """The projects under ``root``: its folders whose names are project names, sorted (other
    entries, a stray file or a folder named ``.git``, are not projects)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _is_project_name(p.name))


def make_project(root: Path, name: str, *, exist_ok: bool = False) -> Path:
    """Make the folder of project ``name`` (and ``root``); FileExistsError when it exists
    already, unless ``exist_ok``. Returns the folder."""
    folder = project_path(root, name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(exist_ok=exist_ok)
    return folder


def remove_project(root: Path, name: str) -> None:
    """Remove the folder of project ``name`` and everything in it (none: nothing to do)."""
    shutil.rmtree(project_path(root, name), ignore_errors=True)


def _is_project_name(name: str) -> bool:
    try:
        validate_project_name(name)
    except InvalidArgument:
        return False
    return True
