"""Property tests: random crash schedules against the session supervisor never exceed the
restart intensity, never leave a task running after shutdown and never lose (or duplicate) a
committed message or a tool call's effect.

Each example runs its own ``trio.run`` on a ``MockClock`` (hypothesis drives sync tests), with
2 to 4 sessions running turns (plain replies, ``[[tokens:N]]`` replies and file-writing tool
calls) through a provider that raises a bug mid-stream where the drawn schedule says: the k-th
stream call of a session crashes after n chunks. Crashes are keyed on each session's own call
counter, so a schedule means the same thing whatever order the sessions run in.

The deterministic tests at the bottom check one invariant each on a hand-picked schedule, so
that a failure there is easy to read.
"""

from __future__ import annotations

import collections
import json
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from pathlib import Path
from unittest import mock

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import greenroom.agent.toolbox as toolbox_module
from greenroom.agent.provider import Chunk, CompletionRequest, TextDelta, ToolCallDelta
from greenroom.agent.simulated import SimulatedProvider
from greenroom.agent.tools import run_tool
from greenroom.config import Config, SimulatedConfig, SupervisionConfig
from greenroom.protocol import commands as cmd
from greenroom.protocol.chat import Message, ToolCall
from greenroom.protocol.events import (
    Event,
    LoadingChanged,
    MessageAdded,
    SessionFailed,
    SessionRestarted,
)
from greenroom.protocol.state import SessionView, Streaming
from greenroom.runtime import open_runtime
from greenroom.store.history import history_path, read_history
from tests.conftest import ThreadsHoldTheClock, make_config, next_event

#: The restart window of every example, in trio seconds.
PERIOD = 5.0
#: The longest backoff: a restart is announced at most this long after its crash.
BACKOFF_MAX = 1.0
#: Virtual-time bound for all the turns of an example to end (or be given up).
HORIZON = 600.0
SIMULATED = SimulatedConfig(seed=3, tokens_per_second=20.0, reply_tokens=10)

# -- plans -----------------------------------------------------------------------------------


@attrs.frozen
class Write:
    """A ``create file`` message: one write_file tool call, then a confirmation."""

    path: str


@attrs.frozen
class Plain:
    """A plain message; ``tokens`` sets the reply length (None: the configured 10)."""

    tokens: int | None


Turn = Write | Plain


@attrs.frozen
class SessionPlan:
    """The messages a session is sent, and its crash schedule: ``crashes[k]`` is the number of
    chunks after which its k-th stream call raises (None: it does not); calls beyond the
    list do not crash."""

    turns: tuple[Turn, ...]
    crashes: tuple[int | None, ...]


def message_text(project: str, number: int, turn: Turn) -> str:
    # Every text names its project and position: the first one keys the session's schedule,
    # and the tool calls' arguments differ, so that each execution can be told apart.
    if isinstance(turn, Write):
        return f"create file {turn.path} with {project} m{number}"
    directive = f" [[tokens:{turn.tokens}]]" if turn.tokens is not None else ""
    return f"hello from {project} m{number}{directive}"


# -- the crashing provider and the tool counter ----------------------------------------------


@attrs.define(eq=False)
class Crash:
    """One crash the provider caused: when, and whether text had streamed before it."""

    time: float
    streamed_text: bool


@attrs.define(eq=False)
class ScheduledCrashes:
    """The simulated provider, raising a bug (not a ProviderError) mid-stream per schedule.

    ``schedules`` maps a session's first message to its crash schedule. Every stream waits for
    ``go``, so that all the messages are sent (the first starts a turn, the others are queued)
    before anything can crash.
    """

    inner: SimulatedProvider
    schedules: dict[str, tuple[int | None, ...]]
    go: trio.Event = attrs.Factory(trio.Event)
    calls: collections.Counter[str] = attrs.Factory(collections.Counter)
    crashes: dict[str, list[Crash]] = attrs.Factory(lambda: collections.defaultdict(list))

    @property
    def name(self) -> str:
        return "scheduled-crashes"

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        await self.go.wait()
        key = request.messages[0].content or ""
        call = self.calls[key]
        self.calls[key] += 1
        schedule = self.schedules[key]
        after = schedule[call] if call < len(schedule) else None
        sent = 0
        streamed_text = False
        async with aclosing(self.inner.stream(request)) as chunks:
            async for chunk in chunks:
                if sent == after:
                    self.crashes[key].append(Crash(trio.current_time(), streamed_text))
                    raise RuntimeError(f"scheduled bug in call {call}")
                sent += 1
                streamed_text = streamed_text or (isinstance(chunk, TextDelta) and bool(chunk.text))
                yield chunk


ToolRunner = Callable[[Path, str, str], Awaitable[str]]


@attrs.define(eq=False)
class ToolRuns:
    """Counts every tool execution, by project folder, tool name and arguments."""

    counts: collections.Counter[tuple[str, str, str]] = attrs.Factory(collections.Counter)

    def wrap(self, run_tool: ToolRunner) -> ToolRunner:
        async def counted(project_dir: Path, name: str, arguments: str) -> str:
            self.counts[(project_dir.name, name, arguments)] += 1
            return await run_tool(project_dir, name, arguments)

        return counted


# -- one example -----------------------------------------------------------------------------


@attrs.define(eq=False)
class Seen:
    """What the subscribed client saw of one session."""

    project: str
    turns: int
    subscribed_at: int
    events: list[tuple[float, Event]] = attrs.Factory(list)
    ended: int = 0
    failed: bool = False

    @property
    def done(self) -> bool:
        return self.failed or self.ended >= self.turns


@attrs.define(eq=False)
class Outcome:
    """Everything an example leaves for the invariants to check."""

    root: Path
    plans: tuple[SessionPlan, ...]
    max_restarts: int
    #: Whether every turn ended (or was given up) before shutdown, rather than a shutdown
    #: cutting the crash schedule short.
    finished: bool
    seen: dict[str, Seen]
    views: dict[str, SessionView]
    mirror: dict[str, tuple[Message, ...]]
    #: The project's history file, read after shutdown.
    history: dict[str, tuple[Message, ...]]
    mirror_status: dict[str, str]
    #: The text the mirror still holds as streaming (not committed) after shutdown.
    mirror_partial: dict[str, str | None]
    mirror_seq: dict[str, int]
    crashes: dict[str, list[Crash]]
    tool_runs: collections.Counter[tuple[str, str, str]]
    given_up: int
    tasks_before: int
    tasks_after: int
    references: dict[str, list[tuple[str, tuple[ToolCall, ...]]]]


async def reference_steps(messages: Sequence[Message]) -> list[tuple[str, tuple[ToolCall, ...]]]:
    """For each run of assistant messages (stopped ones and what ended them), the whole reply a
    crash-free provider gives to the conversation before it: its text and its tool calls."""
    provider = SimulatedProvider(
        seed=SIMULATED.seed, tokens_per_second=float("inf"), reply_tokens=SIMULATED.reply_tokens
    )
    steps: list[tuple[str, tuple[ToolCall, ...]]] = []
    for index, message in enumerate(messages):
        starts_run = message.role == "assistant" and (
            index == 0 or messages[index - 1].role != "assistant" or not messages[index - 1].stopped
        )
        if not starts_run:
            continue
        text = ""
        calls: dict[int, dict[str, str]] = {}
        request = CompletionRequest(messages=tuple(messages[:index]))
        async for chunk in provider.stream(request):
            if isinstance(chunk, TextDelta):
                text += chunk.text
            elif isinstance(chunk, ToolCallDelta):
                call = calls.setdefault(chunk.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = call["id"] or chunk.id or ""
                call["name"] = call["name"] or chunk.name or ""
                call["arguments"] += chunk.arguments or ""
        steps.append((text, tuple(ToolCall(**calls[i]) for i in sorted(calls))))
    return steps


def example_config(root: Path, max_restarts: int) -> Config:
    supervision = SupervisionConfig(
        max_restarts=max_restarts, period=PERIOD, backoff_initial=0.1, backoff_max=BACKOFF_MAX
    )
    return make_config(root, simulated=SIMULATED, supervision=supervision)


def streaming_text(streaming: Streaming | None) -> str | None:
    return streaming.text if streaming is not None else None


def run_example(
    root: Path,
    plans: Sequence[SessionPlan],
    max_restarts: int,
    *,
    stop_after: float | None = None,
) -> Outcome:
    """Run the plans on a fresh runtime under MockClock and collect what happened: until
    every turn ended or was given up, or, with ``stop_after``, for that many trio seconds
    after the first stream may start (then the runtime shuts down mid-schedule)."""
    projects = [f"p{i}" for i in range(len(plans))]
    texts = {
        project: [message_text(project, n, turn) for n, turn in enumerate(plan.turns)]
        for project, plan in zip(projects, plans, strict=True)
    }
    config = example_config(root, max_restarts)
    inner = SimulatedProvider(
        seed=SIMULATED.seed,
        tokens_per_second=SIMULATED.tokens_per_second,
        reply_tokens=SIMULATED.reply_tokens,
    )
    provider = ScheduledCrashes(
        inner=inner,
        schedules={
            texts[project][0]: plan.crashes for project, plan in zip(projects, plans, strict=True)
        },
    )
    tool_runs = ToolRuns()

    async def main() -> Outcome:
        tasks_before = trio.lowlevel.current_statistics().tasks_living
        seen: dict[str, Seen] = {}
        views: dict[str, SessionView] = {}
        async with open_runtime(config, provider=provider) as runtime:
            async with runtime.connect(capacity=1_000_000) as client:
                for project, plan in zip(projects, plans, strict=True):
                    session = (
                        await runtime.execute(cmd.OpenSession(project=project))
                    ).summary.session
                    subscribed = client.subscribe(session)
                    seen[session] = Seen(
                        project=project, turns=len(plan.turns), subscribed_at=subscribed.seq
                    )

                async def watch() -> None:
                    while not all(s.done for s in seen.values()):
                        event = await client.events.receive()
                        record = seen.get(event.session or "")
                        if record is None:
                            continue
                        record.events.append((trio.current_time(), event))
                        data = event.data
                        if isinstance(data, SessionFailed):
                            record.failed = True
                        elif (
                            isinstance(data, LoadingChanged)
                            and not data.loading
                            and data.reason != "interrupted"
                        ):
                            record.ended += 1

                with trio.fail_after(HORIZON):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(watch)
                        for session, record in seen.items():
                            for text in texts[record.project]:
                                await runtime.execute(
                                    cmd.SendMessage(session=session, content=text)
                                )
                        provider.go.set()
                        if stop_after is not None:
                            await trio.sleep(stop_after)
                            nursery.cancel_scope.cancel()
                    # The turn's last event (sessionUpdated) follows its loadingChanged.
                    await trio.sleep(0 if stop_after is not None else 1)
                    while client.events.queued():
                        event = client.events.receive_nowait()
                        if event.session in seen:
                            seen[event.session].events.append((trio.current_time(), event))
                for session, record in seen.items():
                    # A command would give a failed session a new run.
                    if stop_after is None and not record.failed:
                        views[session] = await runtime.get_state(session)
            mirror = runtime.mirror
        tasks_after = trio.lowlevel.current_statistics().tasks_living
        finals = {s: tuple(mirror.sessions[s].messages) for s in seen}
        names = {s: mirror.sessions[s].name for s in seen}

        def read_histories() -> dict[str, tuple[Message, ...]]:
            paths = {
                s: history_path(config.projects_root / r.project, names[s]) for s, r in seen.items()
            }
            return {s: tuple(read_history(p)) if p.exists() else () for s, p in paths.items()}

        history = await trio.to_thread.run_sync(read_histories)
        return Outcome(
            root=root,
            plans=tuple(plans),
            max_restarts=max_restarts,
            finished=stop_after is None,
            seen=seen,
            views=views,
            mirror=finals,
            history=history,
            mirror_status={s: mirror.sessions[s].status for s in seen},
            mirror_partial={s: streaming_text(mirror.sessions[s].streaming) for s in seen},
            mirror_seq={s: mirror.sessions[s].seq for s in seen},
            crashes={s: provider.crashes.get(texts[seen[s].project][0], []) for s in seen},
            tool_runs=tool_runs.counts,
            given_up=runtime.statistics().given_up,
            tasks_before=tasks_before,
            tasks_after=tasks_after,
            references={s: await reference_steps(finals[s]) for s in seen},
        )

    with mock.patch.object(toolbox_module, "run_tool", tool_runs.wrap(run_tool)):
        return trio.run(
            main,
            clock=trio.testing.MockClock(autojump_threshold=0),
            instruments=[ThreadsHoldTheClock()],
        )


# -- the invariants --------------------------------------------------------------------------


def added_messages(seen: Seen) -> list[tuple[int, Message]]:
    return [
        (e.data.index, e.data.message) for _, e in seen.events if isinstance(e.data, MessageAdded)
    ]


def assistant_runs(messages: Sequence[Message]) -> list[list[Message]]:
    """The assistant messages grouped by step: stopped partials and the message after them."""
    runs: list[list[Message]] = []
    for index, message in enumerate(messages):
        if message.role != "assistant":
            continue
        previous = messages[index - 1] if index else None
        if previous is not None and previous.role == "assistant" and previous.stopped:
            runs[-1].append(message)
        else:
            runs.append([message])
    return runs


def check_no_committed_message_lost(outcome: Outcome) -> None:
    """Every messageAdded appends (never replaces); the final state, and the history file on
    disk, hold exactly the messages the client saw, in order; each reply is whole, with no
    text repeated; each crash that had streamed text left exactly one stopped partial."""
    for session, seen in outcome.seen.items():
        added = added_messages(seen)
        assert [index for index, _ in added] == list(range(len(added))), (seen.project, added)
        messages = tuple(message for _, message in added)
        final = outcome.mirror[session]
        assert outcome.history[session] == final, seen.project
        if outcome.finished:
            assert final == messages, seen.project
        else:
            # The client left at shutdown: what it saw is a prefix of what was committed.
            assert final[: len(messages)] == messages, seen.project
        if session in outcome.views:
            assert outcome.views[session].messages == messages, seen.project
        stopped = sum(m.role == "assistant" and m.stopped for m in final)
        partials = sum(c.streamed_text for c in outcome.crashes[session])
        if outcome.finished:
            assert stopped == partials, (seen.project, outcome.crashes[session])
        else:
            # A crash still in its backoff at shutdown has not committed its partial yet; a
            # turn interrupted by the shutdown has committed one more.
            assert stopped <= partials + 1, (seen.project, outcome.crashes[session])
        # The partials of a step and what followed them join into the crash-free reply.
        runs = assistant_runs(final)
        assert len(runs) == len(outcome.references[session]), seen.project
        for run, (text, calls) in zip(runs, outcome.references[session], strict=True):
            joined = "".join(m.content or "" for m in run)
            if run[-1].stopped:  # given up or shut down in the middle of this step
                assert text.startswith(joined), (seen.project, joined, text)
            else:
                assert joined == text, (seen.project, joined, text)
                assert (run[-1].tool_calls or ()) == calls, seen.project


def check_seq_gapless(outcome: Outcome) -> None:
    """Per session, the client saw every seq after its subscription, in order, once."""
    for session, seen in outcome.seen.items():
        seqs = [e.seq for _, e in seen.events if e.seq is not None]
        later = [s for s in seqs if s > seen.subscribed_at]
        start = seen.subscribed_at + 1
        assert later == list(range(start, start + len(later))), (seen.project, seqs)
        assert seqs == sorted(set(seqs)), (seen.project, seqs)
        assert later, seen.project
        if outcome.finished:
            assert later[-1] == outcome.mirror_seq[session], seen.project
        else:
            assert later[-1] <= outcome.mirror_seq[session], seen.project
        if session in outcome.views:
            assert outcome.views[session].seq == later[-1], seen.project


def expected_restarts(crash_times: Sequence[float], max_restarts: int) -> tuple[int, bool]:
    """How many of these crashes the intensity admits as restarts, and whether the last one
    is given up: a crash is admitted while fewer than ``max_restarts`` admitted crashes lie
    within ``(t - PERIOD, t]``."""
    admitted: list[float] = []
    for time in crash_times:
        if sum(1 for t in admitted if time - t < PERIOD) >= max_restarts:
            return len(admitted), True
        admitted.append(time)
    return len(admitted), False


def check_intensity(outcome: Outcome) -> None:
    """Restarts follow the intensity exactly: never more than ``max_restarts`` within a period,
    and the crash one past it is given up, with the turn ended as failed; no session is left
    running once its turns are over."""
    failures = 0
    for session, seen in outcome.seen.items():
        crash_times = [c.time for c in outcome.crashes[session]]
        restarts = [e.data for _, e in seen.events if isinstance(e.data, SessionRestarted)]
        failed = [e for _, e in seen.events if isinstance(e.data, SessionFailed)]
        admitted, given_up = expected_restarts(crash_times, outcome.max_restarts)
        # No crash comes after a give-up: the session is not run again.
        assert len(crash_times) == admitted + given_up, (seen.project, crash_times)
        # The crashes that were restarted, by the time they happened: never too many in one
        # period (the restarts themselves come later, after a backoff).
        for index, time in enumerate(crash_times[:admitted]):
            window = [t for t in crash_times[: index + 1] if time - t < PERIOD]
            assert len(window) <= outcome.max_restarts, (seen.project, crash_times)
        assert [r.restarts for r in restarts] == list(range(1, len(restarts) + 1)), seen.project
        # As the client sees them, each restart comes after its crash's backoff: never more
        # than max_restarts within any PERIOD - BACKOFF_MAX.
        announced = [t for t, e in seen.events if isinstance(e.data, SessionRestarted)]
        for index, time in enumerate(announced):
            window = [t for t in announced[: index + 1] if time - t < PERIOD - BACKOFF_MAX]
            assert len(window) <= outcome.max_restarts, (seen.project, announced)
        assert outcome.mirror_status[session] != "stopping", seen.project
        if not outcome.finished:
            # A restart may still have been waiting out its backoff at shutdown.
            assert len(restarts) in (admitted, admitted - 1), (seen.project, crash_times)
            assert len(failed) <= int(given_up), (seen.project, crash_times)
            continue
        assert len(restarts) == admitted, (seen.project, crash_times, restarts)
        assert len(failed) == int(given_up), (seen.project, crash_times)
        if given_up:
            failures += 1
            assert seen.events[-1][1] is failed[0], seen.project  # nothing after the give-up
            ends = [
                e.data
                for _, e in seen.events
                if isinstance(e.data, LoadingChanged) and not e.data.loading
            ]
            assert ends[-1].reason == "failed", seen.project
            assert ends[-1].error and "crashed too often" in ends[-1].error, seen.project
            assert outcome.mirror_status[session] == "failed", seen.project
        else:
            # Every turn ran to completion, and the session is idle.
            assert outcome.mirror_status[session] == "idle", seen.project
            assert outcome.views[session].summary.status == "idle", seen.project
            assert outcome.views[session].summary.queued == (), seen.project
            users = [m for m in outcome.mirror[session] if m.role == "user"]
            assert len(users) == len(outcome.plans[int(seen.project[1:])].turns), seen.project
    if outcome.finished:
        assert outcome.given_up == failures


def check_no_task_left(outcome: Outcome) -> None:
    """Once open_runtime has exited, the tasks alive are those alive before it opened."""
    assert outcome.tasks_after == outcome.tasks_before


def check_tools_run_once(outcome: Outcome) -> None:
    """Every committed tool call is answered exactly once, its tool ran exactly once, and the
    file holds what the last write committed."""
    total_results = 0
    for session, seen in outcome.seen.items():
        messages = outcome.mirror[session]
        calls = {c.id: c for m in messages if m.tool_calls for c in m.tool_calls}
        answered = [m.tool_call_id or "" for m in messages if m.role == "tool"]
        assert len(answered) == len(set(answered)), (seen.project, answered)
        assert set(answered) == set(calls), (seen.project, answered, list(calls))
        total_results += len(answered)
        written: dict[str, str] = {}
        for call_id in answered:
            call = calls[call_id]
            assert outcome.tool_runs[(seen.project, call.name, call.arguments)] == 1, call
            arguments = json.loads(call.arguments)
            written[arguments["path"]] = arguments["content"]
        for path, content in written.items():
            assert (outcome.root / "projects" / seen.project / path).read_text() == content
    assert sum(outcome.tool_runs.values()) == total_results


def check_all(outcome: Outcome) -> None:
    check_no_committed_message_lost(outcome)
    check_seq_gapless(outcome)
    check_intensity(outcome)
    check_no_task_left(outcome)
    check_tools_run_once(outcome)


# -- the property ----------------------------------------------------------------------------

TURNS = st.one_of(
    st.builds(Write, st.sampled_from(["a.txt", "b.txt"])),
    st.builds(Plain, st.sampled_from([None, 3, 8, 25])),
)
PLANS = st.builds(
    SessionPlan,
    st.lists(TURNS, min_size=1, max_size=3).map(tuple),
    st.lists(st.none() | st.integers(0, 14), max_size=6).map(tuple),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=st.lists(PLANS, min_size=2, max_size=4), max_restarts=st.integers(1, 3))
def test_random_crash_schedules_keep_every_invariant(
    plans: list[SessionPlan], max_restarts: int
) -> None:
    with tempfile.TemporaryDirectory() as root:
        check_all(run_example(Path(root), plans, max_restarts))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plans=st.lists(PLANS, min_size=2, max_size=4),
    max_restarts=st.integers(1, 3),
    stop_after=st.floats(0.0, 4.0),
)
def test_shutdown_in_the_middle_of_a_crash_schedule_keeps_every_invariant(
    plans: list[SessionPlan], max_restarts: int, stop_after: float
) -> None:
    with tempfile.TemporaryDirectory() as root:
        check_all(run_example(Path(root), plans, max_restarts, stop_after=stop_after))


# -- hand-picked schedules -------------------------------------------------------------------

#: p0 crashes twice mid-text and recovers; p1 crashes in its tool step and in the confirmation;
#: p2 crashes at once, three times in a row, and is given up (max_restarts=2).
HAND_PICKED = (
    SessionPlan(turns=(Plain(None), Plain(8)), crashes=(4, None, 2)),
    SessionPlan(turns=(Write("a.txt"), Plain(3), Write("a.txt")), crashes=(5, None, 1, None, 6)),
    SessionPlan(turns=(Plain(25), Write("b.txt")), crashes=(3, 0, 1, 2)),
)


def hand_picked(tmp_path: Path) -> Outcome:
    return run_example(tmp_path, HAND_PICKED, max_restarts=2)


def test_hand_picked_schedule_loses_no_committed_message(tmp_path: Path) -> None:
    outcome = hand_picked(tmp_path)
    check_no_committed_message_lost(outcome)
    p0 = next(s for s, seen in outcome.seen.items() if seen.project == "p0")
    roles = [(m.role, m.stopped) for m in outcome.mirror[p0]]
    assert roles == [
        ("user", False),
        ("assistant", True),
        ("assistant", False),
        ("user", False),
        ("assistant", True),
        ("assistant", False),
    ]


def test_hand_picked_schedule_has_gapless_seqs(tmp_path: Path) -> None:
    check_seq_gapless(hand_picked(tmp_path))


def test_hand_picked_schedule_gives_up_past_the_intensity(tmp_path: Path) -> None:
    outcome = hand_picked(tmp_path)
    check_intensity(outcome)
    by_project = {seen.project: seen for seen in outcome.seen.values()}
    assert not by_project["p0"].failed and not by_project["p1"].failed
    assert by_project["p2"].failed and outcome.given_up == 1


def test_hand_picked_schedule_leaves_no_task(tmp_path: Path) -> None:
    check_no_task_left(hand_picked(tmp_path))


def test_hand_picked_schedule_runs_each_tool_call_once(tmp_path: Path) -> None:
    outcome = hand_picked(tmp_path)
    check_tools_run_once(outcome)
    assert (tmp_path / "projects" / "p1" / "a.txt").read_text() == "p1 m2"
    assert sum(outcome.tool_runs.values()) == 2


def test_shutdown_during_a_backoff_leaves_no_task_and_loses_no_text(tmp_path: Path) -> None:
    # p0's first stream crashes at 0.15 s (after two tokens); its restart waits a backoff of
    # 0.05 to 0.1 s, and the runtime shuts down at 0.17 s, in the middle of it.
    plans = (
        SessionPlan(turns=(Plain(None),), crashes=(2,)),
        SessionPlan(turns=(Write("a.txt"),), crashes=()),
    )
    outcome = run_example(tmp_path, plans, max_restarts=2, stop_after=0.17)
    check_all(outcome)
    p0 = next(s for s, seen in outcome.seen.items() if seen.project == "p0")
    assert [c.time for c in outcome.crashes[p0]] == [pytest.approx(0.15)]
    # Never restarted, so the partial was not committed: the mirror (and the snapshot written
    # at shutdown) still hold it as streaming text, for the recovery at the next start.
    assert outcome.mirror_status[p0] == "running"
    assert outcome.mirror[p0] == (Message(role="user", content="hello from p0 m0"),)
    assert outcome.mirror_partial[p0] == "Would been "

    # The next start recovers it from disk: the partial is committed, and the turn resumes
    # and completes the reply.
    async def restart() -> tuple[tuple[Message, ...], list[tuple[str, tuple[ToolCall, ...]]]]:
        config = example_config(tmp_path, max_restarts=2)
        async with open_runtime(config) as runtime, runtime.connect() as client:
            client.subscribe(p0)
            await next_event(client, completed(p0))
            messages = (await runtime.get_state(p0)).messages
        return messages, await reference_steps(messages)

    messages, references = trio.run(
        restart,
        clock=trio.testing.MockClock(autojump_threshold=0),
        instruments=[ThreadsHoldTheClock()],
    )
    assert [(m.role, m.stopped) for m in messages] == [
        ("user", False),
        ("assistant", True),
        ("assistant", False),
    ]
    assert messages[1].content == "Would been "
    assert [(messages[1].content or "") + (messages[2].content or "")] == [references[0][0]]


def completed(session: str) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        data = event.data
        return (
            event.session == session
            and isinstance(data, LoadingChanged)
            and (data.reason == "completed")
        )

    return match
