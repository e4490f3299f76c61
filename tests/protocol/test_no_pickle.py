"""Static guarantees: no pickle-family imports anywhere; the protocol imports stay light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ezmsg_console

from ..conftest import TIMEOUT

BANNED = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "jsonpickle"}
PACKAGE_DIR = Path(ezmsg_console.__file__).resolve().parent


def banned_imports(source: str, filename: str = "<src>") -> list[str]:
    """Every banned module named by an import statement or a dynamic import call."""
    found: list[str] = []
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in BANNED:
                    found.append(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.module and node.level == 0 and node.module.split(".")[0] in BANNED:
                found.append(node.module)
            for alias in node.names:
                if alias.name in BANNED and (node.module is None or node.level > 0 or node.module == ""):
                    found.append(alias.name)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.split(".")[0] in BANNED:
                    found.append(arg.value)
    return found


def package_sources() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize(
    "source,expected",
    [
        ("import pickle", ["pickle"]),
        ("import os, marshal as m", ["marshal"]),
        ("from cloudpickle import dumps", ["cloudpickle"]),
        ("from dill.source import x", ["dill.source"]),
        ("def f():\n    import cPickle\n", ["cPickle"]),
        ("try:\n    import _pickle\nexcept ImportError:\n    pass\n", ["_pickle"]),
        ("import importlib\nimportlib.import_module('pickle')", ["pickle"]),
        ("__import__('marshal')", ["marshal"]),
        ("import json\nfrom msgpack import packb\nx = 'pickle'", []),
        ("from . import codec", []),
    ],
)
def test_checker_detects_banned_imports(source: str, expected: list[str]) -> None:
    assert banned_imports(source) == expected


def test_walk_finds_the_package() -> None:
    files = {p.relative_to(PACKAGE_DIR).as_posix() for p in package_sources()}
    assert "protocol/codec.py" in files
    assert "protocol/wire.py" in files
    assert "__init__.py" in files
    assert len(files) >= 12


def test_no_pickle_family_imports_anywhere() -> None:
    offenders = {}
    for path in package_sources():
        hits = banned_imports(path.read_text(encoding="utf-8"), str(path))
        if hits:
            offenders[path.relative_to(PACKAGE_DIR).as_posix()] = hits
    assert offenders == {}


def _modules_after(code: str) -> set[str]:
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=6 * TIMEOUT,
        cwd=str(PACKAGE_DIR.parent),
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


HEAVY = ("textual", "rich", "asyncio", "numpy", "threading", "pickle", "_pickle")
OURS_WITH_IO = ("ezmsg_console.server", "ezmsg_console.client", "ezmsg_console.tui", "ezmsg_console.cli")


def test_protocol_subpackage_imports_stay_sans_io() -> None:
    """The protocol modules themselves pull in no I/O layers (parent __init__ bypassed)."""
    mods = _modules_after(
        "import sys, types, importlib.util\n"
        "spec = importlib.util.find_spec('ezmsg_console')\n"
        "pkg = types.ModuleType('ezmsg_console')\n"
        "pkg.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['ezmsg_console'] = pkg\n"
        "import ezmsg_console.protocol\n"
        "import ezmsg_console.protocol.gapqueue, ezmsg_console.protocol.auth\n"
    )
    assert "ezmsg_console.protocol.connection" in mods  # the import really happened
    assert "msgpack" in mods
    assert sorted(m for m in mods if m.split(".")[0] in HEAVY) == []
    assert sorted(m for m in mods if m.startswith(OURS_WITH_IO)) == []


def test_import_protocol_does_not_load_server_or_ui() -> None:
    mods = _modules_after("import ezmsg_console.protocol")
    assert "ezmsg_console.protocol" in mods
    assert "textual" not in mods
    assert "ezmsg_console.server" not in mods


def test_import_protocol_does_not_load_textual() -> None:
    mods = _modules_after("import ezmsg_console.protocol")
    assert "ezmsg_console.protocol.wire" in mods
    assert "textual" not in mods
    assert "ezmsg_console.tui" not in mods
