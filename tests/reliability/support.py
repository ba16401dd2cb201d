"""Shared pieces of the reliability tests: an in-process server with any config and provider.

Real sockets on 127.0.0.1 run on the real clock, so every test caps itself with
``trio.fail_after``. The wire client is the one of the transport tests
(:class:`tests.transport.test_server_support.WireClient`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from greenroom.agent.provider import Chunk, CompletionRequest, Provider
from greenroom.agent.simulated import SimulatedProvider
from greenroom.config import SimulatedConfig
from greenroom.runtime import open_runtime
from greenroom.transport.server import Server, ServerSettings
from tests.conftest import make_config
from tests.transport.test_server_support import TOKEN, Running

FAST = SimulatedConfig(seed=1, tokens_per_second=200.0, reply_tokens=10)


@asynccontextmanager
async def open_server(
    tmp_path: Path,
    *,
    provider: Provider | None = None,
    settings: dict[str, Any] | None = None,
    **config: Any,
) -> AsyncIterator[Running]:
    """A runtime (``make_config(tmp_path, **config)``) and a server on 127.0.0.1 port 0."""
    config.setdefault("simulated", FAST)
    cfg = make_config(tmp_path, **config)
    async with open_runtime(cfg, provider=provider) as runtime, trio.open_nursery() as nursery:
        server = Server(
            runtime=runtime,
            settings=ServerSettings(
                **{"host": "127.0.0.1", "port": 0, "token": TOKEN, **(settings or {})}
            ),
        )
        scope = trio.CancelScope()

        async def run(*, task_status: trio.TaskStatus[Any]) -> None:
            with scope:
                await server.run(task_status=task_status)

        address = await nursery.start(run)
        yield Running(runtime=runtime, server=server, address=address, scope=scope)
        scope.cancel()


@attrs.define(eq=False)
class ChaosProvider:
    """The simulated provider, with bugs on demand: :meth:`arm` a project, and the next
    stream of its session (whose user messages carry the tag ``<project>``) raises a plain
    exception, not a ProviderError, after ``after`` chunks: the session actor crashes, once."""

    inner: SimulatedProvider
    armed: set[str] = attrs.Factory(set)
    after: int = 2
    crashes: int = 0

    @property
    def name(self) -> str:
        return "chaos"

    def arm(self, project: str) -> None:
        self.armed.add(project)

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        text = " ".join(m.content or "" for m in request.messages if m.role == "user")
        tag = next((p for p in self.armed if f"<{p}>" in text), None)
        sent = 0
        async with aclosing(self.inner.stream(request)) as chunks:
            async for chunk in chunks:
                if tag is not None and sent == self.after and tag in self.armed:
                    self.armed.discard(tag)
                    self.crashes += 1
                    raise RuntimeError(f"chaos: a bug in the session of {tag}")
                sent += 1
                yield chunk


def open_fds() -> int:
    """How many file descriptors this process holds."""
    return len(os.listdir("/proc/self/fd"))


def fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
