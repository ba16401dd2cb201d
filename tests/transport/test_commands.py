from __future__ import annotations

from typing import Any

import attrs
import pytest

from greenroom.protocol import commands
from greenroom.protocol.commands import (
    COMMANDS,
    FocusProject,
    Ping,
    SendMessage,
    Subscribe,
    command_to_wire,
)

PROTOCOL_OPS = {
    "listProjects",
    "createProject",
    "deleteProject",
    "listSessions",
    "openSession",
    "subscribe",
    "unsubscribe",
    "sendMessage",
    "stopGeneration",
    "cancelQueued",
    "resumeSession",
    "approveToolCall",
    "newChat",
    "deleteSession",
    "focusProject",
    "mcpConfig",
    "trustMcpConfig",
    "listPresets",
    "stopAll",
    "stats",
    "ping",
}


def test_one_class_per_protocol_op() -> None:
    assert set(COMMANDS) == PROTOCOL_OPS
    for op, cls in COMMANDS.items():
        assert cls.op == op
        assert "op" not in attrs.fields_dict(cls)  # a ClassVar, not a field
        assert cls.__name__[0].lower() + cls.__name__[1:] == op
        assert getattr(commands, cls.__name__) is cls


@pytest.mark.parametrize("cls", list(COMMANDS.values()))
def test_commands_are_frozen_and_keyword_only(cls: type[commands.Command]) -> None:
    fields = attrs.fields(cls)
    assert all(f.kw_only for f in fields)
    required: dict[str, Any] = {f.name: "x" for f in fields if f.default is attrs.NOTHING}
    command = cls(**required)
    if fields:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(command, fields[0].name, "y")


def test_command_to_wire() -> None:
    assert command_to_wire(7, SendMessage(session="s-1", content="hi")) == {
        "id": 7,
        "op": "sendMessage",
        "session": "s-1",
        "content": "hi",
    }
    assert command_to_wire("a", Ping()) == {"id": "a", "op": "ping"}
    subscribe = command_to_wire(1, Subscribe(session="s"))
    assert subscribe == {"id": 1, "op": "subscribe", "session": "s"}
    assert command_to_wire(1, Subscribe(session="s", since=0))["since"] == 0
    assert command_to_wire(1, FocusProject()) == {"id": 1, "op": "focusProject"}
