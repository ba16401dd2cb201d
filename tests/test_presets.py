"""Session presets as files hold them: config.toml's ``[presets.NAME]`` and a project's
``.ai/presets.toml``, good and bad, and how they merge; and that the file tools cannot write a
project's presets."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from greenroom.agent.tools import run_tool
from greenroom.presets import (
    MAX_PRESETS,
    PROJECT_FILE,
    Preset,
    PresetCatalog,
    parse_project_file,
    read_project_file,
)
from greenroom.protocol.errors import InvalidArgument, NotFound, ToolError
from greenroom.settings import SettingsError, load_file, render, render_json, resolve

GLOBAL = """
model = "server-model"

[presets.review]
description = "Careful code review"
model = "big-model"
temperature = 0.2
max_tokens = 4000
system_prompt = "You review code. Be terse."
mcp_servers = ["github"]

[presets.review.tools]
delete_file = "deny"
write_file = "ask"
"mcp__github__*" = "ask"

[presets.quick]
temperature = 1
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_toml_presets_reach_the_config(tmp_path: Path) -> None:
    settings = resolve(file=write(tmp_path / "config.toml", GLOBAL), env={}, flags={})
    review, quick = settings.config().presets
    assert review == Preset(
        name="review",
        source="global",
        description="Careful code review",
        model="big-model",
        temperature=0.2,
        max_tokens=4000,
        system_prompt="You review code. Be terse.",
        mcp_servers=("github",),
        tools={"delete_file": "deny", "write_file": "ask", "mcp__github__*": "ask"},
    )
    assert quick == Preset(name="quick", temperature=1.0)
    assert isinstance(quick.temperature, float)
    assert settings.sources["presets"] == "file"
    # `greenroom config` shows them, in both of its forms.
    assert '"review" = { "name" = "review"' in render(settings)
    shown = json.loads(render_json(settings))["presets"]["value"]
    assert shown["review"]["systemPrompt"] == "You review code. Be terse."
    assert shown["quick"]["mcpServers"] is None


def test_no_presets_by_default(tmp_path: Path) -> None:
    assert resolve(file=None, env={}, flags={}).config().presets == ()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[presets.a]\nmodle = 'x'\n", "preset 'a': unknown key 'modle' (did you mean 'model'?)"),
        ("[presets.a]\ntemperature = 3\n", "temperature must be a number from 0 to 2"),
        ("[presets.a]\ntemperature = true\n", "temperature must be a number"),
        ("[presets.a]\nmax_tokens = 0\n", "max_tokens must be a whole number from 1"),
        ("[presets.a]\nmax_tokens = 10.0\n", "max_tokens must be a whole number"),
        ("[presets.a]\nmodel = 5\n", "model must be a string"),
        ("[presets.a]\nsystem_prompt = ''\n", "system_prompt must be 1 to"),
        (f"[presets.a]\nsystem_prompt = '{'x' * 32_001}'\n", "system_prompt must be 1 to 32000"),
        ("[presets.a]\nmcp_servers = 'github'\n", "mcp_servers must be a list"),
        ("[presets.a]\nmcp_servers = ['a b']\n", "'a b' is not an MCP server's name"),
        ("[presets.a]\ntools = ['read_file']\n", "tools must be a table"),
        ("[presets.a.tools]\nread_file = 'maybe'\n", "read_file = 'maybe': give \"allow\""),
        ("[presets.a.tools]\nread_file = true\n", "give \"allow\", \"ask\" or \"deny\""),
        ("[presets.a.tools]\n'read file' = 'allow'\n", "'read file' is not a tool's name"),
        ("[presets.'-a']\nmodel = 'x'\n", "bad preset name '-a'"),
        ("presets = 'review'\n", "presets must be a table"),
        ("[presets]\na = 1\n", "preset 'a': must be a table"),
    ],
)
def test_bad_presets_in_config_toml_are_refused_by_name(
    tmp_path: Path, text: str, says: str
) -> None:
    path = write(tmp_path / "config.toml", text)
    with pytest.raises(SettingsError) as caught:
        load_file(path)
    assert caught.value.message.startswith(f"{path}: presets")
    assert says in caught.value.message


def test_too_many_presets(tmp_path: Path) -> None:
    text = "".join(f"[presets.p{i}]\nmodel = 'm'\n" for i in range(MAX_PRESETS + 1))
    with pytest.raises(SettingsError, match=f"at most {MAX_PRESETS}"):
        load_file(write(tmp_path / "config.toml", text))


def test_a_project_file_holds_presets_only() -> None:
    (preset,) = parse_project_file(b"[presets.fix]\nmodel = 'small'\n")
    assert preset == Preset(name="fix", source="project", model="small")
    assert parse_project_file(b"") == ()
    with pytest.raises(InvalidArgument, match="unknown key 'model'"):
        parse_project_file(b"model = 'x'\n")
    with pytest.raises(InvalidArgument, match="not valid TOML"):
        parse_project_file(b"[presets.a\n")
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        parse_project_file(b"[presets.a]\nmodel = '\xff'\n")


def test_reading_a_project_file(tmp_path: Path) -> None:
    assert read_project_file(tmp_path / "absent").presets == ()
    assert read_project_file(tmp_path).error is None
    write(tmp_path / PROJECT_FILE, "[presets.x]\ntemperature = 9\n")
    found = read_project_file(tmp_path)
    assert found.presets == ()
    assert found.error is not None
    assert found.error.startswith(".ai/presets.toml: preset 'x': temperature")
    assert str(tmp_path) not in found.error  # a client sees it: no host paths
    write(tmp_path / PROJECT_FILE, "#" * (256 * 1024 + 1))
    assert read_project_file(tmp_path).error == ".ai/presets.toml: over 256 KiB"


def test_a_project_file_that_is_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / ".ai").mkdir()
    os.mkfifo(tmp_path / PROJECT_FILE)  # opening it to read would block: it is not read
    assert read_project_file(tmp_path).error == ".ai/presets.toml: not a regular file"
    (tmp_path / PROJECT_FILE).unlink()
    (tmp_path / PROJECT_FILE).mkdir()
    assert read_project_file(tmp_path).error == ".ai/presets.toml: not a regular file"


async def test_project_presets_replace_global_ones_of_the_same_name(tmp_path: Path) -> None:
    catalog = PresetCatalog(
        presets=(Preset(name="review", model="g"), Preset(name="quick", model="q")),
        projects_root=tmp_path,
    )
    write(tmp_path / "p" / PROJECT_FILE, "[presets.review]\nmodel = 'mine'\n")
    listing = await catalog.visible("p")
    assert [(p.name, p.model, p.source) for p in listing.presets] == [
        ("quick", "q", "global"),
        ("review", "mine", "project"),
    ]
    assert listing.find("review").model == "mine"
    with pytest.raises(NotFound, match="no preset 'nope' \\(presets: quick, review\\)"):
        listing.find("nope")
    # Without a project: the global ones only.
    assert [p.model for p in (await catalog.visible(None)).presets] == ["g", "q"]
    assert [p.model for p in (await catalog.visible("other")).presets] == ["g", "q"]


async def test_a_broken_project_file_is_logged_once_and_refuses_every_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="greenroom.presets")
    catalog = PresetCatalog(presets=(Preset(name="quick"),), projects_root=tmp_path)
    write(tmp_path / "p" / PROJECT_FILE, "[presets.quick]\ntools = { x = 'never' }\n")
    for _ in range(2):
        listing = await catalog.visible("p")
        assert [p.name for p in listing.presets] == ["quick"]  # the global ones still show
        assert listing.error is not None and "'never'" in listing.error
        # The file may have meant to replace "quick": no preset is used until it is fixed.
        with pytest.raises(InvalidArgument, match=r"cannot use preset 'quick': \.ai/presets\.toml"):
            listing.find("quick")
    assert len(caplog.records) == 1
    assert "project p: presets unusable" in caplog.text
    write(tmp_path / "p" / PROJECT_FILE, "")
    assert (await catalog.visible("p")).find("quick").name == "quick"


async def test_the_file_tools_may_not_write_a_projects_presets(tmp_path: Path) -> None:
    write(tmp_path / PROJECT_FILE, "[presets.safe]\n")
    for name, arguments in [
        ("write_file", {"path": PROJECT_FILE, "content": "[presets.x]\nmodel = 'y'\n"}),
        ("edit_file", {"path": PROJECT_FILE, "old": "safe", "new": "x"}),
        ("delete_file", {"path": PROJECT_FILE}),
        ("write_file", {"path": ".AI/presets.toml", "content": ""}),
    ]:
        with pytest.raises(ToolError, match="tools may not change it"):
            await run_tool(tmp_path, name, json.dumps(arguments))
    assert (tmp_path / PROJECT_FILE).read_text() == "[presets.safe]\n"
