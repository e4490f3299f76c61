"""Control-plane latency benchmark for the GraphServer.

Not a test: run it by hand and read the table.

    .venv/bin/python benchmarks/control_plane.py            # full (~1 min)
    .venv/bin/python benchmarks/control_plane.py --quick    # ~10x smaller

Measures, against a server in a background thread of this process and against
a server in a separate process (``python -m ezmsg_console serve``):

1. ``ping()`` round trip (the floor: one request, one reply, no work);
2. ``snapshot()`` round trip with 10 and with 1,000 edges in the graph;
3. topology-event fan-out to 10 subscribers (10 separate connections): the
   time from just before ``connect()``/``disconnect()`` is issued until each
   subscriber's application code has the resulting event, and until the last
   of the 10 has it. Changes are paced: the next change is issued only after
   all subscribers have the previous event, so this is latency, not a
   throughput/queueing measurement.

All times are ``time.perf_counter()`` in this (client) process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from ezmsg_console.client.context import GraphContext
from ezmsg_console.protocol import messages as m
from ezmsg_console.server.graph_server import GraphServer

TARGET_SNAPSHOT_P50_MS = 1.0
N_SUBSCRIBERS = 10
SMALL_EDGES = 10
LARGE_EDGES = 1000


# -- statistics ---------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of an already sorted list."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class Row:
    config: str
    measurement: str
    samples_s: list[float]

    @property
    def n(self) -> int:
        return len(self.samples_s)

    def ms(self, q: float) -> float:
        return percentile(sorted(self.samples_s), q) * 1e3

    @property
    def mean_ms(self) -> float:
        return sum(self.samples_s) / len(self.samples_s) * 1e3 if self.samples_s else float("nan")


def print_table(rows: list[Row]) -> None:
    headers = ["configuration", "measurement", "n", "p50 ms", "p99 ms", "mean ms", "max ms"]
    body = [
        [r.config, r.measurement, str(r.n), f"{r.ms(50):.3f}", f"{r.ms(99):.3f}", f"{r.mean_ms:.3f}",
         f"{r.ms(100):.3f}"]
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    left = {0, 1}

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    print(fmt(headers))
    print("  ".join("-" * w for w in widths))
    prev = None
    for r, b in zip(rows, body):
        if prev is not None and r.config != prev:
            print()
        prev = r.config
        print(fmt(b))


# -- workload -----------------------------------------------------------------


def chain_topic(i: int) -> str:
    return f"bench/chain/n{i:04d}"


async def extend_chain(ctx: GraphContext, have: int, want: int) -> None:
    """Grow the chain n0000 -> n0001 -> ... so that it has ``want`` edges (no cycles)."""
    for i in range(have, want):
        await ctx.connect(chain_topic(i), chain_topic(i + 1))


async def time_calls(call: Callable[[], Awaitable[object]], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        await call()
    samples = []
    perf = time.perf_counter
    for _ in range(repeats):
        t0 = perf()
        await call()
        samples.append(perf() - t0)
    return samples


async def fanout(address: str, publisher: GraphContext, cycles: int, warmup_cycles: int
                 ) -> tuple[list[float], list[float]]:
    """Per-subscriber and last-subscriber latency of paced topology events."""
    src, dst = "bench/fanout/src", "bench/fanout/dst"
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        ctxs = [await stack.enter_async_context(GraphContext(address, name=f"bench-sub-{i}"))
                for i in range(N_SUBSCRIBERS)]
        subs = [await c.subscribe_topology_events(after_seq=None) for c in ctxs]
        for s in subs:
            stack.push_async_callback(s.close)
        base = subs[0].current_seq
        if any(s.current_seq != base for s in subs):
            raise RuntimeError("topology changed while the subscribers were subscribing")

        arrivals: list[dict[int, float]] = [{} for _ in subs]
        waiting: dict[int, list] = {}  # seq -> [subscribers still to receive, future]
        problems: list[str] = []
        my_session = publisher.session_id

        async def receive(i: int) -> None:
            sub, got, perf = subs[i], arrivals[i], time.perf_counter
            while True:
                item = await sub.next(timeout=None)
                t = perf()
                if item is None:
                    return
                if isinstance(item, m.StreamGap):
                    problems.append(f"subscriber {i}: gap {item.from_seq}..{item.to_seq} ({item.reason})")
                    continue
                if item.source_session_id != my_session or item.changed_topics != (dst,):
                    problems.append(f"subscriber {i}: unexpected event {item!r}")
                got[item.seq] = t
                w = waiting.get(item.seq)
                if w is None:
                    problems.append(f"subscriber {i}: event seq {item.seq} was not expected")
                    continue
                w[0] -= 1
                if w[0] == 0 and not w[1].done():
                    w[1].set_result(None)

        tasks = [asyncio.create_task(receive(i)) for i in range(len(subs))]
        issued: dict[int, float] = {}
        measured: list[int] = []
        seq = base
        try:
            for cycle in range(warmup_cycles + cycles):
                for op in (publisher.connect, publisher.disconnect):
                    seq += 1
                    done = loop.create_future()
                    waiting[seq] = [len(subs), done]
                    issued[seq] = time.perf_counter()
                    await op(src, dst)
                    try:
                        await asyncio.wait_for(done, 10.0)
                    except (TimeoutError, asyncio.TimeoutError):
                        raise RuntimeError(f"event seq {seq} did not reach all subscribers within 10 s; "
                                           f"problems: {problems[:5]}") from None
                    if cycle >= warmup_cycles:
                        measured.append(seq)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if problems:
            raise RuntimeError(f"fan-out saw {len(problems)} problem(s), e.g. {problems[:5]}")

        per_sub = [got[s] - issued[s] for s in measured for got in arrivals]
        last = [max(got[s] for got in arrivals) - issued[s] for s in measured]
        return per_sub, last


async def run_suite(address: str, config: str, a: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    async with GraphContext(address, name="bench-builder", timeout=30.0) as builder, \
            GraphContext(address, name="bench-client", timeout=30.0) as client:
        await extend_chain(builder, 0, SMALL_EDGES)
        snap = await client.snapshot()
        if len(snap.edges) != SMALL_EDGES:
            raise RuntimeError(f"expected {SMALL_EDGES} edges in the graph, found {len(snap.edges)}")

        rows.append(Row(config, "ping()", await time_calls(client.ping, a.repeats, a.warmup)))
        rows.append(Row(config, f"snapshot(), {SMALL_EDGES} edges",
                        await time_calls(client.snapshot, a.repeats, a.warmup)))

        per_sub, last = await fanout(address, client, a.fanout_cycles, a.fanout_warmup)
        rows.append(Row(config, f"event fan-out, each of {N_SUBSCRIBERS} subs", per_sub))
        rows.append(Row(config, f"event fan-out, last of {N_SUBSCRIBERS} subs", last))

        await extend_chain(builder, SMALL_EDGES, LARGE_EDGES)
        snap = await client.snapshot()
        if len(snap.edges) != LARGE_EDGES:
            raise RuntimeError(f"expected {LARGE_EDGES} edges in the graph, found {len(snap.edges)}")
        rows.append(Row(config, f"snapshot(), {LARGE_EDGES} edges",
                        await time_calls(client.snapshot, a.repeats_large, max(1, a.warmup // 4))))
        rows.extend(await routed_suite(address, config, a))
    # keep the table order stable: ping, snapshot 10, snapshot 1000, fan-out
    order = ["ping()", f"snapshot(), {SMALL_EDGES} edges", f"snapshot(), {LARGE_EDGES} edges"]
    rows.sort(key=lambda r: order.index(r.measurement) if r.measurement in order else len(order))
    return rows


async def routed_suite(address: str, config: str, a: argparse.Namespace) -> list[Row]:
    """Routed PING and update_setting end to end, against the demo pipeline's real workers."""
    demo = subprocess.Popen([sys.executable, "-m", "ezmsg_console", "demo", "--headless", "--address", address,
                             "--duration", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with GraphContext(address, name="bench-editor", timeout=30.0) as editor, \
                GraphContext(address, name="bench-watcher", timeout=30.0) as watcher:
            deadline = time.monotonic() + 30.0
            while True:  # wait for the demo's three workers to own their units
                owners = {u for p in (await editor.snapshot()).processes for u in p.units}
                if "DEMO/FILTER" in owners and len(owners) >= 4:
                    break
                if time.monotonic() > deadline or demo.poll() is not None:
                    raise RuntimeError("the demo pipeline did not start")
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            rows = [Row(config, "routed PING (demo worker)",
                        await time_calls(lambda: editor.process_ping("DEMO/FILTER"), a.repeats // 2,
                                         a.warmup))]
            events = await watcher.subscribe_settings_events(after_seq=None)
            samples: list[float] = []
            for i in range(a.edits + a.warmup // 10):
                start = time.perf_counter()
                applied = await editor.update_setting("DEMO/FILTER", "cutoff_hz", 20.0 + (i % 50))
                while True:  # until the second subscriber sees the event this edit caused
                    ev = await events.next(10.0)
                    if getattr(ev, "seq", -1) >= applied["seq"]:
                        break
                if i >= a.warmup // 10:
                    samples.append(time.perf_counter() - start)
            rows.append(Row(config, "update_setting -> event seen", samples))
            return rows
    finally:
        demo.send_signal(2)  # SIGINT: the demo stops its workers cleanly
        try:
            demo.wait(15.0)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait(5.0)


# -- server configurations ------------------------------------------------------


def run_with_thread_server(a: argparse.Namespace) -> list[Row]:
    srv = GraphServer("127.0.0.1:0")
    address = srv.start_in_thread()
    try:
        return asyncio.run(run_suite(str(address), "server in thread", a))
    finally:
        srv.stop_thread()


LISTEN_RE = re.compile(r"GraphServer listening on (\S+:\d+)")


def read_listen_address(proc: subprocess.Popen, timeout: float) -> str:
    """Read the server's stdout until the 'listening on' line (in a thread, for the deadline)."""
    found: list[str] = []
    seen: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            match = LISTEN_RE.search(line)
            if match:
                found.append(match.group(1))
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    if not found:
        raise RuntimeError(f"server subprocess did not report its address within {timeout:.0f} s "
                           f"(exit code {proc.poll()}); stdout so far: {''.join(seen)!r}")
    return found[0]


def run_with_subprocess_server(a: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryFile(mode="w+") as errfile:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ezmsg_console", "serve", "--address", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=errfile, text=True,
        )
        try:
            address = read_listen_address(proc, 15.0)
            return asyncio.run(run_suite(address, "server in subprocess", a))
        except BaseException:
            errfile.seek(0)
            err = errfile.read()
            if err:
                print(f"--- server subprocess stderr ---\n{err}", file=sys.stderr)
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
            if proc.stdout is not None:
                proc.stdout.close()


# -- main -----------------------------------------------------------------------


def machine_facts() -> list[str]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return [
        f"python:   {platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        f"platform: {platform.platform()} ({platform.machine()})",
        f"nproc:    {usable} usable of {os.cpu_count()} logical CPUs",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=2000,
                   help="timed ping()/snapshot() calls with 10 edges (default 2000)")
    p.add_argument("--repeats-large", type=int, default=300,
                   help="timed snapshot() calls with 1,000 edges (default 300)")
    p.add_argument("--fanout-cycles", type=int, default=500,
                   help="connect+disconnect cycles for the fan-out test; 2 events each (default 500)")
    p.add_argument("--warmup", type=int, default=200, help="untimed calls before each timed run (default 200)")
    p.add_argument("--edits", type=int, default=300, help="timed update_setting calls (default 300)")
    p.add_argument("--quick", action="store_true", help="shrink every count ~10x")
    p.add_argument("--config", choices=["thread", "subprocess", "both"], default="both",
                   help="which server configuration(s) to measure (default both)")
    a = p.parse_args(argv)
    a.fanout_warmup = 20
    if a.quick:
        a.repeats = max(20, a.repeats // 10)
        a.repeats_large = max(10, a.repeats_large // 10)
        a.fanout_cycles = max(10, a.fanout_cycles // 10)
        a.warmup = max(10, a.warmup // 10)
        a.fanout_warmup = 5
        a.edits = max(20, a.edits // 10)

    print("ezmsg_console control-plane benchmark" + (" (--quick)" if a.quick else ""))
    for line in machine_facts():
        print(line)
    print(f"target:   snapshot p50 <= {TARGET_SNAPSHOT_P50_MS:g} ms with {SMALL_EDGES} edges; routed PING "
          "p50 <= 1 ms; update_setting end to end p50 <= 5 ms")
    print(f"counts:   {a.repeats} ping/snapshot calls ({SMALL_EDGES} edges), {a.repeats_large} snapshot calls "
          f"({LARGE_EDGES} edges), {a.fanout_cycles} connect/disconnect cycles "
          f"= {2 * a.fanout_cycles} events x {N_SUBSCRIBERS} subscribers")
    print()

    started = time.perf_counter()
    rows: list[Row] = []
    if a.config in ("thread", "both"):
        rows += run_with_thread_server(a)
    if a.config in ("subprocess", "both"):
        rows += run_with_subprocess_server(a)

    print_table(rows)
    print()
    for r in rows:
        if r.measurement == f"snapshot(), {SMALL_EDGES} edges":
            ok = r.ms(50) <= TARGET_SNAPSHOT_P50_MS
            print(f"target check ({r.config}): snapshot p50 {r.ms(50):.3f} ms "
                  f"{'<=' if ok else '>'} {TARGET_SNAPSHOT_P50_MS:g} ms -> {'MET' if ok else 'NOT MET'}")
    print(f"total wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
