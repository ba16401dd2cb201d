"""Persistence: throttled snapshots, history files, restore, resume, unloading, disk faults."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from greenroom.actors.mailbox import Mailbox
from greenroom.actors.persistence import (
    COOL_FLUSHES,
    OWN_FILE_EVERY,
    OWN_FILES_PER_FLUSH,
    Mirror,
)
from greenroom.config import Config, SimulatedConfig
from greenroom.protocol import commands as cmd
from greenroom.protocol.convert import unstructure
from greenroom.protocol.errors import Conflict, DiskError
from greenroom.protocol.events import Event, LoadingChanged, Summary
from greenroom.protocol.state import SessionState, Streaming
from greenroom.runtime import Runtime, restore_mirror
from greenroom.store.history import history_path, read_history
from greenroom.store.snapshots import (
    Dormant,
    SnapshotStore,
    dormant_from_payload,
    encode_partial,
    join_partials,
    snapshot_payload,
)
from tests.actors.test_state import SUMMARY
from tests.conftest import make_config, next_event, open_test_runtime, turn_ended


def history_of(runtime: Runtime, project: str, name: str) -> Path:
    return history_path(runtime.config.projects_root / project, name)


async def run_turn(runtime: Runtime, session: str, text: str) -> LoadingChanged:
    async with runtime.connect() as client:
        await runtime.execute(cmd.SendMessage(session=session, content=text))
        ended = await next_event(client, turn_ended(session), limit=600)
    assert isinstance(ended.data, LoadingChanged)
    return ended.data


@pytest.mark.parametrize("rate", [20.0, 400.0])
async def test_writes_per_session_follow_the_interval_not_the_event_rate(
    tmp_path: Path, autojump_clock: trio.abc.Clock, rate: float
) -> None:
    config = make_config(
        tmp_path, flush_interval=1.0, simulated=SimulatedConfig(seed=1, tokens_per_second=rate)
    )
    seconds = 30
    tokens = int(rate * seconds)
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="long"))).summary.session
        await trio.sleep(1.5)  # let the creation be written
        before = runtime.statistics().persistence
        started = trio.current_time()
        await run_turn(runtime, session, f"talk [[tokens:{tokens}]]")
        took = trio.current_time() - started
        await trio.sleep(1.5)
        after = runtime.statistics().persistence
    own = after.snapshot_writes - before.snapshot_writes
    partial = after.partial_snapshots - before.partial_snapshots
    assert took == pytest.approx(seconds, abs=0.5)
    # One write per interval while streaming (plus the last one), whatever the token rate.
    assert seconds - 1 <= own + partial <= seconds + 2
    # The streamed text went to the one partials file; the session's own file was written
    # when the turn started and when it ended.
    assert own <= 3
    assert after.partials_writes - before.partials_writes >= seconds - 3


async def test_sessions_that_change_are_written_in_one_file_until_they_rest(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Every session that changed goes to the one partials file: fifty sessions made, or
    starting their turns, in one interval cost one file. A session gets its own file once it
    has rested for COOL_FLUSHES flush intervals with no turn running, and then leaves the partials
    file."""
    config = make_config(tmp_path, flush_interval=1.0)
    store = SnapshotStore(config.data_dir)
    rest = COOL_FLUSHES + 1.5  # flush intervals

    def partials() -> dict[str, Any]:
        loaded, bad = store.load_partials()
        assert bad is None
        return loaded

    def own(session: str) -> Summary | None:
        payload = store.load(session)
        return None if payload is None else dormant_from_payload(session, payload).summary

    async with open_test_runtime(config) as runtime:
        sessions = [
            (await runtime.execute(cmd.OpenSession(project=f"p{n}"))).summary.session
            for n in range(50)
        ]
        await trio.sleep(1.5)
        assert set(partials()) == set(sessions)
        assert runtime.statistics().persistence.snapshot_writes == 0
        await trio.sleep(rest)
        assert not set(partials()) & set(sessions)
        assert all(own(s) is not None for s in sessions)
        before = runtime.statistics().persistence
        for session in sessions:
            await runtime.execute(cmd.SendMessage(session=session, content="[[stall]] wait"))
        await trio.sleep(rest)  # however long a turn runs, it is written in the one file
        during = runtime.statistics().persistence
        assert during.snapshot_writes == before.snapshot_writes
        running = partials()
        for session in sessions:
            restored = dormant_from_payload(session, running[session])
            assert restored.summary.status == "running" and restored.summary.message_count == 1
            summary = own(session)
            assert summary is not None and summary.status == "idle"
        for session in sessions:
            await runtime.execute(cmd.StopGeneration(session=session))
        await trio.sleep(1.5)
        assert set(partials()) == set(sessions)
        await trio.sleep(rest)
        after = runtime.statistics().persistence
        assert after.snapshot_writes - during.snapshot_writes == len(sessions)
        assert not set(partials()) & set(sessions)
        for session in sessions:
            summary = own(session)
            assert summary is not None and summary.status == "idle"
            assert summary.message_count >= 1


async def test_a_stopping_runtime_writes_every_resting_session_to_its_own_file(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """More sessions than one flush writes to their own files (OWN_FILES_PER_FLUSH), made
    just before the runtime stops: its last flush writes them all, and the partials file is
    left without them."""
    config = make_config(tmp_path, flush_interval=1.0)
    count = OWN_FILES_PER_FLUSH + 20
    async with open_test_runtime(config) as runtime:
        sessions = [
            (await runtime.execute(cmd.OpenSession(project=f"p{n}"))).summary.session
            for n in range(count)
        ]
        await trio.sleep(1.5)  # written, to the partials file
    store = SnapshotStore(config.data_dir)
    assert all(store.load(session) is not None for session in sessions)
    partials, bad = store.load_partials()
    assert bad is None and not set(partials) & set(sessions)


async def test_a_session_that_keeps_changing_gets_its_own_file_now_and_then(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A session streaming for longer than OWN_FILE_EVERY flush intervals is written to its
    own file within that time too, so that losing the partials file would cost little."""
    config = make_config(
        tmp_path, flush_interval=1.0, simulated=SimulatedConfig(seed=1, tokens_per_second=20)
    )
    store = SnapshotStore(config.data_dir)
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="long"))).summary.session
        await trio.sleep(2 + COOL_FLUSHES)
        first = store.load(session)
        assert first is not None
        tokens = 20 * (OWN_FILE_EVERY + 30)
        await runtime.execute(cmd.SendMessage(session=session, content=f"[[tokens:{tokens}]]"))
        await trio.sleep(OWN_FILE_EVERY + 5)
        state = await runtime.get_state(session)
        assert state.summary.loading  # still streaming
        own = store.load(session)
        assert own is not None and own["seq"] > first["seq"] + 20 * (OWN_FILE_EVERY // 2)
        await runtime.execute(cmd.StopGeneration(session=session))


async def test_history_is_appended_never_rewritten_and_round_trips(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    view = await runtime.execute(cmd.OpenSession(project="hist"))
    session, name = view.summary.session, view.summary.name
    await run_turn(runtime, session, "create file a.txt with alpha")
    await trio.sleep(2)
    path = history_of(runtime, "hist", name)
    first = path.read_bytes()
    await run_turn(runtime, session, "second question")
    await trio.sleep(2)
    second = path.read_bytes()
    assert second.startswith(first) and len(second) > len(first)
    state = await runtime.get_state(session)
    assert read_history(path) == list(state.messages)
    lines = second.decode().splitlines()
    assert len(lines) == len(state.messages) == 6
    assert json.loads(lines[1])["tool_calls"][0]["function"]["name"] == "write_file"


async def test_a_restart_lists_sessions_at_once_and_loads_messages_on_demand(
    config: Config, autojump_clock: trio.abc.Clock
) -> None:
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="keep"))).summary.session
        await run_turn(runtime, session, "remember this")
        before = await runtime.get_state(session)
    async with open_test_runtime(config) as runtime:
        summaries = await runtime.execute(cmd.ListSessions())
        assert [s.session for s in summaries] == [session]
        assert summaries[0].message_count == 2 and summaries[0].status == "idle"
        assert runtime.statistics().sessions_in_memory == 0  # nothing loaded yet
        after = await runtime.get_state(session)
        assert runtime.statistics().sessions_in_memory == 1
    assert after.messages == before.messages
    assert after.seq == before.seq


async def test_a_turn_cut_by_shutdown_resumes_after_restart_under_policy_auto(
    config: Config, autojump_clock: trio.abc.Clock
) -> None:
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="cut"))).summary.session
        await runtime.execute(
            cmd.SendMessage(session=session, content="[[tokens:200]] long answer")
        )
        await trio.sleep(3)
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        ended = await next_event(client, turn_ended(session))
        assert isinstance(ended.data, LoadingChanged) and ended.data.reason == "completed"
        state = await runtime.get_state(session)
    partial, rest = state.messages[1], state.messages[2]
    assert partial.stopped and not rest.stopped
    assert len(((partial.content or "") + (rest.content or "")).split()) == 200


async def test_under_policy_manual_an_interrupted_session_waits_for_resume(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path, resume="manual")
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="wait"))).summary.session
        await runtime.execute(
            cmd.SendMessage(session=session, content="[[tokens:200]] long answer")
        )
        await trio.sleep(3)
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        await trio.sleep(30)
        state = await runtime.get_state(session)
        assert state.summary.status == "interrupted" and state.messages[-1].stopped
        await runtime.execute(cmd.ResumeSession(session=session))
        ended = await next_event(client, turn_ended(session))
    assert isinstance(ended.data, LoadingChanged) and ended.data.reason == "completed"


async def test_a_corrupt_snapshot_is_moved_aside_and_the_server_starts(
    config: Config, autojump_clock: trio.abc.Clock
) -> None:
    async with open_test_runtime(config) as runtime:
        good = (await runtime.execute(cmd.OpenSession(project="good"))).summary.session
    folder = config.data_dir / "sessions"
    (folder / "s-0badc0de.msgpack").write_bytes(b"\x00garbage")
    async with open_test_runtime(config) as runtime:
        assert [s.session for s in await runtime.execute(cmd.ListSessions())] == [good]
        quarantined = runtime.statistics().persistence.quarantined
    assert [q.name for q in quarantined] == ["s-0badc0de.msgpack"]
    assert not (folder / "s-0badc0de.msgpack").exists()
    assert len(list((folder / "corrupt").iterdir())) == 1


async def test_a_project_folder_with_history_opens_with_it(
    config: Config, autojump_clock: trio.abc.Clock
) -> None:
    history = config.projects_root / "copied" / ".ai" / "history"
    history.mkdir(parents=True)
    older = history / "2020-01-01T00-00-00Z-aaa.jsonl"
    older.write_text('{"role":"user","content":"old chat"}\n')
    newest = history / "2024-05-01T10-00-00Z-b7x.jsonl"
    newest.write_text(
        '{"role":"user","content":"build a blog"}\n'
        '{"role":"assistant","content":"Sure, here is a plan."}\n'
    )
    async with open_test_runtime(config) as runtime:
        view = await runtime.execute(cmd.OpenSession(project="copied"))
        assert view.summary.name == newest.stem
        assert [m.content for m in view.messages] == ["build a blog", "Sure, here is a plan."]
        await run_turn(runtime, view.summary.session, "go on")
        await trio.sleep(2)
        assert len(read_history(newest)) == 4  # appended to the same file
        await runtime.execute(cmd.NewChat(session=view.summary.session))
        fresh = await runtime.get_state(view.summary.session)
        await run_turn(runtime, view.summary.session, "new topic")
        await trio.sleep(2)
    assert fresh.summary.name != newest.stem
    assert len(read_history(history / f"{fresh.summary.name}.jsonl")) == 2
    assert len(read_history(newest)) == 4  # the old chat's file is kept as it was


async def test_an_idle_session_is_unloaded_and_reloaded_transparently(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path, idle_unload_after=60.0)
    async with open_test_runtime(config) as runtime:
        idle = (await runtime.execute(cmd.OpenSession(project="idle"))).summary.session
        watched = (await runtime.execute(cmd.OpenSession(project="watched"))).summary.session
        await run_turn(runtime, idle, "hello")
        async with runtime.connect() as client:
            client.subscribe(watched)
            await run_turn(runtime, watched, "hello")
            await trio.sleep(200)
            stats = runtime.statistics()
            assert stats.sessions_in_memory == 1  # the subscribed one stays
            assert set(runtime.mirror.dormant) == {idle}
        state = await runtime.get_state(idle)
        assert [m.role for m in state.messages] == ["user", "assistant"]
        await run_turn(runtime, idle, "again")
        assert (await runtime.get_state(idle)).summary.message_count == 4


async def test_a_command_that_comes_while_an_idle_session_is_unloaded_starts_it_again(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle sweep has asked the session's actor to stop, and the actor is on its way out,
    when a ``sendMessage`` comes: the command goes to the manager, which starts the session
    again once the sweep is done, not to the leaving actor (which would fail it)."""
    config = make_config(tmp_path, idle_unload_after=60.0)
    request_stop, armed, replies = Mailbox.request_stop, [True], list[bool]()
    async with open_test_runtime(config) as runtime, trio.open_nursery() as nursery:

        def stop_then_a_command(self: Mailbox[Any]) -> None:
            request_stop(self)
            if self.name == f"session {session}" and armed:
                armed.clear()

                async def send() -> None:
                    command = cmd.SendMessage(session=session, content="again")
                    replies.append(await runtime.execute(command))

                nursery.start_soon(send)

        # Before the session starts: its actor's stop is bound when it is started.
        monkeypatch.setattr(Mailbox, "request_stop", stop_then_a_command)
        session = (await runtime.execute(cmd.OpenSession(project="idle"))).summary.session
        await run_turn(runtime, session, "hello")
        await trio.sleep(200)  # the sweep unloads the session, and the command comes
        assert not armed and replies == [False]
        assert (await runtime.get_state(session)).summary.message_count == 4


async def test_an_idle_session_whose_history_cannot_be_written_stays_in_memory(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The idle sweep stops a session whose last messages are not written yet (the disk
    refuses them): it stays in memory, whole, rather than dormant on a history that lacks
    them; once the disk takes them, they are written."""
    config = make_config(tmp_path, idle_unload_after=60.0)
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="idle"))).summary.session
        await run_turn(runtime, session, "hello")
        await trio.sleep(5)  # written
        state = await runtime.get_state(session)
        path = history_path(config.projects_root / "idle", state.summary.name)
        folder = path.parent
        moved = folder.with_name(".ai-away")
        folder.rename(moved)
        folder.write_text("not a folder")  # every history append now fails for real
        await run_turn(runtime, session, "again")
        await trio.sleep(200)  # the sweep stops the session; its writes keep failing
        assert runtime.statistics().persistence.write_failures >= 1
        assert (await runtime.get_state(session)).summary.message_count == 4
        assert len((await runtime.get_state(session)).messages) == 4
        folder.unlink()
        moved.rename(folder)
        await trio.sleep(5)
    assert len(read_history(path)) == 4


async def test_a_project_name_taken_by_a_file_or_an_unreadable_history_fails_the_command_only(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A file where a project's folder should be, and a folder where a dormant session's
    history should be: the commands that need them fail with a clear error, as often as
    they are tried, and the manager and the persistence actor (and every other session)
    go on."""
    config = make_config(tmp_path, idle_unload_after=60.0)
    async with open_test_runtime(config) as runtime:
        config.projects_root.mkdir(parents=True, exist_ok=True)
        (config.projects_root / "notes.txt").write_text("a stray file")
        for _ in range(6):  # more than the supervisor's restart intensity
            with pytest.raises(Conflict, match=r"notes\.txt exists and is not a folder"):
                await runtime.execute(cmd.OpenSession(project="notes.txt"))
        session = (await runtime.execute(cmd.OpenSession(project="kept"))).summary.session
        await run_turn(runtime, session, "hello")
        await trio.sleep(200)  # unloaded: dormant
        assert session in runtime.mirror.dormant
        name = runtime.mirror.dormant[session].summary.name
        path = history_path(config.projects_root / "kept", name)
        path.unlink()
        path.mkdir()  # the history is a folder now
        for _ in range(6):
            unreadable = re.escape(f"cannot use {name}.jsonl: Is a directory")
            with pytest.raises(DiskError, match=unreadable):
                await runtime.get_state(session)
        path.rmdir()
        other = (await runtime.execute(cmd.OpenSession(project="other"))).summary.session
        await run_turn(runtime, other, "still here")
        assert (await runtime.get_state(other)).summary.message_count == 2


async def test_a_failing_disk_is_reported_and_retried_with_nothing_lost(
    config: Config, autojump_clock: trio.abc.Clock
) -> None:
    async with open_test_runtime(config) as runtime:
        session = (await runtime.execute(cmd.OpenSession(project="disk"))).summary.session
        await trio.sleep(2)
        folder = config.data_dir / "sessions"
        moved = folder.with_name("sessions-away")
        folder.rename(moved)
        folder.write_text("not a folder")  # every snapshot write now fails for real
        await run_turn(runtime, session, "hello")
        await trio.sleep(3)
        stats = runtime.statistics().persistence
        assert stats.write_failures >= 1 and stats.last_failure
        assert (await runtime.get_state(session)).summary.message_count == 2
        folder.unlink()
        moved.rename(folder)
        await trio.sleep(3)
    async with open_test_runtime(config) as runtime:
        summary = (await runtime.execute(cmd.ListSessions()))[0]
        assert summary.message_count == 2
        assert [m.role for m in (await runtime.get_state(session)).messages] == [
            "user",
            "assistant",
        ]


async def test_after_a_restart_a_subscriber_behind_resumes_and_one_ahead_reloads(
    config: Config, autojump_clock: trio.abc.Clock
) -> None:
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        session = (await runtime.execute(cmd.OpenSession(project="seq"))).summary.session
        client.subscribe(session)
        await run_turn(runtime, session, "hello")
        seq = (await runtime.get_state(session)).seq
        seen = [e for e in client.events.take() if e.session == session and e.seq is not None]
    async with open_test_runtime(config) as runtime, runtime.connect() as client:
        assert client.subscribe(session, since=seq).replay == ()
        # Retained again from the journal: the very events (merged runs aside) it missed.
        replay = client.subscribe(session, since=seq - 3).replay
        assert replay is not None and replay[-1].seq == seq
        assert [e for e in replay if e.seq is not None and e.seq > seq - 3] == [
            e for e in seen if e.seq is not None and e.seq > seq - 3
        ][-len(replay) :]
        assert client.subscribe(session, since=seq + 5).replay is None  # client ahead
        await run_turn(runtime, session, "more")
        again = client.subscribe(session, since=seq)
        assert again.replay is not None and again.replay[0].seq == seq + 1
        assert again.replay[-1].seq == again.seq


async def test_reopening_a_deleted_sessions_project_counts_its_whole_history(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path, flush_interval=10.0)
    async with open_test_runtime(config) as runtime:
        old = (await runtime.execute(cmd.OpenSession(project="again"))).summary.session
        await run_turn(runtime, old, "first")
        await trio.sleep(15)  # written
        await run_turn(runtime, old, "second")  # still waiting for the next flush
        await runtime.execute(cmd.DeleteSession(session=old))
        reopened = await runtime.execute(cmd.OpenSession(project="again"))
        new = reopened.summary.session
        await run_turn(runtime, new, "third")
        before = await runtime.get_state(new)
    async with open_test_runtime(config) as runtime:
        after = await runtime.get_state(new)
    users = [m.content for m in before.messages if m.role == "user"]
    assert users == ["first", "second", "third"]
    assert after.messages == before.messages


async def test_opening_a_project_flushes_only_for_its_own_pending_history(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path, flush_interval=10.0)
    async with open_test_runtime(config) as runtime:
        busy = (await runtime.execute(cmd.OpenSession(project="busy"))).summary.session
        await trio.sleep(15)  # written
        await run_turn(runtime, busy, "waits for the next flush")
        flushes = runtime.statistics().persistence.flushes
        # Another project's history has nothing waiting: no flush of everything for it.
        await runtime.execute(cmd.OpenSession(project="other"))
        assert runtime.statistics().persistence.flushes == flushes
        # Deleting the busy project writes its lines first (they would make its folder again).
        await runtime.execute(cmd.DeleteProject(project="busy"))
        assert runtime.statistics().persistence.flushes == flushes + 1
        assert not (config.projects_root / "busy").exists()


async def streamed_and_killed(config: Config) -> tuple[str, str]:
    """A session that streamed for a few flush intervals, then a runtime gone without its
    final flush (as after kill -9), and without its journal, so that what is restored comes
    from the snapshots alone: (its id, the streamed text the partials file holds)."""
    data = config.data_dir / "sessions"
    with trio.CancelScope() as kill:
        async with open_test_runtime(config) as runtime:
            session = (await runtime.execute(cmd.OpenSession(project="cut"))).summary.session
            await trio.sleep(1.5 + COOL_FLUSHES)  # the creation in its own file
            await runtime.execute(cmd.SendMessage(session=session, content="talk [[tokens:400]]"))
            await trio.sleep(5.2)  # about 100 tokens, 5 flushes of the partials file
            saved = {p.name: p.read_bytes() for p in data.glob("*.msgpack")}
            kill.cancel()  # what was on disk then is what a kill would have left
    for path in data.glob("*.msgpack"):
        path.unlink()
    for name, content in saved.items():
        (data / name).write_bytes(content)
    shutil.rmtree(config.data_dir / "journal")
    partials, _ = SnapshotStore(config.data_dir).load_partials()
    return session, partials[session]["partial"]


async def test_streamed_text_is_restored_from_the_partials_file(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path, flush_interval=1.0, resume="manual")
    session, streamed = await streamed_and_killed(config)
    assert len(streamed.split()) >= 60
    store = SnapshotStore(config.data_dir)
    own = store.load(session)
    # The own file was last written before the turn began; the partials file has what
    # followed.
    assert own is not None and len(own["partial"] or "") < len(streamed) / 2
    assert streamed.startswith(own["partial"] or "")
    assert store.load_partials()[0][session]["seq"] > own["seq"]
    mirror, quarantined = await restore_mirror(config)
    assert not quarantined
    assert mirror.dormant[session].partial == streamed
    async with open_test_runtime(config) as runtime:
        state = await runtime.get_state(session)
        kept = state.streaming.text if state.streaming else state.messages[-1].content
        assert kept == streamed
    # The session's own file caught up (the last flush, as the runtime stopped, writes every
    # resting session to its own file), and the partials file let go of it.
    own_after = store.load(session)
    assert own_after is not None and own_after["seq"] > own["seq"]
    assert store.load_partials()[0] == {}


async def test_a_corrupt_partials_file_is_moved_aside_and_the_own_files_serve(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path, flush_interval=1.0)
    session, streamed = await streamed_and_killed(config)
    store = SnapshotStore(config.data_dir)
    own = store.load(session)
    assert own is not None
    store.partials_path.write_bytes(b"\x93not a snapshot")
    mirror, quarantined = await restore_mirror(config)
    assert [q.name for q in quarantined] == ["streaming.msgpack"]
    assert quarantined[0].moved_to is not None and quarantined[0].moved_to.exists()
    assert mirror.dormant[session].partial == own["partial"] != streamed  # the own file's
    assert not store.partials_path.exists()


@pytest.mark.parametrize("project", ["../escaped", "a/b", ".."])
async def test_a_snapshot_naming_a_project_outside_the_projects_folder_is_moved_aside(
    tmp_path: Path, project: str
) -> None:
    """A snapshot (damaged, or written by hand) whose project is no project name would have
    the session's history read and cut, and its tools work, outside the projects folder: it
    is set aside at restore, as any malformed snapshot is."""
    config = make_config(tmp_path)
    store = SnapshotStore(config.data_dir)
    good = Dormant(summary=SUMMARY, seq=3)
    bad = Dormant(summary=attrs.evolve(SUMMARY, session="s-2", project=project), seq=3)
    store.write({d.summary.session: snapshot_payload(d) for d in (good, bad)})
    mirror, quarantined = await restore_mirror(config)
    assert set(mirror.dormant) == {"s-1"}
    assert [q.name for q in quarantined] == ["s-2.msgpack"]
    assert "invalid project name" in quarantined[0].reason


async def test_an_unusable_entry_of_the_partials_file_is_kept_aside(tmp_path: Path) -> None:
    """The partials file is written again from what could be used; the file as it was, the
    unusable entry in it, is moved aside first rather than lost."""
    config = make_config(tmp_path)
    store = SnapshotStore(config.data_dir)
    good = Dormant(summary=SUMMARY, seq=3, partial="kept")
    bad = Dormant(summary=attrs.evolve(SUMMARY, session="s-2", project="../x"), seq=3)
    store.write({"s-1": snapshot_payload(attrs.evolve(good, partial=None, seq=2))})
    original = join_partials(
        {d.summary.session: encode_partial(d.summary.session, snapshot_payload(d))
         for d in (good, bad)}
    )  # fmt: skip
    store.partials_path.parent.mkdir(parents=True, exist_ok=True)
    store.partials_path.write_bytes(original)
    mirror, quarantined = await restore_mirror(config)
    assert mirror.dormant["s-1"].partial == "kept" and "s-2" not in mirror.dormant
    assert [q.name for q in quarantined] == ["streaming.msgpack"]
    assert "s-2" in quarantined[0].reason and "invalid project name" in quarantined[0].reason
    assert quarantined[0].moved_to is not None
    assert quarantined[0].moved_to.read_bytes() == original


async def test_a_stale_partial_never_brings_a_deleted_session_back(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    config = make_config(tmp_path, flush_interval=1.0, resume="manual")
    session, _ = await streamed_and_killed(config)
    async with open_test_runtime(config) as runtime:
        await runtime.execute(cmd.DeleteSession(session=session))
    mirror, _ = await restore_mirror(config)
    assert session not in mirror.dormant and session not in mirror.sessions
    assert SnapshotStore(config.data_dir).load_partials()[0] == {}


def test_a_snapshot_payload_is_the_summary_without_its_preview_and_the_partial() -> None:
    summary = Summary(
        session="s-1", project="p", name="n", status="running", loading=True,
        message_count=3, last_activity=1.5, preview="Hello", queued=("next",),
        error=None, waiting=False, model="m",
    )  # fmt: skip
    state = SessionState.from_summary(summary)
    state.streaming = Streaming.of("Hello", None)
    payload = snapshot_payload(state)
    assert payload == {
        "summary": unstructure(attrs.evolve(state.summary(), preview=None)),
        "seq": state.seq,
        "partial": "Hello",
        "toolCalls": None,
    }
    restored = dormant_from_payload("s-1", payload)
    assert restored.summary == state.summary() and restored.partial == "Hello"


def test_journaled_events_after_a_gap_are_not_applied_over_an_older_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Recovery applies a session's journaled events only while they follow its state with no
    gap: past a gap (its newer snapshot lost, the journal trimmed past it) the session stays
    as it stands, and the gap is logged."""
    summary = SUMMARY  # s-1 in project p, idle, no message

    def loading(seq: int, on: bool) -> Event:
        return Event(session="s-1", project="p", seq=seq, data=LoadingChanged(loading=on))

    mirror = Mirror()
    mirror.restore("s-1", Dormant(summary=summary, seq=5))
    with caplog.at_level(logging.ERROR, logger="greenroom"):
        assert mirror.recover([loading(8, True), loading(9, False)], tmp_path) == 0
    assert mirror.dormant["s-1"].seq == 5 and "s-1" not in mirror.sessions
    assert any("seq 8" in record.getMessage() for record in caplog.records)

    contiguous = Mirror()
    contiguous.restore("s-1", Dormant(summary=summary, seq=5))
    events = [loading(6, True), loading(7, False), loading(9, True)]
    assert contiguous.recover(events, tmp_path) == 2
    assert contiguous.sessions["s-1"].seq == 7  # the third follows a gap: not applied
