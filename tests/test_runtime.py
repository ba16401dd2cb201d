"""Executing commands: every operation has one place that executes it and one that writes its
reply, and ``Runtime.execute`` is typed by the command it is given."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio
from mypy import api as mypy_api

from greenroom.protocol import commands as cmd
from greenroom.protocol.codec import RESULTS, result_to_wire
from greenroom.protocol.commands import COMMANDS
from greenroom.protocol.errors import InvalidArgument, NotFound
from greenroom.protocol.events import LIFECYCLE_EVENTS, LoadingChanged
from greenroom.runtime import ROUTES, Runtime
from greenroom.transport.connection import CONNECTION_COMMANDS

ROOT = Path(__file__).resolve().parent.parent
ALL = set(COMMANDS.values())


def test_every_command_is_executed_in_exactly_one_place() -> None:
    # A new op added to commands.py without a route fails here.
    runtime_side, connection_side = set(ROUTES), set(CONNECTION_COMMANDS)
    assert not runtime_side & connection_side
    assert runtime_side | connection_side == ALL


def test_every_command_has_a_wire_result() -> None:
    assert set(RESULTS) == ALL


def test_idempotent_commands_are_those_the_protocol_lists() -> None:
    # docs/protocol.md's Python client section names what is sent again after a lost
    # connection; the classes say the same.
    doc = (ROOT / "docs" / "protocol.md").read_text()
    paragraph = doc[doc.index("- **Calls during a disconnect**") :]
    paragraph = paragraph[: paragraph.index("\n- **")]
    named = set(re.findall(r"`([a-z][A-Za-z]+)`", paragraph)) & set(COMMANDS)
    assert named == {cls.op for cls in ALL if cls.idempotent}
    assert not cmd.SendMessage.idempotent and cmd.OpenSession.idempotent


async def test_a_connections_command_is_refused_with_a_clear_error(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(10):
        for command in (cmd.Subscribe(session="s"), cmd.FocusProject(), cmd.Stats()):
            with pytest.raises(InvalidArgument, match=f"{command.op} belongs to a connection"):
                await runtime.execute(command)


async def test_execute_returns_what_the_reply_is_written_from(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(60):
        created = await runtime.execute(cmd.CreateProject(project="site"))
        assert result_to_wire(cmd.CreateProject(project="site"), created) == {"project": "site"}
        opening = cmd.OpenSession(project="site")
        opened = await runtime.execute(opening)
        session = opened.summary.session
        reply = result_to_wire(opening, opened)
        assert reply["session"]["session"] == session
        assert reply["mcp"]["state"] == opened.mcp.state == "none"  # no .mcp.json
        # The in-process result is the session's state, as get_state shows it.
        state = await runtime.get_state(session)
        assert (opened.summary, opened.messages, opened.seq) == (
            state.summary,
            state.messages,
            state.seq,
        )
        sending = cmd.SendMessage(session=session, content="[[stall]] hi")
        assert await runtime.execute(sending) is False
        queued = cmd.SendMessage(session=session, content="then")
        assert result_to_wire(queued, await runtime.execute(queued)) == {"queued": True}
        stopped = await runtime.execute(cmd.StopGeneration(session=session))
        assert stopped == ("then",)
        projects = await runtime.execute(cmd.ListProjects())
        assert [(p.project, p.session) for p in projects] == [("site", session)]
        assert await runtime.execute(cmd.Ping()) is None
        await runtime.execute(cmd.DeleteSession(session=session))
        with pytest.raises(NotFound):
            await runtime.execute(cmd.SendMessage(session=session, content="gone"))


def test_execute_is_typed_by_its_command(tmp_path: Path) -> None:
    # Were execute's result Any, assert_type would fail: mypy sees what each command returns.
    snippet = tmp_path / "typed.py"
    snippet.write_text(
        "from typing import assert_type\n"
        "from greenroom.protocol import commands as cmd\n"
        "from greenroom.protocol.events import Summary\n"
        "from greenroom.protocol.results import OpenedSession, ProjectInfo\n"
        "from greenroom.runtime import Runtime\n"
        "\n"
        "async def use(runtime: Runtime) -> None:\n"
        "    sent = await runtime.execute(cmd.SendMessage(session='s', content='hi'))\n"
        "    assert_type(sent, bool)\n"
        "    assert_type(await runtime.execute(cmd.OpenSession(project='p')), OpenedSession)\n"
        "    stopped = await runtime.execute(cmd.StopGeneration(session='s'))\n"
        "    assert_type(stopped, tuple[str, ...])\n"
        "    listed = await runtime.execute(cmd.ListSessions())\n"
        "    assert_type(listed, tuple[Summary, ...])\n"
        "    assert_type(await runtime.execute(cmd.CreateProject(project='p')), ProjectInfo)\n"
    )
    out, err, status = mypy_api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), str(snippet)]
    )
    assert status == 0, out + err


async def test_a_watch_gets_the_lifecycle_events_and_nothing_else(
    runtime: Runtime, autojump_clock: trio.abc.Clock
) -> None:
    """The serve command's log watches the runtime: every lifecycle event of every session,
    and none of the others (a turn's tokens, its messages)."""
    with trio.fail_after(60):
        async with runtime.watch("log") as log, runtime.connect() as client:
            opened = await runtime.execute(cmd.OpenSession(project="site"))
            session = opened.summary.session
            client.subscribe(session)
            await runtime.execute(cmd.SendMessage(session=session, content="hi"))
            everything: list[str] = []
            ended = False  # the turn's end, then the summary that says so: its last event
            while not (ended and everything[-1] == "sessionUpdated"):
                event = await client.events.receive()
                everything.append(event.data.name)
                ended = ended or (isinstance(event.data, LoadingChanged) and not event.data.loading)
            watched = [event.data.name for event in log.take()]
    assert "streamingUpdate" in everything and "messageAdded" in everything
    assert watched == [name for name in everything if name in LIFECYCLE_EVENTS]
