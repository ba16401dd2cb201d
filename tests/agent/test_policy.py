"""Tool policies: decisions by exact name, pattern and default; merging; the project's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenroom.agent.policy import (
    PROJECT_POLICY_FILE,
    PolicyError,
    ToolPolicy,
    parse_policy,
    read_project_policy,
    strictest,
    tightened,
)
from greenroom.agent.tools import run_tool
from greenroom.protocol.errors import ToolError


def test_defaults_ask_for_delete_and_destructive_mcp_tools_only() -> None:
    policy = ToolPolicy()
    assert policy.decide("delete_file") == "ask"
    assert policy.decide("write_file") == "allow"
    assert policy.decide("mcp__fs__remove", destructive=True) == "ask"
    assert policy.decide("mcp__fs__list") == "allow"


def test_exact_names_beat_patterns_and_longer_patterns_beat_shorter() -> None:
    policy = ToolPolicy(
        rules={
            "*": "deny",
            "mcp__gh__*": "ask",
            "mcp__gh__list_*": "allow",
            "mcp__gh__list_secrets": "deny",
            "read_?ile": "allow",
        }
    )
    assert policy.decide("mcp__gh__list_issues") == "allow"
    assert policy.decide("mcp__gh__list_secrets") == "deny"
    assert policy.decide("mcp__gh__close_issue") == "ask"
    assert policy.decide("read_file") == "allow"
    assert policy.decide("write_file") == "deny"
    # A rule wins over the destructive default too.
    assert ToolPolicy(rules={"mcp__*": "allow"}).decide("mcp__x__rm", destructive=True) == "allow"


def test_a_preset_or_project_table_only_ever_tightens_the_global_decision() -> None:
    base = ToolPolicy(rules={"delete_file": "allow", "write_file": "ask"})
    project = ToolPolicy(rules={"delete_file": "deny", "write_file": "allow", "*": "allow"})
    preset = ToolPolicy(rules={"edit_file": "ask"})
    for tool, expected in (
        ("delete_file", "deny"),  # tightened by the project
        ("write_file", "ask"),  # the project's allow cannot loosen it
        ("edit_file", "ask"),  # tightened by the preset
        ("read_file", "allow"),  # no table says more than the default
    ):
        assert tightened(base.decide(tool), tool, preset, project) == expected, tool
    # Not even a destructive MCP tool's default ask is loosened.
    decision = ToolPolicy().decide("mcp__x__rm", destructive=True)
    assert tightened(decision, "mcp__x__rm", project) == "ask"


def test_strictest_orders_deny_ask_allow() -> None:
    assert strictest("allow", "ask") == "ask"
    assert strictest("deny", "allow", "ask") == "deny"
    assert strictest("allow") == "allow"


def test_stricter_asks_where_it_allowed_and_keeps_denials() -> None:
    strict = ToolPolicy(rules={"write_file": "allow", "edit_file": "deny"}).stricter()
    assert strict.decide("write_file") == "ask"
    assert strict.decide("edit_file") == "deny"
    assert strict.decide("read_file") == "ask"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("allow", "give a table"),
        ({"read_file": "yes"}, "bad decision 'yes' for 'read_file'"),
        ({"read_file": True}, "bad decision 'True'"),
        ({"": "ask"}, "bad tool name ''"),
        ({"a b": "ask"}, "bad tool name 'a b'"),
        ({"x" * 129: "ask"}, "bad tool name"),
    ],
)
def test_bad_tables_are_clear_errors(raw: object, message: str) -> None:
    with pytest.raises(PolicyError, match=r"^here: ") as caught:
        parse_policy(raw, where="here")
    assert message in caught.value.message


def test_the_project_file(tmp_path: Path) -> None:
    assert read_project_policy(tmp_path) == ToolPolicy()
    path = tmp_path / PROJECT_POLICY_FILE
    path.parent.mkdir()
    path.write_text('[tool_policy]\n"mcp__*" = "ask"\nread_file = "deny"\n')
    assert read_project_policy(tmp_path) == ToolPolicy(rules={"mcp__*": "ask", "read_file": "deny"})
    path.write_text("")
    assert read_project_policy(tmp_path) == ToolPolicy()
    for text, message in [
        ("[tool_policy\n", "not valid TOML"),
        ('[tools]\nx = "ask"\n', "unknown key 'tools'"),
        ('[tool_policy]\nx = "never"\n', "bad decision 'never'"),
    ]:
        path.write_text(text)
        with pytest.raises(PolicyError, match=r"^\.ai/tools\.toml") as caught:
            read_project_policy(tmp_path)
        assert message in caught.value.message
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyError, match="not valid TOML"):
        read_project_policy(tmp_path)


async def test_the_file_tools_cannot_write_the_project_policy(tmp_path: Path) -> None:
    # .ai/ is greenroom's: the model cannot loosen its own policy.
    loosen = '{"path": ".ai/tools.toml", "content": "[tool_policy]\\n\\"*\\" = \\"allow\\""}'
    with pytest.raises(ToolError):
        await run_tool(tmp_path, "write_file", loosen)
    assert not (tmp_path / PROJECT_POLICY_FILE).exists()
