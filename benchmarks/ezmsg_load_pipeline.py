"""A larger ezmsg 3.9 pipeline for the console benchmark: N processes, each a chain of units.

    python benchmarks/ezmsg_load_pipeline.py --address HOST:PORT [--processes 10] [--units 5] [--rate 20]

Each process runs one collection ``LOAD/Pk``: a source ``SRC`` (8 x 50 float64 blocks at ``rate_hz``)
and ``units - 1`` relays ``R1 .. Rn`` (gain), chained. Every unit has dynamic settings with bounds.
Runs until SIGINT/SIGTERM. Written against ``ezmsg.core`` only (no ezmsg-console import).
"""

import argparse
import asyncio
import os
import signal
import sys
import threading
from collections.abc import AsyncGenerator
from dataclasses import field

import numpy as np

import ezmsg.core as ez
from ezmsg.core.netprotocol import Address


class SourceSettings(ez.Settings):
    rate_hz: float = field(default=20.0, metadata={"ge": 1, "le": 1000, "description": "Blocks per second"})


class Source(ez.Unit):
    SETTINGS = SourceSettings
    INPUT_SETTINGS = ez.InputStream(SourceSettings)
    OUTPUT = ez.OutputStream(np.ndarray)

    @ez.subscriber(INPUT_SETTINGS)
    async def on_settings(self, msg: SourceSettings) -> None:
        self.apply_settings(msg)

    @ez.publisher(OUTPUT)
    async def generate(self) -> AsyncGenerator:
        block = np.zeros((8, 50))
        while True:
            await asyncio.sleep(1.0 / max(float(self.SETTINGS.rate_hz), 1.0))
            yield self.OUTPUT, block


class RelaySettings(ez.Settings):
    gain: float = field(default=1.0, metadata={"ge": 0, "le": 100, "description": "Multiplier"})


class Relay(ez.Unit):
    SETTINGS = RelaySettings
    INPUT_SETTINGS = ez.InputStream(RelaySettings)
    INPUT = ez.InputStream(np.ndarray)
    OUTPUT = ez.OutputStream(np.ndarray)

    @ez.subscriber(INPUT_SETTINGS)
    async def on_settings(self, msg: RelaySettings) -> None:
        self.apply_settings(msg)

    @ez.subscriber(INPUT)
    @ez.publisher(OUTPUT)
    async def relay(self, msg: np.ndarray) -> AsyncGenerator:
        yield self.OUTPUT, msg * float(self.SETTINGS.gain)


def chain_class(units: int, rate: float) -> type:
    """A collection class with SRC and ``units - 1`` relays, chained."""
    members = {"SRC": Source(SourceSettings(rate_hz=rate))}
    for i in range(1, units):
        members[f"R{i}"] = Relay()

    def network(self: ez.Collection) -> ez.NetworkDefinition:
        names = ["SRC", *(f"R{i}" for i in range(1, units))]
        return tuple((getattr(self, a).OUTPUT, getattr(self, b).INPUT) for a, b in zip(names, names[1:]))

    return type("Chain", (ez.Collection,), {**members, "network": network, "__module__": __name__})


def load_class(processes: int, units: int, rate: float) -> type:
    chain = chain_class(units, rate)
    members = {f"P{k}": chain() for k in range(processes)}

    def process_components(self: ez.Collection) -> tuple:
        return tuple(getattr(self, f"P{k}") for k in range(processes))

    return type("Load", (ez.Collection,), {**members, "process_components": process_components,
                                           "__module__": __name__})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--units", type=int, default=5, help="units per process (default 5)")
    parser.add_argument("--rate", type=float, default=20.0, help="source blocks per second (default 20)")
    args = parser.parse_args()
    runner = ez.GraphRunner(components={"LOAD": load_class(args.processes, args.units, args.rate)()},
                            graph_address=Address.from_string(args.address))
    stop = threading.Event()
    runner.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set() and any(p.is_alive() for p in runner.processes):
        stop.wait(0.2)
    runner.stop()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ezmsg_load_pipeline as _module  # pickled classes name this module, not __main__

    raise SystemExit(_module.main())
