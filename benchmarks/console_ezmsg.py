"""Console load on a real ezmsg 3.9 pipeline: 50 units in 10 processes, the Profiling tab live.

    python benchmarks/console_ezmsg.py [--processes 10] [--units 5] [--rate 20] [--seconds 15] [--quick]

Starts a real ezmsg GraphServer (``python -m ezmsg.core serve``) and the pipeline of
``ezmsg_load_pipeline.py`` (each process a chain of units with dynamic settings), then
the real ConsoleApp with the ezmsg backend and default options (profiling every 1 s,
process stats every 2 s), headless (Textual's test driver renders every frame to an
off-screen buffer). Reported: CPU share of one core of the console process (everything:
upstream's pickle decoding, translation, drawing), draw and frame times p50/p99.
Targets (issue 11, as on the native backend): under 25 % of one core, frame p99 < 50 ms.
Needs the [ezmsg] extra.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from benchlib import cpu_model  # noqa: E402
from console_load import measure, report  # noqa: E402

from ezmsg_console.client.monitor import ConnState, GraphMonitor  # noqa: E402
from ezmsg_console.client.source import Backend, probe  # noqa: E402
from ezmsg_console.ezmsg_backend.source import EzmsgSource  # noqa: E402
from ezmsg_console.protocol.address import Address  # noqa: E402
from ezmsg_console.tui.app import ConsoleApp  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGINT, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def wait_owned(address: Address, units: int, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = await probe(address)
        if found.backend is Backend.EZMSG:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the ezmsg GraphServer did not start")
        await asyncio.sleep(0.1)
    source = EzmsgSource(address, version=found.version)
    await source.open()
    try:
        while True:
            snap = await source.snapshot()
            owned = sum(len(p.units) for p in snap.processes)
            if owned >= units:
                return found.version
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {owned} of {units} units running after {timeout:g} s")
            await asyncio.sleep(0.2)
    finally:
        await source.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--units", type=int, default=5, help="units per process (default 5)")
    parser.add_argument("--rate", type=float, default=20.0, help="source blocks per second (default 20)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--cols", type=int, default=120)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="6 s measured, 3 s warm-up")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup = 6.0, 3.0
    units = args.processes * args.units
    address = Address("127.0.0.1", free_port())
    print("console load benchmark on a real ezmsg pipeline: Profiling tab, headless ConsoleApp, ezmsg backend")
    print(f"  machine  {platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs, load avg "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    server = spawn([sys.executable, "-m", "ezmsg.core", "serve", "--address", str(address)])
    pipeline = None
    try:
        time.sleep(0.3)
        pipeline = spawn([sys.executable, os.path.join(HERE, "ezmsg_load_pipeline.py"), "--address", str(address),
                          "--processes", str(args.processes), "--units", str(args.units), "--rate", str(args.rate)])
        version = asyncio.run(wait_owned(address, units))
        print(f"  python   {sys.version.split()[0]}; ezmsg {version}; {units} units in {args.processes} processes, "
              f"sources at {args.rate:g} Hz; terminal {args.cols}x{args.rows}; {args.seconds:g} s measured; "
              "console defaults (profiling 1 s)")
        monitor = GraphMonitor(address, backend="ezmsg", version=version)
        app = ConsoleApp(monitor)

        def ready() -> bool:
            st = monitor.state
            return st.conn_state is ConnState.CONNECTED and len(st.profiling) >= args.processes

        r = asyncio.run(measure(app, args, ready))
    finally:
        for proc in (pipeline, server):
            if proc is not None:
                stop(proc)
    cpu = 100.0 * r["cpu"] / r["wall"]
    report(r, cpu, [("CPU, console process (% of one core)", f"{cpu:>11.1f}%")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
