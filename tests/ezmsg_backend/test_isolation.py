"""Only the ezmsg backend package imports ezmsg, and importing the package does not."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ezmsg_console

from ..conftest import TIMEOUT

PACKAGE_DIR = Path(ezmsg_console.__file__).resolve().parent


def _imports_ezmsg(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "ezmsg" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ezmsg":
            return True
    return False


def test_only_the_backend_package_imports_ezmsg() -> None:
    importers = {p.relative_to(PACKAGE_DIR).as_posix() for p in PACKAGE_DIR.rglob("*.py") if _imports_ezmsg(p)}
    assert importers and all(p.startswith("ezmsg_backend/") for p in importers), importers
    assert "ezmsg_backend/translate.py" not in importers and "ezmsg_backend/schema.py" not in importers


def test_the_console_and_cli_load_without_ezmsg() -> None:
    code = ("import sys; import ezmsg_console.cli, ezmsg_console.client.monitor, ezmsg_console.client.source, "
            "ezmsg_console.export.commands, ezmsg_console.ezmsg_backend.translate; "
            "print(sorted(m for m in sys.modules if m == 'ezmsg' or m.startswith('ezmsg.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=6 * TIMEOUT, check=True)
    assert out.stdout.strip() == "[]"
