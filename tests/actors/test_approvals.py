"""Tool approvals through the in-process runtime on MockClock: the policy's three decisions,
``approveToolCall``, stops, restarts, notifications and turn slots."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from greenroom.actors.bus import Subscription
from greenroom.actors.session import DENIED_BY_POLICY, STOPPED_WAITING, denied
from greenroom.agent.policy import ToolPolicy
from greenroom.config import Config, Limits
from greenroom.presets import Preset
from greenroom.protocol import commands as cmd
from greenroom.protocol.errors import Conflict, NotFound
from greenroom.protocol.events import (
    ApprovalRequested,
    Event,
    LoadingChanged,
    Notification,
    PendingApproval,
    SessionUpdated,
)
from greenroom.runtime import Client, Runtime
from tests.conftest import make_config, next_event, open_test_runtime, turn_ended


def project_file(runtime: Runtime, project: str, name: str, text: str = "keep me") -> Path:
    path = runtime.config.projects_root / project / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


async def ask_to_delete(runtime: Runtime, client: Client, project: str) -> tuple[str, Path]:
    """Open ``project``, have its model call delete_file on notes.txt, and wait until the
    session asks for approval; the session and the file."""
    session = (await runtime.execute(cmd.OpenSession(project=project))).summary.session
    target = project_file(runtime, project, "notes.txt")
    client.subscribe(session)
    await runtime.execute(cmd.SendMessage(session=session, content="delete file notes.txt"))
    await next_event(client, lambda e: e.session == session and e.name == "approvalRequested")
    return session, target


def pending_call(runtime: Runtime, session: str) -> str:
    approval = runtime.mirror.sessions[session].approval
    assert approval is not None
    return approval.call


async def test_delete_file_asks_first_and_runs_once_allowed(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    async with runtime.connect() as client:
        session = (await runtime.execute(cmd.OpenSession(project="ask"))).summary.session
        target = project_file(runtime, "ask", "notes.txt")
        client.subscribe(session)
        await runtime.execute(cmd.SendMessage(session=session, content="delete file notes.txt"))
        asked = await next_event(client, lambda e: e.name == "approvalRequested")
        assert isinstance(asked.data, ApprovalRequested)
        assert asked.session == session and asked.data.tool == "delete_file"
        assert asked.data.arguments == '{"path": "notes.txt"}'
        # It waits, however long: nothing runs until someone answers.
        await trio.sleep(3600)
        state = await runtime.get_state(session)
        assert target.exists()
        assert state.summary.status == "running" and state.summary.loading
        assert state.summary.approval == PendingApproval(call=asked.data.call, tool="delete_file")
        assert state.messages[-1].tool_calls is not None
        assert state.messages[-1].tool_calls[0].id == asked.data.call

        await runtime.execute(
            cmd.ApproveToolCall(session=session, call=asked.data.call, allow=True)
        )
        assert (await runtime.get_state(session)).summary.approval is None
        ended = await next_event(client, turn_ended(session))
    assert ended.data == LoadingChanged(loading=False, reason="completed")
    assert not target.exists()
    state = await runtime.get_state(session)
    assert [m.role for m in state.messages] == ["user", "assistant", "tool", "assistant"]
    assert state.messages[2].content == "deleted notes.txt"
    assert state.summary.approval is None and state.summary.status == "idle"


async def test_a_denied_call_answers_the_model_with_the_reason(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    async with runtime.connect() as client:
        session, target = await ask_to_delete(runtime, client, "deny")
        call = pending_call(runtime, session)
        await runtime.execute(
            cmd.ApproveToolCall(
                session=session, call=call, allow=False, reason="it is my shopping list"
            )
        )
        ended = await next_event(client, turn_ended(session))
    assert ended.data == LoadingChanged(loading=False, reason="completed")
    assert target.read_text() == "keep me"
    state = await runtime.get_state(session)
    tool = state.messages[2]
    assert tool.role == "tool" and tool.tool_call_id == call
    assert tool.content == denied("it is my shopping list")
    assert tool.content == "error: not run: the user denied this call: it is my shopping list"
    # The model read the refusal and went on: the simulated one reports the failure.
    assert state.messages[3].role == "assistant" and state.summary.status == "idle"


async def test_a_denial_without_a_reason(runtime: Runtime, autojump_clock: trio.abc.Clock) -> None:
    async with runtime.connect() as client:
        session, _ = await ask_to_delete(runtime, client, "plain")
        await runtime.execute(
            cmd.ApproveToolCall(session=session, call=pending_call(runtime, session), allow=False)
        )
        await next_event(client, turn_ended(session))
    assert (await runtime.get_state(session)).messages[2].content == denied(None)


async def test_policy_allow_runs_without_asking(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path, tool_policy=ToolPolicy(rules={"delete_file": "allow"}))
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        session = (await runtime.execute(cmd.OpenSession(project="free"))).summary.session
        target = project_file(runtime, "free", "notes.txt")
        client.subscribe(session)
        await runtime.execute(cmd.SendMessage(session=session, content="delete file notes.txt"))
        seen = []
        while not turn_ended(session)(event := await next_event(client, lambda e: True)):
            seen.append(event.name)
    assert "approvalRequested" not in seen
    assert not target.exists()


@pytest.mark.parametrize("where", ["project", "preset"])
async def test_a_project_file_or_a_preset_cannot_loosen_the_policy(
    tmp_path: Path, where: str, autojump_clock: trio.abc.Clock
) -> None:
    # Both may come from whoever wrote the project folder (a cloned repository): their allow
    # does not lift the default ask of delete_file.
    loose = Preset(name="loose", source="project", tools={"delete_file": "allow", "*": "allow"})
    config = make_config(tmp_path, presets=(loose,))
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        if where == "project":
            allowing = '[tool_policy]\ndelete_file = "allow"\n'
            project_file(runtime, "free", ".ai/tools.toml", allowing)
        opened = await runtime.execute(
            cmd.OpenSession(project="free", preset="loose" if where == "preset" else None)
        )
        session = opened.summary.session
        target = project_file(runtime, "free", "notes.txt")
        client.subscribe(session)
        await runtime.execute(cmd.SendMessage(session=session, content="delete file notes.txt"))
        await next_event(client, lambda e: e.name == "approvalRequested")
        assert target.exists()
        await runtime.execute(cmd.StopGeneration(session=session))


async def test_a_preset_can_tighten_the_policy(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    strict = Preset(name="strict", tools={"delete_*": "deny"})
    config = make_config(tmp_path, presets=(strict,))
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        session = (
            await runtime.execute(cmd.OpenSession(project="p", preset="strict"))
        ).summary.session
        target = project_file(runtime, "p", "notes.txt")
        client.subscribe(session)
        await runtime.execute(cmd.SendMessage(session=session, content="delete file notes.txt"))
        await next_event(client, turn_ended(session))
        state = await runtime.get_state(session)
    assert target.exists()
    assert state.messages[2].content == DENIED_BY_POLICY.format(tool="delete_file")


@pytest.mark.parametrize(
    ("global_rules", "project_toml"),
    [
        ({"delete_file": "deny"}, None),
        ({"*": "deny"}, None),
        ({}, '[tool_policy]\n"delete_*" = "deny"\n'),
        # The project's entry tightens the global one of the same key.
        ({"delete_file": "allow"}, '[tool_policy]\ndelete_file = "deny"\n'),
    ],
)
async def test_policy_deny_refuses_without_asking(
    tmp_path: Path,
    global_rules: dict[str, str],
    project_toml: str | None,
    autojump_clock: trio.abc.Clock,
) -> None:
    config = make_config(tmp_path, tool_policy=ToolPolicy(rules=global_rules))  # type: ignore[arg-type]
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        if project_toml is not None:
            project_file(runtime, "strict", ".ai/tools.toml", project_toml)
        session = (await runtime.execute(cmd.OpenSession(project="strict"))).summary.session
        target = project_file(runtime, "strict", "notes.txt")
        client.subscribe(session)
        await runtime.execute(cmd.SendMessage(session=session, content="delete file notes.txt"))
        names = []
        while not turn_ended(session)(event := await next_event(client, lambda e: True)):
            names.append(event.name)
        state = await runtime.get_state(session)
    assert "approvalRequested" not in names
    assert target.exists()
    assert state.messages[2].content == DENIED_BY_POLICY.format(tool="delete_file")
    assert state.summary.status == "idle"


async def test_an_unusable_project_policy_makes_every_call_ask(
    runtime: Runtime, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    project_file(runtime, "broken", ".ai/tools.toml", '[tool_policy]\nread_file = "maybe"\n')
    project_file(runtime, "broken", "a.txt", "hello")
    async with runtime.connect() as client:
        session = (await runtime.execute(cmd.OpenSession(project="broken"))).summary.session
        client.subscribe(session)
        await runtime.execute(cmd.SendMessage(session=session, content="read file a.txt"))
        asked = await next_event(client, lambda e: e.name == "approvalRequested")
        assert isinstance(asked.data, ApprovalRequested) and asked.data.tool == "read_file"
        await runtime.execute(
            cmd.ApproveToolCall(session=session, call=asked.data.call, allow=True)
        )
        await next_event(client, turn_ended(session))
    assert (await runtime.get_state(session)).messages[2].content == "hello"
    assert "bad decision 'maybe' for 'read_file'" in caplog.text


async def test_stop_cancels_the_pending_approval(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    async with runtime.connect() as client:
        session, target = await ask_to_delete(runtime, client, "halt")
        call = pending_call(runtime, session)
        assert await runtime.execute(cmd.StopGeneration(session=session)) == ()
        ended = await next_event(client, turn_ended(session))
        assert ended.data == LoadingChanged(loading=False, reason="stopped")
        with pytest.raises(Conflict, match="not waiting for an approval"):
            await runtime.execute(cmd.ApproveToolCall(session=session, call=call, allow=True))
        state = await runtime.get_state(session)
        assert target.exists()
        assert state.summary.approval is None and state.summary.status == "idle"
        assert state.messages[-1].role == "tool" and state.messages[-1].content == STOPPED_WAITING
        # The session goes on: the next turn starts from a conversation with every call
        # answered.
        await runtime.execute(cmd.SendMessage(session=session, content="hello"))
        done = await next_event(client, turn_ended(session))
    assert done.data == LoadingChanged(loading=False, reason="completed")


async def test_approvals_that_fit_no_pending_call_are_refused(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    async with runtime.connect() as client:
        idle = (await runtime.execute(cmd.OpenSession(project="idle"))).summary.session
        with pytest.raises(Conflict, match="not waiting"):
            await runtime.execute(cmd.ApproveToolCall(session=idle, call="call_1", allow=True))
        with pytest.raises(NotFound, match="no session"):
            await runtime.execute(cmd.ApproveToolCall(session="s-ffff", call="call_1", allow=True))
        session, target = await ask_to_delete(runtime, client, "wrong")
        call = pending_call(runtime, session)
        with pytest.raises(NotFound, match="no tool call 'call_nope'"):
            await runtime.execute(
                cmd.ApproveToolCall(session=session, call="call_nope", allow=True)
            )
        assert pending_call(runtime, session) == call  # still waiting, nothing lost
        await runtime.execute(cmd.ApproveToolCall(session=session, call=call, allow=True))
        with pytest.raises(Conflict):  # answered once is answered
            await runtime.execute(cmd.ApproveToolCall(session=session, call=call, allow=False))
        await next_event(client, turn_ended(session))
    assert not target.exists()


async def test_a_pending_approval_survives_a_graceful_restart(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Manual resume: a turn that waits for an approval comes back waiting all the same.
    config = make_config(tmp_path, resume="manual")
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        session, target = await ask_to_delete(runtime, client, "durable")
        call = pending_call(runtime, session)
        asked_before = (await runtime.get_state(session)).messages
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        # Restored interrupted, then at once running again (the turn resumes to wait): a
        # look between the two sees "interrupted", already with the approval.
        with trio.fail_after(60):
            while (state := await runtime.get_state(session)).summary.status != "running":
                assert state.summary.status == "interrupted"
                await trio.sleep(0.01)
        assert state.summary.approval == PendingApproval(call=call, tool="delete_file")
        assert state.messages == asked_before  # the model was not asked again
        client.subscribe(session)
        await runtime.execute(cmd.ApproveToolCall(session=session, call=call, allow=True))
        ended = await next_event(client, turn_ended(session))
        state = await runtime.get_state(session)
    assert ended.data == LoadingChanged(loading=False, reason="completed")
    assert not target.exists()
    assert [m.role for m in state.messages] == ["user", "assistant", "tool", "assistant"]


async def test_clients_viewing_other_projects_are_told_and_absent_ones_later(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    async with runtime.connect() as viewer, runtime.connect() as elsewhere:
        await viewer.focus("tell")
        await elsewhere.focus("other")
        session, _ = await ask_to_delete(runtime, viewer, "tell")
        told = await next_event(elsewhere, lambda e: e.name == "notification")
        assert isinstance(told.data, Notification)
        assert told.data.kind == "approval" and told.data.session == session
        assert told.data.title == "tell: a tool call waits for approval"
        assert told.data.body.startswith("delete_file ")
        await runtime.execute(
            cmd.ApproveToolCall(session=session, call=pending_call(runtime, session), allow=True)
        )
        await next_event(viewer, turn_ended(session))
    # Nobody connected: the request is kept for the next client...
    async with runtime.watch("log") as log:  # an observer, not a client
        second = await ask_unwatched(runtime, log, "later")
        async with runtime.connect() as late:
            kept = late.pending_notifications
        assert [(e.data.kind, e.data.session) for e in kept] == [("approval", second)]  # type: ignore[union-attr]
        # ...unless it was answered meanwhile: then it would ask for nothing.
        third = await ask_unwatched(runtime, log, "answered")
        await runtime.execute(
            cmd.ApproveToolCall(session=third, call=pending_call(runtime, third), allow=False)
        )
        await next_event_of(log, turn_ended(third))
    async with runtime.connect() as later:
        kept = later.pending_notifications
    # The turn's end, with nobody connected, is kept: that toast still says something.
    assert [(e.data.kind, e.data.session) for e in kept] == [("completed", third)]  # type: ignore[union-attr]


async def next_event_of(log: Subscription, match: Callable[[Event], bool]) -> Event:
    with trio.fail_after(60):
        while not match(event := await log.receive()):
            pass
    return event


async def ask_unwatched(runtime: Runtime, log: Subscription, project: str) -> str:
    """ask_to_delete with no client connected (an observer's lifecycle events instead)."""
    session = (await runtime.execute(cmd.OpenSession(project=project))).summary.session
    project_file(runtime, project, "notes.txt")
    await runtime.execute(cmd.SendMessage(session=session, content="delete file notes.txt"))
    await next_event_of(
        log,
        lambda e: (
            e.session == session
            and isinstance(e.data, SessionUpdated)
            and e.data.summary.approval is not None
        ),
    )
    return session


async def test_a_turn_waiting_for_approval_gives_its_slot_back(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config: Config = make_config(tmp_path, limits=Limits(max_concurrent_turns=1))
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        waiting, target = await ask_to_delete(runtime, client, "waits")
        other = (await runtime.execute(cmd.OpenSession(project="goes"))).summary.session
        client.subscribe(other)
        await runtime.execute(cmd.SendMessage(session=other, content="hello"))
        done = await next_event(client, turn_ended(other))
        assert done.data == LoadingChanged(loading=False, reason="completed")
        await runtime.execute(
            cmd.ApproveToolCall(session=waiting, call=pending_call(runtime, waiting), allow=True)
        )
        await next_event(client, turn_ended(waiting))
    assert not target.exists()


async def test_a_stop_while_the_allowed_call_waits_for_a_slot_still_answers_it(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config: Config = make_config(tmp_path, limits=Limits(max_concurrent_turns=1))
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        waiting, target = await ask_to_delete(runtime, client, "waits")
        busy = (await runtime.execute(cmd.OpenSession(project="busy"))).summary.session
        client.subscribe(busy)
        await runtime.execute(cmd.SendMessage(session=busy, content="[[tokens:400]] long"))
        await next_event(client, lambda e: e.session == busy and e.name == "streamingUpdate")
        await runtime.execute(
            cmd.ApproveToolCall(session=waiting, call=pending_call(runtime, waiting), allow=True)
        )
        await next_event(
            client,
            lambda e: (
                e.session == waiting
                and isinstance(e.data, SessionUpdated)
                and e.data.summary.waiting
            ),
        )
        await runtime.execute(cmd.StopGeneration(session=waiting))
        ended = await next_event(client, turn_ended(waiting))
        state = await runtime.get_state(waiting)
        await runtime.execute(cmd.StopGeneration(session=busy))
    assert ended.data == LoadingChanged(loading=False, reason="stopped")
    assert target.exists()
    assert state.messages[-1].role == "tool" and state.messages[-1].content == STOPPED_WAITING
