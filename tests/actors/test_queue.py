"""Queued messages: cancelling one (cancelQueued), and the race with the turn that takes it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from greenroom.config import SimulatedConfig
from greenroom.protocol import commands as cmd
from greenroom.protocol.errors import Conflict, InvalidArgument, NotFound
from greenroom.protocol.events import QUEUED_PREVIEW_CHARS, SessionUpdated
from greenroom.runtime import Runtime
from greenroom.store.snapshots import decode_snapshot, encode_snapshot
from tests.conftest import make_config, next_event, open_test_runtime, turn_ended


async def user_texts(runtime: Runtime, session: str) -> list[str | None]:
    return [m.content for m in (await runtime.get_state(session)).messages if m.role == "user"]


async def test_cancel_removes_the_text_at_index_and_publishes_the_queue(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="q"))).summary.session
    long = "L" * (QUEUED_PREVIEW_CHARS + 50)
    async with runtime.connect() as client:
        client.subscribe(session)
        await runtime.execute(cmd.SendMessage(session=session, content="busy [[stall]]"))
        for text in ("one", long, "three"):
            assert await runtime.execute(cmd.SendMessage(session=session, content=text)) is True
        # The preview a summary shows names the whole text, which comes back.
        removed = await runtime.execute(
            cmd.CancelQueued(session=session, index=1, preview=long[:QUEUED_PREVIEW_CHARS])
        )
        assert removed == long
        updated = await next_event(
            client,
            lambda e: (
                isinstance(e.data, SessionUpdated) and e.data.summary.queued == ("one", "three")
            ),
        )
        assert updated.session == session
        # The whole text names it too.
        assert (
            await runtime.execute(cmd.CancelQueued(session=session, index=1, preview="three"))
            == "three"
        )
        assert (await runtime.get_state(session)).summary.queued == ("one",)
        await runtime.execute(cmd.StopGeneration(session=session))
    assert await user_texts(runtime, session) == ["busy [[stall]]"]


async def test_cancel_refuses_a_queue_that_moved_and_loses_nothing(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="q"))).summary.session
    await runtime.execute(cmd.SendMessage(session=session, content="busy [[stall]]"))
    await runtime.execute(cmd.SendMessage(session=session, content="hi"))
    await runtime.execute(cmd.SendMessage(session=session, content="hi there"))
    with pytest.raises(Conflict, match="not the one given"):
        await runtime.execute(
            cmd.CancelQueued(session=session, index=0, preview="hi there")
        )  # the client saw it at 0
    with pytest.raises(Conflict, match="not the one given"):
        await runtime.execute(
            cmd.CancelQueued(session=session, index=1, preview="hi")
        )  # a prefix is not the preview
    with pytest.raises(Conflict, match="no queued message at index 2"):
        await runtime.execute(cmd.CancelQueued(session=session, index=2, preview="hi"))
    with pytest.raises(InvalidArgument):
        await runtime.execute(cmd.CancelQueued(session=session, index=-1, preview="hi"))
    with pytest.raises(NotFound):
        await runtime.execute(cmd.CancelQueued(session="s-nope", index=0, preview="hi"))
    assert (await runtime.get_state(session)).summary.queued == ("hi", "hi there")
    await runtime.execute(cmd.StopGeneration(session=session))


async def test_cancel_of_an_idle_session_is_a_conflict(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="q"))).summary.session
    with pytest.raises(Conflict):
        await runtime.execute(cmd.CancelQueued(session=session, index=0, preview=""))


async def test_a_cancelled_text_never_runs_and_the_rest_do(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="q"))).summary.session
    async with runtime.connect() as client:
        await runtime.execute(cmd.SendMessage(session=session, content="first"))
        for text in ("second", "third", "fourth"):
            await runtime.execute(cmd.SendMessage(session=session, content=text))
        assert (
            await runtime.execute(cmd.CancelQueued(session=session, index=1, preview="third"))
            == "third"
        )
        for _ in range(3):
            await next_event(client, turn_ended(session))
    assert await user_texts(runtime, session) == ["first", "second", "fourth"]


async def test_cancelling_as_the_turn_ends_either_removes_the_text_or_finds_it_running(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="q"))).summary.session
    async with runtime.connect() as client:
        client.subscribe(session)
        await runtime.execute(cmd.SendMessage(session=session, content="first"))
        await runtime.execute(cmd.SendMessage(session=session, content="second"))
        await next_event(client, turn_ended(session))  # the first turn is ending right now
        try:
            cancelled = (
                await runtime.execute(cmd.CancelQueued(session=session, index=0, preview="second"))
                == "second"
            )
        except Conflict:
            cancelled = False
        if not cancelled:
            await next_event(client, turn_ended(session))
    texts = await user_texts(runtime, session)
    assert texts == (["first"] if cancelled else ["first", "second"])
    assert (await runtime.get_state(session)).summary.queued == ()


async def test_a_cancelled_text_stays_cancelled_after_a_restart(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path)
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="q"))).summary.session
        await runtime.execute(cmd.SendMessage(session=session, content="busy [[stall]]"))
        await runtime.execute(cmd.SendMessage(session=session, content="keep me"))
        await runtime.execute(cmd.SendMessage(session=session, content="drop me"))
        assert (
            await runtime.execute(cmd.CancelQueued(session=session, index=1, preview="drop me"))
            == "drop me"
        )
    async with open_test_runtime(config) as runtime:
        state = await runtime.get_state(session)
        assert state.summary.queued == ("keep me",)
        assert "drop me" not in await user_texts(runtime, session)
        await runtime.execute(cmd.StopGeneration(session=session))


async def test_texts_left_queued_by_a_restart_run_before_a_new_one(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path, resume="manual")
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="q"))).summary.session
        await runtime.execute(cmd.SendMessage(session=session, content="busy [[stall]]"))
        await runtime.execute(cmd.SendMessage(session=session, content="keep me"))
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        state = await runtime.get_state(session)
        assert (state.summary.status, state.summary.queued) == ("interrupted", ("keep me",))
        assert (
            await runtime.execute(cmd.SendMessage(session=session, content="new")) is True
        )  # behind "keep me"
        for _ in range(2):
            await next_event(client, turn_ended(session))
        assert await user_texts(runtime, session) == ["busy [[stall]]", "keep me", "new"]


async def test_an_idle_session_restored_with_a_queue_runs_it_under_auto_resume(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path)
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="q"))).summary.session
        await runtime.execute(cmd.SendMessage(session=session, content="first"))
        await runtime.execute(cmd.SendMessage(session=session, content="second"))
        await runtime.execute(cmd.StopGeneration(session=session))  # idle, the queue discarded
    # A stop between a turn's end and the taking of the next text leaves an idle session
    # with a queue: written here into its snapshot (the journal ends where it does).
    path = config.data_dir / "sessions" / f"{session}.msgpack"
    _, payload = decode_snapshot(path.read_bytes())
    assert payload["summary"]["status"] == "idle"
    payload["summary"]["queued"] = ["left behind"]
    path.write_bytes(encode_snapshot(session, payload))
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        # Started at boot, not when first used: the turn ends without anyone asking.
        await next_event(client, turn_ended(session))
        assert (await runtime.get_state(session)).summary.queued == ()
        assert await user_texts(runtime, session) == ["first", "left behind"]


# -- the property: every text sent runs once or is cancelled, in order -----------------------

TICK = 0.05  # one simulated token at 20 tokens a second: turns end on this grid

SEND = ("send", 0, 0)
operations = st.lists(
    st.one_of(
        st.just(SEND),
        st.just(SEND),
        st.tuples(st.just("cancel"), st.integers(0, 3), st.integers(0, 4)),
        st.tuples(st.just("wait"), st.integers(0, 6), st.integers(0, 0)),
    ),
    max_size=30,
)


async def _run_schedule(data_dir: Path, schedule: list[tuple[str, int, int]]) -> None:
    config = make_config(
        data_dir, simulated=SimulatedConfig(seed=1, tokens_per_second=1 / TICK, reply_tokens=3)
    )
    sent: list[str] = []
    cancelled: list[str] = []
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="p"))).summary.session
        for op, a, b in schedule:
            if op == "send":
                text = f"m{len(sent)}"
                await runtime.execute(cmd.SendMessage(session=session, content=text))
                sent.append(text)
            elif op == "wait":
                await trio.sleep(a * TICK)
            else:
                seen = (await runtime.get_state(session)).summary.queued
                await trio.sleep(b * TICK)  # the queue may move meanwhile
                preview = seen[a] if a < len(seen) else "gone"
                try:
                    removed = await runtime.execute(
                        cmd.CancelQueued(session=session, index=a, preview=preview)
                    )
                except Conflict:
                    continue
                assert removed == preview
                cancelled.append(removed)
        async with runtime.connect() as client:
            client.subscribe(session)
            while True:
                summary = (await runtime.get_state(session)).summary
                if not (summary.queued or summary.loading):
                    break
                await next_event(client, turn_ended(session))  # old ones too: then look again
        ran = await user_texts(runtime, session)
    assert len(set(ran)) == len(ran) and not set(ran) & set(cancelled)
    assert sorted(ran + cancelled, key=sent.index) == sent
    assert ran == sorted(ran, key=sent.index)  # cancelled ones go in whatever order asked


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)  # no deadline: examples run many virtual turns, and the machine may be loaded
@given(schedule=operations)
@example(schedule=[SEND] * 5 + [("cancel", 0, 4), ("cancel", 1, 3), ("cancel", 0, 2)])
@example(schedule=[SEND] * 3 + [("cancel", 1, 0), ("cancel", 0, 0)])  # the later one first
def test_texts_run_plus_texts_cancelled_are_the_texts_sent(
    schedule: list[tuple[str, int, int]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        trio.run(
            _run_schedule,
            Path(folder),
            schedule,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
