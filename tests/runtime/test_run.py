"""run() with real worker processes: delivery, fan-out, failures, signals, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from ezmsg_console.protocol.errors import RunError
from ezmsg_console.pubsub import shm
from ezmsg_console.runtime import run_async
from ezmsg_console.runtime.runner import RUN_TAG_PREFIX_ENV

from ..conftest import TIMEOUT, free_address
from .units import (Broken, BrokenTogether, CollectSettings, CountSettings, Endless, FanOut, ForeverSettings,
                    GainSettings, Pipeline)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def test_pipeline_across_three_processes(tmp_path, no_leaks):
    out = tmp_path / "sink.json"
    system = Pipeline()
    system.SOURCE.apply_settings(CountSettings(count=300, width=16))
    system.GAIN.apply_settings(GainSettings(gain=3.0))
    system.SINK.apply_settings(CollectSettings(out=str(out), expect=300, finish="terminate"))
    result = await run_async(SYS=system, address=free_address(), duration=60)
    assert result.ok and "SYS/SINK requested termination" in result.reason
    seen = json.loads(out.read_text())["seen"]
    assert seen == [3 * i for i in range(300)]  # every message, in order, through the gain
    assert result.topics["SYS/SOURCE/OUTPUT"] == {"messages": 300, "bytes": 300 * result.topics[
        "SYS/SOURCE/OUTPUT"]["bytes"] // 300}
    assert result.topics["SYS/SOURCE/OUTPUT"]["bytes"] > 300 * 16 * 8
    assert set(result.exit_codes) == {"SYS/SOURCE", "SYS/GAIN", "SYS/SINK"}
    assert all(code == 0 for code in result.exit_codes.values())


async def test_fan_out_to_three_collectors_in_two_processes(tmp_path, no_leaks):
    system = FanOut()
    system.SOURCE.apply_settings(CountSettings(count=120))
    for name in ("A", "B", "C"):
        getattr(system, name).apply_settings(CollectSettings(out=str(tmp_path / f"{name}.json"), expect=120))
    result = await run_async(FAN=system, address=free_address(), duration=60)
    assert result.ok and result.reason == "every unit completed"
    pids = set()
    for name in ("A", "B", "C"):
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["seen"] == list(range(120))
        pids.add(data["pid"])
    assert len(pids) == 2  # A alone; B and C share a worker
    assert sorted(result.exit_codes) == ["FAN", "FAN/A", "FAN/SOURCE"]


async def test_a_failing_unit_stops_the_run_with_its_address(no_leaks):
    system = Broken()
    system.SOURCE.apply_settings(CountSettings(count=1000, period_s=0.001))
    with pytest.raises(RunError) as info:
        await run_async(SYS=system, address=free_address(), duration=60)
    assert "SYS/BAD" in str(info.value) and "ValueError: cannot handle 0" in str(info.value)
    errors = info.value.details["errors"]
    assert errors[0]["unit"] == "SYS/BAD" and "Traceback" in errors[0]["traceback"]


async def test_a_failure_after_its_source_completed_in_the_same_process_is_a_run_error(no_leaks):
    """SOURCE publishes once and completes; BAD, in the same worker, then fails on that message."""
    system = BrokenTogether()
    system.SOURCE.apply_settings(CountSettings(count=1))
    with pytest.raises(RunError) as info:
        await run_async(SYS=system, address=free_address(), duration=60)
    assert "SYS/BAD" in str(info.value) and "ValueError: cannot handle 0" in str(info.value)


async def test_a_unit_class_defined_in_a_function_is_refused_by_name(no_leaks):
    from ezmsg_console.protocol.errors import ConfigurationError
    from ezmsg_console.runtime import Settings, Unit

    class LocalSettings(Settings):
        gain: float = 1.0

    class LocalUnit(Unit):
        SETTINGS = LocalSettings

    with pytest.raises(ConfigurationError) as info:
        await run_async(SYS=LocalUnit(), address=free_address(), duration=60)
    assert "SYS: the unit class test_a_unit_class_defined_in_a_function_is_refused_by_name.<locals>.LocalUnit" \
        in str(info.value) and "define them at module level" in str(info.value)


async def test_killed_worker_stops_the_run_and_its_memory_is_swept(tmp_path, caplog, no_leaks):
    """SIGKILL the publisher's worker: its ring cannot unlink itself; the runner sweeps it."""
    import asyncio

    pidfile = tmp_path / "source.pid"
    system = Endless()
    system.SOURCE.apply_settings(ForeverSettings(pidfile=str(pidfile)))

    async def kill_source_worker() -> None:
        while not pidfile.exists() or not shm.ours(os.environ[RUN_TAG_PREFIX_ENV]):  # running, with its ring created
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)

    killer = asyncio.ensure_future(kill_source_worker())
    with pytest.raises(RunError, match="exited with code -9"):
        await run_async(SYS=system, address=free_address(), duration=TIMEOUT * 3)
    await asyncio.wait_for(killer, TIMEOUT)
    assert "removed 1 shared-memory segment(s) left by killed workers" in caplog.text


def test_a_second_sigint_kills_a_run_that_is_slow_to_stop(tmp_path, no_leaks):
    """The first SIGINT stops the run with a 60 s grace; the unit raises while cancelled (logged)
    and its shutdown() hangs; a second SIGINT ends the run at once."""
    marker = tmp_path / "stopping"
    script = tmp_path / "stubborn.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {ROOT!r})
        from ezmsg_console.runtime import run
        from tests.runtime.units import Stubborn, StubbornSettings
        result = run(SYS=Stubborn(StubbornSettings(marker={str(marker)!r})), address={free_address()!r}, grace=60)
        print("reason:", result.reason, flush=True)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        me = psutil.Process(proc.pid)
        import time

        deadline = time.monotonic() + TIMEOUT
        running = tmp_path / "stopping.running"
        while not running.exists() and time.monotonic() < deadline:  # its task is publishing
            time.sleep(0.05)
        assert running.exists()
        workers = [c for c in me.children(recursive=True) if "runtime.worker" in " ".join(c.cmdline())]
        assert len(workers) == 1
        proc.send_signal(signal.SIGINT)
        while not marker.exists() and time.monotonic() < deadline + TIMEOUT:  # in its hanging shutdown()
            time.sleep(0.05)
        assert marker.exists()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "reason: signal SIGINT; forced by a second SIGINT" in out
    assert "SYS raised while stopping" in err and "ValueError: raised while being cancelled" in err
    assert "killing worker SYS" in err
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers)


def test_sigint_to_a_running_script_exits_cleanly(tmp_path, no_leaks):
    script = tmp_path / "endless.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {ROOT!r})
        from ezmsg_console.runtime import run
        from tests.runtime.units import Endless
        result = run(SYS=Endless(), address={free_address()!r})
        print("reason:", result.reason, flush=True)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        me = psutil.Process(proc.pid)

        def workers() -> list[psutil.Process]:
            return [c for c in me.children(recursive=True) if "runtime.worker" in " ".join(c.cmdline())]

        import time

        deadline = time.monotonic() + TIMEOUT
        while (len(workers()) < 2 or not shm.ours(os.environ[RUN_TAG_PREFIX_ENV])) and time.monotonic() < deadline:
            time.sleep(0.05)
        running = workers()
        assert len(running) == 2 and shm.ours(os.environ[RUN_TAG_PREFIX_ENV])
        # workers copy big messages around the cache (pubsub.shm.worker_environ)
        assert all(shm.NT_TUNABLE + "=" in p.environ().get("GLIBC_TUNABLES", "") for p in running)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT * 2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "reason: signal SIGINT" in out
    assert "Traceback" not in err
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in running)
