"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.e2e.harness import Server, start_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    running = await start_server(tmp_path)
    try:
        yield running
    finally:
        if running.process.returncode is None:
            running.process.kill()
            with trio.move_on_after(5):
                await running.process.wait()
