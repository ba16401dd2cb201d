from __future__ import annotations

import gc
import math
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, settings

from greenroom.agent.provider import Provider
from greenroom.config import Config, SimulatedConfig, SupervisionConfig
from greenroom.protocol.events import Event
from greenroom.runtime import Client, Runtime, open_runtime
from tests.engines import Engine, flush_redis, fresh_database, running_postgres, running_redis

# No wall-time bound on an example: on a busy machine one can take seconds, and that is the
# machine, not the code. Speed is measured in bench/, never asserted here.
settings.register_profile(
    "greenroom", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("greenroom")


class ThreadsHoldTheClock(trio.abc.Instrument):
    """Keeps an autojump MockClock still while a worker thread runs.

    With a plain autojump clock, a task waiting on ``trio.to_thread`` (a real disk write that
    takes a millisecond) looks idle, so the clock leaps to the next deadline and an ask times
    out. After every task step this instrument turns autojumping off while threads are busy,
    so the run loop waits for them in real time, and back on when they are done.
    """

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        clock = trio.lowlevel.current_clock()
        if not isinstance(clock, trio.testing.MockClock) or clock.rate != 0:
            return
        busy = trio.to_thread.current_default_thread_limiter().statistics().borrowed_tokens
        wanted = math.inf if busy else 0.0
        if clock.autojump_threshold != wanted:
            clock.autojump_threshold = wanted


_HOLD = ThreadsHoldTheClock()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """For a test marked ``collect_garbage_after``: collect the garbage once everything of
    the test is torn down, so that what a library leaked is reported with that test, under
    its warning filters, and not with whichever test the collector happens to run in."""
    try:
        return (yield)
    finally:
        if item.get_closest_marker("collect_garbage_after") is not None:
            gc.collect()


@asynccontextmanager
async def open_test_runtime(
    config: Config, *, provider: Provider | None = None
) -> AsyncIterator[Runtime]:
    """open_runtime, with the clock held while disk threads run (see ThreadsHoldTheClock)."""
    trio.lowlevel.add_instrument(_HOLD)
    async with open_runtime(config, provider=provider) as runtime:
        yield runtime


def make_config(tmp_path: Path, **changes: object) -> Config:
    """A configuration for tests: files under tmp_path, a fixed clock and seed."""
    defaults: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "projects_dir": tmp_path / "projects",
        "simulated": SimulatedConfig(seed=1, tokens_per_second=20.0, reply_tokens=10),
        "supervision": SupervisionConfig(max_restarts=3, period=10.0, backoff_initial=0.1),
        "seed": 7,
        "now": lambda: 1_700_000_000.0,
    }
    defaults.update(changes)
    return Config(**defaults)  # type: ignore[arg-type]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def runtime(config: Config) -> AsyncIterator[Runtime]:
    """The whole tree on ``config``. Tests that want virtual time request ``autojump_clock``
    themselves: pytest-trio only takes a clock from the test's own arguments."""
    async with open_test_runtime(config) as rt:
        yield rt


async def next_event(client: Client, match: Callable[[Event], bool], limit: float = 60) -> Event:
    """The next event on ``client`` for which ``match`` holds (virtual time bounded)."""
    with trio.fail_after(limit):
        while True:
            event = await client.events.receive()
            if match(event):
                return event


def turn_ended(session: str) -> Callable[[Event], bool]:
    return lambda e: e.session == session and e.name == "loadingChanged" and not e.data.loading  # type: ignore[union-attr]


# What a developer's shell may set that would change every server and client the tests start
# (a token in GREENROOM_TOKEN takes the token out of the banner the e2e tests read). A test
# that wants one sets it itself. GREENROOM_CHROMIUM only says where the browser is.
_KEPT_VARIABLES = frozenset({"GREENROOM_CHROMIUM"})


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GREENROOM_") and name not in _KEPT_VARIABLES:
            monkeypatch.delenv(name)


# -- the cluster's engines (tests/engines.py) ---------------------------------------------------


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[Engine]:
    """One private PostgreSQL for the whole run; each test takes a database of its own."""
    with running_postgres() as engine:
        yield engine


@pytest.fixture(scope="session")
def redis_engine() -> Iterator[Engine]:
    with running_redis() as engine:
        yield engine


@pytest.fixture
def database_url(postgres_engine: Engine) -> str:
    """The URL of a new, empty database of the test's own."""
    return fresh_database(postgres_engine)


@pytest.fixture
def bus_url(redis_engine: Engine) -> str:
    """The private Redis, emptied for the test."""
    flush_redis(redis_engine)
    return redis_engine.url
