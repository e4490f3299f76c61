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
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from benchlib import cpu_model  # noqa: E402
from console_load import measure, report  # noqa: E402

from ezmsg_console.client.monitor import ConnState, GraphMonitor  # noqa: E402
from ezmsg_console.ezmsg_backend.launcher import EzmsgDemo  # noqa: E402
from ezmsg_console.tui.app import ConsoleApp  # noqa: E402


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
    units = tuple(f"LOAD/P{k}/{name}" for k in range(args.processes)
                  for name in ("SRC", *(f"R{i}" for i in range(1, args.units))))
    print("console load benchmark on a real ezmsg pipeline: Profiling tab, headless ConsoleApp, ezmsg backend")
    print(f"  machine  {platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs, load avg "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    demo = EzmsgDemo(units=units, pipeline=[
        sys.executable, os.path.join(HERE, "ezmsg_load_pipeline.py"), "--processes", str(args.processes),
        "--units", str(args.units), "--rate", str(args.rate)])
    try:
        address = demo.start(timeout=90.0)
        print(f"  python   {sys.version.split()[0]}; ezmsg {demo.version}; {len(units)} units in {args.processes} "
              f"processes, sources at {args.rate:g} Hz; terminal {args.cols}x{args.rows}; {args.seconds:g} s "
              "measured; console defaults (profiling 1 s)")
        monitor = GraphMonitor(address, backend="ezmsg", version=demo.version)
        app = ConsoleApp(monitor)

        def ready() -> bool:
            st = monitor.state
            return st.conn_state is ConnState.CONNECTED and len(st.profiling) >= args.processes

        r = asyncio.run(measure(app, args, ready))
    finally:
        demo.stop()
    cpu = 100.0 * r["cpu"] / r["wall"]
    report(r, cpu, [("CPU, console process (% of one core)", f"{cpu:>11.1f}%")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
