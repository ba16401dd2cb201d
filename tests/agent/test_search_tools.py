"""search_files and glob on real files: matches, bounds, refusals and confinement."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from greenroom.agent import tools
from greenroom.agent.tools import MAX_FILE_BYTES, run_tool
from greenroom.protocol.errors import ToolError


async def call(root: Path, name: str, **arguments: object) -> str:
    with trio.fail_after(30):
        return await run_tool(root, name, json.dumps(arguments))


async def refused(root: Path, name: str, **arguments: object) -> str:
    with trio.fail_after(30), pytest.raises(ToolError) as info:
        await run_tool(root, name, json.dumps(arguments))
    message = info.value.message
    assert str(root) not in message
    return message


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "src" / "pkg").mkdir(parents=True)
    (project / "docs").mkdir()
    (project / "src" / "main.py").write_text("import os\n\ndef main():\n    return 42\n")
    (project / "src" / "pkg" / "util.py").write_text("def helper():\n    return 'main'\n")
    (project / "docs" / "guide.md").write_text("# Guide\nRun main to start.\n")
    (project / "README.md").write_text("main project\n")
    return project.resolve()


# --- search_files ----------------------------------------------------------------------------


async def test_search_finds_file_and_line(root: Path) -> None:
    result = await call(root, "search_files", pattern=r"def \w+\(")
    assert result.splitlines() == ["src/main.py:3: def main():", "src/pkg/util.py:1: def helper():"]


async def test_search_in_a_folder_a_file_and_with_include(root: Path) -> None:
    assert await call(root, "search_files", pattern="main", path="docs") == (
        "docs/guide.md:2: Run main to start."
    )
    assert await call(root, "search_files", pattern="return", path="src/pkg/util.py") == (
        "src/pkg/util.py:2:     return 'main'"
    )
    result = await call(root, "search_files", pattern="main", include="**/*.py")
    assert result.splitlines() == [
        "src/main.py:3: def main():",
        "src/pkg/util.py:2:     return 'main'",
    ]


async def test_search_no_match(root: Path) -> None:
    assert await call(root, "search_files", pattern="nowhere to be found") == "(no matches)"


async def test_search_skips_git_ai_binary_and_large_files(root: Path) -> None:
    for folder in (".git", ".ai/history", "sub/.git"):
        (root / folder).mkdir(parents=True)
        (root / folder / "x.txt").write_text("needle\n")
    (root / "binary.bin").write_bytes(b"needle \xff\xfe\n")
    (root / "large.txt").write_text("needle\n" + "x" * MAX_FILE_BYTES)
    (root / "found.txt").write_text("a needle\n")
    assert await call(root, "search_files", pattern="needle") == "found.txt:1: a needle"


async def test_search_does_not_follow_linked_folders(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("needle\n")
    os.symlink(outside, root / "out")
    assert await call(root, "search_files", pattern="needle") == "(no matches)"
    message = await refused(root, "search_files", pattern="needle", path="out")
    assert "outside the project" in message


async def test_search_does_not_read_through_a_link_to_an_outside_file(
    root: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("needle\n")
    os.symlink(secret, root / "link.txt")
    os.symlink("README.md", root / "inside.md")
    assert await call(root, "search_files", pattern="needle|main project") == (
        "README.md:1: main project\ninside.md:1: main project"
    )
    assert "outside the project" in await refused(
        root, "search_files", pattern="needle", path="link.txt"
    )


async def test_search_bounded_results_and_lines(root: Path) -> None:
    (root / "many.txt").write_text("hit\n" * (tools.MAX_SEARCH_RESULTS + 50))
    (root / "long.txt").write_text("hit " + "y" * 10_000 + "\n")
    result = (await call(root, "search_files", pattern="^hit")).splitlines()
    assert len(result) == tools.MAX_SEARCH_RESULTS + 1
    assert result[-1] == f"... stopped at {tools.MAX_SEARCH_RESULTS} matches"
    assert result[0].startswith("long.txt:1: hit yyy")
    assert len(result[0]) < tools.MAX_SHOWN_LINE + 20


async def test_search_time_budget(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "SEARCH_BUDGET_SECONDS", -1.0)
    result = await call(root, "search_files", pattern="main")
    assert result.startswith("... stopped after")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"pattern": "(unclosed"}, "not a valid regular expression: missing ), unterminated"),
        ({"pattern": "a{2,1}"}, "not a valid regular expression"),
        ({"pattern": ""}, "'pattern' of search_files is empty"),
        ({"pattern": "x" * 2000}, "too long"),
        ({}, "search_files needs the argument 'pattern'"),
        ({"pattern": 3}, "must be a string"),
        ({"pattern": "x", "path": "missing"}, "no such file or folder"),
        ({"pattern": "x", "include": "../*"}, "contains '..'"),
        ({"pattern": "x", "include": "[abc"}, "'[' with no ']'"),
    ],
)
async def test_search_refusals(root: Path, arguments: dict[str, object], expected: str) -> None:
    assert expected in await refused(root, "search_files", **arguments)


# --- glob ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**/*.py", ".", ["src/main.py", "src/pkg/util.py"]),
        ("*.md", ".", ["README.md"]),
        ("*/*.md", ".", ["docs/guide.md"]),
        ("src/*", ".", ["src/main.py", "src/pkg/"]),
        ("src/**", ".", ["src/main.py", "src/pkg/", "src/pkg/util.py"]),
        ("**/util.?y", ".", ["src/pkg/util.py"]),
        ("[mu]*.py", "src", ["src/main.py"]),
        ("[!m]*", "src", ["src/pkg/"]),
        ("**/*.txt", ".", []),
    ],
)
async def test_glob(root: Path, pattern: str, path: str, expected: list[str]) -> None:
    result = await call(root, "glob", pattern=pattern, path=path)
    assert result.splitlines() == (expected or ["(no matches)"])


async def test_glob_skips_git_and_linked_folders(root: Path, tmp_path: Path) -> None:
    (root / ".git").mkdir()
    (root / ".git" / "config.py").write_text("")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("")
    os.symlink(outside, root / "out")
    assert await call(root, "glob", pattern="**/*.py") == "src/main.py\nsrc/pkg/util.py"
    assert await call(root, "glob", pattern="*") == ".git/\nREADME.md\ndocs/\nout\nsrc/"


async def test_glob_bounded(root: Path) -> None:
    many = root / "many"
    many.mkdir()
    for index in range(tools.MAX_LIST_ENTRIES + 5):
        (many / f"f{index:05}.txt").write_text("")
    lines = (await call(root, "glob", pattern="many/*.txt")).splitlines()
    assert len(lines) == tools.MAX_LIST_ENTRIES + 1
    assert lines[-1] == "... 5 more"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"pattern": "../*"}, "contains '..'"),
        ({"pattern": "a/../../x"}, "contains '..'"),
        ({"pattern": "/etc/*"}, "absolute"),
        ({"pattern": ""}, "empty"),
        ({"pattern": "*", "path": "../"}, "outside the project"),
        ({"pattern": "*", "path": "README.md"}, "is a file, not a folder"),
        ({"pattern": "*", "path": "nope"}, "no such folder"),
    ],
)
async def test_glob_refusals(root: Path, arguments: dict[str, object], expected: str) -> None:
    assert expected in await refused(root, "glob", **arguments)


# --- the MCP configuration is not the model's to change --------------------------------------


@pytest.mark.parametrize("name", [".mcp.json", ".MCP.json"])
async def test_mcp_config_cannot_be_written_edited_or_deleted(root: Path, name: str) -> None:
    config = root / ".mcp.json"
    config.write_text('{"mcpServers": {}}')
    for tool, extra in [
        ("write_file", {"content": "{}"}),
        ("edit_file", {"old": "{}", "new": "x"}),
        ("delete_file", {}),
    ]:
        message = await refused(root, tool, path=name, **extra)
        assert ".mcp.json, which starts programs" in message
    assert config.read_text() == '{"mcpServers": {}}'
    assert await call(root, "read_file", path=".mcp.json") == '{"mcpServers": {}}'


async def test_mcp_config_refused_through_a_link(root: Path) -> None:
    (root / ".mcp.json").write_text("{}")
    os.symlink(".mcp.json", root / "alias.json")
    assert "starts programs" in await refused(root, "write_file", path="alias.json", content="x")
    assert (root / ".mcp.json").read_text() == "{}"


async def test_a_nested_mcp_json_is_an_ordinary_file(root: Path) -> None:
    assert "wrote" in await call(root, "write_file", path="sub/.mcp.json", content="{}")
