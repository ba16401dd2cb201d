"""A project's session deleted and opened again at once: the new session and the files agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from greenroom.agent.simulated import SimulatedProvider
from greenroom.protocol import commands as cmd
from tests.conftest import make_config, next_event, open_test_runtime
from tests.reliability.support import ChaosProvider


@pytest.mark.parametrize("wait", [0.0, 0.05, 0.2, 0.5])
async def test_deleting_a_session_that_just_crashed_stops_it_for_good(
    tmp_path: Path, autojump_clock: trio.abc.Clock, wait: float
) -> None:
    config = make_config(tmp_path, flush_interval=1.0)
    inner = SimulatedProvider(seed=1, tokens_per_second=20.0, reply_tokens=10)
    provider = ChaosProvider(inner=inner)
    async with (
        open_test_runtime(config, provider=provider) as runtime,
        runtime.connect() as client,
    ):
        old = (await runtime.execute(cmd.OpenSession(project="p"))).summary.session
        client.subscribe(old)
        provider.arm("p")
        await runtime.execute(cmd.SendMessage(session=old, content="hello <p>"))
        await runtime.execute(
            cmd.SendMessage(session=old, content="create file f.txt with queued <p>")
        )
        await next_event(client, lambda e: e.session == old and e.name == "streamingUpdate")
        await trio.sleep(wait)
        # Crashed and waiting for its restart (backoff), or just restarted: deleted now.
        await runtime.execute(cmd.DeleteSession(session=old))
        new = await runtime.execute(cmd.OpenSession(project="p"))
        in_memory = list(new.messages)
        await trio.sleep(10)
        assert list((await runtime.get_state(new.summary.session)).messages) == in_memory
    async with open_test_runtime(config) as runtime:
        restored = list((await runtime.get_state(new.summary.session)).messages)
    assert restored == in_memory
    assert not (tmp_path / "projects" / "p" / "f.txt").exists(), "the deleted session ran on"
