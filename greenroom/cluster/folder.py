"""The projects folder every node of a cluster must share (docs/cluster.md, "Running it")."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from greenroom.cluster.database import Database
from greenroom.protocol.errors import GreenroomError

MARKER_FILE = ".greenroom-cluster"
"""In the projects folder: the cluster's mark, which every node must find the same."""


class WrongProjectsFolder(GreenroomError):
    """This node does not see the projects folder the cluster uses."""


def check_projects_folder(database: Database, root: Path) -> None:
    """Refuse to start unless ``root`` is the projects folder the other nodes use: the first
    node to start marks the folder with a random value and the database keeps the first value
    it is given; every node must find the two equal. Blocking (files and the database): run
    it in a worker thread."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / MARKER_FILE
    try:  # made only if missing: of two nodes making it at once, one mark wins
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as made:
            made.write(secrets.token_hex(16) + "\n")
    mark = path.read_text().strip()
    if database.marker(mark) != mark:
        raise WrongProjectsFolder(
            f"the projects folder {root} is not the one this cluster uses (its {MARKER_FILE} "
            "differs from the database's): every node must see the same projects folder "
            "(docs/cluster.md)"
        )
