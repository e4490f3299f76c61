"""The ezmsg-style pipeline of tests/runtime/ezmsg_style.py is genuine ezmsg 3.9 code: the same
file, with ``import ezmsg.core as ez`` as its only changed line, runs on ezmsg itself and records
the same words (so "runs with only the import changed" is checked in both directions)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

from ..conftest import TIMEOUT
from .conftest import REPO_ROOT, EzmsgServer, child_env, cleanup_shm, ezmsg_shm_segments, stop_tree

OURS = "import ezmsg_console.ez as ez"


def test_the_same_pipeline_file_runs_on_ezmsg_itself(tmp_path: Path, ezmsg_server: EzmsgServer) -> None:
    source = (REPO_ROOT / "tests" / "runtime" / "ezmsg_style.py").read_text()
    rest = source.replace(OURS, "")
    assert source.count(OURS) == 1 and "import ezmsg_console" not in rest and "from ezmsg_console" not in rest
    (tmp_path / "ezmsg_style_upstream.py").write_text(source.replace(OURS, "import ezmsg.core as ez"))
    out = tmp_path / "rec.json"
    port = ezmsg_server.port
    (tmp_path / "main.py").write_text(textwrap.dedent(f"""
        import ezmsg.core as ez
        from ezmsg.core.netprotocol import Address
        from ezmsg_style_upstream import System, SystemSettings

        if __name__ == "__main__":
            ez.run(SYSTEM=System(SystemSettings(word="hi", out={str(out)!r})),
                   graph_address=Address("127.0.0.1", {port}))
    """))
    before = ezmsg_shm_segments()
    env = child_env(f"127.0.0.1:{port}")
    env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, "main.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    known: list[psutil.Process] = []
    try:
        output, _ = proc.communicate(timeout=6 * TIMEOUT)
    finally:
        stop_tree(proc, known, 2)
        cleanup_shm(before, "the upstream run of ezmsg_style")
    assert out.exists(), output.decode(errors="replace")[-3000:]
    got = json.loads(out.read_text())["got"]
    assert [g["text"] for g in got] == [f"hi-{i}@{i + 1}/1" for i in range(6)]
