"""Pub/sub throughput and latency of the upstream ``ezmsg`` package (comparison only).

Not a test, and NOT part of ``ezmsg_console``: this script imports the public
``ezmsg`` package, which must never be a dependency of this project. Run it with
the separate comparison venv (see ``benchmarks/UPSTREAM.md``)::

    ../ezmsg-venv/bin/python benchmarks/upstream_ezmsg_pubsub.py            # full, ~1 min
    ../ezmsg-venv/bin/python benchmarks/upstream_ezmsg_pubsub.py --quick    # ~25 s
    ../ezmsg-venv/bin/python benchmarks/upstream_ezmsg_pubsub.py --json out.json

What runs
---------
The benchmark process starts an ezmsg ``GraphServer`` (a thread, on an ephemeral
127.0.0.1 port, as ``ez.run`` would). For every case it then launches, as separate
OS processes (``sys.executable`` running this file with ``--role``), one publisher
and N subscribers that use ezmsg's low-level ``GraphContext.publisher()`` /
``GraphContext.subscriber()`` clients on the same topic (no in-process fast path is
possible: every endpoint is in its own process).

Cases: ``p2p`` (1 pub -> 1 sub) at 64 B, 64 KiB, 1 MiB and 8 MiB, and ``fanout4``
(1 pub -> 4 subs) at 64 B and 1 MiB, each over two channel kinds:

* ``shm`` - ezmsg's default same-host path (payload copied into a shared-memory
  ring of ``num_buffers`` slots, a small notification over the publisher's TCP
  connection per subscriber process);
* ``tcp`` - ``force_tcp=True`` (the whole serialized message goes over loopback TCP).

Messages are ``numpy.uint8`` arrays of exactly ``payload`` bytes. The publisher
reuses one preallocated array and writes a 24-byte header before each send:
``(send_time_ns, seq, phase)`` little-endian, where ``send_time_ns`` is
``time.monotonic_ns()`` (CLOCK_MONOTONIC: one system-wide clock on Linux, so it is
comparable across processes). Subscribers use ``recv_zero_copy()`` (what a
non-leaky ``@ez.subscriber`` gets), read only the header and release the message.

Each case has two phases in the same processes:

1. throughput: warm-up, then publish as fast as ezmsg's backpressure allows
   (``num_buffers=32`` in flight, ezmsg's default) for ``--seconds`` or
   ``--max-msgs``, whichever comes first. ``msgs/s`` = measured messages received
   / (receive time of the last one - send stamp of the first one), per subscriber;
   for fan-out the slowest subscriber is reported. ``load p50/p99`` are one-way
   latencies in this phase: they include queueing behind up to 32 in-flight
   messages and the publisher's wait for a free buffer (stamp is taken before
   ``broadcast()`` is called), so they mostly measure queue depth / throughput.
2. paced latency: one message at a time; after each ``broadcast()`` the publisher
   waits until every subscriber has released it (ezmsg backpressure drained) before
   stamping the next one. ``p50/p99`` (the ``p50_us``/``p99_us`` JSON fields) are
   one-way latencies from this phase: no queueing.

CPU% columns are process CPU time (user+sys, all threads) / wall time over the
throughput phase: 100 % = one core pegged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import struct
import sys
import time

# Quieten ezmsg before it is imported (here and, through the environment, in children).
os.environ.setdefault("EZMSG_LOGLEVEL", "WARNING")
os.environ.setdefault("EZMSG_DISABLE_BACKPRESSURE_WARNING", "1")

import numpy as np  # noqa: E402

import ezmsg.core as ez  # noqa: E402
from ezmsg.core.graphserver import GraphServer  # noqa: E402
from benchlib import KIB, MIB, Child, StdinControl, emit, expect, label, pct, reap, spawn  # noqa: E402

HEADER = struct.Struct("<QQQ")  # send_time_ns, seq, phase
PH_WARM, PH_TPUT, PH_PWARM, PH_PACED, PH_STOP = range(5)
NUM_BUFFERS = 32  # ezmsg default
DEFAULT_BUF_SIZE = 2**16  # ezmsg's default SHM slot size (DEFAULT_SHM_SIZE)


# --------------------------------------------------------------------------- child side


async def publisher_main(cfg: dict) -> None:
    ctl = StdinControl(asyncio.get_running_loop())
    payload = cfg["payload"]
    buf_size = max(DEFAULT_BUF_SIZE, payload + 4096) if cfg["channel"] == "shm" else DEFAULT_BUF_SIZE
    async with ez.GraphContext(tuple(cfg["graph"]), auto_start=False) as ctx:
        pub = await ctx.publisher(
            cfg["topic"],
            num_buffers=NUM_BUFFERS,
            buf_size=buf_size,
            force_tcp=(cfg["channel"] == "tcp"),
        )
        emit({"event": "ready"})
        await ctl.go.wait()

        # Every subscriber process has its own channel to us, plus the publisher's
        # own in-process channel (ezmsg always registers one).
        want = cfg["nsubs"] + 1
        deadline = time.monotonic() + 10.0
        while len(pub._channels) < want:  # private, benchmark-only introspection
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(pub._channels)} of {want} channels connected")
            await asyncio.sleep(0.005)
        n_channels = len(pub._channels)

        arr = np.zeros(payload, dtype=np.uint8)
        arr[24:] = 0xA5
        seq = 0

        async def send(phase: int) -> None:
            nonlocal seq
            HEADER.pack_into(arr, 0, time.monotonic_ns(), seq, phase)
            await pub.broadcast(arr)
            seq += 1

        # Phase 1: throughput (backpressure-limited)
        t_end = time.monotonic() + cfg["warmup_s"]
        n_warm = 0
        while time.monotonic() < t_end or n_warm < cfg["warmup_min"]:
            await send(PH_WARM)
            n_warm += 1
        cpu0, t0 = time.process_time(), time.monotonic()
        t_end = t0 + cfg["seconds"]
        n_tput = 0
        while n_tput < cfg["max_msgs"] and time.monotonic() < t_end:
            await send(PH_TPUT)
            n_tput += 1
        t1, cpu1 = time.monotonic(), time.process_time()

        # Phase 2: paced latency (one message in flight at a time)
        await pub._backpressure.sync()  # drain what phase 1 left in flight
        n_paced = 0
        for _ in range(cfg["paced_warmup"]):
            await send(PH_PWARM)
            await pub._backpressure.sync()
        t_end = time.monotonic() + cfg["paced_seconds"]
        while n_paced < cfg["paced_max"] and time.monotonic() < t_end:
            await send(PH_PACED)
            await pub._backpressure.sync()
            n_paced += 1

        await send(PH_STOP)
        await pub._backpressure.sync()
        emit(
            {
                "event": "result",
                "role": "pub",
                "n_tput": n_tput,
                "n_paced": n_paced,
                "tput_wall_s": t1 - t0,
                "tput_cpu_s": cpu1 - cpu0,
                "channels": n_channels,
            }
        )
        ctl.finished = True


async def subscriber_main(cfg: dict) -> None:
    ctl = StdinControl(asyncio.get_running_loop())
    async with ez.GraphContext(tuple(cfg["graph"]), auto_start=False) as ctx:
        sub = await ctx.subscriber(cfg["topic"])
        emit({"event": "ready"})

        load_lat: list[int] = []
        paced_lat: list[int] = []
        first_stamp = last_recv = None
        cpu_first = cpu_last = None
        expect_seq = None
        gaps = 0
        while True:
            async with sub.recv_zero_copy() as msg:
                now = time.monotonic_ns()
                stamp, seq, phase = HEADER.unpack(msg[:24].tobytes())
            if expect_seq is not None and seq != expect_seq:
                gaps += 1
            expect_seq = seq + 1
            if phase == PH_TPUT:
                if first_stamp is None:
                    first_stamp, cpu_first = stamp, time.process_time()
                last_recv = now
                load_lat.append(now - stamp)
            elif phase == PH_PACED:
                if cpu_last is None:
                    cpu_last = time.process_time()
                paced_lat.append(now - stamp)
            elif phase == PH_STOP:
                break
            elif phase == PH_PWARM and cpu_last is None:
                cpu_last = time.process_time()

        n = len(load_lat)
        window = (last_recv - first_stamp) / 1e9 if n else 0.0
        emit(
            {
                "event": "result",
                "role": "sub",
                "n_tput": n,
                "window_s": window,
                "msgs_per_s": n / window if window > 0 else 0.0,
                "load_p50_us": pct(load_lat, 50),
                "load_p99_us": pct(load_lat, 99),
                "paced_lat_ns": paced_lat,
                "cpu_s": (cpu_last - cpu_first) if (cpu_first is not None and cpu_last is not None) else None,
                "gaps": gaps,
            }
        )
        ctl.finished = True


def child_main(role: str, cfg_json: str) -> None:
    cfg = json.loads(cfg_json)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and cleans up
    asyncio.run(publisher_main(cfg) if role == "pub" else subscriber_main(cfg))


# -------------------------------------------------------------------------- parent side


def run_case(graph: tuple[str, int], workload: str, channel: str, payload: int, nsubs: int, params: dict,
             idx: int) -> dict:
    cfg = dict(params, graph=list(graph), topic=f"/bench/{idx}/{workload}/{channel}/{payload}", payload=payload,
               nsubs=nsubs, channel=channel)
    children: list[Child] = []
    ok = False
    try:
        pub = spawn(__file__, "publisher", "pub", cfg)
        children.append(pub)
        expect(pub, "ready", 60)
        subs = [spawn(__file__, f"subscriber{i}", "sub", cfg) for i in range(nsubs)]
        children.extend(subs)
        for s in subs:
            expect(s, "ready", 60)
        assert pub.proc.stdin is not None
        pub.proc.stdin.write("go\n")
        pub.proc.stdin.flush()
        budget = 60 + params["warmup_s"] + params["seconds"] + params["paced_seconds"]
        sub_res = [expect(s, "result", budget) for s in subs]
        pub_res = expect(pub, "result", 30)
        ok = True
    finally:
        reap(children, 20 if ok else 0.5)

    rates = [r["msgs_per_s"] for r in sub_res]
    slowest = min(rates)
    paced = [x for r in sub_res for x in r["paced_lat_ns"]]
    sub_cpu = [100.0 * r["cpu_s"] / r["window_s"] for r in sub_res if r["cpu_s"] is not None and r["window_s"] > 0]
    lost = sum(pub_res["n_tput"] - r["n_tput"] for r in sub_res)
    return {
        "impl": f"ezmsg {ez.__version__}",
        "workload": workload,
        "channel": channel,
        "payload_bytes": payload,
        "msgs_per_s": round(slowest, 1),
        "mb_per_s": round(slowest * payload / 1e6, 2),
        "p50_us": round(pct(paced, 50), 1) if paced else None,
        "p99_us": round(pct(paced, 99), 1) if paced else None,
        "load_p50_us": round(max(r["load_p50_us"] for r in sub_res), 1),
        "load_p99_us": round(max(r["load_p99_us"] for r in sub_res), 1),
        "subscribers": nsubs,
        "per_sub_msgs_per_s": [round(x, 1) for x in rates],
        "aggregate_mb_per_s": round(sum(rates) * payload / 1e6, 2),
        "messages": pub_res["n_tput"],
        "paced_messages": pub_res["n_paced"],
        "pub_cpu_pct": round(100.0 * pub_res["tput_cpu_s"] / pub_res["tput_wall_s"], 0),
        "sub_cpu_pct": round(max(sub_cpu), 0) if sub_cpu else None,
        "lost_or_gaps": lost + sum(r["gaps"] for r in sub_res),
        "pub_channels": pub_res["channels"],
    }


def fmt(v, nd=1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v >= 10000:
            return f"{v:,.0f}"
        return f"{v:,.{nd}f}"
    return str(v)


def print_table(rows: list[dict]) -> None:
    cols = [
        ("workload", "workload", None),
        ("channel", "channel", None),
        ("payload", "payload_bytes", label),
        ("msgs/s", "msgs_per_s", None),
        ("MB/s", "mb_per_s", None),
        ("p50 us", "p50_us", None),
        ("p99 us", "p99_us", None),
        ("load p50 us", "load_p50_us", None),
        ("load p99 us", "load_p99_us", None),
        ("n msgs", "messages", None),
        ("pub CPU%", "pub_cpu_pct", lambda v: f"{v:.0f}"),
        ("sub CPU%", "sub_cpu_pct", lambda v: "-" if v is None else f"{v:.0f}"),
    ]
    table = [[h for h, _, _ in cols]]
    for r in rows:
        table.append([(f(r[k]) if f else fmt(r[k])) for _, k, f in cols])
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for j, row in enumerate(table):
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def parent_main(args: argparse.Namespace) -> int:
    if args.quick:
        params = dict(warmup_s=0.2, warmup_min=8, seconds=0.8, max_msgs=50_000, paced_warmup=5, paced_seconds=0.3,
                      paced_max=300)
    else:
        params = dict(warmup_s=0.5, warmup_min=16, seconds=2.5, max_msgs=200_000, paced_warmup=20, paced_seconds=1.0,
                      paced_max=2000)
    for k in ("seconds", "max_msgs"):
        if getattr(args, k) is not None:
            params[k] = getattr(args, k)

    cases = []
    for channel in ("shm", "tcp"):
        for payload in (64, 64 * KIB, MIB, 8 * MIB):
            cases.append(("p2p", channel, payload, 1))
    for channel in ("shm", "tcp"):
        for payload in (64, MIB):
            cases.append(("fanout4", channel, payload, 4))
    if args.only:
        cases = [c for c in cases if all(tok in f"{c[0]}/{c[1]}/{c[2]}" for tok in args.only.split(","))]

    print(f"ezmsg {ez.__version__} | Python {platform.python_version()} | numpy {np.__version__} | "
          f"{platform.system()} {platform.release()} | {os.cpu_count()} CPUs | "
          f"mode={'quick' if args.quick else 'full'}")
    print(f"per case: warm-up {params['warmup_s']}s, throughput {params['seconds']}s or {params['max_msgs']} msgs, "
          f"paced latency {params['paced_seconds']}s or {params['paced_max']} msgs; num_buffers={NUM_BUFFERS}; "
          f"every endpoint in its own process; recv_zero_copy")

    # Ctrl-C / SIGTERM unwind through the finally blocks below (children reaped, server
    # stopped, SHM unlinked). Children also exit by themselves when their stdin closes.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    server = GraphServer()
    server.start(("127.0.0.1", 0))
    graph = (server.address.host, server.address.port)
    rows: list[dict] = []
    t_start, cpu_start = time.monotonic(), time.process_time()
    try:
        for i, (workload, channel, payload, nsubs) in enumerate(cases):
            row = run_case(graph, workload, channel, payload, nsubs, params, i)
            rows.append(row)
            print(f"  done {workload:8s} {channel:4s} {label(payload):>7s}: {row['msgs_per_s']:,.0f} msg/s", flush=True)
    finally:
        shm_names = list(server.shms.keys())
        server.stop()
        # The server unlinks every segment whose last lease closed; make sure.
        leftovers = [n for n in shm_names if os.path.exists(f"/dev/shm/{n.lstrip('/')}")]
        for n in leftovers:
            try:
                os.unlink(f"/dev/shm/{n.lstrip('/')}")
            except OSError:
                pass
        if leftovers:
            print(f"warning: removed {len(leftovers)} leftover ezmsg SHM segment(s): {leftovers}")

    print()
    print_table(rows)
    print()
    print("msgs/s, MB/s: slowest subscriber, throughput phase (MB = 1e6 B of payload). "
          "p50/p99: paced one-way latency (one msg in flight). load p50/p99: one-way latency "
          "during the throughput phase (worst subscriber), includes queueing. CPU%: process CPU / wall "
          "in the throughput phase (sub: busiest).")
    starved = [f"{r['channel']} {label(r['payload_bytes'])}" for r in rows
               if r["workload"] == "p2p" and r["pub_cpu_pct"] < 90]
    if starved:
        print(f"warning: p2p publisher got < 90% of a core in {starved} (on an idle 2-core machine it pegs one); "
              "something else was probably using the CPU - rerun those rows")
    bad = [r for r in rows if r["lost_or_gaps"]]
    if bad:
        print(f"warning: message loss/gaps in {[(r['workload'], r['channel'], r['payload_bytes']) for r in bad]}")
    wall = time.monotonic() - t_start
    print(f"total {wall:.1f}s; this process (GraphServer thread + orchestration) used "
          f"{time.process_time() - cpu_start:.1f}s CPU "
          f"({100 * (time.process_time() - cpu_start) / wall:.0f}% of one core)")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
        print(f"wrote {args.json}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter phases (< 40 s total)")
    ap.add_argument("--json", metavar="OUT", help="write results as a JSON list")
    ap.add_argument("--only", help="comma-separated substrings a case 'workload/channel/payload' must all contain")
    ap.add_argument("--seconds", type=float, help="override throughput-phase duration")
    ap.add_argument("--max-msgs", dest="max_msgs", type=int, help="override throughput-phase message cap")
    ap.add_argument("--role", choices=("pub", "sub"), help=argparse.SUPPRESS)
    ap.add_argument("--cfg", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        child_main(args.role, args.cfg)
        return 0
    try:
        return parent_main(args)
    except KeyboardInterrupt:
        print("interrupted; child processes reaped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
