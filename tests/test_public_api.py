"""What ``greenroom`` exports, and that importing it alone loads none of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def printed_by(code: str) -> str:
    """What ``code`` prints, run by a fresh interpreter (nothing imported yet)."""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return run.stdout.strip()


def test_importing_greenroom_loads_neither_trio_nor_the_runtime() -> None:
    code = (
        "import sys, greenroom\n"
        "print(sorted(m for m in sys.modules if m.startswith(('trio', 'greenroom.'))))"
    )
    assert printed_by(code) == "[]"


def test_one_server_never_loads_the_clusters_engine_clients(tmp_path: Path) -> None:
    """The base install has no psycopg or coredis (they come with the cluster extra): a server
    on local files, started and stopped, must not import them."""
    code = (
        "import sys, trio\n"
        "from pathlib import Path\n"
        "from greenroom.config import Config\n"
        "from greenroom.runtime import open_runtime\n"
        "from greenroom.protocol import commands as cmd\n"
        "async def main():\n"
        f"    config = Config(data_dir=Path({str(tmp_path)!r}))\n"
        "    async with open_runtime(config) as runtime:\n"
        "        await runtime.execute_wire(cmd.OpenSession(project='p'))\n"
        "trio.run(main)\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('psycopg', 'psycopg_pool', 'coredis')\n"
        "             or m.startswith('greenroom.cluster')))"
    )
    assert printed_by(code) == "[]"
