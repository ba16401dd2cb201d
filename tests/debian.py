"""Debian packages the tests need, installed when missing and the machine allows it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def install_from_debian(program: Path, package: str) -> None:
    """Install a Debian package when ``program`` is missing and this machine can (root with
    apt), so that the README's test command works on a fresh machine as it does in CI."""
    if program.exists() or os.geteuid() != 0 or not Path("/usr/bin/apt-get").exists():
        return
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        subprocess.run(command, env=environment, capture_output=True, timeout=600, check=False)
