"""The project's own bookkeeping: one version, the licence, the lowest declared versions, the env table."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import ezmsg_console

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def test_the_version_lives_in_one_place() -> None:
    assert re.search(r'^dynamic = \["version"\]', PYPROJECT, re.M)
    assert not re.search(r'^version = "', PYPROJECT, re.M)  # no second copy in [project]
    assert importlib.metadata.version("ezmsg-console") == ezmsg_console.__version__


def test_the_licence_file_matches_pyproject() -> None:
    assert 'license = { text = "MIT" }' in PYPROJECT
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
