"""The session actor and manager, driven through the in-process runtime on MockClock."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from greenroom.actors.mailbox import Request
from greenroom.actors.session import SetSettings, StartChat
from greenroom.agent.provider import Chunk, CompletionRequest, TextDelta
from greenroom.agent.simulated import SimulatedProvider
from greenroom.config import Config, Limits
from greenroom.protocol import commands as cmd
from greenroom.protocol.chat import Message
from greenroom.protocol.errors import (
    Conflict,
    InvalidArgument,
    LimitReached,
    NotFound,
    TooLarge,
)
from greenroom.protocol.events import (
    Event,
    LoadingChanged,
    MessageAdded,
    SessionUpdated,
    StreamingUpdate,
)
from greenroom.runtime import Client, Runtime
from tests.conftest import make_config, next_event, open_test_runtime, turn_ended


async def collect_turn(client: Client, session: str) -> list[Event]:
    """Every event of ``session`` up to and including the end of its turn."""
    seen: list[Event] = []
    with trio.fail_after(120):
        while True:
            event = await client.events.receive()
            if event.session != session:
                continue
            seen.append(event)
            if isinstance(event.data, LoadingChanged) and not event.data.loading:
                return seen


async def test_a_turn_streams_deltas_then_commits_the_reply(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    async with runtime.connect() as client:
        view = await runtime.execute(cmd.OpenSession(project="blog"))
        session = view.summary.session
        client.subscribe(session)
        assert (
            await runtime.execute(cmd.SendMessage(session=session, content="hello there")) is False
        )
        events = await collect_turn(client, session)

    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # gapless, in order
    deltas = [e.data for e in events if isinstance(e.data, StreamingUpdate)]
    assert len(deltas) == 10  # reply_tokens in the test config
    offset = 0
    for delta in deltas:
        assert delta.offset == offset
        offset += len(delta.delta)
    added = [e.data.message for e in events if isinstance(e.data, MessageAdded)]
    assert [m.role for m in added] == ["user", "assistant"]
    assert added[1].content == "".join(d.delta for d in deltas)
    assert events[-1].data == LoadingChanged(loading=False, reason="completed")

    state = await runtime.get_state(session)
    assert state.summary.status == "idle" and state.summary.message_count == 2
    # The turn's last event is the sessionUpdated (lastActivity) after loadingChanged.
    assert state.streaming is None and state.seq == events[-1].seq + 1


async def test_the_reply_is_what_the_simulated_provider_says(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    view = await runtime.execute(cmd.OpenSession(project="p"))
    session = view.summary.session
    async with runtime.connect() as client:
        await runtime.execute(cmd.SendMessage(session=session, content="tell me"))
        await next_event(client, turn_ended(session))
    sim = runtime.config.simulated
    provider = SimulatedProvider(
        seed=sim.seed, tokens_per_second=1e9, reply_tokens=sim.reply_tokens
    )
    expected = ""
    async for chunk in provider.stream(
        CompletionRequest(messages=(Message(role="user", content="tell me"),))
    ):
        if isinstance(chunk, TextDelta):
            expected += chunk.text
    state = await runtime.get_state(session)
    assert state.messages[-1].content == expected


async def test_open_session_reuses_the_projects_session(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    first = await runtime.execute(cmd.OpenSession(project="one"))
    again = await runtime.execute(cmd.OpenSession(project="one"))
    other = await runtime.execute(cmd.OpenSession(project="two"))
    assert first.summary.session == again.summary.session != other.summary.session
    assert {s.project for s in await runtime.execute(cmd.ListSessions())} == {"one", "two"}
    assert (runtime.config.projects_root / "one").is_dir()


async def test_messages_sent_while_running_are_queued_in_order(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="q"))).summary.session
    async with runtime.connect() as client:
        assert await runtime.execute(cmd.SendMessage(session=session, content="first")) is False
        assert await runtime.execute(cmd.SendMessage(session=session, content="second")) is True
        assert await runtime.execute(cmd.SendMessage(session=session, content="third")) is True
        assert (await runtime.get_state(session)).summary.queued == ("second", "third")
        for _ in range(3):
            await next_event(client, turn_ended(session))
    state = await runtime.get_state(session)
    users = [m.content for m in state.messages if m.role == "user"]
    assert users == ["first", "second", "third"]
    assert [m.role for m in state.messages] == ["user", "assistant"] * 3
    assert state.summary.queued == ()


async def test_stop_mid_stream_commits_the_partial_text_and_returns_the_queue(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="s"))).summary.session
    async with runtime.connect() as client:
        client.subscribe(session)
        await runtime.execute(cmd.SendMessage(session=session, content="a long one [[tokens:400]]"))
        await runtime.execute(cmd.SendMessage(session=session, content="queued one"))
        for _ in range(5):
            await next_event(client, lambda e: isinstance(e.data, StreamingUpdate))
        discarded = await runtime.execute(cmd.StopGeneration(session=session))
        ended = await next_event(client, turn_ended(session))
    assert discarded == ("queued one",)
    assert ended.data == LoadingChanged(loading=False, reason="stopped")
    state = await runtime.get_state(session)
    last = state.messages[-1]
    assert last.role == "assistant" and last.stopped and last.content
    assert len(last.content.split()) < 400
    assert state.summary.status == "idle" and state.summary.queued == ()
    # Stopping an idle session is harmless.
    assert await runtime.execute(cmd.StopGeneration(session=session)) == ()


async def test_a_tool_call_writes_inside_the_project(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="tools"))).summary.session
    async with runtime.connect() as client:
        await runtime.execute(
            cmd.SendMessage(session=session, content="create file notes/todo.txt with buy milk")
        )
        await next_event(client, turn_ended(session))
    written = runtime.config.projects_root / "tools" / "notes" / "todo.txt"
    assert written.read_text() == "buy milk"
    state = await runtime.get_state(session)
    roles = [m.role for m in state.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    call = state.messages[1].tool_calls
    assert call is not None and call[0].name == "write_file"
    assert state.messages[2].tool_call_id == call[0].id


async def test_a_tool_path_escape_is_refused_and_the_turn_goes_on(
    runtime: Runtime, tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="jail"))).summary.session
    async with runtime.connect() as client:
        await runtime.execute(
            cmd.SendMessage(session=session, content="create file ../escaped.txt with gotcha")
        )
        await next_event(client, turn_ended(session))
    assert not (runtime.config.projects_root / "escaped.txt").exists()
    assert not list(tmp_path.rglob("escaped.txt"))
    state = await runtime.get_state(session)
    tool_result = state.messages[2]
    assert tool_result.role == "tool" and tool_result.content
    assert tool_result.content.startswith("error:")
    assert state.summary.status == "idle"


async def test_a_provider_error_fails_the_turn_and_resume_continues_it(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="flaky"))).summary.session
    async with runtime.connect() as client:
        await runtime.execute(cmd.SendMessage(session=session, content="talk [[fail:rate_limit]]"))
        ended = await next_event(client, turn_ended(session))
        assert isinstance(ended.data, LoadingChanged)
        assert ended.data.reason == "failed"
        assert ended.data.error is not None and "rate_limit" in ended.data.error
        state = await runtime.get_state(session)
        assert state.summary.status == "failed"
        assert state.summary.error == ended.data.error
        partial = state.messages[-1]
        assert partial.role == "assistant" and partial.stopped

        await runtime.execute(cmd.ResumeSession(session=session))
        ended = await next_event(client, turn_ended(session))
    assert isinstance(ended.data, LoadingChanged) and ended.data.reason == "completed"
    state = await runtime.get_state(session)
    assert state.summary.status == "idle"
    full = "".join(m.content or "" for m in state.messages[1:])
    assert len(full.split()) == 10  # the partial and its continuation make the whole reply


async def test_resume_refuses_a_session_with_nothing_to_resume(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    from greenroom.protocol.errors import Conflict

    session = (await runtime.execute(cmd.OpenSession(project="idle"))).summary.session
    with pytest.raises(Conflict, match="nothing to resume"):
        await runtime.execute(cmd.ResumeSession(session=session))


async def test_new_chat_starts_empty_under_a_new_name(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="chat"))).summary.session
    async with runtime.connect() as client:
        await runtime.execute(cmd.SendMessage(session=session, content="hi"))
        await next_event(client, turn_ended(session))
    before = await runtime.get_state(session)
    await runtime.execute(cmd.NewChat(session=session))
    after = await runtime.get_state(session)
    assert before.summary.message_count == 2
    assert after.summary.message_count == 0 and after.messages == ()
    assert after.summary.name != before.summary.name
    assert runtime.mirror.sessions[session].messages == []


async def test_delete_session_announces_it_and_forgets_it(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="gone"))).summary.session
    async with runtime.connect() as client:
        await runtime.execute(cmd.SendMessage(session=session, content="a long one [[tokens:400]]"))
        await runtime.execute(cmd.DeleteSession(session=session))
        deleted = await next_event(client, lambda e: e.name == "sessionDeleted")
    assert deleted.session == session
    with pytest.raises(NotFound):
        await runtime.get_state(session)
    assert session not in runtime.mirror.sessions
    # The project can get a new session.
    fresh = await runtime.execute(cmd.OpenSession(project="gone"))
    assert fresh.summary.session != session


async def test_unknown_sessions_and_bad_projects_are_clear_errors(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    with pytest.raises(NotFound, match="no session s-nope"):
        await runtime.execute(cmd.SendMessage(session="s-nope", content="hi"))
    for bad in ("", ".hidden", "UPPER", "a/b", "..", "x" * 65, "nul\x00"):
        with pytest.raises(InvalidArgument, match="invalid project name"):
            await runtime.execute(cmd.OpenSession(project=bad))


async def test_limits_on_sessions_queue_and_message_size(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(
        tmp_path, limits=Limits(max_sessions=2, max_queued_messages=1, max_message_chars=100)
    )
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="a"))).summary.session
        await runtime.execute(cmd.OpenSession(project="b"))
        with pytest.raises(LimitReached, match="limit"):
            await runtime.execute(cmd.OpenSession(project="c"))
        with pytest.raises(TooLarge, match="100"):
            await runtime.execute(cmd.SendMessage(session=session, content="x" * 101))
        await runtime.execute(cmd.SendMessage(session=session, content="one"))
        await runtime.execute(cmd.SendMessage(session=session, content="two"))
        with pytest.raises(LimitReached, match="queued"):
            await runtime.execute(cmd.SendMessage(session=session, content="three"))


async def test_stop_all_stops_every_running_turn(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    sessions = [
        (await runtime.execute(cmd.OpenSession(project=f"p{i}"))).summary.session for i in range(3)
    ]
    for session in sessions:
        await runtime.execute(cmd.SendMessage(session=session, content="[[tokens:400]] go"))
    await trio.sleep(1)
    assert await runtime.execute(cmd.StopAll()) == 3
    for session in sessions:
        state = await runtime.get_state(session)
        assert state.summary.status == "idle" and state.messages[-1].stopped


async def test_two_hundred_sessions_run_at_once_without_interfering(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    sessions = {}
    for i in range(200):
        sessions[f"p{i:03}"] = (
            await runtime.execute(cmd.OpenSession(project=f"p{i:03}"))
        ).summary.session
    async with runtime.connect() as client:
        for project, session in sessions.items():
            client.subscribe(session)
            await runtime.execute(cmd.SendMessage(session=session, content=f"hello from {project}"))
        seqs: dict[str, list[int]] = {s: [] for s in sessions.values()}
        remaining = set(sessions.values())
        with trio.fail_after(60):
            while remaining:
                event = await client.events.receive()
                if event.session in seqs and event.seq is not None:
                    seqs[event.session].append(event.seq)
                if turn_ended(event.session or "")(event):
                    remaining.discard(event.session or "")
    for project, session in sessions.items():
        state = await runtime.get_state(session)
        assert next(m.content for m in state.messages) == f"hello from {project}"
        assert state.summary.message_count == 2 and state.summary.status == "idle"
        got = seqs[session]
        assert got == list(range(got[0], got[0] + len(got)))


async def test_notifications_go_only_to_clients_viewing_another_project(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="alpha"))).summary.session
    await runtime.execute(cmd.OpenSession(project="beta"))
    async with runtime.connect() as viewer, runtime.connect() as elsewhere:
        await viewer.focus("alpha")
        await elsewhere.focus("beta")
        await runtime.execute(cmd.SendMessage(session=session, content="hello"))
        note = await next_event(elsewhere, lambda e: e.name == "notification")
        await next_event(viewer, turn_ended(session))
        await trio.testing.wait_all_tasks_blocked()
        viewer_events = [viewer.events.receive_nowait() for _ in range(viewer.events.queued())]
    assert note.project == "alpha" and note.session is None and note.seq is None
    assert note.data.kind == "completed"  # type: ignore[union-attr]
    assert note.data.session == session  # type: ignore[union-attr]
    assert "alpha" in note.data.title  # type: ignore[union-attr]
    # Its body is the start of the reply the turn ended with.
    reply = (await runtime.get_state(session)).messages[-1]
    assert reply.role == "assistant" and reply.content
    body = note.data.body  # type: ignore[union-attr]
    assert body and reply.content.startswith(body)
    assert not [e for e in viewer_events if e.name == "notification"]


async def test_notifications_wait_for_the_next_client(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="lonely"))).summary.session
    async with runtime.connect() as watcher:
        await runtime.execute(cmd.SendMessage(session=session, content="hello [[fail:auth]]"))
        await runtime.execute(cmd.SendMessage(session=session, content="again"))
        # Disconnect mid-turn: the notifications of both turns have nobody to go to.
    await trio.sleep(30)
    async with runtime.connect() as late:
        kinds = [e.data.kind for e in late.pending_notifications]  # type: ignore[union-attr]
    async with runtime.connect() as later:
        assert later.pending_notifications == ()
    assert kinds == ["failed", "completed"]
    assert watcher.events.closed


# -- crashes ---------------------------------------------------------------------------------


@attrs.define
class CrashingProvider:
    """The simulated provider, except that its stream raises a bug (not a ProviderError)
    after ``after`` chunks, for the first ``crashes`` streams: a session actor crash."""

    inner: SimulatedProvider
    crashes: int
    after: int = 3
    streams: int = 0

    @property
    def name(self) -> str:
        return "crashing"

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        self.streams += 1
        crash = self.streams <= self.crashes
        sent = 0
        async with aclosing(self.inner.stream(request)) as chunks:
            async for chunk in chunks:
                if crash and sent == self.after:
                    raise RuntimeError(f"bug in stream {self.streams}")
                sent += 1
                yield chunk


def crashing(config: Config, crashes: int) -> CrashingProvider:
    sim = config.simulated
    inner = SimulatedProvider(
        seed=sim.seed, tokens_per_second=sim.tokens_per_second, reply_tokens=sim.reply_tokens
    )
    return CrashingProvider(inner=inner, crashes=crashes)


async def test_a_session_that_crashes_mid_turn_is_restarted_and_resumes(
    config: Config, autojump_clock: trio.abc.Clock
) -> None:
    provider = crashing(config, crashes=1)
    async with open_test_runtime(config, provider=provider) as runtime, runtime.connect() as client:
        session = (await runtime.execute(cmd.OpenSession(project="crash"))).summary.session
        client.subscribe(session)
        await runtime.execute(cmd.SendMessage(session=session, content="hello"))
        restarted = await next_event(client, lambda e: e.name == "sessionRestarted")
        interrupted = await next_event(client, turn_ended(session))
        ended = await next_event(client, turn_ended(session))
        state = await runtime.get_state(session)
    assert interrupted.data == LoadingChanged(loading=False, reason="interrupted")
    assert restarted.data.restarts == 1  # type: ignore[union-attr]
    assert "bug in stream 1" in restarted.data.reason  # type: ignore[union-attr]
    assert ended.data == LoadingChanged(loading=False, reason="completed")
    assert state.messages[0] == Message(role="user", content="hello")
    partial, rest = state.messages[1], state.messages[2]
    assert partial.stopped and not rest.stopped
    assert len(((partial.content or "") + (rest.content or "")).split()) == 10


async def test_a_session_past_its_restart_intensity_is_given_up_alone(
    config: Config, autojump_clock: trio.abc.Clock
) -> None:
    provider = crashing(config, crashes=1000)
    healthy = SimulatedProvider(seed=1, tokens_per_second=20, reply_tokens=10)
    async with open_test_runtime(config, provider=provider) as runtime, runtime.connect() as client:
        doomed = (await runtime.execute(cmd.OpenSession(project="doomed"))).summary.session
        # Long enough that every resumed step crashes again (each keeps 3 more tokens).
        await runtime.execute(cmd.SendMessage(session=doomed, content="hello [[tokens:400]]"))
        ended = await next_event(
            client,
            lambda e: turn_ended(doomed)(e) and e.data.reason == "failed",  # type: ignore[union-attr]
        )
        failed = await next_event(client, lambda e: e.name == "sessionFailed")
        assert isinstance(ended.data, LoadingChanged) and ended.data.reason == "failed"
        assert ended.data.error and "crashed too often" in ended.data.error
        state = runtime.mirror.sessions[doomed]
        assert failed.session == doomed and state.status == "failed"
        assert state.messages[0].content == "hello [[tokens:400]]"
        # Every crash's partial is committed, the last one's by the give-up.
        assert [m.stopped for m in state.messages[1:]] == [True] * 4
        # The other sessions go on.
        provider.inner, provider.crashes = healthy, 0
        other = (await runtime.execute(cmd.OpenSession(project="fine"))).summary.session
        await runtime.execute(cmd.SendMessage(session=other, content="hi"))
        await next_event(client, turn_ended(other))
        # A new command gives the failed session a new chance.
        await runtime.execute(cmd.ResumeSession(session=doomed))
        await next_event(client, turn_ended(doomed))
        revived = await runtime.get_state(doomed)
        assert revived.summary.status == "idle"
        # The reply is whole: four partials and the rest.
        assert [m.stopped for m in revived.messages[1:]] == [True] * 4 + [False]
        assert len("".join(m.content or "" for m in revived.messages[1:]).split()) == 400


async def test_shutdown_interrupts_turns_and_keeps_their_partial_text(
    config: Config, autojump_clock: trio.abc.Clock
) -> None:
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="bye"))).summary.session
        await runtime.execute(cmd.SendMessage(session=session, content="[[tokens:400]] long"))
        await trio.sleep(2)
        mirror = runtime.mirror
    state = mirror.sessions[session]
    assert state.status == "interrupted"
    assert state.messages[-1].role == "assistant" and state.messages[-1].stopped


async def test_subscribe_since_replays_what_was_missed_then_goes_live(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    session = (await runtime.execute(cmd.OpenSession(project="replay"))).summary.session
    async with runtime.connect() as first:
        first.subscribe(session)
        await runtime.execute(cmd.SendMessage(session=session, content="one"))
        await next_event(first, turn_ended(session))
        seen = runtime.mirror.sessions[session].seq
    await runtime.execute(cmd.SendMessage(session=session, content="two [[tokens:40]]"))
    await trio.sleep(1)  # mid-stream of the second turn
    async with runtime.connect() as second:
        got = second.subscribe(session, since=seen)
        assert got.replay is not None
        replayed = [e.seq for e in got.replay]
        # Every event after `seen`, the deltas so far merged into one update (its seq the last).
        assert replayed[0] == seen + 1 and replayed[-1] == got.seq
        deltas = [e for e in got.replay if isinstance(e.data, StreamingUpdate)]
        assert len(deltas) == 1 and deltas[0] is got.replay[-1]
        assert deltas[0].data.offset == 0 and len(deltas[0].data.delta.split()) > 10
        assert replayed[:-1] == list(range(seen + 1, seen + len(replayed)))
        live = await next_event(
            second, lambda e: e.session == session and e.seq is not None and e.seq > got.seq
        )
        assert live.seq == got.seq + 1  # no gap between the replay and the live events
    with pytest.raises(NotFound):
        second.subscribe("s-missing")
    stats = runtime.statistics()
    assert stats.sessions == {"running": 1} and stats.events_published > 20


async def test_turns_beyond_the_concurrency_limit_wait_and_say_so(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path, limits=Limits(max_concurrent_turns=2))
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        sessions = [
            (await runtime.execute(cmd.OpenSession(project=f"c{i}"))).summary.session
            for i in range(4)
        ]
        for session in sessions:
            client.subscribe(session)
            await runtime.execute(cmd.SendMessage(session=session, content="[[tokens:20]] hello"))
        streaming: set[str] = set()
        most = 0
        waited: set[str] = set()
        ended: set[str] = set()
        with trio.fail_after(60):
            while len(ended) < 4:
                event = await client.events.receive()
                session = event.session or ""
                match event.data:
                    case StreamingUpdate():
                        streaming.add(session)
                        most = max(most, len(streaming))
                    case SessionUpdated(summary=summary) if summary.waiting:
                        waited.add(session)
                        if len(waited) == 2:
                            # Stopping a turn that waits for a slot ends it at once.
                            assert await runtime.execute(cmd.StopGeneration(session=session)) == ()
                    case LoadingChanged(loading=False):
                        streaming.discard(session)
                        ended.add(session)
        states = [await runtime.get_state(s) for s in sessions]
    assert most == 2
    assert len(waited) == 2
    stopped = [s for s in states if s.summary.session in waited][-1]
    assert [m.role for m in stopped.messages] == ["user"]  # it never streamed
    assert sorted(s.summary.message_count for s in states) == [1, 2, 2, 2]
    assert not any(s.summary.waiting for s in states)


@attrs.define
class RecordingProvider:
    """The simulated provider, recording the model each request names."""

    inner: SimulatedProvider
    models: list[str | None] = attrs.Factory(list)

    @property
    def name(self) -> str:
        return "recording"

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        self.models.append(request.model)
        async with aclosing(self.inner.stream(request)) as chunks:
            async for chunk in chunks:
                yield chunk


async def test_a_session_may_name_its_own_model(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path, model="server-default")
    provider = RecordingProvider(SimulatedProvider(seed=1, tokens_per_second=20, reply_tokens=3))
    async with open_test_runtime(config, provider=provider) as runtime, runtime.connect() as c:
        own = (await runtime.execute(cmd.OpenSession(project="own", model="small"))).summary
        plain = (await runtime.execute(cmd.OpenSession(project="plain"))).summary
        assert (own.model, plain.model) == ("small", None)
        for session in (own.session, plain.session):
            await runtime.execute(cmd.SendMessage(session=session, content="hi"))
            await next_event(c, turn_ended(session))
        again = await runtime.execute(cmd.OpenSession(project="own", model="big"))
        await runtime.execute(cmd.SendMessage(session=own.session, content="hi again"))
        await next_event(c, turn_ended(own.session))
    assert again.summary.model == "big"
    assert provider.models == ["small", "server-default", "big"]


async def test_delete_project_removes_the_folder_for_good(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """History lines still waiting for the next flush when the project is deleted do not
    make its folder again afterwards."""
    config = make_config(tmp_path, flush_interval=30.0)
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        session = (await runtime.execute(cmd.OpenSession(project="blog"))).summary.session
        client.subscribe(session)
        await runtime.execute(cmd.SendMessage(session=session, content="hello there"))
        await next_event(client, turn_ended(session))
        folder = config.projects_root / "blog"
        assert folder.is_dir()
        await runtime.execute(cmd.DeleteProject(project="blog"))
        assert not folder.exists()
        # The same when the session was deleted just before its project.
        shop = (await runtime.execute(cmd.OpenSession(project="shop"))).summary.session
        client.subscribe(shop)
        await runtime.execute(cmd.SendMessage(session=shop, content="hello there"))
        await next_event(client, turn_ended(shop))
        await runtime.execute(cmd.DeleteSession(session=shop))
        await runtime.execute(cmd.DeleteProject(project="shop"))
        await trio.sleep(120)  # every pending flush is done
        for gone in (folder, config.projects_root / "shop"):
            assert not gone.exists(), sorted(str(p) for p in gone.rglob("*"))


async def test_what_reaches_a_session_behind_its_deletion_is_refused(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Messages that reached the session's actor behind its deletion (a second client's, in
    the one hop before the manager stops the actor) are refused, as a ``sendMessage`` to a
    deleted session is, and publish nothing: the session does not come back in the
    clients' lists. A deletion again is done already."""
    async with open_test_runtime(make_config(tmp_path)) as runtime, runtime.connect() as client:
        session = (await runtime.execute(cmd.OpenSession(project="blog"))).summary.session
        client.subscribe(session)
        ref = runtime._registry.serving_ref(session)
        assert ref is not None
        deleted = Request.of(cmd.DeleteSession(session=session))
        again = Request.of(cmd.DeleteSession(session=session))
        late = (StartChat(name="later"), SetSettings(model="other"))
        for message in (deleted, *late, again):
            ref.tell_nowait(message)
        await deleted.reply.wait()
        await again.reply.wait()
        for message in late:
            with pytest.raises(Conflict, match="was deleted"):
                await message.reply.wait()
        await next_event(client, lambda e: e.session == session and e.name == "sessionDeleted")
        await trio.sleep(10)
        assert [e.name for e in client.events.take() if e.session == session] == []

