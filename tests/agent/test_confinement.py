"""resolve_in_project: every refusal, what stays allowed, and a property test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom.agent.tools import resolve_in_project
from greenroom.protocol.errors import ToolError


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A project with folders, an inside link, an outside link and a history folder."""
    root = tmp_path / "project"
    outside = tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    (root / "b c").mkdir()
    (root / "é").mkdir()
    (root / ".ai" / "history").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    os.symlink("a", root / "inside")
    os.symlink(outside, root / "out")
    os.symlink("../../outside", root / "a" / "rel_out")
    os.symlink("a/b", root / "deep")
    return root, outside


def refusal(root: Path, path: str, *, for_write: bool = False) -> str:
    with pytest.raises(ToolError) as info:
        resolve_in_project(root, path, for_write=for_write)
    message = info.value.message
    assert str(root) not in message
    assert os.path.realpath(root) not in message
    return message


def test_plain_paths(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    real = Path(os.path.realpath(root))
    assert resolve_in_project(root, "x.txt") == real / "x.txt"
    assert resolve_in_project(root, "a/b/x.txt") == real / "a" / "b" / "x.txt"
    assert resolve_in_project(root, "./a//b/./x.txt") == real / "a" / "b" / "x.txt"
    assert resolve_in_project(root, "a/../x.txt") == real / "x.txt"
    assert resolve_in_project(root, ".") == real
    assert resolve_in_project(root, "a/") == real / "a"


def test_empty(layout: tuple[Path, Path]) -> None:
    assert refusal(layout[0], "") == "path is empty"


@pytest.mark.parametrize("path", ["/etc/passwd", "/", "//x", "/tmp/../etc"])
def test_absolute(layout: tuple[Path, Path], path: str) -> None:
    assert "is absolute" in refusal(layout[0], path)


def test_absolute_path_into_the_project_is_refused_too(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    assert "is absolute" in refusal(root, str(root / "a"))


@pytest.mark.parametrize("path", ["..", "../x", "a/../../x", "a/b/../../..", "./../project/a"])
def test_dotdot(layout: tuple[Path, Path], path: str) -> None:
    assert "leads outside the project folder" in refusal(layout[0], path)


def test_nul_byte(layout: tuple[Path, Path]) -> None:
    message = refusal(layout[0], "a\0b")
    assert "NUL byte" in message
    assert "\0" not in message


def test_lone_surrogate(layout: tuple[Path, Path]) -> None:
    assert "not valid Unicode" in refusal(layout[0], "a\udc80")


@pytest.mark.parametrize("path", ["out", "out/secret.txt", "a/rel_out/secret.txt", "out/.."])
def test_link_to_outside(layout: tuple[Path, Path], path: str) -> None:
    assert "through a symbolic link" in refusal(layout[0], path)


def test_out_and_back_through_a_link(layout: tuple[Path, Path]) -> None:
    """The resolved path is what counts: out through a link and back in lands inside."""
    root, _ = layout
    got = resolve_in_project(root, "out/../project/a")
    assert got == Path(os.path.realpath(root)) / "a"


def test_dotdot_after_a_link_is_physical(layout: tuple[Path, Path]) -> None:
    """`deep/..` is `a`, not the root, as the OS sees it."""
    root, _ = layout
    assert resolve_in_project(root, "deep/../x") == Path(os.path.realpath(root)) / "a" / "x"


def test_link_inside_is_fine(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    real = Path(os.path.realpath(root))
    assert resolve_in_project(root, "inside/b/f.txt") == real / "a" / "b" / "f.txt"
    assert resolve_in_project(root, "inside", for_write=True) == real / "a"


def test_root_reached_through_a_link(tmp_path: Path) -> None:
    """The root itself may be a link (macOS /tmp is); its real path is the reference."""
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")
    got = resolve_in_project(tmp_path / "alias", "f.txt")
    assert got == Path(os.path.realpath(tmp_path / "real")) / "f.txt"


def test_too_long(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    assert "longer than 255 bytes" in refusal(root, "a" * 256)
    assert "longer than 255 bytes" in refusal(root, "a/" + "é" * 128)  # 256 bytes
    assert "path is too long" in refusal(root, "a/" * 2049)
    resolve_in_project(root, "a" * 255)
    resolve_in_project(root, "/".join(["b"] * 2048))  # 4095 characters
    assert len(refusal(root, "x" * 10_000)) < 300


@pytest.mark.parametrize(
    "path", ["é/f.txt", "b c/d e.txt", "日本語.md", "emoji-🎭.txt", "~", "a\\b"]
)
def test_legal_unicode_and_odd_names(layout: tuple[Path, Path], path: str) -> None:
    root, _ = layout
    assert resolve_in_project(root, path, for_write=True) == Path(os.path.realpath(root)) / path


@pytest.mark.parametrize("path", [".ai", ".ai/history/x.jsonl", "a/../.ai/x", ".Ai/x"])
def test_history_refused_for_writes_only(layout: tuple[Path, Path], path: str) -> None:
    root, _ = layout
    assert "keeps the chat history" in refusal(root, path, for_write=True)
    resolve_in_project(root, path)


def test_messages_name_the_path_as_given(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    assert refusal(root, "../x") == "path '../x' leads outside the project folder"
    message = refusal(root, "out/secret.txt")
    assert "'out/secret.txt'" in message
    assert str(outside) not in message


SEGMENTS = st.sampled_from(
    ["a", "b", "..", ".", "", "b c", "é", "日本", "inside", "out", "deep", "rel_out", ".ai", "~"]
)
RELATIVE = st.lists(SEGMENTS, min_size=1, max_size=8).map("/".join)
ANY_TEXT = st.text(
    alphabet=st.sampled_from(["a", ".", "/", " ", "é", "\0", "\\", "\udc80"]), max_size=30
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.one_of(RELATIVE, ANY_TEXT), for_write=st.booleans())
def test_property_inside_or_refused(layout: tuple[Path, Path], path: str, for_write: bool) -> None:
    """Whatever the path, the answer is a refusal or a real path under the real root."""
    root, _ = layout
    real_root = Path(os.path.realpath(root))
    try:
        got = resolve_in_project(root, path, for_write=for_write)
    except ToolError as exc:
        assert str(real_root) not in exc.message
        return
    assert got.is_absolute()
    assert got == real_root or real_root in got.parents
    assert Path(os.path.realpath(got)) == got
    if for_write:
        assert got.relative_to(real_root).parts[:1] != (".ai",)
