"""Project folders (what a valid project name is, is the protocol's: protocol/values.py)."""

from __future__ import annotations

from pathlib import Path

from greenroom.protocol.values import validate_project_name

__all__ = ["project_path", "validate_project_name"]


def project_path(root: Path, name: str) -> Path:
    """The folder of project ``name`` under ``root`` (the name is validated first)."""
    return root / validate_project_name(name)
