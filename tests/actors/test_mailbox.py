from __future__ import annotations

import math

import attrs
import pytest
import trio
import trio.testing

from greenroom.actors.mailbox import Mailbox, Reply
from greenroom.protocol.errors import ActorDied, AskTimeout, MailboxFull


@attrs.frozen(kw_only=True)
class Echo:
    text: str
    reply: Reply[str] = attrs.field(factory=Reply, eq=False)


@attrs.frozen(kw_only=True)
class Note:
    text: str


@attrs.frozen(kw_only=True)
class Hang:
    reply: Reply[None] = attrs.field(factory=Reply, eq=False)


@attrs.frozen(kw_only=True)
class Crash:
    pass


@attrs.frozen(kw_only=True)
class Explode:
    reply: Reply[None] = attrs.field(factory=Reply, eq=False)


Message = Echo | Note | Hang | Crash | Explode


async def serve(box: Mailbox[Message], seen: list[str], *, task_status=trio.TASK_STATUS_IGNORED):
    with box.serve() as inbox:
        task_status.started()
        async for message in inbox:
            match message:
                case Echo(text=text, reply=reply):
                    reply.send(text.upper())
                case Note(text=text):
                    seen.append(text)
                case Hang():
                    await trio.sleep_forever()
                case Crash() | Explode():
                    raise RuntimeError("boom")


async def test_tell_and_ask(nursery: trio.Nursery) -> None:
    box = Mailbox[Message]("echo")
    seen: list[str] = []
    await nursery.start(serve, box, seen)
    await box.ref.tell(Note(text="a"))
    box.ref.tell_nowait(Note(text="b"))
    assert await box.ref.ask(Echo(text="hi")) == "HI"
    assert seen == ["a", "b"]
    stats = box.ref.statistics()
    assert (stats.told, stats.asked, stats.asks_failed, stats.serving) == (2, 1, 0, True)


async def test_ask_without_a_serving_actor_fails_at_once(autojump_clock: trio.abc.Clock) -> None:
    box = Mailbox[Message]("nobody")
    with trio.fail_after(0.1), pytest.raises(ActorDied, match="not running"):
        await box.ref.ask(Echo(text="hi"))


async def absorbing(box: Mailbox[Message], seen: list[str], crashes: list[str]) -> None:
    """One incarnation whose crash is recorded instead of propagated (as a supervisor does)."""
    try:
        await serve(box, seen)
    except RuntimeError as exc:
        crashes.append(str(exc))


async def test_ask_fails_at_once_when_the_actor_crashes(autojump_clock: trio.abc.Clock) -> None:
    box = Mailbox[Message]("crashy", ask_timeout=math.inf)
    crashes: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(absorbing, box, [], crashes)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        with pytest.raises(ActorDied, match="stopped before it replied"):
            await box.ref.ask(Explode())
        assert trio.current_time() == start  # failed at once, not by a timeout
    assert crashes == ["boom"]


async def test_ask_times_out_and_the_stale_request_is_skipped(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    box = Mailbox[Message]("slow", ask_timeout=1.0)
    seen: list[str] = []
    await nursery.start(serve, box, seen)
    with pytest.raises(AskTimeout, match="within 1 s"):
        await box.ref.ask(Hang())
    assert box.ref.statistics().asks_failed == 1


async def test_tell_nowait_raises_at_the_bound() -> None:
    box = Mailbox[Message]("small", capacity=2)
    box.ref.tell_nowait(Note(text="1"))
    box.ref.tell_nowait(Note(text="2"))
    with pytest.raises(MailboxFull, match="full"):
        box.ref.tell_nowait(Note(text="3"))


async def test_tells_survive_a_restart_and_asks_meanwhile_fail() -> None:
    box = Mailbox[Message]("restarted")
    seen: list[str] = []
    crashes: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(absorbing, box, seen, crashes)
        await box.ref.tell(Crash())
        await trio.testing.wait_all_tasks_blocked()
        assert crashes == ["boom"]
        # Between incarnations: tells wait in the mailbox, asks fail at once.
        await box.ref.tell(Note(text="kept"))
        with pytest.raises(ActorDied, match="not running"):
            await box.ref.ask(Echo(text="x"))
        nursery.start_soon(absorbing, box, seen, crashes)
        await trio.testing.wait_all_tasks_blocked()
        assert await box.ref.ask(Echo(text="y")) == "Y"
        assert seen == ["kept"]
        assert box.statistics().incarnations == 2
        box.request_stop()


async def test_request_stop_ends_the_loop_and_close_refuses_messages(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    box = Mailbox[Message]("stoppable")
    done = trio.Event()

    async def run() -> None:
        await serve(box, [])
        done.set()

    nursery.start_soon(run)
    await trio.testing.wait_all_tasks_blocked()
    box.request_stop()
    with trio.fail_after(1):
        await done.wait()
    box.close()
    with pytest.raises(ActorDied, match="closed"):
        await box.ref.tell(Note(text="late"))


async def test_receive_batch_takes_what_is_queued_and_skips_abandoned_asks() -> None:
    box = Mailbox[Message]("batched")
    for i in range(5):
        box.ref.tell_nowait(Note(text=str(i)))
    abandoned = Echo(text="late")
    abandoned.reply.fail(RuntimeError("asker gave up"))
    box.ref.tell_nowait(abandoned)
    box.ref.tell_nowait(Note(text="5"))
    with box.serve() as inbox:
        first = await inbox.receive_batch(limit=3)
        rest = await inbox.receive_batch()
        box.request_stop()
        assert await inbox.receive_batch() == []
    assert [m.text for m in first] == ["0", "1", "2"]  # type: ignore[union-attr]
    assert [m.text for m in rest] == ["3", "4", "5"]  # type: ignore[union-attr]
