"""Units with rich, editable settings for the settings-edit integration tests.

Importable (worker processes load these classes by import path).

``Rig``: SOURCE (a float64 ``[1.0]`` every 10 ms, forever) -> TUNE (publishes
``msg * gain``, dynamic settings) and -> FIXED (settings, but no
INPUT_SETTINGS), each unit in its own worker process.
"""

from __future__ import annotations

import asyncio
import enum

import numpy as np

from ezmsg_console.runtime import (
    Collection,
    InputStream,
    OutputStream,
    Settings,
    Unit,
    publisher,
    setting,
    subscriber,
)


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class NestedSettings(Settings):
    depth: float = setting(0.5, ge=0.0, le=1.0)
    tag: str = "n"


def _default_weights() -> list[float]:
    return [1.0, 2.0]


class TunableSettings(Settings):
    gain: float = setting(1.0, ge=-10, le=10, description="output = input * gain")
    order: int = setting(4, choices=(1, 2, 4, 8))
    mode: Mode = Mode.FAST
    enabled: bool = True
    label: str = setting("x", read_only=True)
    limit: int | None = None
    weights: list[float] = setting(default_factory=_default_weights)
    threshold: float = setting(0.5, gt=0.0, lt=1.0)
    nested: NestedSettings = setting(default_factory=NestedSettings)


RIG_LABEL = "rig"
"""The label the Rig gives TUNE (not the field's default, so a reset to the default is visible)."""


class Tunable(Unit):
    """Publishes every input message multiplied by ``gain``; its settings can change while it runs."""

    SETTINGS = TunableSettings
    INPUT = InputStream(np.ndarray)
    OUTPUT = OutputStream(np.ndarray)
    INPUT_SETTINGS = InputStream(TunableSettings)

    @subscriber(INPUT)
    @publisher(OUTPUT)
    async def scale(self, msg):
        yield self.OUTPUT, msg * self.SETTINGS.gain


class FixedSettings(Settings):
    offset: float = setting(0.0, ge=-1.0, le=1.0)


class Fixed(Unit):
    """Has settings but no INPUT_SETTINGS: they cannot change while it runs."""

    SETTINGS = FixedSettings
    INPUT = InputStream(np.ndarray)
    OUTPUT = OutputStream(np.ndarray)

    @subscriber(INPUT)
    @publisher(OUTPUT)
    async def shift(self, msg):
        yield self.OUTPUT, msg + self.SETTINGS.offset


class Ones(Unit):
    """Publishes ``np.array([1.0])`` every 10 ms, forever."""

    OUTPUT = OutputStream(np.ndarray)

    @publisher(OUTPUT)
    async def tick(self):
        while True:
            yield self.OUTPUT, np.array([1.0])
            await asyncio.sleep(0.01)


class Rig(Collection):
    SOURCE = Ones()
    TUNE = Tunable()
    FIXED = Fixed()

    def configure(self) -> None:
        self.TUNE.apply_settings(TunableSettings(label=RIG_LABEL))

    def network(self):
        return ((self.SOURCE.OUTPUT, self.TUNE.INPUT), (self.SOURCE.OUTPUT, self.FIXED.INPUT))

    def process_components(self):
        return (self.SOURCE, self.TUNE, self.FIXED)
