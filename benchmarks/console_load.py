"""Console load: the Profiling tab with 200 processes / 2,000 endpoints updating at 10 Hz.

    python benchmarks/console_load.py [--seconds 15] [--processes 200] [--endpoints 10] [--hz 10]

The real ConsoleApp runs headless (Textual's test driver renders every frame
to an off-screen buffer, as it would to a terminal) on the Profiling tab. A
synthetic monitor replaces the network: every 1/hz seconds it swaps in fresh
profiling snapshots for every process (rates and latencies drifting, so cells
really change) and notifies the app, exactly as GraphMonitor does after a
poll. Reported:

- CPU share of one core of the whole process, and of the console alone
  (minus the time the synthetic feeder spent building snapshots, which in real
  life is the network decode of the same data);
- draw time per update: the app's redraw (every tab's refresh_view, the live
  tables' in-place updates), p50/p99;
- frame time: the redraw plus the screen render Textual does for it, p50/p99
  (from the redraw's start until Textual runs its after-refresh callbacks: after
  the repaint, or at once if the redraw changed nothing on screen);
- stall diagnosis: the machine's busy and steal time (/proc/stat), the garbage
  collector's pauses, and for frames over 50 ms how much of their time this
  process was running (wall >> CPU: it was not scheduled).

Targets (issue 6): under 25 % of one core, frame p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import platform
import random
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchlib import cpu_model, machine_cpu  # noqa: E402

from ezmsg_console.client.monitor import ConnState, GraphMonitor  # noqa: E402
from ezmsg_console.profiling.histogram import EDGES_NS, Histogram  # noqa: E402
from ezmsg_console.protocol.graph import GraphSnapshot, ProcessInfo  # noqa: E402
from ezmsg_console.protocol.profiling import (  # noqa: E402
    ProcessProfilingSnapshot,
    PublisherProfile,
    SubscriberProfile,
)
from ezmsg_console.tui.app import ConsoleApp  # noqa: E402


class SyntheticMonitor(GraphMonitor):
    """A GraphMonitor fed by a generator instead of a GraphServer."""

    def __init__(self, processes: int, endpoints: int, hz: float) -> None:
        super().__init__("synthetic:0", profiling_interval=1.0 / hz)
        self.n_processes, self.n_endpoints, self.hz = processes, endpoints, hz
        self.feed_seconds = 0.0
        self.updates = 0
        self._rng = random.Random(1)
        self._feeder: asyncio.Task[None] | None = None
        self.process_ids = [f"{i:04d}" + "a" * 28 for i in range(processes)]
        self.state.conn_state = ConnState.CONNECTED
        self.state.server_epoch = "synthetic"
        self.state.snapshot = GraphSnapshot(
            server_id="synthetic", server_epoch="synthetic", topology_seq=1, timestamp=time.time(), graph={},
            edge_owners=(), sessions=(),
            processes=tuple(ProcessInfo(pid, 10000 + i, "host", (f"P{i}/U",), time.time())
                            for i, pid in enumerate(self.process_ids)))
        hist = Histogram()
        for v in (50_000, 80_000, 120_000, 400_000):
            hist.record(v)
        self._hist = hist.snapshot()

    def start(self) -> None:
        self._feeder = asyncio.ensure_future(self._feed())

    async def stop(self) -> None:
        if self._feeder is not None:
            self._feeder.cancel()

    def _snapshot(self, i: int, pid: str, t: float) -> ProcessProfilingSnapshot:
        half = self.n_endpoints // 2
        wobble = 1.0 + 0.2 * math.sin(t + i)
        pubs = tuple(PublisherProfile(
            endpoint_id=f"P{i}/U/OUT{j}:{pid}", topic=f"P{i}/U/OUT{j}", num_buffers=32,
            inflight_messages_current=self._rng.randint(0, 4), messages_published_total=int(t * 100),
            bytes_published_total=int(t * 6400), backpressure_waits_total=0, backpressure_wait_ns_total=0,
            messages_published_window=10, bytes_published_window=640,
            publish_rate_hz_window=100.0 * wobble + self._rng.random(), bytes_rate_window=6400.0 * wobble,
            fanout=1, shm_links=1) for j in range(half))
        subs = tuple(SubscriberProfile(
            endpoint_id=f"P{i}/U/IN{j}:{pid}", topic=f"P{i}/U/IN{j}", messages_received_total=int(t * 100),
            bytes_received_total=int(t * 6400), drops_total=0, channel_kind_last="SHM", publishers=1,
            messages_received_window=10, bytes_received_window=640,
            receive_rate_hz_window=100.0 * wobble + self._rng.random(), bytes_rate_window=6400.0 * wobble,
            handler_ns=self._hist, handler_ns_window=self._hist, latency_ns=self._hist,
            latency_ns_window=self._hist) for j in range(self.n_endpoints - half))
        return ProcessProfilingSnapshot(
            process_id=pid, pid=10000 + i, host="host", timestamp_mono_ns=time.monotonic_ns(),
            timestamp_wall_s=time.time(), window_seconds=1.0 / self.hz, histograms_enabled=True,
            histogram_edges_ns=EDGES_NS, publishers=pubs, subscribers=subs)

    async def _feed(self) -> None:
        period = 1.0 / self.hz
        next_at = time.monotonic()
        while True:
            start = time.process_time()
            t = time.monotonic()
            st = self.state
            st.profiling = {pid: self._snapshot(i, pid, t) for i, pid in enumerate(self.process_ids)}
            st.profiling_time = time.time()
            st.data_time = st.profiling_time
            for snap in st.profiling.values():
                for p in snap.publishers:  # type: ignore[union-attr]
                    self._history(st.rate_history, p.endpoint_id).append(p.publish_rate_hz_window)
                for s in snap.subscribers:  # type: ignore[union-attr]
                    self._history(st.rate_history, s.endpoint_id).append(s.receive_rate_hz_window)
                    self._history(st.latency_history, s.endpoint_id).append(s.latency_ns_window.p50_ns)
            self.feed_seconds += time.process_time() - start
            self.updates += 1
            self._notify("profiling")
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


SLOW_FRAME_S = 0.050


async def measure(app: ConsoleApp, args: argparse.Namespace, ready: Any = None) -> dict[str, Any]:
    """Run ``app`` headless on the Profiling tab: ``args.warmup`` s unmeasured (after ``ready()``
    holds, if given), then ``args.seconds`` s measured. CPU is this whole process's."""
    monitor = app.monitor
    draws: list[float] = []
    frames: list[float] = []
    frame_cpu: list[float] = []  # this process's CPU time during each frame (stall diagnosis)
    gc_pauses: list[float] = []
    gc_start: list[float] = []
    original_draw = app._draw

    def timed_draw() -> None:
        start, cpu_start = time.perf_counter(), time.process_time()
        original_draw()
        draws.append(time.perf_counter() - start)
        # A frame ends when the screen shows the redraw: Textual runs after-refresh callbacks once
        # the repaint is done, or at once when the redraw changed nothing on screen (then there is
        # no compositor update to wait for: timing to the next one would count the idle time).
        app.call_after_refresh(shown, start, cpu_start)

    def shown(start: float, cpu_start: float) -> None:
        frames.append(time.perf_counter() - start)
        frame_cpu.append(time.process_time() - cpu_start)

    def gc_timer(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            gc_start[:] = [time.perf_counter()]
        elif gc_start:
            gc_pauses.append(time.perf_counter() - gc_start.pop())

    app._draw = timed_draw  # type: ignore[method-assign]

    async with app.run_test(size=(args.cols, args.rows)) as pilot:
        await pilot.pause(0.5)  # let the app finish mounting before the first key
        if ready is not None:
            deadline = time.monotonic() + 60.0
            while not ready():
                if time.monotonic() > deadline:
                    raise RuntimeError("the console did not get its first data within 60 s")
                await pilot.pause(0.1)
        await pilot.press("3")
        await pilot.pause(0.2)
        if getattr(args, "sort_by_rate", False):  # Topic -> Process -> Links -> Msgs/s, highest first
            await pilot.press("greater_than_sign", "greater_than_sign", "greater_than_sign", "I")
        await pilot.pause(args.warmup)
        if app.active_pane.TAB_ID != "profiling":
            raise RuntimeError("could not switch to the Profiling tab")
        draws.clear()
        frames.clear()
        frame_cpu.clear()
        gc.callbacks.append(gc_timer)
        cpu0, wall0, machine0 = time.process_time(), time.monotonic(), machine_cpu()
        feed0, upd0 = getattr(monitor, "feed_seconds", 0.0), getattr(monitor, "updates", 0)
        await pilot.pause(args.seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        gc.callbacks.remove(gc_timer)
        machine1 = machine_cpu()
        busy, steal = ((100.0 * (b - a) / wall for a, b in zip(machine0, machine1))
                       if machine0 and machine1 else (None, None))
        feed = getattr(monitor, "feed_seconds", 0.0) - feed0
        updates = getattr(monitor, "updates", 0) - upd0
        rows = len(app.main.query_one("#pane-profiling").query("LiveTable").first().shown_keys)
        await app.shutdown()
    return {"cpu": cpu, "wall": wall, "feed": feed, "updates": updates, "draws": draws, "frames": frames,
            "frame_cpu": frame_cpu, "gc_pauses": gc_pauses, "machine_busy": busy, "steal": steal, "rows": rows}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    monitor = SyntheticMonitor(args.processes, args.endpoints, args.hz)
    return await measure(ConsoleApp(monitor), args)


def report(r: dict[str, Any], console_cpu: float, rows: list[tuple[str, str]]) -> None:
    """The result table of :func:`measure` (``rows``: extra lines) and the two targets."""
    d50, d99 = 1000 * pct(r["draws"], 0.5), 1000 * pct(r["draws"], 0.99)
    f50, f99 = 1000 * pct(r["frames"], 0.5), 1000 * pct(r["frames"], 0.99)
    print()
    print(f"{'measure':42} {'value':>12}")
    print("-" * 55)
    print(f"{'redraws':42} {len(r['draws']):>12d}")
    print(f"{'rows in the publishers table':42} {r['rows']:>12d}")
    for name, value in rows:
        print(f"{name:42} {value}")
    print(f"{'draw time p50 / p99 (ms)':42} {d50:>5.1f} / {d99:<5.1f}")
    print(f"{'frame time p50 / p99 (ms)':42} {f50:>5.1f} / {f99:<5.1f}")
    if r.get("steal") is not None:
        print(f"{'machine: busy / steal (% of one CPU)':42} {r['machine_busy']:>5.0f} / {r['steal']:<5.0f}")
    slow = [(f, c) for f, c in zip(r["frames"], r["frame_cpu"]) if f > SLOW_FRAME_S]
    gc_max = 1000 * max(r["gc_pauses"], default=0.0)
    print(f"{'GC pauses: count, longest (ms)':42} {len(r['gc_pauses']):>5d} / {gc_max:<5.1f}")
    if slow:  # a slow frame with little CPU of ours: the process was not running (scheduler, steal)
        worst, worst_cpu = max(slow)
        print(f"{'frames over 50 ms; worst: wall / our CPU (ms)':42} {len(slow):>3d}; {1000 * worst:.0f} / "
              f"{1000 * worst_cpu:.0f}")
    print()
    print(f"target: console CPU < 25 % of one core: {'met' if console_cpu < 25.0 else 'NOT met'} "
          f"({console_cpu:.1f} %)")
    print(f"target: frame p99 < 50 ms: {'met' if f99 < 50.0 else 'NOT met'} ({f99:.1f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time (default 15)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured time first (default 3)")
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--endpoints", type=int, default=10, help="endpoints per process (half publishers)")
    parser.add_argument("--hz", type=float, default=10.0, help="profiling updates per second")
    parser.add_argument("--cols", type=int, default=120)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--sort-by-rate", action="store_true",
                        help="sort the publishers by Msgs/s (re-sorted on every update) instead of by topic")
    parser.add_argument("--quick", action="store_true", help="5 s measured, 2 s warm-up")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup = 5.0, 2.0
    print("console load benchmark: Profiling tab, headless ConsoleApp")
    print(f"  machine  {platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs, load avg "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"  python   {sys.version.split()[0]}; {args.processes} processes x {args.endpoints} endpoints = "
          f"{args.processes * args.endpoints} endpoints at {args.hz:g} Hz; terminal {args.cols}x{args.rows}; "
          f"{args.seconds:g} s measured; sorted by {'Msgs/s' if args.sort_by_rate else 'topic'}")
    r = asyncio.run(run(args))
    total = 100.0 * r["cpu"] / r["wall"]
    console = 100.0 * (r["cpu"] - r["feed"]) / r["wall"]
    report(r, console, [("updates fed (profiling polls)", f"{r['updates']:>12d}"),
                        ("CPU, whole process (% of one core)", f"{total:>11.1f}%"),
                        ("CPU, synthetic feeder (% of one core)", f"{100.0 * r['feed'] / r['wall']:>11.1f}%"),
                        ("CPU, console = whole - feeder", f"{console:>11.1f}%")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
