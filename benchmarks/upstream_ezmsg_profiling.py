"""Throughput cost of upstream ezmsg's profiling trace (comparison only; see profiling_overhead.py).

Not a test, and NOT part of ``ezmsg_console``: this script imports the public ``ezmsg``
package, which must never be a dependency of this project. It runs in the separate
comparison venv (``benchmarks/UPSTREAM.md``); ``benchmarks/profiling_overhead.py`` runs
it and merges its JSON into one table::

    ../ezmsg-venv/bin/python benchmarks/upstream_ezmsg_profiling.py --quick
    ../ezmsg-venv/bin/python benchmarks/upstream_ezmsg_profiling.py --repeats 5 --json out.json

The same three workloads as ``profiling_overhead.py`` (every case in fresh processes,
throughput limited by backpressure, ``num_buffers=32``), with ezmsg's low-level
``GraphContext.publisher()`` / ``.subscriber()``:

* ``xproc shm 64 B`` / ``xproc shm 1 MiB``: publisher and subscriber processes, ezmsg's
  shared-memory path;
* ``inproc 64 B``: both in one process and event loop (ezmsg's local fast path).

The subscriber takes each message with ``recv_zero_copy()`` and reads its 24-byte
header between ``begin_profile()`` / ``end_profile()``, which is what ezmsg's runtime
wraps every ``@subscriber`` handler in (its ``user_span_ns`` metric).

ezmsg 3.9 has per-endpoint counters that are always on (no switch) and no histograms,
so there are two modes, interleaved per round:

1. ``counters`` (its default): trace off;
2. ``tracing``: every process owns a unit through ezmsg's ``ProcessControlClient`` and
   asks the GraphServer (``GraphContext.process_set_profiling_trace``) to route
   ``SET_PROFILING_TRACE`` with ``ProfilingTraceControl(enabled=True, sample_mod=1,
   ttl_seconds=600)`` (every endpoint, every metric) to it, as a console would; the
   process then records ``publish_delta_ns``, ``backpressure_wait_ns``,
   ``lease_time_ns`` and ``user_span_ns`` samples and its push loop sends them to the
   GraphServer every 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import time

# Quieten ezmsg before it is imported (here and, through the environment, in children).
os.environ.setdefault("EZMSG_LOGLEVEL", "WARNING")
os.environ.setdefault("EZMSG_DISABLE_BACKPRESSURE_WARNING", "1")

import numpy as np  # noqa: E402

import ezmsg.core as ez  # noqa: E402
from ezmsg.core.graphmeta import ProfilingTraceControl  # noqa: E402
from ezmsg.core.graphserver import GraphServer  # noqa: E402
from ezmsg.core.processclient import ProcessControlClient  # noqa: E402
from ezmsg.core.profiling import PROFILES  # noqa: E402
from benchlib import StdinControl, Child, emit, expect, label, reap, spawn  # noqa: E402
# Both modules are standard library only at import time (ezmsg_console is imported inside functions).
from profiling_overhead import LOCAL_POOL, TRACE_TTL_S, WORKLOADS, cpu_us_per_msg, timed_phases, wl_name  # noqa: E402
from pubsub import DEFAULT_BUF_SIZE, HEADER, NUM_BUFFERS, PH_STOP, PH_TPUT, OtherLoad  # noqa: E402

MODES = ("counters", "tracing")


# --------------------------------------------------------------------------- child side


async def control_plane(cfg: dict, unit: str) -> tuple[ProcessControlClient, dict]:
    """ezmsg's process control connection, owning ``unit``; counts what its trace push loop sends."""
    pc = ProcessControlClient(tuple(cfg["graph"]))
    await pc.register([unit])
    pushed = {"batches": 0, "samples": 0}
    trace_batch = PROFILES.trace_batch

    def counting_trace_batch(max_samples: int = 1000):  # the push loop sends a batch if it has samples
        batch = trace_batch(max_samples=max_samples)
        if batch.samples:
            pushed["batches"] += 1
            pushed["samples"] += len(batch.samples)
        return batch

    PROFILES.trace_batch = counting_trace_batch  # type: ignore[method-assign]
    return pc, pushed


async def start_tracing(ctx: ez.GraphContext, unit: str) -> None:
    control = ProfilingTraceControl(enabled=True, sample_mod=1, ttl_seconds=TRACE_TTL_S)
    resp = await ctx.process_set_profiling_trace(unit, control, timeout=5.0)
    if not resp.ok:
        raise RuntimeError(f"SET_PROFILING_TRACE failed: {resp.error}")


def trace_report(pushed: dict) -> dict:
    return {"tracing_on": PROFILES.trace_enabled(), "pushed_batches": pushed["batches"],
            "pushed_samples": pushed["samples"],
            "traced_endpoints": sum(1 for m in [*PROFILES._publishers.values(), *PROFILES._subscribers.values()]
                                    if m.trace_enabled)}  # private, benchmark-only introspection


async def publish_phases(cfg: dict, pub, arrays: list) -> dict:
    """The same phases as ours (``profiling_overhead.timed_phases``), drained the upstream way."""
    n, wall, cpu, sent = await timed_phases(cfg, pub.broadcast, arrays)
    await asyncio.wait_for(pub._backpressure.sync(), 10.0)  # private, benchmark-only: drained
    return {"n_pub": n, "pub_wall_s": wall, "pub_cpu_s": cpu, "published_total": sent}


async def receive_phases(sub, span: bool) -> dict:
    first_stamp = last_recv = None
    cpu_first = None
    n = received = 0
    unpack = HEADER.unpack
    monotonic_ns = time.monotonic_ns
    while True:
        async with sub.recv_zero_copy() as msg:
            if span:
                start = sub.begin_profile()  # what ezmsg's runtime wraps each @subscriber handler in
                try:
                    stamp, _seq, phase = unpack(msg[:24].tobytes())
                finally:
                    sub.end_profile(start, "on_message")
            else:
                stamp, _seq, phase = unpack(msg[:24].tobytes())
        received += 1
        if phase == PH_TPUT:
            last_recv = monotonic_ns()
            if first_stamp is None:
                first_stamp, cpu_first = stamp, time.process_time()
            n += 1
        elif phase == PH_STOP:
            cpu_last = time.process_time()
            break
    window = (last_recv - first_stamp) / 1e9 if n else 0.0
    return {"n_sub": n, "window_s": window, "msgs_per_s": n / window if window > 0 else 0.0,
            "sub_cpu_s": (cpu_last - cpu_first) if cpu_first is not None else None, "received_total": received}


async def pub_main(cfg: dict) -> None:
    ctl = StdinControl(asyncio.get_running_loop())
    payload = cfg["payload"]
    async with ez.GraphContext(tuple(cfg["graph"]), auto_start=False) as ctx:
        unit = f"{cfg['unit']}/pub"
        pc, pushed = await control_plane(cfg, unit)
        try:
            pub = await ctx.publisher(cfg["topic"], num_buffers=NUM_BUFFERS,
                                      buf_size=max(DEFAULT_BUF_SIZE, payload + 4096), force_tcp=False)
            if cfg["mode"] == "tracing":
                await start_tracing(ctx, unit)
            emit({"event": "ready"})
            await ctl.go.wait()
            deadline = time.monotonic() + 10.0
            while len(pub._channels) < 2:  # the subscriber's process + ezmsg's own in-process channel
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(pub._channels)} of 2 channels connected")
                await asyncio.sleep(0.005)
            arr = np.zeros(payload, dtype=np.uint8)
            arr[24:] = 0xA5
            res = await publish_phases(cfg, pub, [arr])
            res.update(trace_report(pushed))
            emit(dict(res, event="result"))
        finally:
            ctl.finished = True
            await pc.close()


async def sub_main(cfg: dict) -> None:
    ctl = StdinControl(asyncio.get_running_loop())
    async with ez.GraphContext(tuple(cfg["graph"]), auto_start=False) as ctx:
        unit = f"{cfg['unit']}/sub"
        pc, pushed = await control_plane(cfg, unit)
        try:
            sub = await ctx.subscriber(cfg["topic"])
            if cfg["mode"] == "tracing":
                await start_tracing(ctx, unit)
            emit({"event": "ready"})
            res = await receive_phases(sub, cfg["span"])
            res.update(trace_report(pushed))
            emit(dict(res, event="result"))
        finally:
            ctl.finished = True
            await pc.close()


async def local_main(cfg: dict) -> None:
    ctl = StdinControl(asyncio.get_running_loop())
    payload = cfg["payload"]
    async with ez.GraphContext(tuple(cfg["graph"]), auto_start=False) as ctx:
        unit = f"{cfg['unit']}/local"
        pc, pushed = await control_plane(cfg, unit)
        try:
            pub = await ctx.publisher(cfg["topic"], num_buffers=NUM_BUFFERS,
                                      buf_size=max(DEFAULT_BUF_SIZE, payload + 4096), force_tcp=False)
            sub = await ctx.subscriber(cfg["topic"])
            deadline = time.monotonic() + 10.0
            while pub.id not in sub._channels:  # private, benchmark-only: the local link is up
                if time.monotonic() > deadline:
                    raise RuntimeError("the in-process subscriber never linked")
                await asyncio.sleep(0.005)
            if cfg["mode"] == "tracing":
                await start_tracing(ctx, unit)
            emit({"event": "ready"})
            await ctl.go.wait()
            arrays = []
            for _ in range(LOCAL_POOL):  # the local path hands over the object itself
                a = np.zeros(payload, dtype=np.uint8)
                a[24:] = 0xA5
                arrays.append(a)
            receiving = asyncio.ensure_future(receive_phases(sub, cfg["span"]))
            res = await publish_phases(cfg, pub, arrays)
            res.update(await asyncio.wait_for(receiving, 10.0))
            res.update(trace_report(pushed))
            emit(dict(res, event="result"))
        finally:
            ctl.finished = True
            await pc.close()


def child_main(role: str, cfg_json: str) -> None:
    cfg = json.loads(cfg_json)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and cleans up
    asyncio.run({"pub": pub_main, "sub": sub_main, "local": local_main}[role](cfg))


# -------------------------------------------------------------------------- parent side




def run_case(graph: tuple[str, int], workload: str, payload: int, mode: str, params: dict, idx: int) -> dict:
    case = f"{workload}-{label(payload).replace(' ', '')}-{mode}-{idx}"
    cfg = dict(params, graph=list(graph), payload=payload, mode=mode, unit=f"bench/{os.getpid()}/{case}",
               topic=f"/prof/{os.getpid()}/{case}")
    children: list[Child] = []
    ok = False
    other = OtherLoad()
    cpu0, t0 = time.process_time(), time.monotonic()
    try:
        if workload == "xproc":
            pub = spawn(__file__, f"{case} publisher", "pub", cfg)
            children.append(pub)
            sub = spawn(__file__, f"{case} subscriber", "sub", cfg)
            children.append(sub)  # started together: the subscriber waits for the publisher's route
            expect(pub, "ready", 60)
            expect(sub, "ready", 60)
            go = pub
        else:
            go = spawn(__file__, f"{case} pub+sub", "local", cfg)
            children.append(go)
            expect(go, "ready", 60)
        assert go.proc.stdin is not None
        go.proc.stdin.write("go\n")
        go.proc.stdin.flush()
        budget = 60 + params["warmup_s"] + params["seconds"]
        if workload == "xproc":
            sub_res = expect(sub, "result", budget)
            pub_res = expect(pub, "result", 30)
        else:
            sub_res = pub_res = expect(go, "result", budget)
        ok = True
    finally:
        problems = reap(children, 20 if ok else 0.5)
    wall = time.monotonic() - t0
    tr = [pub_res] if workload == "inproc" else [pub_res, sub_res]
    return {
        "impl": f"ezmsg {ez.__version__}", "workload": workload, "payload_bytes": payload, "mode": mode,
        "msgs_per_s": sub_res["msgs_per_s"], "messages": sub_res["n_sub"],
        "pub_cpu_pct": 100.0 * pub_res["pub_cpu_s"] / pub_res["pub_wall_s"] if pub_res["pub_wall_s"] else None,
        "sub_cpu_pct": (100.0 * sub_res["sub_cpu_s"] / sub_res["window_s"]
                        if sub_res["sub_cpu_s"] is not None and sub_res["window_s"] else None),
        "server_cpu_pct": 100.0 * (time.process_time() - cpu0) / wall if wall > 0 else None,
        "cpu_us_per_msg": cpu_us_per_msg(workload, pub_res, sub_res),
        "other_cpu_pct": other.pct(),
        "lost": pub_res["n_pub"] - sub_res["n_sub"],
        "tracing_on": all(r["tracing_on"] for r in tr), "traced_endpoints": sum(r["traced_endpoints"] for r in tr),
        "pushed_batches": sum(r["pushed_batches"] for r in tr), "pushed_samples": sum(r["pushed_samples"] for r in tr),
        "handled_total": pub_res["published_total"] + sub_res["received_total"],
        "problems": problems,
    }


def parent_main(args: argparse.Namespace) -> int:
    params = dict(warmup_s=args.warmup, seconds=args.seconds, span=not args.no_handler_span)
    workloads = [w for w in WORKLOADS if not args.only or all(tok in wl_name(*w) for tok in args.only.split(","))]
    print(f"ezmsg {ez.__version__} | Python {platform.python_version()} | numpy {np.__version__} | "
          f"{args.repeats} repeats x {len(workloads)} workloads x modes {'/'.join(MODES)}, interleaved | "
          f"warm-up {args.warmup}s, throughput {args.seconds}s | handler span "
          f"{'off (--no-handler-span)' if args.no_handler_span else 'on (begin_profile/end_profile, as @subscriber)'}",
          flush=True)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    server = GraphServer()
    server.start(("127.0.0.1", 0))
    graph = (server.address.host, server.address.port)
    rows: list[dict] = []
    idx = 0
    # Extra attempts for the whole run: a third of the cases (a busy machine stays busy).
    reruns_left = -(-args.repeats * len(workloads) * len(MODES) // 3) if args.retries else 0
    try:
        for rnd in range(args.repeats):
            for workload, payload in workloads:
                parts = []
                for mode in MODES:
                    row = None
                    for attempt in range(1 + args.retries):
                        idx += 1
                        try:
                            got = run_case(graph, workload, payload, mode, params, idx)
                        except (RuntimeError, KeyError, ValueError) as exc:
                            print(f"  FAILED {wl_name(workload, payload)} {mode}: {str(exc)[:2000]}", flush=True)
                            row = {"workload": workload, "payload_bytes": payload, "mode": mode, "error": str(exc)}
                            break
                        got["attempts"] = attempt + 1
                        if row is None or (got["other_cpu_pct"] or 0) < (row["other_cpu_pct"] or 0):
                            row = got  # the attempt least disturbed by other processes
                        busy = got["other_cpu_pct"] or 0
                        if busy <= args.retry_busy or reruns_left <= 0:
                            break
                        if attempt < args.retries and reruns_left > 0:
                            reruns_left -= 1
                            print(f"  (other processes used {busy:.0f} % of a core during {wl_name(workload, payload)}"
                                  f" {mode}: running it again)", flush=True)
                    assert row is not None
                    parts.append(f"{mode} FAILED" if "error" in row else f"{mode} {row['msgs_per_s']:,.0f}")
                    row["round"] = rnd
                    rows.append(row)
                print(f"  round {rnd + 1}/{args.repeats} {wl_name(workload, payload):16s}: {', '.join(parts)} msgs/s",
                      flush=True)
    finally:
        shm_names = list(server.shms.keys())
        server.stop()
        leftovers = [n for n in shm_names if os.path.exists(f"/dev/shm/{n.lstrip('/')}")]
        for n in leftovers:
            try:
                os.unlink(f"/dev/shm/{n.lstrip('/')}")
            except OSError:
                pass
        if leftovers:
            print(f"/dev/shm: removed {len(leftovers)} leftover ezmsg segment(s): {leftovers}")
        else:
            print(f"/dev/shm: none of the {len(shm_names)} ezmsg segment(s) this run's GraphServer knew is left over")

    print()
    for workload, payload in workloads:
        by_mode = {m: [r["msgs_per_s"] for r in rows if "error" not in r and
                       (r["workload"], r["payload_bytes"], r["mode"]) == (workload, payload, m)] for m in MODES}
        meds = {m: statistics.median(v) for m, v in by_mode.items() if v}
        cost = 100.0 * (1 - meds["tracing"] / meds["counters"]) if meds.get("counters") and "tracing" in meds else None
        print(f"{wl_name(workload, payload):16s} " + "  ".join(
            f"{m} {meds[m]:,.0f} ({min(v):,.0f}-{max(v):,.0f})" for m, v in by_mode.items() if v)
              + ("" if cost is None else f"  tracing cost {cost:+.1f} %"))
    for r in rows:
        if "error" in r:
            print(f"warning: {wl_name(r['workload'], r['payload_bytes'])} {r['mode']} round {r['round'] + 1} failed")
            continue
        tag = f"{wl_name(r['workload'], r['payload_bytes'])} {r['mode']} round {r['round'] + 1}"
        if r["mode"] == "tracing" and not (r["tracing_on"] and r["pushed_samples"]):
            print(f"warning: {tag}: tracing did not run (on={r['tracing_on']}, pushed={r['pushed_samples']})")
        if r["lost"]:
            print(f"warning: {tag}: {r['lost']} message(s) published but not received")
        for p in r["problems"]:
            print(f"warning: {tag}: {p}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 repeats of 0.4 s phases")
    ap.add_argument("--repeats", type=int, help="rounds (default 5, quick 3)")
    ap.add_argument("--seconds", type=float, help="throughput phase per case (default 1.5, quick 0.4)")
    ap.add_argument("--warmup", type=float, help="warm-up per case (default 0.3, quick 0.1)")
    ap.add_argument("--only", help="comma-separated substrings a workload name must all contain")
    ap.add_argument("--no-handler-span", action="store_true",
                    help="receive without begin_profile()/end_profile() around the handler (no user_span_ns "
                         "samples; not what an ezmsg unit does)")
    ap.add_argument("--retry-busy", type=float, default=10.0, metavar="PCT",
                    help="run a case again when other processes used more than PCT %% of a core (default 10)")
    ap.add_argument("--retries", type=int, help="at most this many extra attempts per case (default 2, quick 0)")
    ap.add_argument("--json", metavar="OUT", help="write every case as a JSON list")
    ap.add_argument("--role", choices=("pub", "sub", "local"), help=argparse.SUPPRESS)
    ap.add_argument("--cfg", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        child_main(args.role, args.cfg)
        return 0
    args.repeats = max(1, args.repeats or (3 if args.quick else 5))
    args.retries = args.retries if args.retries is not None else (0 if args.quick else 2)
    args.seconds = args.seconds or (0.4 if args.quick else 1.5)
    args.warmup = args.warmup if args.warmup is not None else (0.1 if args.quick else 0.3)
    try:
        return parent_main(args)
    except KeyboardInterrupt:
        print("interrupted; child processes reaped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
