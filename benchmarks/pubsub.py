"""Pub/sub throughput and latency of ``ezmsg_console.pubsub``, side by side with upstream ezmsg.

Not a test: run it by hand, on an otherwise idle machine, and read the table::

    .venv/bin/python benchmarks/pubsub.py                    # full, ~1 min 50 s (ours + upstream)
    .venv/bin/python benchmarks/pubsub.py --quick            # ~45 s
    .venv/bin/python benchmarks/pubsub.py --skip-upstream    # ours only
    .venv/bin/python benchmarks/pubsub.py --only shm,64 --json out.json

It runs the same workloads, measured the same way, as
``benchmarks/upstream_ezmsg_pubsub.py`` (see ``benchmarks/UPSTREAM.md``), then runs
that script (with ``$EZMSG_CONSOLE_UPSTREAM_PYTHON``, default ``../ezmsg-venv/bin/python``
beside the checkout; ``--json`` to a temp file) in the
same run and prints one table with both and the ratios.

What runs
---------
This process starts a ``GraphServer`` in a thread (ephemeral 127.0.0.1 port). For
every case it launches, as separate OS processes (``sys.executable`` running this
file with ``--role``; configuration as JSON on the command line, never pickle), one
publisher and N subscribers. Each opens its own ``ClientConnection`` (role PROCESS)
and ``EndpointHost``; publisher and subscribers use the same topic string, so the
GraphServer routes them to each other without an edge.

Cases: ``p2p`` (1 pub -> 1 sub) at 64 B, 64 KiB, 1 MiB and 8 MiB, and ``fanout4``
(1 pub -> 4 subs) at 64 B and 1 MiB, each over two channel kinds:

* ``shm`` - the same-host path: Unix socket for the 28-byte per-message header and
  the 12-byte ack, payload written once into the publisher's shared-memory ring
  (``num_buffers=32``, ``buf_size`` = max(64 KiB, payload + 4 KiB), as upstream);
* ``tcp`` - ``force_tcp=True`` on the publisher: payload inline over loopback TCP.

Messages are ``numpy.uint8`` arrays of exactly ``payload`` bytes; the publisher
reuses one preallocated array and writes ``(monotonic_ns, seq, phase)`` (``<QQQ``)
into the first 24 bytes just before ``broadcast()``. Subscribers are created with
``zero_copy=True`` and use ``recv_delivery()``: they read only the header out of the
(read-only, shared-memory) view, then call ``done()``, which releases the slot
(what upstream's ``recv_zero_copy()`` does).

Each case has two phases in the same processes:

1. throughput: warm-up, then publish as fast as backpressure allows for
   ``seconds`` or ``max_msgs``. ``msgs/s`` = measured messages received /
   (receive time of the last one - send stamp of the first one), per subscriber;
   fan-out reports the slowest. ``load p50/p99`` = one-way latency in this phase
   (includes queueing behind up to 32 in-flight messages).
2. paced latency: after each ``broadcast()`` the publisher waits for
   ``Publisher.drain()`` (every subscriber released it) before stamping the next.
   ``p50/p99`` = one-way latency in this phase (no queueing).

Latency = ``time.monotonic_ns()`` in the subscriber minus the publisher's stamp
(CLOCK_MONOTONIC is system-wide on Linux). CPU% = process CPU time / wall time over
the throughput phase (100 = one core pegged).

Event loop: the children run the loop a ``run()`` worker runs
(``ezmsg_console.runtime.loop.run_loop``: asyncio's own, uvloop with
``EZMSG_CONSOLE_LOOP=uvloop`` or ``auto``); each case prints which one its children used.

Profiling: set ``EZC_PUBSUB_PROFILE=DIR`` (or pass ``--profile DIR``) and every
child process runs cProfile over its throughput phase only and writes
``DIR/<case>-<role>.prof`` (read it with ``python -m pstats``). Profiling slows
the children a lot; the numbers of such a run are not comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

from ezmsg_console.runtime.loop import LOOP_ENV, loop_choice, loop_name, run_loop

from benchlib import (KIB, MIB, Child, StdinControl, cpu_model, emit, expect, label, pct, reap, finish_run, run_parent,
                      spawn, upstream_python)


def sweep_run(run_tag: str) -> None:
    """Remove this run's shared memory (a child whose parent died)."""
    from ezmsg_console.pubsub import shm

    shm.sweep(run_tag)

HEADER = struct.Struct("<QQQ")  # send_time_ns, seq, phase
PH_WARM, PH_TPUT, PH_PWARM, PH_PACED, PH_STOP = range(5)
NUM_BUFFERS = 32
DEFAULT_BUF_SIZE = 2**16
UPSTREAM_PYTHON = upstream_python()  # $EZMSG_CONSOLE_UPSTREAM_PYTHON, else ../ezmsg-venv/bin/python
UPSTREAM_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "upstream_ezmsg_pubsub.py")
PROFILE_ENV = "EZC_PUBSUB_PROFILE"
RUN_TAG_ENV = "EZMSG_CONSOLE_RUN_TAG"  # same name as ezmsg_console.pubsub.host.RUN_TAG_ENV


# --------------------------------------------------------------------------- child side


def current_cpu() -> int:
    """The CPU this process last ran on (field 39 of /proc/self/stat), -1 if unknown."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return -1


def cpu_sample_every(payload: int) -> int:
    """Messages between samples of current_cpu() in the throughput phase (~one per 64 MiB sent,
    at most every 512 messages): reading /proc costs ~35 us, which must not weigh on big messages."""
    return max(1, min(512, (64 << 20) // max(1, payload)))


class Profiler:
    """cProfile over one phase, if $EZC_PUBSUB_PROFILE names a directory."""

    def __init__(self, name: str) -> None:
        self.dir = os.environ.get(PROFILE_ENV)
        self.name = name
        self.prof = None
        if self.dir:
            import cProfile

            os.makedirs(self.dir, exist_ok=True)
            self.prof = cProfile.Profile()

    def start(self) -> None:
        if self.prof is not None:
            self.prof.enable()

    def stop(self) -> None:
        if self.prof is not None:
            self.prof.disable()
            self.prof.dump_stats(os.path.join(self.dir, f"{self.name}.prof"))
            self.prof = None


async def open_host(cfg: dict, name: str):
    from ezmsg_console.client.connection import ClientConnection
    from ezmsg_console.protocol.address import Address
    from ezmsg_console.protocol.messages import Role
    from ezmsg_console.pubsub.host import EndpointHost

    conn = await ClientConnection.open(Address(cfg["graph"][0], cfg["graph"][1]), role=Role.PROCESS,
                                       name=name, token=None, timeout=10.0)
    host = EndpointHost(conn, run_tag=cfg["run_tag"])
    await host.start()
    return conn, host


async def publisher_main(cfg: dict) -> None:
    import numpy as np

    ctl = StdinControl(asyncio.get_running_loop(), on_orphan=lambda: sweep_run(cfg["run_tag"]))
    payload = cfg["payload"]
    shm = cfg["channel"] == "shm"
    buf_size = max(DEFAULT_BUF_SIZE, payload + 4096) if shm else DEFAULT_BUF_SIZE
    conn, host = await open_host(cfg, "bench-pub")
    try:
        pub = await host.publisher(cfg["topic"], num_buffers=NUM_BUFFERS, buf_size=buf_size, force_tcp=not shm)
        emit({"event": "ready", "loop": loop_name()})
        await ctl.go.wait()

        want = cfg["nsubs"]
        deadline = time.monotonic() + 10.0
        while len(pub.links) < want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(pub.links)} of {want} subscriber links attached")
            await asyncio.sleep(0.005)
        n_links = len(pub.links)
        shm_links = sum(1 for link in pub.links if link.use_shm)

        arr = np.zeros(payload, dtype=np.uint8)
        arr[24:] = 0xA5
        seq = 0

        async def send(phase: int) -> None:
            nonlocal seq
            HEADER.pack_into(arr, 0, time.monotonic_ns(), seq, phase)
            await pub.broadcast(arr)
            seq += 1

        async def drain() -> None:
            if not await pub.drain(10.0):
                raise RuntimeError(f"drain timed out with {pub.in_flight} message(s) in flight")

        # Phase 1: throughput (backpressure-limited)
        t_end = time.monotonic() + cfg["warmup_s"]
        n_warm = 0
        while time.monotonic() < t_end or n_warm < cfg["warmup_min"]:
            await send(PH_WARM)
            n_warm += 1
        prof = Profiler(f"{cfg['case']}-pub")
        prof.start()
        cpu0, t0 = time.process_time(), time.monotonic()
        t_end = t0 + cfg["seconds"]
        n_tput = 0
        cpus: dict[int, int] = {}
        every = cpu_sample_every(payload)
        while n_tput < cfg["max_msgs"] and time.monotonic() < t_end:
            await send(PH_TPUT)
            n_tput += 1
            if not n_tput % every:
                c = current_cpu()
                cpus[c] = cpus.get(c, 0) + 1
        t1, cpu1 = time.monotonic(), time.process_time()
        prof.stop()

        # Phase 2: paced latency (one message in flight at a time)
        await drain()
        n_paced = 0
        for _ in range(cfg["paced_warmup"]):
            await send(PH_PWARM)
            await drain()
        t_end = time.monotonic() + cfg["paced_seconds"]
        while n_paced < cfg["paced_max"] and time.monotonic() < t_end:
            await send(PH_PACED)
            await drain()
            n_paced += 1

        await send(PH_STOP)
        await drain()
        emit({
            "event": "result", "role": "pub", "n_tput": n_tput, "n_paced": n_paced,
            "tput_wall_s": t1 - t0, "tput_cpu_s": cpu1 - cpu0, "links": n_links, "shm_links": shm_links,
            "cpus": cpus,
        })
        ctl.finished = True
    finally:
        ctl.finished = True
        await host.close()
        await conn.close()


async def subscriber_main(cfg: dict) -> None:
    ctl = StdinControl(asyncio.get_running_loop(), on_orphan=lambda: sweep_run(cfg["run_tag"]))
    conn, host = await open_host(cfg, f"bench-sub{cfg['sub_index']}")
    try:
        sub = await host.subscriber(cfg["topic"], zero_copy=not cfg.get("copy_out", False))
        await sub.wait_for_publishers(1, 10.0)
        emit({"event": "ready", "loop": loop_name()})

        prof = Profiler(f"{cfg['case']}-sub{cfg['sub_index']}")
        load_lat: list[int] = []
        paced_lat: list[int] = []
        first_stamp = last_recv = None
        cpu_first = cpu_last = None
        expect_seq = None
        gaps = 0
        channels: set[str] = set()
        cpus: dict[int, int] = {}
        every = cpu_sample_every(cfg["payload"])
        recv_delivery = sub.recv_delivery
        while True:
            d = await recv_delivery()
            now = time.monotonic_ns()
            stamp, seq, phase = HEADER.unpack(d.msg[:24].tobytes())
            channel = d.channel
            d.done()  # no reference to the view is kept, so the slot is released at once
            channels.add(channel)
            if expect_seq is not None and seq != expect_seq:
                gaps += 1
            expect_seq = seq + 1
            if phase == PH_TPUT:
                if first_stamp is None:
                    first_stamp, cpu_first = stamp, time.process_time()
                    prof.start()
                last_recv = now
                load_lat.append(now - stamp)
                if not len(load_lat) % every:
                    c = current_cpu()
                    cpus[c] = cpus.get(c, 0) + 1
            elif phase == PH_PACED:
                if cpu_last is None:
                    cpu_last = time.process_time()
                    prof.stop()
                paced_lat.append(now - stamp)
            elif phase == PH_STOP:
                break
            elif phase == PH_PWARM and cpu_last is None:
                cpu_last = time.process_time()
                prof.stop()
        prof.stop()

        n = len(load_lat)
        window = (last_recv - first_stamp) / 1e9 if n else 0.0
        emit({
            "event": "result", "role": "sub", "n_tput": n, "window_s": window,
            "msgs_per_s": n / window if window > 0 else 0.0,
            "load_p50_us": pct(load_lat, 50), "load_p99_us": pct(load_lat, 99),
            "paced_lat_ns": paced_lat,
            "cpu_s": (cpu_last - cpu_first) if (cpu_first is not None and cpu_last is not None) else None,
            "gaps": gaps, "channels": sorted(channels), "kept_views": sub.kept_views, "cpus": cpus,
        })
        ctl.finished = True
    finally:
        ctl.finished = True
        await host.close()
        await conn.close()


def child_main(role: str, cfg_json: str) -> None:
    cfg = json.loads(cfg_json)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and cleans up
    # The event loop a worker would run (uvloop when installed, see ezmsg_console.runtime.loop).
    run_loop(publisher_main(cfg) if role == "pub" else subscriber_main(cfg))


# -------------------------------------------------------------------------- parent side


ALL_CHILDREN: list[Child] = []
STOPPING: list[int] = []  # signals received by the orchestrator


class Interrupted(BaseException):
    """SIGINT/SIGTERM in the orchestrator."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def run_case(graph: tuple[str, int], run_tag: str, workload: str, channel: str, payload: int, nsubs: int,
             params: dict, idx: int, env: dict[str, str]) -> dict:
    case = f"{workload}-{channel}-{label(payload).replace(' ', '')}"
    cfg = dict(params, graph=list(graph), run_tag=run_tag, case=case, payload=payload, nsubs=nsubs,
               channel=channel, topic=f"/bench/{run_tag}/{idx}/{workload}/{channel}/{payload}")
    children: list[Child] = []
    ok = False
    problems: list[str] = []
    other = OtherLoad()
    try:
        pub = spawn(__file__, f"{case} publisher", "pub", cfg, ALL_CHILDREN, env)
        children.append(pub)
        loops = [expect(pub, "ready", 60).get("loop", "?")]
        subs = [spawn(__file__, f"{case} subscriber{i}", "sub", dict(cfg, sub_index=i), ALL_CHILDREN, env)
                for i in range(nsubs)]
        children.extend(subs)
        for s in subs:
            loops.append(expect(s, "ready", 60).get("loop", "?"))
        assert pub.proc.stdin is not None
        pub.proc.stdin.write("go\n")
        pub.proc.stdin.flush()
        budget = 60 + params["warmup_s"] + params["seconds"] + params["paced_seconds"]
        sub_res = [expect(s, "result", budget) for s in subs]
        pub_res = expect(pub, "result", 30)
        ok = True
    finally:
        problems = reap(children, 20 if ok else 0.5)
    other_pct = other.pct()

    rates = [r["msgs_per_s"] for r in sub_res]
    slowest = min(rates)
    paced = [x for r in sub_res for x in r["paced_lat_ns"]]
    sub_cpu = [100.0 * r["cpu_s"] / r["window_s"] for r in sub_res if r["cpu_s"] is not None and r["window_s"] > 0]
    lost = sum(pub_res["n_tput"] - r["n_tput"] for r in sub_res)
    seen_channels = sorted({c for r in sub_res for c in r["channels"]})

    def main_cpu(cpus: dict) -> str:
        """The CPU a process ran on most in the throughput phase ('?' unknown, '*' if under 80 % of samples)."""
        if not cpus:
            return "?"
        c, n = max(cpus.items(), key=lambda kv: kv[1])
        return f"{c}" + ("" if n >= 0.8 * sum(cpus.values()) else "*")

    placement = main_cpu(pub_res["cpus"]) + "|" + "".join(main_cpu(r["cpus"]) for r in sub_res)
    return {
        "impl": "ezmsg_console",
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
        "pub_links": pub_res["links"],
        "pub_shm_links": pub_res["shm_links"],
        "delivery_channels": seen_channels,
        "kept_views": sum(r["kept_views"] for r in sub_res),
        "problems": problems,
        "other_cpu_pct": None if other_pct is None else round(other_pct, 0),
        "placement": placement,
        "loop": "/".join(sorted(set(loops))),
        "same_core": (len({main_cpu(pub_res["cpus"])} | {main_cpu(r["cpus"]) for r in sub_res}) == 1
                      and "*" not in placement and "?" not in placement),
    }


# ------------------------------------------------------------------------ upstream + report


def upstream_available(args: argparse.Namespace) -> bool:
    return not args.skip_upstream and os.path.exists(UPSTREAM_PYTHON)


def upstream_environ(args: argparse.Namespace) -> dict[str, str]:
    """Upstream's processes get glibc's defaults (as its runtime gives them), or our workers'
    setting with ``--upstream-nt``."""
    from ezmsg_console.pubsub import shm

    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", shm.NT_THRESHOLD_ENV)}
    return shm.worker_environ(env) if args.upstream_nt else env


def run_upstream(args: argparse.Namespace, only: str | None) -> tuple[list[dict], str, str | None]:
    """(rows, first line of its output, error or None)."""
    if args.skip_upstream:
        return [], "", "skipped (--skip-upstream)"
    if not os.path.exists(UPSTREAM_PYTHON):
        return [], "", f"skipped: {UPSTREAM_PYTHON} is missing (see benchmarks/UPSTREAM.md)"
    fd, out = tempfile.mkstemp(prefix="ezmsg-upstream-", suffix=".json")
    os.close(fd)
    cmd = [UPSTREAM_PYTHON, UPSTREAM_SCRIPT, "--json", out]
    if args.quick:
        cmd.append("--quick")
    if only:
        cmd += ["--only", only]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=False, env=upstream_environ(args))
    try:
        text, _ = proc.communicate(timeout=240)
    except BaseException:
        # Its own SIGTERM handler reaps its children and unlinks its segments.
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    try:
        first = text.splitlines()[0] if text else ""
        if proc.returncode != 0:
            return [], first, f"upstream script exited {proc.returncode}:\n{text[-3000:]}"
        with open(out) as fh:
            rows = json.load(fh)
        warnings = [ln for ln in text.splitlines() if ln.startswith("warning")]
        return rows, first + "".join(f"\n  upstream {w}" for w in warnings), None
    finally:
        os.unlink(out)


def fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v >= 10000:
            return f"{v:,.0f}"
        return f"{v:,.{nd}f}"
    return str(v)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


def mb_ratio(r: dict, u: dict) -> float | None:
    """ours / ezmsg MB/s, from unrounded msgs/s (the JSON mb_per_s is rounded to 0.01)."""
    if u.get("msgs_per_s") is None:
        return None
    return ratio(r["msgs_per_s"] * r["payload_bytes"], u["msgs_per_s"] * u["payload_bytes"])


def fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def key(r: dict) -> tuple:
    return (r["workload"], r["channel"], r["payload_bytes"])


def print_table(ours: list[dict], theirs: dict[tuple, dict], theirs_other: dict[tuple, float | None]) -> None:
    header = ["workload", "channel", "payload",
              "ours msgs/s", "ours MB/s", "ours p50 us", "ours p99 us",
              "ezmsg msgs/s", "ezmsg MB/s", "ezmsg p50 us",
              "msgs/s x", "MB/s x", "latency x",
              "ours load p50", "ours load p99", "ours CPU% p/s", "ours cores p|s", "other CPU%",
              "ezmsg CPU% p/s", "ezmsg other CPU%"]
    table = [header]
    for r in ours:
        u = theirs.get(key(r), {})
        if "error" in r:
            table.append([r["workload"], r["channel"], label(r["payload_bytes"]), "ERROR"] + ["-"] * 16)
            continue
        table.append([
            r["workload"], r["channel"], label(r["payload_bytes"]),
            fmt(r["msgs_per_s"]), fmt(r["mb_per_s"]), fmt(r["p50_us"]), fmt(r["p99_us"]),
            fmt(u.get("msgs_per_s")), fmt(u.get("mb_per_s")), fmt(u.get("p50_us")),
            fmt_ratio(ratio(r["msgs_per_s"], u.get("msgs_per_s"))),
            fmt_ratio(mb_ratio(r, u)),
            fmt_ratio(ratio(u.get("p50_us"), r["p50_us"])),
            fmt(r["load_p50_us"]), fmt(r["load_p99_us"]),
            f"{r['pub_cpu_pct']:.0f}/" + ("-" if r["sub_cpu_pct"] is None else f"{r['sub_cpu_pct']:.0f}"),
            r["placement"], fmt(r["other_cpu_pct"], 0),
            (f"{u['pub_cpu_pct']:.0f}/" + ("-" if u.get("sub_cpu_pct") is None else f"{u['sub_cpu_pct']:.0f}"))
            if u.get("pub_cpu_pct") is not None else "-",
            fmt(theirs_other.get(key(r)), 0),
        ])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for j, row in enumerate(table):
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def target_checks(ours: list[dict], theirs: dict[tuple, dict]) -> None:
    by_key = {key(r): r for r in ours if "error" not in r}

    def check(text: str, k: tuple, field_ours: str, field_theirs: str, invert: bool, need: float | None) -> None:
        r, u = by_key.get(k), theirs.get(k)
        if r is None or u is None:
            print(f"  [n/a ] {text}: not measured in this run")
            return
        if field_ours == "mb_per_s":
            value = mb_ratio(r, u)
        else:
            value = ratio(u[field_theirs], r[field_ours]) if invert else ratio(r[field_ours], u[field_theirs])
        if value is None:
            print(f"  [n/a ] {text}: missing value")
            return
        detail = f"ours {fmt(r[field_ours])} vs ezmsg {fmt(u[field_theirs])} -> {value:.2f}x"
        if need is None:
            print(f"  [info] {text}: {detail}")
        else:
            print(f"  [{'PASS' if value >= need else 'FAIL'}] {text} (need >= {need:g}x): {detail}")

    print("target checks (p2p, same-host shm):")
    check("64 B msgs/s, ours / ezmsg", ("p2p", "shm", 64), "msgs_per_s", "msgs_per_s", False, 3.0)
    check("1 MiB MB/s, ours / ezmsg", ("p2p", "shm", MIB), "mb_per_s", "mb_per_s", False, 2.0)
    check("64 B paced p50, ezmsg / ours (ours <= half)", ("p2p", "shm", 64), "p50_us", "p50_us", True, 2.0)
    check("1 MiB paced p50, ezmsg / ours", ("p2p", "shm", MIB), "p50_us", "p50_us", True, None)


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


class OtherLoad:
    """CPU time used on this machine by processes other than this one and its children.

    System busy time (/proc/stat) minus our own CPU time minus that of our reaped
    children (their getrusage), over an interval: 100 % = one core kept busy by
    something else. Only meaningful once the children started in between were reaped.
    """

    def __init__(self) -> None:
        self.t0, self.busy0, self.mine0 = time.monotonic(), self._busy(), self._mine()

    @staticmethod
    def _busy() -> float | None:
        try:
            with open("/proc/stat") as fh:
                f = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal; irq/softirq left out (our own loopback
        # traffic is processed there without being charged to us); steal (hypervisor) kept
        return (f[0] + f[1] + f[2] + f[7]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _mine() -> float:
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + ch.ru_utime + ch.ru_stime

    def pct(self) -> float | None:
        busy = self._busy()
        if busy is None or self.busy0 is None:
            return None
        wall = time.monotonic() - self.t0
        other = (busy - self.busy0) - (self._mine() - self.mine0)
        return max(0.0, 100.0 * other / wall) if wall > 0 else None








def parent_main(args: argparse.Namespace) -> int:
    import numpy as np

    from ezmsg_console.pubsub import shm as shm_mod
    from ezmsg_console.server.graph_server import GraphServer

    if args.quick:
        params = dict(warmup_s=0.2, warmup_min=8, seconds=0.8, max_msgs=50_000, paced_warmup=5,
                      paced_seconds=0.3, paced_max=300)
    else:
        params = dict(warmup_s=0.5, warmup_min=16, seconds=2.5, max_msgs=200_000, paced_warmup=20,
                      paced_seconds=1.0, paced_max=2000)
    params["copy_out"] = args.copy_out
    if args.profile:
        os.environ[PROFILE_ENV] = os.path.abspath(args.profile)

    cases = []
    for channel in ("shm", "tcp"):
        for payload in (64, 64 * KIB, MIB, 8 * MIB):
            cases.append(("p2p", channel, payload, 1))
    for channel in ("shm", "tcp"):
        for payload in (64, MIB):
            cases.append(("fanout4", channel, payload, 4))
    if args.only:
        cases = [c for c in cases if all(tok in f"{c[0]}/{c[1]}/{c[2]}" for tok in args.only.split(","))]

    run_tag = f"bench{os.getpid()}"
    os.environ[RUN_TAG_ENV] = run_tag
    shm_before = set(shm_mod.ours())

    import msgpack

    print("pub/sub benchmark: ezmsg_console vs upstream ezmsg")
    print(f"  machine  {platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs, "
          f"{platform.system()} {platform.release()}, load avg at start {loadavg()}")
    print(f"  ours     Python {platform.python_version()}, numpy {np.__version__}, "
          f"msgpack {'.'.join(map(str, msgpack.version))} ({sys.executable})")
    print(f"  mode     {'quick' if args.quick else 'full'}; per case: warm-up {params['warmup_s']}s, throughput "
          f"{params['seconds']}s or {params['max_msgs']} msgs, paced latency {params['paced_seconds']}s or "
          f"{params['paced_max']} msgs; num_buffers={NUM_BUFFERS}; every endpoint in its own process; "
          f"{'zero_copy=False (copied on arrival)' if args.copy_out else 'zero_copy'} recv_delivery()+done()")
    ours_env = dict(os.environ) if args.glibc_default else shm_mod.worker_environ(os.environ)
    print(f"  glibc    ours: GLIBC_TUNABLES={ours_env.get('GLIBC_TUNABLES', '(default)')} "
          f"({'--glibc-default' if args.glibc_default else 'as run() gives its workers'}); "
          f"upstream: GLIBC_TUNABLES={upstream_environ(args).get('GLIBC_TUNABLES', '(default)')}")
    print(f"  loop     ours: children run {LOOP_ENV}={loop_choice()} as run() workers do (uvloop "
          f"{'installed' if importlib.util.find_spec('uvloop') else 'not installed'}; each case reports its loop)")
    if args.profile:
        print(f"  PROFILING into {os.environ[PROFILE_ENV]}: numbers below are NOT representative")
    print(flush=True)

    # Ctrl-C / SIGTERM: remember it (the exception can surface as another error when it hits a
    # lock inside queue.get) and unwind through the finally blocks (children reaped, server
    # stopped, this run's segments swept). Children also exit by themselves when stdin closes.
    def on_signal(signum: int, _frame: Any) -> None:
        STOPPING.append(signum)
        raise Interrupted(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    server = GraphServer("127.0.0.1:0")
    address = server.start_in_thread()
    graph = (address.host, address.port)
    ours: list[dict] = []
    theirs_rows: list[dict] = []
    theirs_other: dict[tuple, float | None] = {}
    upstream_first, upstream_err = "", None
    interleave = args.interleave and upstream_available(args)
    t_start, cpu_start = time.monotonic(), time.process_time()
    print("ours (ezmsg_console)" + (", each case followed by the same case of upstream ezmsg:" if interleave else ":"),
          flush=True)
    try:
        for i, (workload, channel, payload, nsubs) in enumerate(cases):
            try:
                row = run_case(graph, run_tag, workload, channel, payload, nsubs, params, i, ours_env)
            except (RuntimeError, KeyError, ValueError) as exc:
                if STOPPING:
                    raise Interrupted(STOPPING[0]) from exc
                row = {"impl": "ezmsg_console", "workload": workload, "channel": channel,
                       "payload_bytes": payload, "error": str(exc)}
                print(f"  FAILED {workload:8s} {channel:4s} {label(payload):>7s}: {str(exc)[:2000]}", flush=True)
            else:
                print(f"  done   {workload:8s} {channel:4s} {label(payload):>7s}: {row['msgs_per_s']:,.0f} msg/s, "
                      f"p50 {fmt(row['p50_us'])} us (children on {row['loop']})", flush=True)
            ours.append(row)
            if interleave:
                up_other = OtherLoad()
                rows, first, err = run_upstream(args, f"{workload}/{channel}/{payload}")
                theirs_other[(workload, channel, payload)] = up_other.pct()
                theirs_rows += rows
                upstream_first = upstream_first or first.split("\n")[0]
                if err is not None:
                    upstream_err = err
                    print(f"  ezmsg  {workload:8s} {channel:4s} {label(payload):>7s}: {err}", flush=True)
                for u in rows:
                    print(f"  ezmsg  {workload:8s} {channel:4s} {label(payload):>7s}: {u['msgs_per_s']:,.0f} msg/s, "
                          f"p50 {fmt(u['p50_us'])} us", flush=True)
                for line in first.split("\n")[1:]:
                    print(f"  {line.strip()}", flush=True)
    finally:
        # Belt and braces: every child is reaped by run_case; kill any survivor.
        for c in ALL_CHILDREN:
            if c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait()
        server.stop_thread()
        if STOPPING:
            swept = shm_mod.sweep(run_tag)
            if swept:
                print(f"/dev/shm: removed {len(swept)} segment(s) of this interrupted run: {swept}", file=sys.stderr)
    ours_wall = time.monotonic() - t_start
    ours_cpu = time.process_time() - cpu_start

    print(f"  {'ours + upstream cases' if interleave else 'ours'} took {ours_wall:.1f}s; "
          "this process (GraphServer thread + orchestration) used "
          f"{ours_cpu:.1f}s CPU", flush=True)
    print()
    if interleave:
        print(f"  upstream: {upstream_first}" if upstream_err is None else f"  upstream: {upstream_err}")
    else:
        if upstream_available(args):
            print("upstream (benchmarks/upstream_ezmsg_pubsub.py) running ...", flush=True)
        t_up = time.monotonic()
        up_other = OtherLoad()
        theirs_rows, upstream_first, upstream_err = run_upstream(args, args.only) if upstream_available(args) else (
            [], "", "skipped (--skip-upstream)" if args.skip_upstream else
            f"skipped: {UPSTREAM_PYTHON} is missing (see benchmarks/UPSTREAM.md)")
        up_other_pct = up_other.pct()
        if upstream_err is None:
            print(f"  upstream took {time.monotonic() - t_up:.1f}s: {upstream_first}")
            if up_other_pct is not None:
                print(f"  other processes on this machine used {up_other_pct:.0f}% of a core on average during the "
                      "upstream run (also shown in every row of 'ezmsg other CPU%')")
                theirs_other = {key(r): up_other_pct for r in theirs_rows}
        else:
            print(f"  upstream: {upstream_err}")
    theirs = {key(r): r for r in theirs_rows}
    print()

    print_table(ours, theirs, theirs_other)
    print()
    print("msgs/s, MB/s: slowest subscriber, throughput phase (MB = 1e6 B of payload). p50/p99: paced one-way "
          "latency (one message in flight). 'msgs/s x', 'MB/s x' = ours / ezmsg (higher is better; equal, as the "
          "payloads are equal); 'latency x' = ezmsg p50 / ours p50 (higher is better). load p50/p99: ours, one-way "
          "latency in the throughput phase (worst subscriber, includes queueing). CPU% p/s: process CPU / wall "
          "in the throughput phase (p = publisher, s = busiest subscriber; 100 = one core). cores p|s: the CPU "
          "the publisher | each subscriber ran on most in that phase ('*': under 80 % of samples). other CPU%: "
          "CPU used by processes other than this benchmark during the case (100 = one of the cores busy "
          "elsewhere; anything above ~5 disturbs a 2-core machine); ezmsg other CPU%: the same during the "
          "upstream case (with --interleave) or averaged over the whole upstream run.")
    print()
    target_checks(ours, theirs)
    print()

    # -- sanity / cleanliness -------------------------------------------------
    good = [r for r in ours if "error" not in r]
    for r in good:
        tag = f"{r['workload']} {r['channel']} {label(r['payload_bytes'])}"
        want = {"shm": "SHM", "tcp": "TCP"}[r["channel"]]
        if r["delivery_channels"] != [want]:
            print(f"warning: {tag}: subscribers saw delivery channels {r['delivery_channels']}, expected [{want}]")
        if r["lost_or_gaps"]:
            print(f"warning: {tag}: message loss/gaps: {r['lost_or_gaps']}")
        if r["kept_views"]:
            print(f"warning: {tag}: {r['kept_views']} zero-copy view(s) reported as kept")
        for p in r["problems"]:
            print(f"warning: {tag}: {p}")
    busy = [f"{r['workload']} {r['channel']} {label(r['payload_bytes'])}" for r in good
            if (r["other_cpu_pct"] or 0) > 10]
    if busy:
        print(f"warning: other processes used > 10% of a core during {busy}; rerun on an idle machine")
    shared = [f"{r['workload']} {r['channel']} {label(r['payload_bytes'])}" for r in good if r["same_core"]]
    if shared:
        print(f"note: in {shared} the scheduler kept publisher and subscriber(s) on ONE core for the throughput "
              "phase (see 'ours cores'): those rows measure a time-shared core, not two; rerun them. Upstream rows "
              "can be hit the same way (ezmsg CPU% p/s adding up to ~100 with no other load).")
    starved = [f"{r['channel']} {label(r['payload_bytes'])}" for r in good
               if r["workload"] == "p2p" and r["pub_cpu_pct"] < 90]
    if starved:
        print(f"note: ours p2p publisher used < 90% of a core in {starved}: either the subscriber is the bottleneck "
              "or something else was using the CPU (check load avg)")
    failed = [r for r in ours if "error" in r]
    if failed:
        print(f"warning: {len(failed)} case(s) failed: "
              f"{[(r['workload'], r['channel'], label(r['payload_bytes'])) for r in failed]}")

    finish_run(__file__, UPSTREAM_SCRIPT, ALL_CHILDREN, run_tag, shm_before, "either script")
    print(f"load avg at end {loadavg()}; total {time.monotonic() - t_start:.1f}s")

    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"ours": ours, "upstream": theirs_rows,
                       "upstream_version": upstream_first.split("|")[0].strip()}, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter phases (~1 min total with upstream)")
    ap.add_argument("--skip-upstream", action="store_true", help="do not run the upstream ezmsg script")
    ap.add_argument("--json", metavar="OUT", help="write both result sets as JSON")
    ap.add_argument("--interleave", action="store_true",
                    help="run each upstream case right after the same case of ours (one upstream invocation per "
                         "case, ~20 s more) so that slow changes in background load hit both alike")
    ap.add_argument("--only", help="comma-separated substrings a case 'workload/channel/payload_bytes' must all "
                                   "contain (also passed to the upstream script)")
    ap.add_argument("--profile", metavar="DIR", help=f"cProfile the children's throughput phase (sets ${PROFILE_ENV})")
    ap.add_argument("--glibc-default", action="store_true",
                    help="run our children with glibc's default memcpy settings instead of the ones run() gives its "
                         "workers (non-temporal stores from 512 KiB; see ezmsg_console.pubsub.shm.worker_environ)")
    ap.add_argument("--upstream-nt", action="store_true",
                    help="give upstream's processes our workers' glibc setting too (a like-for-like check)")
    ap.add_argument("--copy-out", action="store_true",
                    help="our subscribers copy each message out of shared memory on arrival (zero_copy=False, "
                         "as leaky ones do) instead of reading it in place; upstream runs as always")
    ap.add_argument("--role", choices=("pub", "sub"), help=argparse.SUPPRESS)
    ap.add_argument("--cfg", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        child_main(args.role, args.cfg)
        return 0
    return run_parent(lambda: parent_main(args), ALL_CHILDREN, (Interrupted,))


if __name__ == "__main__":
    sys.exit(main())
