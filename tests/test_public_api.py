"""What ``greenroom`` exports, and that importing it alone loads none of it."""

from __future__ import annotations

import subprocess
import sys

import pytest

import greenroom
from greenroom.config import Config
from greenroom.runtime import Runtime, open_runtime
from greenroom.transport.client import GreenroomClient, connect, open_client


def test_the_public_names_are_the_modules_own() -> None:
    assert greenroom.Config is Config
    assert greenroom.Runtime is Runtime
    assert greenroom.open_runtime is open_runtime
    assert greenroom.GreenroomClient is GreenroomClient
    assert greenroom.open_client is open_client is connect
    assert set(greenroom.__all__) <= set(dir(greenroom))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'open_sesame'"):
        greenroom.open_sesame  # noqa: B018 - the lookup is the test


def test_importing_greenroom_loads_neither_trio_nor_the_runtime() -> None:
    code = (
        "import sys, greenroom\n"
        "print(sorted(m for m in sys.modules if m.startswith(('trio', 'greenroom.'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
