"""The two-unit pipeline ``benchmarks/pipeline.py`` runs on each framework: one file, written
against ezmsg's public unit API; ``--ez`` picks the module (``ezmsg_console.ez`` or
``ezmsg.core``), so both frameworks run the same code with their own ``run()`` and every stream
option at its default. Not a test; started by pipeline.py, one case per process tree.

SOURCE publishes ``count`` messages (as fast as backpressure allows, or every ``period`` s), each
stamped with ``time.monotonic()`` (one clock for every process on the host); SINK, in another
process, records the arrival of each, writes a JSON summary to ``out`` and raises
``NormalTermination``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

ez = importlib.import_module(os.environ.get("PIPELINE_EZ", "ezmsg_console.ez"))


@dataclass
class Frame:
    """An AxisArray-like message: an array with dims, per-axis metadata and a key."""

    data: np.ndarray
    dims: list = field(default_factory=lambda: ["time", "ch"])
    axes: dict = field(default_factory=lambda: {"time": {"offset": 0.0, "gain": 0.001}})
    key: str = "bench"


class SourceSettings(ez.Settings):
    kind: str = "bytes"  # bytes | float64 | frame
    nbytes: int = 64
    count: int = 1000  # 0: forever
    period: float = 0.0
    settle: float = 0.3


def make_message(kind: str, nbytes: int, stamp: float):
    if kind == "bytes":
        arr = np.zeros(max(nbytes, 8), dtype=np.uint8)
        arr[:8].view(np.float64)[0] = stamp
        return arr
    arr = np.zeros((max(nbytes // 8 // 256, 1), 256) if nbytes >= 2048 else max(nbytes // 8, 1), dtype=np.float64)
    arr.flat[0] = stamp
    return arr if kind == "float64" else Frame(arr)


Message = Frame  # the streams' declared type (a class: ezmsg needs one), so a Frame is rebuilt on arrival;
# neither framework checks it, so the array cases send arrays on the same streams


def stamp_of(msg) -> float:
    if isinstance(msg, np.ndarray) and msg.dtype == np.uint8:
        return float(msg[:8].view(np.float64)[0])
    data = msg.data if hasattr(msg, "data") else msg
    return float(np.asarray(data).flat[0])


class Source(ez.Unit):
    SETTINGS = SourceSettings
    OUTPUT = ez.OutputStream(Message)

    @ez.publisher(OUTPUT)
    async def send(self):
        s = self.SETTINGS
        await asyncio.sleep(s.settle)  # the subscriber is linked by now on both frameworks
        sent = 0
        while sent < s.count or not s.count:  # a fresh message per send, as users' code does
            sent += 1
            yield self.OUTPUT, make_message(s.kind, s.nbytes, time.monotonic())
            if s.period:
                await asyncio.sleep(s.period)
        while True:  # the sink ends the run
            await asyncio.sleep(3600)


class SinkSettings(ez.Settings):
    count: int = 1000
    out: str = ""


class SinkState(ez.State):
    arrivals: list
    delays: list


class Sink(ez.Unit):
    SETTINGS = SinkSettings
    STATE = SinkState
    INPUT = ez.InputStream(Message)

    async def initialize(self) -> None:
        self.STATE.arrivals = []
        self.STATE.delays = []

    @ez.subscriber(INPUT)
    async def on_message(self, msg) -> None:
        now = time.monotonic()
        self.STATE.arrivals.append(now)
        self.STATE.delays.append(now - stamp_of(msg))
        if len(self.STATE.arrivals) == self.SETTINGS.count:
            with open(self.SETTINGS.out + ".tmp", "w") as fh:
                json.dump({"arrivals": self.STATE.arrivals, "delays": self.STATE.delays,
                           "type": type(msg).__name__}, fh)
            os.replace(self.SETTINGS.out + ".tmp", self.SETTINGS.out)
            raise ez.NormalTermination


class Bench(ez.Collection):
    SOURCE = Source()
    SINK = Sink()

    def network(self):
        return ((self.SOURCE.OUTPUT, self.SINK.INPUT),)

    def process_components(self):
        return (self.SOURCE, self.SINK)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="bytes")
    ap.add_argument("--nbytes", type=int, default=64)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--period", type=float, default=0.0)
    ap.add_argument("--settle", type=float, default=0.3)
    ap.add_argument("--expect", type=int, help="messages the sink waits for (default: --count)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--address", default=None, help="ours: GraphServer address (default: embedded on port 0)")
    args = ap.parse_args()
    bench = Bench()
    bench.SOURCE.apply_settings(SourceSettings(kind=args.kind, nbytes=args.nbytes, count=args.count,
                                               period=args.period, settle=args.settle))
    bench.SINK.apply_settings(SinkSettings(count=args.expect or args.count, out=args.out))
    if ez.__name__ == "ezmsg_console.ez":
        ez.run(BENCH=bench, address=args.address or "127.0.0.1:0")
    else:
        ez.run(BENCH=bench)  # ezmsg starts its own GraphServer at its default address
    sys.exit(0)


if __name__ == "__main__":
    main()
