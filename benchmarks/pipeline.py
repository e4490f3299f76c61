"""A user's pipeline, each framework's defaults: ezmsg-console vs ezmsg 3.9 in the same run.

Not a test: run it by hand, on an otherwise idle machine, and read the table::

    .venv/bin/python benchmarks/pipeline.py                # 3 rounds (~3-4 min with ezmsg)
    .venv/bin/python benchmarks/pipeline.py --quick        # 1 round, fewer messages
    .venv/bin/python benchmarks/pipeline.py --only 200KB   # cases whose name contains it

Both frameworks run ``benchmarks/pipeline_units.py``: one file written against ezmsg's public
unit API (``ez.Unit``, ``@ez.publisher``, ``@ez.subscriber``, ``ez.run``), every stream option
at its default, the ``ez`` module picked by ``PIPELINE_EZ`` (``ezmsg_console.ez``, or
``ezmsg.core`` under ``$EZMSG_CONSOLE_UPSTREAM_PYTHON``, default ``../ezmsg-venv/bin/python``).
SOURCE and SINK run in separate processes, started by the framework's own ``run()``; each
case is a fresh process tree (and, for ezmsg, a fresh GraphServer it starts itself).

Cases: throughput with backpressure at 64 B, 64 KiB, a 200 KB float64 array (100 samples x 256
channels), a 200 KB AxisArray-like dataclass holding that array, 1 MiB and 8 MiB (uint8
arrays): msgs/s = messages after the first 10 % / time between their arrivals. ``paced 64 B``:
100 messages/s for 3 s, one-way latency p50/p99 (publish stamp to handler, one monotonic clock).
``launch``: from starting the script to the sink's first message (interpreter start, imports,
GraphServer, processes, wiring; the source publishes at once, every 10 ms). Medians over rounds;
targets (issue 12): every size >= 2x ezmsg, 64 B >= 5x, latency p50 <= 1/2, launch <= ezmsg's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import cpu_model, upstream_python

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
UNITS = HERE / "pipeline_units.py"
KB = 1000

# name, kind, bytes, messages (full run), messages (quick)
THROUGHPUT = [
    ("64 B", "bytes", 64, 40_000, 8_000),
    ("64 KiB", "bytes", 64 * 1024, 10_000, 2_000),
    ("200 KB float64", "float64", 204_800, 6_000, 1_500),
    ("200 KB frame", "frame", 204_800, 6_000, 1_500),
    ("1 MiB", "bytes", 1024 * 1024, 2_000, 500),
    ("8 MiB", "bytes", 8 * 1024 * 1024, 300, 80),
]
TARGETS = {"64 B": 5.0}
DEFAULT_TARGET = 2.0


def run_case(impl: str, python: str, args: list[str], timeout: float) -> tuple[dict | None, float, str]:
    """One process tree: (the sink's record or None, launch time, error text)."""
    env = dict(os.environ)
    env["PIPELINE_EZ"] = "ezmsg_console.ez" if impl == "ours" else "ezmsg.core"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    for var in ("EZMSG_CONSOLE_ADDRESS", "EZMSG_GRAPHSERVER_ADDR"):
        env.pop(var, None)
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        out = Path(tmp) / "record.json"
        started = time.monotonic()
        proc = subprocess.Popen([python, str(UNITS), *args, "--out", str(out)], env=env, cwd=tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            output, _ = proc.communicate()
            return None, started, f"timed out after {timeout:.0f} s: " + output.decode(errors="replace")[-400:]
        if not out.exists():
            return None, started, f"exit {proc.returncode}: " + output.decode(errors="replace")[-400:]
        return json.loads(out.read_text()), started, ""


def throughput(record: dict) -> float:
    arrivals = record["arrivals"]
    skip = len(arrivals) // 10
    return (len(arrivals) - 1 - skip) / (arrivals[-1] - arrivals[skip])


def pctl(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}{unit}" if abs(v) >= 100 else f"{v:,.2f}{unit}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 round, fewer messages")
    ap.add_argument("--repeats", type=int, help="rounds (default 3, quick 1)")
    ap.add_argument("--only", help="comma-separated substrings of case names")
    ap.add_argument("--skip-upstream", action="store_true", help="do not run ezmsg")
    ap.add_argument("--upstream-python", default=upstream_python(), help="the interpreter with ezmsg 3.9")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per case before it is killed")
    args = ap.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    impls = [("ours", sys.executable)]
    if not args.skip_upstream:
        probe = subprocess.run([args.upstream_python, "-c", "import ezmsg.core, numpy"], capture_output=True)
        if probe.returncode == 0:
            impls.append(("ezmsg", args.upstream_python))
        else:
            print(f"ezmsg: {args.upstream_python} cannot import ezmsg.core and numpy; ours only", flush=True)
    cases: list[tuple[str, list[str], str]] = []  # name, unit args, what is measured
    for name, kind, nbytes, full, quick in THROUGHPUT:
        n = quick if args.quick else full
        cases.append((name, ["--kind", kind, "--nbytes", str(nbytes), "--count", str(n)], "throughput"))
    paced = 100 if args.quick else 300
    cases.append(("paced 64 B", ["--nbytes", "64", "--count", str(paced), "--period", "0.01"], "latency"))
    cases.append(("launch", ["--nbytes", "64", "--count", "0", "--period", "0.01", "--settle", "0",
                             "--expect", "5"], "launch"))
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        cases = [c for c in cases if any(w in c[0] for w in wanted)]
    print(f"pipeline benchmark: {repeats} round(s), {len(cases)} case(s), {' vs '.join(i for i, _ in impls)}; "
          f"{cpu_model()}, {os.cpu_count()} cores", flush=True)
    results: dict[tuple[str, str], list[dict]] = {}
    errors: list[str] = []
    for rnd in range(1, repeats + 1):
        for name, unit_args, what in cases:
            for impl, python in impls:
                record, started, error = run_case(impl, python, unit_args, args.timeout)
                if record is None:
                    errors.append(f"round {rnd} {name} {impl}: {error}")
                    print(f"  round {rnd} {name:16} {impl:5}: FAILED ({error[:120]})", flush=True)
                    continue
                row = {"type": record["type"]}
                if what == "throughput":
                    row["rate"] = throughput(record)
                    shown = f"{row['rate']:,.0f} msgs/s"
                elif what == "latency":
                    delays = record["delays"][len(record["delays"]) // 10:]
                    row["p50"], row["p99"] = 1e6 * pctl(delays, 50), 1e6 * pctl(delays, 99)
                    shown = f"p50 {row['p50']:.0f} us, p99 {row['p99']:.0f} us"
                else:
                    row["launch"] = record["arrivals"][0] - started
                    shown = f"first message after {row['launch']:.2f} s"
                results.setdefault((name, impl), []).append(row)
                print(f"  round {rnd} {name:16} {impl:5}: {shown}", flush=True)
    print()
    header = f"{'case':16} {'ours':>22} {'ezmsg 3.9':>22} {'ours / ezmsg':>13}  target"
    print(header)
    print("-" * len(header))
    for name, _args, what in cases:
        ours, theirs = results.get((name, "ours"), []), results.get((name, "ezmsg"), [])
        if what == "throughput":
            o, t = med([r["rate"] for r in ours]), med([r["rate"] for r in theirs])
            ratio = o / t if o and t else None
            target = TARGETS.get(name, DEFAULT_TARGET)
            verdict = "-" if ratio is None else ("ok" if ratio >= target else "MISSED")
            print(f"{name:16} {fmt(o, ' msgs/s'):>22} {fmt(t, ' msgs/s'):>22} {fmt(ratio, 'x'):>13}  "
                  f">= {target:g}x {verdict}")
        elif what == "latency":
            o50, t50 = med([r["p50"] for r in ours]), med([r["p50"] for r in theirs])
            o99, t99 = med([r["p99"] for r in ours]), med([r["p99"] for r in theirs])
            ratio = o50 / t50 if o50 and t50 else None
            verdict = "-" if ratio is None else ("ok" if ratio <= 0.5 else "MISSED")
            print(f"{'p50 ' + name:16} {fmt(o50, ' us'):>22} {fmt(t50, ' us'):>22} {fmt(ratio, 'x'):>13}  "
                  f"<= 0.5x {verdict}")
            print(f"{'p99 ' + name:16} {fmt(o99, ' us'):>22} {fmt(t99, ' us'):>22} "
                  f"{fmt(o99 / t99 if o99 and t99 else None, 'x'):>13}")
        else:
            o, t = med([r["launch"] for r in ours]), med([r["launch"] for r in theirs])
            ratio = o / t if o and t else None
            verdict = "-" if ratio is None else ("ok" if ratio <= 1.0 else "MISSED")
            print(f"{name:16} {fmt(o, ' s'):>22} {fmt(t, ' s'):>22} {fmt(ratio, 'x'):>13}  <= 1x {verdict}")
    frame_types = {impl: {r["type"] for r in results.get(("200 KB frame", impl), [])} for impl, _ in impls}
    print(f"\nthe frame case's message type at the sink: {frame_types}")
    for error in errors:
        print(f"error: {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
