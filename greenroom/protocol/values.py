"""What the protocol accepts in a command's fields: project and preset names, and the bounds of
a session's sampling settings. The codec checks them as a frame comes in; the store, the
settings and the presets use the same definitions."""

from __future__ import annotations

import re
from typing import Final

from greenroom.protocol.errors import InvalidArgument

MAX_TEMPERATURE: Final = 2.0
"""The highest sampling temperature accepted (OpenAI's range is 0 to 2, Anthropic's 0 to 1:
a server refuses what its own range does not hold, with a clear ``bad_request``)."""
MAX_TOKENS: Final = 2**31 - 1
"""The highest ``max_tokens`` accepted: any real limit is far lower, and the server says so."""

PRESET_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A preset's name: 1 to 64 of ``A-Z a-z 0-9 _ . -``, starting with a letter or digit."""

_PROJECT_NAME: Final = re.compile(r"[a-z0-9_-][a-z0-9._-]{0,63}")


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
