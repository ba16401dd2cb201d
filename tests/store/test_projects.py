"""Project folders, listed, made and removed on a real disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenroom.protocol.errors import InvalidArgument
from greenroom.store.projects import make_project, project_names, remove_project


def test_projects_are_the_folders_with_project_names(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    assert project_names(root) == []  # no folder yet
    make_project(root, "blog")
    make_project(root, "api")
    (root / "notes.txt").write_text("a file, not a project")
    (root / ".git").mkdir()
    (root / "Not A Name").mkdir()
    assert project_names(root) == ["api", "blog"]


def test_making_a_project_twice_is_refused_unless_asked(tmp_path: Path) -> None:
    folder = make_project(tmp_path, "blog")
    (folder / "keep.txt").write_text("kept")
    with pytest.raises(FileExistsError):
        make_project(tmp_path, "blog")
    assert make_project(tmp_path, "blog", exist_ok=True) == folder
    assert (folder / "keep.txt").read_text() == "kept"


def test_removing_takes_everything_and_a_missing_project_is_no_error(tmp_path: Path) -> None:
    folder = make_project(tmp_path, "blog")
    (folder / ".ai" / "history").mkdir(parents=True)
    (folder / ".ai" / "history" / "x.jsonl").write_text("{}\n")
    remove_project(tmp_path, "blog")
    assert not folder.exists()
    remove_project(tmp_path, "blog")


@pytest.mark.parametrize("name", ["..", "../x", "/etc", "a/b", ".hidden", ""])
def test_a_name_that_leaves_the_root_is_refused_before_the_disk_is_touched(
    tmp_path: Path, name: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    for act in (make_project, remove_project):
        with pytest.raises(InvalidArgument):
            act(tmp_path / "root", name)
    assert outside.exists() and not (tmp_path / "root").exists()
