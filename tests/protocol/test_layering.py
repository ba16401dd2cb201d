"""The protocol package is the bottom layer: it imports neither trio nor the rest of greenroom."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import greenroom.protocol

PACKAGE = Path(greenroom.protocol.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def test_every_module_is_listed_in_the_package_docstring() -> None:
    doc = greenroom.protocol.__doc__ or ""
    assert MODULES and all(f"``{name}``" in doc for name in MODULES)


def test_no_module_imports_anything_above_it() -> None:
    # Read the source, so that an import inside a function counts too.
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in ("trio", "trio_websocket", "anyio", "httpx2"), (path.name, name)
                if top == "greenroom":
                    assert name.startswith("greenroom.protocol"), (path.name, name)


def test_importing_the_whole_package_loads_no_trio_and_nothing_else_of_greenroom() -> None:
    imports = "; ".join(f"import greenroom.protocol.{name}" for name in MODULES)
    code = (
        f"import sys; {imports}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('trio', 'anyio')\n"
        "    or (m.startswith('greenroom.') and not m.startswith('greenroom.protocol'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
