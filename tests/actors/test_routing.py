"""A running session's commands reach it in one hop, not through the manager."""

from __future__ import annotations

import pytest
import trio

from greenroom.actors.manager import SessionManager
from greenroom.protocol import commands as cmd
from greenroom.runtime import Runtime


async def test_a_running_sessions_command_does_not_wait_for_a_busy_manager(
    runtime: Runtime, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="p"))).summary.session
    release = trio.Event()
    listing = SessionManager._list_projects

    async def held(self: SessionManager) -> object:
        await release.wait()
        return await listing(self)

    monkeypatch.setattr(SessionManager, "_list_projects", held)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runtime.execute, cmd.ListProjects())
            await trio.sleep(1)  # the manager is now inside listProjects
            # Through the manager this would wait for the listing: straight to the session.
            assert await runtime.execute(cmd.SendMessage(session=session, content="hi")) is False
            assert not release.is_set()
            release.set()
