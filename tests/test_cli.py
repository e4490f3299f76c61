"""The `ezmsg-console` command as a real subprocess."""

from __future__ import annotations

import signal
import subprocess
import sys

from ezmsg_console import __version__
from ezmsg_console.client import GraphContext

from .conftest import TIMEOUT


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ezmsg_console", *args], capture_output=True, text=True,
                          timeout=TIMEOUT)


async def test_serve_accepts_a_context_and_stops_on_sigint(serve_process):
    proc = serve_process("--address", "127.0.0.1:0")
    address = proc.wait_listening()
    async with GraphContext(address, timeout=TIMEOUT) as ctx:
        sub = await ctx.subscribe_topology_events(after_seq=None)
        await ctx.connect("SRC/OUT", "SINK/IN")
        event = await sub.next(TIMEOUT)
        assert event.changed_topics == ("SINK/IN",)
    assert proc.stop(signal.SIGINT) == 0
    assert "GraphServer stopped." in proc.stdout_text
    assert "Traceback" not in proc.stderr_text


async def test_serve_stops_on_sigterm(serve_process):
    proc = serve_process("--address", "127.0.0.1:0")
    proc.wait_listening()
    assert proc.stop(signal.SIGTERM) == 0


def test_serve_refuses_public_bind_without_token():
    result = run_cli("serve", "--address", "0.0.0.0:0")
    assert result.returncode == 64
    assert "--token" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_limits_are_options_and_a_bad_combination_is_one_line():
    result = run_cli("serve", "--address", "127.0.0.1:0", "--max-frame-size", "65536", "--max-message-size", "4096")
    assert result.returncode == 64 and "max_message_size (4096) must be at least max_frame_size" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    helptext = run_cli("serve", "--help").stdout
    assert all(opt in helptext for opt in ("--max-frame-size", "--max-message-size", "--max-pending-bytes"))


def test_serve_bad_address_is_one_line():
    result = run_cli("serve", "--address", "nowhere")
    assert result.returncode == 64 and "bad address 'nowhere'" in result.stderr
    assert "Traceback" not in result.stderr


async def test_serve_port_in_use(server):
    result = run_cli("serve", "--address", str(server.address))
    assert result.returncode == 64 and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_and_help():
    version = run_cli("--version")
    assert version.returncode == 0 and __version__ in version.stdout
    helptext = run_cli("serve", "--help")
    assert helptext.returncode == 0 and "--address" in helptext.stdout and "--token" in helptext.stdout


def test_one_exit_code_table_for_every_command():
    """0 ok, 1 refused, 2 unreachable, 3 partial, 64 usage error: argparse's own errors included."""
    from ezmsg_console.export.exitcodes import ExitCode

    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 64, 130]
    for args in (("--bogus",), ("snapshot", "--format", "yaml"), ("set", "DEMO/FILTER"),
                 ("serve", "--max-connections")):
        result = run_cli(*args)
        assert result.returncode == 64, (args, result.returncode, result.stderr)
        assert "error:" in result.stderr and "Traceback" not in result.stderr
    helptext = run_cli("--help").stdout
    assert "64 usage or configuration error" in " ".join(helptext.split())
