"""A small multi-process signal pipeline written against upstream ``ezmsg.core``.

``DEMO/GEN -> DEMO/FILTER -> DEMO/STATS -> DEMO/SINK`` (FILTER also feeds SINK).
GEN and FILTER accept dynamic settings (``INPUT_SETTINGS``), so
``GraphContext.update_setting("DEMO/FILTER", "window.length", 8)`` works; STATS
has settings but no ``INPUT_SETTINGS``; SINK has no settings fields at all.
GEN, FILTER and STATS each run in their own worker process, SINK in a fourth.

Run: ``python -m ezmsg_console.ezmsg_backend.demo --address 127.0.0.1:PORT``.
No ``from __future__ import annotations`` here: upstream derives ``Literal``
choices from real annotations, not from strings.
"""

import argparse
import asyncio
import signal
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np

import ezmsg.core as ez
from ezmsg.core.netprotocol import Address

SAMPLES_PER_BLOCK = 50


class GeneratorSettings(ez.Settings):
    """Source settings (all editable at run time)."""

    rate_hz: float = field(
        default=20.0, metadata={"ge": 1, "le": 1000, "description": "Blocks published per second"}
    )
    channels: int = field(default=8, metadata={"ge": 1, "le": 256, "description": "Number of channels"})
    waveform: Literal["sine", "square", "noise"] = field(
        default="sine", metadata={"description": "Signal shape"}
    )
    enabled: bool = field(default=True, metadata={"description": "Publish blocks when true"})


class GeneratorState(ez.State):
    """Running sample counter (phase of the waveform)."""

    sample: int = 0


class Generator(ez.Unit):
    """Publishes ``channels x 50`` float64 blocks at ``rate_hz``."""

    SETTINGS = GeneratorSettings
    STATE = GeneratorState

    INPUT_SETTINGS = ez.InputStream(GeneratorSettings)
    OUTPUT = ez.OutputStream(np.ndarray)

    @ez.subscriber(INPUT_SETTINGS)
    async def on_settings(self, msg: GeneratorSettings) -> None:
        self.apply_settings(msg)

    def _block(self, settings: GeneratorSettings) -> np.ndarray:
        channels = int(min(max(int(settings.channels), 1), 256))
        t = (self.STATE.sample + np.arange(SAMPLES_PER_BLOCK)) / float(SAMPLES_PER_BLOCK * 20)
        freqs = 1.0 + np.arange(channels)[:, None]
        if settings.waveform == "noise":
            return np.random.default_rng().standard_normal((channels, SAMPLES_PER_BLOCK))
        wave = np.sin(2.0 * np.pi * freqs * t[None, :])
        return np.sign(wave) if settings.waveform == "square" else wave

    @ez.publisher(OUTPUT)
    async def generate(self) -> AsyncGenerator[tuple[ez.OutputStream, np.ndarray], None]:
        next_time = time.monotonic()
        while True:
            settings = cast(GeneratorSettings, self.SETTINGS)  # on the instance: the settings object
            rate = float(settings.rate_hz) if float(settings.rate_hz) > 0 else 1.0
            next_time = max(next_time + 1.0 / min(rate, 1000.0), time.monotonic() - 1.0)
            await asyncio.sleep(max(0.0, next_time - time.monotonic()))
            if not settings.enabled:
                continue
            block = self._block(settings)
            self.STATE.sample += SAMPLES_PER_BLOCK
            yield self.OUTPUT, block


@dataclass(frozen=True)
class Window:
    """Smoothing window of the filter (a nested settings dataclass)."""

    length: int = field(default=5, metadata={"ge": 1, "le": 1024, "description": "Window length (samples)"})
    kind: str = field(default="hann", metadata={"description": "'hann' or anything else for boxcar"})


class FilterSettings(ez.Settings):
    """Gain / smoothing settings (editable at run time, including ``window.*``)."""

    gain: float = field(default=1.0, metadata={"ge": 0.0, "le": 100.0, "description": "Output gain"})
    mode: Literal["lowpass", "highpass", "passthrough"] = field(
        default="lowpass", metadata={"description": "Filter mode"}
    )
    window: Window = field(default_factory=Window)


class Filter(ez.Unit):
    """Moving-window low/high-pass along samples, then gain."""

    SETTINGS = FilterSettings

    INPUT_SETTINGS = ez.InputStream(FilterSettings)
    INPUT = ez.InputStream(np.ndarray)
    OUTPUT = ez.OutputStream(np.ndarray)

    @ez.subscriber(INPUT_SETTINGS)
    async def on_settings(self, msg: FilterSettings) -> None:
        self.apply_settings(msg)

    @staticmethod
    def _kernel(window: Any, n_samples: int) -> np.ndarray:
        length = int(min(max(int(getattr(window, "length", 1)), 1), max(n_samples, 1)))
        kernel = np.hanning(length) if getattr(window, "kind", "") == "hann" else np.ones(length)
        if kernel.sum() <= 0.0:
            kernel = np.ones(length)
        return kernel / kernel.sum()

    @ez.subscriber(INPUT)
    @ez.publisher(OUTPUT)
    async def process(self, msg: np.ndarray) -> AsyncGenerator[tuple[ez.OutputStream, np.ndarray], None]:
        data = np.atleast_2d(np.asarray(msg, dtype=np.float64))
        settings = self.SETTINGS
        if settings.mode == "passthrough":
            out = data.copy()
        else:
            kernel = self._kernel(settings.window, data.shape[-1])
            smooth = np.stack([np.convolve(row, kernel, mode="same") for row in data])
            out = smooth if settings.mode == "lowpass" else data - smooth
        yield self.OUTPUT, out * float(settings.gain)


class StatsSettings(ez.Settings):
    """Static settings (no INPUT_SETTINGS: not editable at run time)."""

    decimate: int = field(default=1, metadata={"ge": 1, "le": 100, "description": "Publish every Nth block"})


class StatsState(ez.State):
    """Number of blocks seen."""

    blocks: int = 0


class Stats(ez.Unit):
    """Publishes ``{"mean", "rms", "channels", "blocks"}`` per (decimated) block."""

    SETTINGS = StatsSettings
    STATE = StatsState

    INPUT = ez.InputStream(np.ndarray)
    OUTPUT = ez.OutputStream(dict)

    @ez.subscriber(INPUT)
    @ez.publisher(OUTPUT)
    async def compute(self, msg: np.ndarray) -> AsyncGenerator[tuple[ez.OutputStream, dict], None]:
        self.STATE.blocks += 1
        if self.STATE.blocks % max(int(self.SETTINGS.decimate), 1) != 0:
            return
        data = np.asarray(msg, dtype=np.float64)
        yield self.OUTPUT, {
            "mean": float(data.mean()) if data.size else 0.0,
            "rms": float(np.sqrt(np.mean(data**2))) if data.size else 0.0,
            "channels": int(data.shape[0]) if data.ndim else 0,
            "blocks": self.STATE.blocks,
        }


class SinkState(ez.State):
    """Counters of received messages."""

    signal_blocks: int = 0
    stats_messages: int = 0


class Sink(ez.Unit):
    """Counts signal blocks and stats messages (no settings fields)."""

    STATE = SinkState

    INPUT_SIGNAL = ez.InputStream(np.ndarray)
    INPUT_STATS = ez.InputStream(dict)

    @ez.subscriber(INPUT_SIGNAL)
    async def on_signal(self, msg: np.ndarray) -> None:
        self.STATE.signal_blocks += 1

    @ez.subscriber(INPUT_STATS)
    async def on_stats(self, msg: dict) -> None:
        self.STATE.stats_messages += 1


class Demo(ez.Collection):
    """The demo pipeline; run under the root name ``DEMO``."""

    GEN = Generator()
    FILTER = Filter()
    STATS = Stats()
    SINK = Sink()

    def network(self) -> ez.NetworkDefinition:
        return (
            (self.GEN.OUTPUT, self.FILTER.INPUT),
            (self.FILTER.OUTPUT, self.STATS.INPUT),
            (self.FILTER.OUTPUT, self.SINK.INPUT_SIGNAL),
            (self.STATS.OUTPUT, self.SINK.INPUT_STATS),
        )

    def process_components(self) -> tuple[ez.Component, ...]:
        # Each listed unit gets its own process; the rest (SINK) share one more.
        return (self.GEN, self.FILTER, self.STATS)


def build_runner(address: Address | None) -> ez.GraphRunner:
    """A runner for ``{"DEMO": Demo()}`` (addresses ``DEMO/GEN`` ...) on ``address``."""
    return ez.GraphRunner(components={"DEMO": Demo()}, graph_address=address)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo until ``--duration`` elapses or SIGINT/SIGTERM arrives."""
    parser = argparse.ArgumentParser(prog="python -m ezmsg_console.ezmsg_backend.demo")
    parser.add_argument(
        "--address",
        default=None,
        help="GraphServer host:port to join (default: $EZMSG_GRAPHSERVER_ADDR if set, "
        "else 127.0.0.1:25978 if a server runs there, else ezmsg starts one in this "
        "process on the first free port from $EZMSG_SERVER_PORT_START, default 10000)",
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    args = parser.parse_args(None if argv is None else list(argv))
    address = Address.from_string(args.address) if args.address else None

    stop = threading.Event()
    runner = build_runner(address)
    try:
        # Workers fork inside start(): install handlers afterwards so workers keep
        # Python's default SIGINT behaviour (a process-group ^C stops them too).
        runner.start()
    except KeyboardInterrupt:
        stop.set()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # second signal: force
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if runner.running:
            try:
                _wait(stop, args.duration, runner)
                runner.stop()
            except KeyboardInterrupt:
                for proc in runner.processes:
                    if proc.is_alive():
                        proc.terminate()
                for proc in runner.processes:
                    proc.join(timeout=5.0)
                return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _wait(stop: threading.Event, duration: float | None, runner: ez.GraphRunner) -> None:
    """Return when ``stop`` is set, ``duration`` elapsed, or every worker has exited."""
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.is_set():
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        stop.wait(0.2 if remaining is None else min(0.2, remaining))
        if not any(proc.is_alive() for proc in runner.processes):
            return


if __name__ == "__main__":
    # Re-import under the real module name so pickled settings / metadata name
    # ``ezmsg_console.ezmsg_backend.demo.*`` rather than ``__main__.*``.
    from ezmsg_console.ezmsg_backend import demo as _demo

    raise SystemExit(_demo.main())
