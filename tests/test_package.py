"""The package as published: the sdist is built for real (``python -m build``, without build
isolation so that nothing is downloaded) and read back; the suite runs from it."""

from __future__ import annotations

import email
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import greenroom

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), "."],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("greenroom-*.tar.gz")
    return built


def test_the_sdist_holds_the_code_the_tests_the_docs_and_the_license(sdist: Path) -> None:
    top = f"greenroom-{greenroom.__version__}/"
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(top) for name in archive.getnames()}
        info = archive.extractfile(top + "PKG-INFO")
        assert info is not None
        metadata = email.message_from_bytes(info.read())
    for needed in ("LICENSE", "README.md", "pyproject.toml", "greenroom/py.typed",
                   "greenroom/web/static/index.html", "tests/conftest.py",
                   "tests/test_package.py", "docs/protocol.md", "docs/deploy.md",
                   "deploy/Dockerfile", "deploy/greenroom.service", "bench/run.py",
                   ".ci/run"):  # fmt: skip
        assert needed in names, needed
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert not [name for name in names if name.startswith(("tests/web/artifacts/", ".venv"))]
    assert metadata["Version"] == greenroom.__version__
    assert metadata["License-Expression"] == "MIT"
    assert "Typing :: Typed" in metadata.get_all("Classifier", [])
    assert metadata.get_all("Project-URL")
    assert any(d.startswith("prometheus-client") for d in metadata.get_all("Requires-Dist", []))


def test_tests_run_from_the_unpacked_sdist(sdist: Path, tmp_path: Path) -> None:
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()
    check = "import greenroom, sys; print(greenroom.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", check], cwd=unpacked, capture_output=True, text=True, check=True
    )
    assert where.stdout.startswith(str(unpacked))  # its own code, not this checkout's
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_deploy.py", "tests/test_settings_serving.py", "tests/test_logs.py"],
        cwd=unpacked, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert " passed" in ran.stdout
