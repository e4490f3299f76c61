"""The project's own bookkeeping: one version, the licence, the lowest declared versions, the env table."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path


import ezmsg_console

from .conftest import xdist_scope

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def test_the_version_lives_in_one_place() -> None:
    assert re.search(r'^dynamic = \["version"\]', PYPROJECT, re.M)
    assert not re.search(r'^version = "', PYPROJECT, re.M)  # no second copy in [project]
    assert importlib.metadata.version("ezmsg-console") == ezmsg_console.__version__


def test_the_licence_file_matches_pyproject() -> None:
    assert 'license = { text = "MIT" }' in PYPROJECT
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


ENV_VAR = re.compile(r"EZMSG_CONSOLE_[A-Z0-9_]*[A-Z0-9]")


def _readme_table_vars() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    return {m.group(1) for m in re.finditer(r"^\| `(EZMSG_CONSOLE_[A-Z0-9_]+)` \|", section, re.M)}


def test_the_readme_lists_every_environment_variable_the_code_reads() -> None:
    sources = [*(ROOT / "ezmsg_console").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"),
               ROOT / "tests" / "conftest.py"]
    used = {name for path in sources for name in ENV_VAR.findall(path.read_text())}
    assert {"EZMSG_CONSOLE_ADDRESS", "EZMSG_CONSOLE_LOOP"} <= used  # the scan itself works
    listed = _readme_table_vars()
    assert used - listed == set(), "add these to the README's environment variable table"
    assert listed - used == set(), "the README lists variables nothing reads"


def test_a_module_is_one_unit_of_work_and_the_ezmsg_backend_one_for_all() -> None:
    assert xdist_scope("tests/tui/test_shell.py::test_help") == "tests/tui/test_shell.py"
    assert xdist_scope("tests/tui/test_shell.py::test_help[a::b]") == "tests/tui/test_shell.py"
    assert xdist_scope("tests/ezmsg_backend/test_console.py::test_x") == xdist_scope(
        "tests/ezmsg_backend/test_headless.py::test_y")
