"""Project names and project folders."""

from __future__ import annotations

import re
from pathlib import Path

from greenroom.errors import InvalidArgument

_PROJECT_NAME = re.compile(r"[a-z0-9_-][a-z0-9._-]{0,63}")


def validate_project_name(name: object) -> str:
    """Return ``name`` if it is a valid project name, else raise InvalidArgument.

    1 to 64 characters of ``a-z 0-9 . _ -``, not starting with ``.``: such a name is always a
    single path component inside the projects folder, never a way out of it.
    """
    if not isinstance(name, str) or _PROJECT_NAME.fullmatch(name) is None:
        raise InvalidArgument(
            f"invalid project name {name!r}: use 1 to 64 characters of a-z 0-9 . _ -, "
            "not starting with '.'"
        )
    return name


def project_path(root: Path, name: str) -> Path:
    """The folder of project ``name`` under ``root`` (the name is validated first)."""
    return root / validate_project_name(name)
