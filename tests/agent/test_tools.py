"""The file tools on real files in a temporary project folder: results and refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from greenroom.agent.tools import MAX_FILE_BYTES, TOOLS, run_tool
from greenroom.protocol.errors import ToolError


async def call(root: Path, name: str, **arguments: object) -> str:
    with trio.fail_after(10):
        return await run_tool(root, name, json.dumps(arguments))


async def refused(root: Path, name: str, arguments: str) -> str:
    """The ToolError message of a call that must fail; it must not show the host path."""
    with trio.fail_after(10), pytest.raises(ToolError) as info:
        await run_tool(root, name, arguments)
    message = info.value.message
    assert str(root) not in message  # the fixture's root is its real path
    return message


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    return project.resolve()


def test_schemas() -> None:
    names = [tool.name for tool in TOOLS]
    assert names == [
        "read_file",
        "write_file",
        "edit_file",
        "list_files",
        "delete_file",
        "search_files",
        "glob",
    ]
    for tool in TOOLS:
        assert tool.description
        assert tool.parameters["type"] == "object"
        assert set(tool.parameters["required"]) <= set(tool.parameters["properties"])
    edit = next(tool for tool in TOOLS if tool.name == "edit_file")
    assert edit.parameters["required"] == ["path", "old", "new"]


# --- arguments -------------------------------------------------------------------------------


async def test_unknown_tool(root: Path) -> None:
    message = await refused(root, "rm_rf", "{}")
    assert "unknown tool 'rm_rf'" in message
    assert "read_file" in message


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, not an array"),
        ('"notes.txt"', "must be a JSON object, not a string"),
        ("null", "must be a JSON object, not null"),
        ("{}", "needs the argument 'path'"),
        ('{"path": 3}', "'path' of read_file must be a string, not a number"),
        ('{"path": ["a"]}', "must be a string, not an array"),
        ('{"path": null}', "must be a string, not null"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
async def test_bad_arguments(root: Path, arguments: str, expected: str) -> None:
    assert expected in await refused(root, "read_file", arguments)


async def test_missing_second_field(root: Path) -> None:
    message = await refused(root, "write_file", '{"path": "a.txt"}')
    assert "write_file needs the argument 'content'" in message


async def test_extra_fields_are_ignored(root: Path) -> None:
    (root / "a.txt").write_text("x")
    assert await call(root, "read_file", path="a.txt", encoding="latin-1") == "x"


async def test_empty_arguments_mean_no_arguments(root: Path) -> None:
    (root / "a.txt").write_text("x")
    with trio.fail_after(10):
        assert await run_tool(root, "list_files", "") == "a.txt"
        assert await run_tool(root, "list_files", "  ") == "a.txt"


# --- read_file -------------------------------------------------------------------------------


async def test_read_file(root: Path) -> None:
    (root / "src").mkdir()
    (root / "src" / "main.py").write_text("print('hi')\n", encoding="utf-8")
    assert await call(root, "read_file", path="src/main.py") == "print('hi')\n"
    assert await call(root, "read_file", path="./src//main.py") == "print('hi')\n"


async def test_read_keeps_line_endings_and_unicode(root: Path) -> None:
    (root / "w.txt").write_bytes("a\r\nb — ✓\n".encode())
    assert await call(root, "read_file", path="w.txt") == "a\r\nb — ✓\n"


async def test_read_missing(root: Path) -> None:
    message = await refused(root, "read_file", '{"path": "nope.txt"}')
    assert message == "cannot read 'nope.txt': no such file or folder"


async def test_read_folder(root: Path) -> None:
    (root / "src").mkdir()
    assert "'src' is a folder" in await refused(root, "read_file", '{"path": "src"}')


async def test_read_too_large(root: Path) -> None:
    (root / "big.txt").write_bytes(b"a" * (MAX_FILE_BYTES + 1))
    assert "too large" in await refused(root, "read_file", '{"path": "big.txt"}')
    (root / "ok.txt").write_bytes(b"a" * MAX_FILE_BYTES)
    assert len(await call(root, "read_file", path="ok.txt")) == MAX_FILE_BYTES


async def test_read_not_utf8(root: Path) -> None:
    (root / "blob.bin").write_bytes(b"\xff\xfe\x00binary")
    assert "is not UTF-8 text" in await refused(root, "read_file", '{"path": "blob.bin"}')


async def test_read_fifo_does_not_hang(root: Path) -> None:
    os.mkfifo(root / "pipe")
    assert "not a regular file" in await refused(root, "read_file", '{"path": "pipe"}')


async def test_read_history_is_allowed(root: Path) -> None:
    (root / ".ai" / "history").mkdir(parents=True)
    (root / ".ai" / "history" / "main.jsonl").write_text("{}\n")
    assert await call(root, "read_file", path=".ai/history/main.jsonl") == "{}\n"


# --- write_file ------------------------------------------------------------------------------


async def test_write_file(root: Path) -> None:
    result = await call(root, "write_file", path="notes.txt", content="hello world\n")
    assert result == "wrote 12 bytes to notes.txt"
    assert (root / "notes.txt").read_text() == "hello world\n"


async def test_write_creates_parents_and_counts_bytes(root: Path) -> None:
    result = await call(root, "write_file", path="./a/b/c/ünï.md", content="é")
    assert result == "wrote 2 bytes to a/b/c/ünï.md"
    assert (root / "a" / "b" / "c" / "ünï.md").read_text(encoding="utf-8") == "é"


async def test_write_overwrites(root: Path) -> None:
    (root / "a.txt").write_text("old content that is longer")
    await call(root, "write_file", path="a.txt", content="new")
    assert (root / "a.txt").read_text() == "new"


async def test_write_empty(root: Path) -> None:
    assert await call(root, "write_file", path="e.txt", content="") == "wrote 0 bytes to e.txt"
    assert (root / "e.txt").read_bytes() == b""


async def test_write_onto_folder(root: Path) -> None:
    (root / "src").mkdir()
    message = await refused(root, "write_file", '{"path": "src", "content": "x"}')
    assert "'src' is a folder" in message
    message = await refused(root, "write_file", '{"path": ".", "content": "x"}')
    assert "folder" in message


async def test_write_under_a_file(root: Path) -> None:
    (root / "a.txt").write_text("x")
    message = await refused(root, "write_file", '{"path": "a.txt/b.txt", "content": "x"}')
    assert message.startswith("cannot write 'a.txt/b.txt'")


async def test_write_too_large(root: Path) -> None:
    arguments = json.dumps({"path": "big.txt", "content": "a" * (MAX_FILE_BYTES + 1)})
    assert "too large" in await refused(root, "write_file", arguments)
    assert not (root / "big.txt").exists()


async def test_write_lone_surrogate(root: Path) -> None:
    arguments = '{"path": "a.txt", "content": "\\ud800"}'
    assert "not valid Unicode" in await refused(root, "write_file", arguments)


async def test_write_into_history_refused(root: Path) -> None:
    (root / ".ai" / "history").mkdir(parents=True)
    for path in [".ai/history/main.jsonl", ".ai/new.txt", "./.ai/x", "src/../.ai/x", ".AI/x"]:
        arguments = json.dumps({"path": path, "content": "x"})
        message = await refused(root, "write_file", arguments)
        assert ".ai/" in message
        assert "history" in message
    assert list((root / ".ai" / "history").iterdir()) == []


async def test_write_into_history_through_link_refused(root: Path) -> None:
    (root / ".ai").mkdir()
    os.symlink(root / ".ai", root / "h")
    message = await refused(root, "write_file", '{"path": "h/x.txt", "content": "x"}')
    assert ".ai/" in message
    assert not (root / ".ai" / "x.txt").exists()


async def test_write_a_file_named_like_history_elsewhere(root: Path) -> None:
    await call(root, "write_file", path="docs/.ai/x", content="ok")
    await call(root, "write_file", path=".aix", content="ok")
    assert (root / "docs" / ".ai" / "x").read_text() == "ok"


async def test_write_through_inside_link(root: Path) -> None:
    (root / "real").mkdir()
    os.symlink("real", root / "alias")
    await call(root, "write_file", path="alias/f.txt", content="x")
    assert (root / "real" / "f.txt").read_text() == "x"


# --- edit_file -------------------------------------------------------------------------------


async def test_edit_file(root: Path) -> None:
    (root / "m.py").write_text("def f():\n    return 1\n")
    result = await call(root, "edit_file", path="m.py", old="return 1", new="return 2")
    assert result == "edited m.py: replaced 1 occurrence"
    assert (root / "m.py").read_text() == "def f():\n    return 2\n"


async def test_edit_to_empty(root: Path) -> None:
    (root / "m.txt").write_text("keep drop keep")
    await call(root, "edit_file", path="m.txt", old=" drop", new="")
    assert (root / "m.txt").read_text() == "keep keep"


async def test_edit_not_found(root: Path) -> None:
    (root / "m.txt").write_text("abc")
    message = await refused(root, "edit_file", '{"path": "m.txt", "old": "xyz", "new": "q"}')
    assert message == "the text to replace was not found in 'm.txt'"
    assert (root / "m.txt").read_text() == "abc"


async def test_edit_several(root: Path) -> None:
    (root / "m.txt").write_text("x = 1\nx = 1\nx = 1\n")
    message = await refused(root, "edit_file", '{"path": "m.txt", "old": "x = 1", "new": "y"}')
    assert "occurs 3 times" in message
    assert "exactly once" in message
    assert (root / "m.txt").read_text() == "x = 1\nx = 1\nx = 1\n"


async def test_edit_overlapping_is_ambiguous(root: Path) -> None:
    (root / "m.txt").write_text("aaa")
    message = await refused(root, "edit_file", '{"path": "m.txt", "old": "aa", "new": "b"}')
    assert "occurs 2 times" in message


async def test_edit_empty_old(root: Path) -> None:
    (root / "m.txt").write_text("abc")
    message = await refused(root, "edit_file", '{"path": "m.txt", "old": "", "new": "q"}')
    assert "'old' of edit_file is empty" in message


async def test_edit_missing_file(root: Path) -> None:
    message = await refused(root, "edit_file", '{"path": "no.txt", "old": "a", "new": "b"}')
    assert message == "cannot edit 'no.txt': no such file or folder"


async def test_edit_history_refused(root: Path) -> None:
    (root / ".ai").mkdir()
    (root / ".ai" / "h.jsonl").write_text("abc")
    message = await refused(root, "edit_file", '{"path": ".ai/h.jsonl", "old": "a", "new": "b"}')
    assert ".ai/" in message
    assert (root / ".ai" / "h.jsonl").read_text() == "abc"


# --- list_files ------------------------------------------------------------------------------


async def test_list_files(root: Path) -> None:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "a.py").write_text("")
    (root / "src" / "b.py").write_text("")
    (root / "a.txt").write_text("")
    (root / "empty").mkdir()
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "objects" / "x").write_text("")
    (root / ".ai" / "history").mkdir(parents=True)
    listing = await call(root, "list_files")
    assert listing.splitlines() == [
        ".ai/",
        ".git/",
        "a.txt",
        "empty/",
        "src/",
        "src/b.py",
        "src/pkg/",
        "src/pkg/a.py",
    ]
    assert await call(root, "list_files", path="src/pkg") == "src/pkg/a.py"
    assert await call(root, "list_files", path=".ai") == ".ai/history/"


async def test_list_tree_order(root: Path) -> None:
    (root / "a").mkdir()
    (root / "a" / "z").write_text("")
    (root / "a.txt").write_text("")
    assert (await call(root, "list_files")).splitlines() == ["a/", "a/z", "a.txt"]


async def test_list_empty(root: Path) -> None:
    assert await call(root, "list_files", path=".") == "(no files)"


async def test_list_bounded(root: Path) -> None:
    for index in range(1005):
        (root / f"f{index:04}.txt").write_text("")
    lines = (await call(root, "list_files")).splitlines()
    assert len(lines) == 1001
    assert lines[0] == "f0000.txt"
    assert lines[999] == "f0999.txt"
    assert lines[-1] == "... 5 more"


async def test_list_does_not_follow_linked_folders(root: Path, tmp_path: Path) -> None:
    (root / "real").mkdir()
    (root / "real" / "f").write_text("")
    os.symlink("real", root / "alias")
    os.symlink(root, root / "real" / "loop")
    listing = (await call(root, "list_files")).splitlines()
    assert listing == ["alias", "real/", "real/f", "real/loop"]


async def test_list_a_file_or_missing(root: Path) -> None:
    (root / "a.txt").write_text("")
    assert "is a file, not a folder" in await refused(root, "list_files", '{"path": "a.txt"}')
    assert "no such folder" in await refused(root, "list_files", '{"path": "nope"}')


async def test_list_names_that_are_not_utf8(root: Path) -> None:
    (root / os.fsdecode(b"bad\xffname")).write_text("")
    listing = await call(root, "list_files")
    listing.encode("utf-8")  # no lone surrogates reach the model or the wire
    assert listing == "bad\ufffdname"


# --- delete_file -----------------------------------------------------------------------------


async def test_delete_file(root: Path) -> None:
    (root / "d").mkdir()
    (root / "d" / "x.txt").write_text("x")
    assert await call(root, "delete_file", path="d/x.txt") == "deleted d/x.txt"
    assert not (root / "d" / "x.txt").exists()
    assert (root / "d").is_dir()


async def test_delete_missing(root: Path) -> None:
    message = await refused(root, "delete_file", '{"path": "x.txt"}')
    assert message == "cannot delete 'x.txt': no such file or folder"


async def test_delete_folder_refused(root: Path) -> None:
    (root / "d").mkdir()
    assert "delete_file deletes files only" in await refused(root, "delete_file", '{"path": "d"}')
    assert "files only" in await refused(root, "delete_file", '{"path": "."}')
    assert (root / "d").is_dir()


async def test_delete_history_refused(root: Path) -> None:
    (root / ".ai").mkdir()
    (root / ".ai" / "h.jsonl").write_text("x")
    assert ".ai/" in await refused(root, "delete_file", '{"path": ".ai/h.jsonl"}')
    assert (root / ".ai" / "h.jsonl").exists()


async def test_delete_link_removes_the_link_only(root: Path) -> None:
    (root / "target.txt").write_text("keep")
    os.symlink("target.txt", root / "link.txt")
    result = await call(root, "delete_file", path="link.txt")
    assert result == "deleted link.txt (a symbolic link)"
    assert not (root / "link.txt").is_symlink()
    assert (root / "target.txt").read_text() == "keep"


async def test_delete_dangling_link_inside(root: Path) -> None:
    os.symlink("gone.txt", root / "dangling")
    assert await call(root, "delete_file", path="dangling") == "deleted dangling (a symbolic link)"
    assert not (root / "dangling").is_symlink()


async def test_delete_through_outside_link_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    os.symlink(outside, root / "link.txt")
    assert "outside the project" in await refused(root, "delete_file", '{"path": "link.txt"}')
    assert outside.read_text() == "precious"
    assert (root / "link.txt").is_symlink()


# --- confinement through the tools -----------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["read_file", "write_file", "delete_file", "list_files", "search_files", "glob"]
)
async def test_every_tool_is_confined(root: Path, tmp_path: Path, name: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    for path in ["../secret.txt", str(secret), "a/../../secret.txt"]:
        arguments = json.dumps({"path": path, "content": "pwned", "pattern": "secret"})
        message = await refused(root, name, arguments)
        assert "outside the project" in message or "absolute" in message
    assert secret.read_text() == "secret"


async def test_run_tool_does_not_block_the_loop(root: Path) -> None:
    """Other tasks run while a tool works: the disk work is in a thread."""
    (root / "a.txt").write_text("x")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            for _ in range(20):
                await run_tool(root, "read_file", '{"path": "a.txt"}')
            nursery.cancel_scope.cancel()
    assert ticks > 20
