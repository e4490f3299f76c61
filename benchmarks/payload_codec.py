"""Data-plane payload codec benchmark (``ezmsg_console.pubsub.payload``).

Not a test: run it by hand and read the table.

    .venv/bin/python benchmarks/payload_codec.py            # ~15 s
    .venv/bin/python benchmarks/payload_codec.py --quick    # a few seconds

For each message it times, per message, in this process:

* ``encode+write``: ``encode(msg)`` then ``write_into(enc, slot)`` where ``slot``
  is a memoryview of a page-aligned anonymous ``mmap`` (like a shared-memory slot);
* ``decode copy`` / ``decode view``: ``decode(slot, copy=True / False)``;
* ``e+w+d copy`` / ``e+w+d view``: the three steps back to back (the latency a
  message adds, minus transport), and the matching throughput in GB/s
  (payload bytes / time; GB = 1e9 bytes).

``memcpy`` rows are the reference: one ``numpy.copyto`` of the same number of
bytes between two preallocated buffers. A copy=True round trip does two
copies (into the slot, out of the slot), so ~half the memcpy GB/s is the ceiling.

Each figure is the median over several batches of calls, after a warm-up.
"""

from __future__ import annotations

import argparse
import mmap
import platform
import statistics
import sys
import time
from typing import Any, Callable

import msgpack
import numpy as np

from benchlib import cpu_model
from ezmsg_console.pubsub.payload import decode, encode, write_into


def per_call_us(fn: Callable[[], Any], budget_s: float, batches: int = 5) -> float:
    """Median over ``batches`` of the mean time per call, in microseconds."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    calls = max(1, int(budget_s / batches / one))
    results = []
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        results.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller time budget per measurement")
    args = parser.parse_args()
    budget = 0.06 if args.quick else 0.4

    print("payload codec benchmark")
    print(f"  python  {sys.version.split()[0]} ({platform.python_implementation()})")
    print(f"  numpy   {np.__version__}, msgpack {'.'.join(map(str, msgpack.version))}")
    print(f"  machine {platform.machine()}, {cpu_model()}, {platform.system()} {platform.release()}")
    print()

    messages: list[tuple[str, Any, int]] = [
        ("64 B uint8 array", np.arange(64, dtype=np.uint8), 64),
        ("64 KiB float32 array", np.ones(16384, dtype=np.float32), 65536),
        ("1 MiB float64 array", np.ones(131072, dtype=np.float64), 1 << 20),
        ("8 MiB float32 array", np.ones((2048, 1024), dtype=np.float32), 8 << 20),
        ('dict {"a": 1, "b": [1.0, 2.0]}', {"a": 1, "b": [1.0, 2.0]}, 0),
    ]
    slot_mm = mmap.mmap(-1, 16 << 20)
    slot = memoryview(slot_mm)

    cols = ["encode+write", "decode copy", "decode view", "e+w+d copy", "GB/s", "e+w+d view", "GB/s"]
    head = f"{'message':32} {'bytes':>9} " + " ".join(f"{c:>12}" for c in cols)
    print(head)
    print("-" * len(head))

    def gbps(nbytes: int, us: float) -> str:
        return f"{nbytes / (us * 1e-6) / 1e9:12.2f}" if nbytes else f"{'-':>12}"

    for label, msg, nbytes in messages:
        enc = encode(msg)
        write_into(enc, slot)
        ew = per_call_us(lambda: write_into(encode(msg), slot), budget)
        dc = per_call_us(lambda: decode(slot, copy=True), budget)
        dv = per_call_us(lambda: decode(slot, copy=False), budget)
        rc = per_call_us(lambda: decode(slot[: write_into(encode(msg), slot)], copy=True), budget)
        rv = per_call_us(lambda: decode(slot[: write_into(encode(msg), slot)], copy=False), budget)
        print(f"{label:32} {enc.nbytes:9d} {ew:12.2f} {dc:12.2f} {dv:12.2f} {rc:12.2f} {gbps(nbytes, rc)}"
              f" {rv:12.2f} {gbps(nbytes, rv)}")
        if nbytes:
            src = np.ones(nbytes, dtype=np.uint8)
            dst = np.empty_like(src)
            mc = per_call_us(lambda: np.copyto(dst, src), budget)
            print(f"{'  memcpy ref (np.copyto)':32} {nbytes:9d} {'':>12} {'':>12} {'':>12} {mc:12.2f}"
                  f" {gbps(nbytes, mc)}")
    slot.release()
    slot_mm.close()


if __name__ == "__main__":
    main()
