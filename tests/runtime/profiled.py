"""Units with known traffic for the profiling tests (importable by worker processes).

``TRIG`` publishes a burst of ``burst`` int64 arrays each time its settings
arrive (so a test triggers traffic with ``update_setting``); ``TICK``
publishes continuously every ``period_s``. ``FAST`` handles at once,
``SLOW`` takes ``delay_s`` per message (backpressure on TRIG), ``LEAKY``
is slow too but leaky (it drops). ``FAST``/``SLOW``/``TSINK`` time their delay as a
``profile_span("wait")``.

Processes: A = TRIG + TICK, B = FAST + TSINK, C = SLOW + LEAKY (addresses PROF/A/TRIG, ...).
"""

from __future__ import annotations

import asyncio

import numpy as np

from ezmsg_console.runtime import (
    Collection,
    InputStream,
    OutputStream,
    Settings,
    Unit,
    profile_span,
    publisher,
    setting,
    subscriber,
)

WIDTH = 16


class TriggerSettings(Settings):
    burst: int = setting(0, ge=0, description="messages to publish when these settings arrive")


class Trigger(Unit):
    SETTINGS = TriggerSettings
    OUTPUT = OutputStream(np.ndarray, num_buffers=4)
    INPUT_SETTINGS = InputStream(TriggerSettings)

    async def initialize(self) -> None:
        self.requests: asyncio.Queue[int] = asyncio.Queue()

    def on_settings(self, old, new) -> None:
        if new.burst:
            self.requests.put_nowait(new.burst)

    @publisher(OUTPUT)
    async def bursts(self):
        i = 0
        while True:
            n = await self.requests.get()
            for _ in range(n):
                yield self.OUTPUT, np.full(WIDTH, i, dtype=np.int64)
                i += 1


class TickSettings(Settings):
    period_s: float = setting(0.01, gt=0.0)


class Ticker(Unit):
    SETTINGS = TickSettings
    OUTPUT = OutputStream(np.ndarray)

    @publisher(OUTPUT)
    async def ticks(self):
        loop = asyncio.get_running_loop()
        start, i = loop.time(), 0
        while True:
            yield self.OUTPUT, np.full(WIDTH, i, dtype=np.int64)
            i += 1
            await asyncio.sleep(max(0.0, start + i * self.SETTINGS.period_s - loop.time()))


class SinkSettings(Settings):
    delay_s: float = setting(0.0, ge=0.0)


class Sink(Unit):
    SETTINGS = SinkSettings
    INPUT = InputStream(np.ndarray)

    @subscriber(INPUT)
    async def on_message(self, msg):
        with profile_span("wait"):  # the delay, measured as a user span
            if self.SETTINGS.delay_s:
                await asyncio.sleep(self.SETTINGS.delay_s)


class LeakySink(Unit):
    SETTINGS = SinkSettings
    INPUT = InputStream(np.ndarray, leaky=True, max_queue=2)

    @subscriber(INPUT)
    async def on_message(self, msg):
        await asyncio.sleep(self.SETTINGS.delay_s)


class Sources(Collection):
    TRIG = Trigger()
    TICK = Ticker(TickSettings(period_s=0.01))


class FastSinks(Collection):
    FAST = Sink()
    TSINK = Sink()


class SlowSinks(Collection):
    SLOW = Sink(SinkSettings(delay_s=0.02))
    LEAKY = LeakySink(SinkSettings(delay_s=0.02))


class ProfRig(Collection):
    """A = TRIG + TICK, B = FAST + TSINK, C = SLOW + LEAKY, one process each."""

    A = Sources()
    B = FastSinks()
    C = SlowSinks()

    def network(self):
        return (
            (self.A.TRIG.OUTPUT, self.B.FAST.INPUT),
            (self.A.TRIG.OUTPUT, self.C.SLOW.INPUT),
            (self.A.TRIG.OUTPUT, self.C.LEAKY.INPUT),
            (self.A.TICK.OUTPUT, self.B.TSINK.INPUT),
        )

    def process_components(self):
        return (self.A, self.B, self.C)
