"""Small units for runtime tests (importable, so worker processes can load them)."""

from __future__ import annotations

import asyncio
import json
import os
import time

import numpy as np

from ezmsg_console.runtime import (
    Collection,
    Complete,
    InputStream,
    NormalTermination,
    OutputStream,
    Settings,
    Unit,
    publisher,
    setting,
    subscriber,
)
from ezmsg_console.runtime.loop import loop_name


class CountSettings(Settings):
    count: int = setting(100, ge=1)
    width: int = setting(4, ge=1)
    period_s: float = setting(0.0, ge=0.0)


class Counter(Unit):
    """Publishes ``count`` int64 arrays whose first element is the sequence number."""

    SETTINGS = CountSettings
    OUTPUT = OutputStream(np.ndarray, num_buffers=8)

    @publisher(OUTPUT)
    async def count(self):
        for i in range(self.SETTINGS.count):
            msg = np.full(self.SETTINGS.width, i, dtype=np.int64)
            yield self.OUTPUT, msg
            if self.SETTINGS.period_s:
                await asyncio.sleep(self.SETTINGS.period_s)
        raise Complete


class ForeverSettings(Settings):
    pidfile: str = ""


class Forever(Unit):
    """Publishes forever, slowly (for signal tests); writes its pid to ``pidfile`` once running."""

    SETTINGS = ForeverSettings
    OUTPUT = OutputStream(np.ndarray)

    async def initialize(self) -> None:
        if self.SETTINGS.pidfile:
            with open(self.SETTINGS.pidfile + ".tmp", "w") as fh:
                fh.write(str(os.getpid()))
            os.replace(self.SETTINGS.pidfile + ".tmp", self.SETTINGS.pidfile)

    @publisher(OUTPUT)
    async def tick(self):
        i = 0
        while True:
            yield self.OUTPUT, np.array([i])
            i += 1
            await asyncio.sleep(0.01)


class GainSettings(Settings):
    gain: float = setting(1.0, ge=-100.0, le=100.0)


class Gain(Unit):
    SETTINGS = GainSettings
    INPUT = InputStream(np.ndarray)
    OUTPUT = OutputStream(np.ndarray)
    INPUT_SETTINGS = InputStream(GainSettings)

    @subscriber(INPUT)
    @publisher(OUTPUT)
    async def scale(self, msg):
        yield self.OUTPUT, msg * self.SETTINGS.gain


class CollectSettings(Settings):
    out: str = ""
    expect: int = setting(100, ge=1)
    finish: str = setting("complete", choices=("complete", "terminate"))


class Collect(Unit):
    """Records the first element of every message; writes them to ``out`` when ``expect`` arrived."""

    SETTINGS = CollectSettings
    INPUT = InputStream(np.ndarray)

    async def initialize(self) -> None:
        self.seen: list[int] = []

    @subscriber(INPUT)
    async def on_message(self, msg):
        self.seen.append(int(msg[0]))
        if len(self.seen) == self.SETTINGS.expect:
            tmp = self.SETTINGS.out + ".tmp"
            with open(tmp, "w") as fh:
                json.dump({"seen": self.seen, "pid": os.getpid(), "loop": loop_name()}, fh)
            os.replace(tmp, self.SETTINGS.out)
            raise NormalTermination if self.SETTINGS.finish == "terminate" else Complete


class Explode(Unit):
    INPUT = InputStream(np.ndarray)

    @subscriber(INPUT)
    async def on_message(self, msg):
        raise ValueError(f"cannot handle {int(msg[0])}")


class Pipeline(Collection):
    """SOURCE -> GAIN -> SINK, each in its own process."""

    SOURCE = Counter()
    GAIN = Gain()
    SINK = Collect()

    def network(self):
        return ((self.SOURCE.OUTPUT, self.GAIN.INPUT), (self.GAIN.OUTPUT, self.SINK.INPUT))

    def process_components(self):
        return (self.SOURCE, self.GAIN, self.SINK)


class FanOut(Collection):
    """One source to three collectors: A alone, B and C sharing a process."""

    SOURCE = Counter()
    A = Collect()
    B = Collect()
    C = Collect()

    def network(self):
        return tuple((self.SOURCE.OUTPUT, sink.INPUT) for sink in (self.A, self.B, self.C))

    def process_components(self):
        return (self.SOURCE, self.A)


class Broken(Collection):
    SOURCE = Counter()
    BAD = Explode()

    def network(self):
        return ((self.SOURCE.OUTPUT, self.BAD.INPUT),)

    def process_components(self):
        return (self.SOURCE, self.BAD)


class BrokenTogether(Collection):
    """Broken's units in ONE worker process: the source completes, the consumer then fails."""

    SOURCE = Counter()
    BAD = Explode()

    def network(self):
        return ((self.SOURCE.OUTPUT, self.BAD.INPUT),)


class Endless(Collection):
    SOURCE = Forever()
    SINK = Gain()

    def network(self):
        return ((self.SOURCE.OUTPUT, self.SINK.INPUT),)

    def process_components(self):
        return (self.SOURCE, self.SINK)


class NoteSettings(Settings):
    out: str = ""
    gain: float = setting(1.0, ge=0.0, le=10.0)


def _note(path: str, msg: NoteSettings, current: NoteSettings) -> None:
    """Append what a settings handler saw (the message, and SETTINGS at that moment)."""
    with open(path, "a") as fh:
        fh.write(json.dumps({"msg": msg.gain, "type": type(msg).__name__, "settings": current.gain}) + "\n")
    if msg.gain == 9.0:
        raise NormalTermination


class HandlerNamedOnSettings(Unit):
    """Its INPUT_SETTINGS handler is called ``on_settings``, the name of the runtime's hook."""

    SETTINGS = NoteSettings
    INPUT_SETTINGS = InputStream(NoteSettings)

    @subscriber(INPUT_SETTINGS)
    async def on_settings(self, msg):
        _note(self.SETTINGS.out, msg, self.SETTINGS)


class SettingsFromTheStream(Unit):
    """Dynamic settings with no SETTINGS class: INPUT_SETTINGS's dataclass is the type."""

    INPUT_SETTINGS = InputStream(NoteSettings)

    @subscriber(INPUT_SETTINGS)
    async def on_new(self, msg):
        _note(self.SETTINGS.out, msg, self.SETTINGS)


class SettingsTraps(Collection):
    NAMED = HandlerNamedOnSettings()
    TYPED = SettingsFromTheStream()


class StubbornSettings(Settings):
    marker: str = ""


class Stubborn(Unit):
    """Slow to stop: its task raises while being cancelled, then shutdown() blocks for a minute
    (after touching ``marker``; ``marker.running`` once the task runs)."""

    SETTINGS = StubbornSettings
    OUTPUT = OutputStream(np.ndarray)

    @publisher(OUTPUT)
    async def tick(self):
        with open(self.SETTINGS.marker + ".running", "w"):
            pass
        try:
            while True:
                yield self.OUTPUT, np.array([1])
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            raise ValueError("raised while being cancelled") from None

    async def shutdown(self) -> None:
        with open(self.SETTINGS.marker, "w"):
            pass
        time.sleep(60)  # blocks the worker's loop: only a kill ends it sooner
