"""A brain-computer-interface style demo pipeline in three worker processes.

::

    SOURCE (32 ch @ 1 kHz) -> FILTER (causal IIR) -> FEATURES (band power) -> SINK

``SyntheticSource`` paces itself in real time and publishes (20, 32) float64
chunks: a per-channel rhythm plus 60 Hz line noise plus Gaussian noise.
``BandpassFilter`` is a Butterworth low- or high-pass built from RBJ-cookbook
biquads (numpy only) whose per-channel state carries across chunks.
``BandPower`` turns each chunk into a (32,) array of mean power, averaged
over the last ``window_chunks`` chunks. ``Sink`` keeps a running summary.
Every unit has dynamic settings (an ``INPUT_SETTINGS`` input).

The DSP lives in plain classes (:class:`SineGenerator`, :class:`IIRFilter`,
:class:`PowerEstimator`) so it can be tested without processes.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import logging
import math
import operator
import time
from typing import Any, AsyncGenerator, cast

import numpy as np

from ..pubsub.spans import profile_span
from .runner import RunResult, run
from .settings import Settings, setting
from .unit import Collection, Component, InputStream, OutputStream, Unit, publisher, subscriber

log = logging.getLogger(__name__)

ROOT_NAME = "DEMO"
LINE_NOISE_HZ = 60.0
LINE_NOISE_FRACTION = 0.3  # line-noise amplitude relative to ``amplitude``
MAX_LAG_S = 1.0  # a source further behind its schedule than this re-anchors its clock


_BOUNDS = (("ge", operator.ge, ">="), ("le", operator.le, "<="), ("gt", operator.gt, ">"), ("lt", operator.lt, "<"))


class _CheckedSettings(Settings):
    """Settings whose constructor enforces the ``setting()`` bounds and choices."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value, meta = getattr(self, field.name), field.metadata
            if "choices" in meta and value not in meta["choices"]:
                raise ValueError(f"{field.name} must be one of {list(meta['choices'])}, got {value!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                raise ValueError(f"{field.name} must be finite, got {value!r}")
            for key, check, word in _BOUNDS:
                if key in meta and not check(value, meta[key]):
                    raise ValueError(f"{field.name} must be {word} {meta[key]}, got {value!r}")


# -- source -----------------------------------------------------------------


class SourceSettings(_CheckedSettings):
    frequency_hz: float = setting(10.0, ge=0.1, le=200.0, unit="Hz",
                                  description="Frequency of each channel's main rhythm")
    amplitude: float = setting(1.0, ge=0.0, le=1000.0, unit="a.u.", description="Amplitude of the rhythm")
    noise_level: float = setting(0.2, ge=0.0, le=1000.0, unit="a.u.",
                                 description="Standard deviation of the added Gaussian noise")
    enabled: bool = setting(True, description="Publish chunks (when off, time still passes, nothing is sent)")
    channels: int = setting(32, ge=1, le=1024, read_only=True, description="Number of channels")
    sample_rate_hz: float = setting(1000.0, ge=1.0, le=100_000.0, unit="Hz", read_only=True,
                                    description="Samples per second per channel")
    chunk_size: int = setting(20, ge=1, le=10_000, unit="samples", read_only=True,
                              description="Samples per published chunk")


class SineGenerator:
    """Chunks of a multi-channel synthetic signal with continuous phase (sample counter)."""

    def __init__(self, channels: int, sample_rate_hz: float, seed: int | None = None) -> None:
        self.channels = channels
        self.sample_rate_hz = sample_rate_hz
        self.sample = 0  # index of the next sample
        self.rng = np.random.default_rng(seed)
        ch = np.arange(channels)
        self.phase = 2.0 * np.pi * ch / channels  # per-channel phase offset of the rhythm
        self.gain = 1.0 + 0.5 * np.sin(ch)  # per-channel rhythm strength

    def clean(self, start: int, n: int, frequency_hz: float, amplitude: float) -> np.ndarray:
        """The noise-free signal of samples ``start .. start+n``, shaped (n, channels)."""
        t = (start + np.arange(n))[:, None] / self.sample_rate_hz
        rhythm = self.gain * np.sin(2.0 * np.pi * frequency_hz * t + self.phase)
        line = LINE_NOISE_FRACTION * np.sin(2.0 * np.pi * LINE_NOISE_HZ * t)
        return amplitude * (rhythm + line)

    def next_chunk(self, n: int, frequency_hz: float, amplitude: float, noise_level: float) -> np.ndarray:
        chunk = self.clean(self.sample, n, frequency_hz, amplitude)
        if noise_level > 0.0:
            chunk += noise_level * self.rng.standard_normal(chunk.shape)
        self.sample += n
        return chunk

    def skip(self, n: int) -> None:
        """Let ``n`` samples pass without producing them."""
        self.sample += n


class SyntheticSource(Unit):
    """Publishes (chunk_size, channels) float64 chunks in real time on OUTPUT."""

    SETTINGS = SourceSettings
    OUTPUT = OutputStream(np.ndarray)
    INPUT_SETTINGS = InputStream(SourceSettings)

    async def initialize(self) -> None:
        s = cast(SourceSettings, self.SETTINGS)  # on the instance: the settings object, not the class
        self.geometry = (s.channels, s.sample_rate_hz, s.chunk_size)  # read-only: fixed for the run
        self.generator = SineGenerator(s.channels, s.sample_rate_hz)

    def on_settings(self, old: SourceSettings, new: SourceSettings) -> None:
        if (new.channels, new.sample_rate_hz, new.chunk_size) != self.geometry:
            log.warning("%s: channels, sample_rate_hz and chunk_size are read-only; keeping %s",
                        self.address, self.geometry)

    @publisher(OUTPUT)
    async def produce(self) -> AsyncGenerator[tuple[Any, np.ndarray], None]:
        _channels, rate, size = self.geometry
        period = size / rate
        anchor, emitted = time.monotonic(), 0  # chunk k is due at anchor + (k + 1) * period
        while True:
            delay = anchor + (emitted + 1) * period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > MAX_LAG_S:  # stalled (or backpressure): do not burst to catch up
                log.warning("%s: %.2f s behind schedule; re-anchoring the clock", self.address, -delay)
                anchor, emitted = time.monotonic() - period, 0
            emitted += 1
            s = cast(SourceSettings, self.SETTINGS)
            if not s.enabled:
                self.generator.skip(size)
                continue
            yield self.OUTPUT, self.generator.next_chunk(size, s.frequency_hz, s.amplitude, s.noise_level)


# -- filter -----------------------------------------------------------------


class FilterMode(enum.Enum):
    LOWPASS = "lowpass"
    HIGHPASS = "highpass"


class FilterSettings(_CheckedSettings):
    cutoff_hz: float = setting(30.0, ge=0.5, le=200.0, unit="Hz", description="Corner (-3 dB) frequency")
    order: int = setting(4, choices=(1, 2, 4, 6, 8), description="Butterworth filter order")
    mode: FilterMode = setting(FilterMode.LOWPASS, choices=tuple(FilterMode),
                               description="Pass frequencies below (lowpass) or above (highpass) the cutoff")
    sample_rate_hz: float = setting(1000.0, ge=1.0, le=100_000.0, unit="Hz", read_only=True,
                                    description="Sample rate of the input")


def design_butterworth(cutoff_hz: float, sample_rate_hz: float, order: int, mode: FilterMode) -> np.ndarray:
    """Second-order sections ``[b0, b1, b2, a1, a2]`` (a0 = 1) of a digital Butterworth filter.

    Even orders are cascaded RBJ-cookbook biquads with the Butterworth Qs; an
    odd order adds one bilinear first-order section. Raises ValueError unless
    0 < cutoff < Nyquist.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if not 0.0 < cutoff_hz < sample_rate_hz / 2.0:
        raise ValueError(f"cutoff {cutoff_hz} Hz must be between 0 and Nyquist ({sample_rate_hz / 2.0} Hz)")
    highpass = mode is FilterMode.HIGHPASS
    w0 = 2.0 * np.pi * cutoff_hz / sample_rate_hz
    cos_w0, sin_w0 = math.cos(w0), math.sin(w0)
    sections = []
    if order % 2:
        k = math.tan(w0 / 2.0)
        b = (1.0, -1.0) if highpass else (k, k)
        sections.append([b[0] / (1 + k), b[1] / (1 + k), 0.0, (k - 1) / (k + 1), 0.0])
    for i in range(order // 2):
        q = 1.0 / (2.0 * math.cos(math.pi * (2 * i + 1 + order % 2) / (2 * order)))
        alpha = sin_w0 / (2.0 * q)
        a0 = 1.0 + alpha
        if highpass:
            b0, b1 = (1.0 + cos_w0) / 2.0, -(1.0 + cos_w0)
        else:
            b0, b1 = (1.0 - cos_w0) / 2.0, 1.0 - cos_w0
        sections.append([b0 / a0, b1 / a0, b0 / a0, -2.0 * cos_w0 / a0, (1.0 - alpha) / a0])
    return np.array(sections, dtype=np.float64)


class IIRFilter:
    """A causal cascade of biquads (transposed direct form II) with per-channel state."""

    def __init__(self, sos: np.ndarray) -> None:
        self.sos = sos
        self.state: np.ndarray | None = None  # (sections, 2, channels)

    def set_sections(self, sos: np.ndarray) -> None:
        """New coefficients; the state is kept when the structure (section count) is unchanged."""
        if sos.shape != self.sos.shape:
            self.state = None
        self.sos = sos

    def reset(self) -> None:
        self.state = None

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter ``x`` shaped (samples, channels) (or (samples,)) continuing from the last call."""
        y = np.array(x, dtype=np.float64)  # a copy: the input may be a read-only shared buffer
        squeeze = y.ndim == 1
        if squeeze:
            y = y[:, None]
        if self.state is None or self.state.shape[2] != y.shape[1]:
            self.state = np.zeros((len(self.sos), 2, y.shape[1]))
        for s, (b0, b1, b2, a1, a2) in enumerate(self.sos):
            z1, z2 = self.state[s, 0].copy(), self.state[s, 1].copy()
            for n in range(y.shape[0]):
                xn = y[n]
                yn = b0 * xn + z1
                z1 = b1 * xn - a1 * yn + z2
                z2 = b2 * xn - a2 * yn
                y[n] = yn
            self.state[s, 0], self.state[s, 1] = z1, z2
        return y[:, 0] if squeeze else y


class BandpassFilter(Unit):
    """Low- or high-passes each chunk from INPUT, publishing the result on OUTPUT."""

    SETTINGS = FilterSettings
    INPUT = InputStream(np.ndarray)
    OUTPUT = OutputStream(np.ndarray)
    INPUT_SETTINGS = InputStream(FilterSettings)

    async def initialize(self) -> None:
        self.filter = IIRFilter(self._design(cast(FilterSettings, self.SETTINGS)))

    @staticmethod
    def _design(s: FilterSettings) -> np.ndarray:
        return design_butterworth(s.cutoff_hz, s.sample_rate_hz, s.order, s.mode)

    def on_settings(self, old: FilterSettings, new: FilterSettings) -> None:
        if not hasattr(self, "filter"):
            self.filter = IIRFilter(self._design(new))
        else:
            self.filter.set_sections(self._design(new))

    @subscriber(INPUT)
    @publisher(OUTPUT)
    async def on_chunk(self, msg: np.ndarray) -> AsyncGenerator[tuple[Any, np.ndarray], None]:
        with profile_span("iir"):  # the filtering alone, without the publish (shown in Profiling)
            out = self.filter.process(msg)
        yield self.OUTPUT, out


# -- features ---------------------------------------------------------------


class BandPowerSettings(_CheckedSettings):
    window_chunks: int = setting(10, ge=1, le=50, unit="chunks",
                                 description="Moving-average length, in chunks")
    log_scale: bool = setting(False, description="Publish 10*log10(power) (dB) instead of linear power")


class PowerEstimator:
    """Per-channel mean power of each chunk, averaged over the last ``window`` chunks."""

    def __init__(self, window: int) -> None:
        self.history: collections.deque[np.ndarray] = collections.deque(maxlen=window)

    def resize(self, window: int) -> None:
        self.history = collections.deque(self.history, maxlen=window)  # keeps the newest

    def update(self, chunk: np.ndarray, log_scale: bool = False) -> np.ndarray:
        self.history.append(np.mean(np.square(chunk, dtype=np.float64), axis=0))
        power = np.mean(self.history, axis=0)
        return 10.0 * np.log10(power + 1e-12) if log_scale else power


class BandPower(Unit):
    """Publishes each chunk's smoothed per-channel power, a (channels,) float64 array, on OUTPUT."""

    SETTINGS = BandPowerSettings
    INPUT = InputStream(np.ndarray)
    OUTPUT = OutputStream(np.ndarray)
    INPUT_SETTINGS = InputStream(BandPowerSettings)

    async def initialize(self) -> None:
        self.estimator = PowerEstimator(self.SETTINGS.window_chunks)

    def on_settings(self, old: BandPowerSettings, new: BandPowerSettings) -> None:
        if hasattr(self, "estimator"):
            self.estimator.resize(new.window_chunks)

    @subscriber(INPUT)
    @publisher(OUTPUT)
    async def on_chunk(self, msg: np.ndarray) -> AsyncGenerator[tuple[Any, np.ndarray], None]:
        yield self.OUTPUT, self.estimator.update(msg, self.SETTINGS.log_scale)


# -- sink -------------------------------------------------------------------


class SinkSettings(_CheckedSettings):
    report_every: int = setting(250, ge=1, le=1_000_000, unit="messages",
                                description="Log a summary line every this many messages")


@dataclasses.dataclass
class SinkSummary:
    """What the sink has seen: message count, last and running mean of the across-channel mean."""

    messages: int = 0
    last_mean: float = math.nan
    running_mean: float = math.nan

    def add(self, features: np.ndarray) -> None:
        value = float(np.mean(features))
        self.messages += 1
        self.last_mean = value
        prev = 0.0 if self.messages == 1 else self.running_mean
        self.running_mean = prev + (value - prev) / self.messages


class Sink(Unit):
    """Counts feature vectors and keeps a :class:`SinkSummary`; logs it every ``report_every``."""

    SETTINGS = SinkSettings
    INPUT = InputStream(np.ndarray)
    INPUT_SETTINGS = InputStream(SinkSettings)

    async def initialize(self) -> None:
        self.summary = SinkSummary()

    @subscriber(INPUT)
    async def on_features(self, msg: np.ndarray) -> None:
        self.summary.add(msg)
        if self.summary.messages % self.SETTINGS.report_every == 0:
            s = self.summary
            log.info("%s: %d messages; mean power %.4g (last), %.4g (running)",
                     self.address, s.messages, s.last_mean, s.running_mean)


# -- the pipeline -----------------------------------------------------------


class DemoPipeline(Collection):
    """SOURCE -> FILTER -> FEATURES -> SINK in three processes: SOURCE, SINK, and FILTER with FEATURES."""

    SOURCE = SyntheticSource()
    FILTER = BandpassFilter()
    FEATURES = BandPower()
    SINK = Sink()

    def network(self) -> tuple[tuple[Any, Any], ...]:
        return (
            (self.SOURCE.OUTPUT, self.FILTER.INPUT),
            (self.FILTER.OUTPUT, self.FEATURES.INPUT),
            (self.FEATURES.OUTPUT, self.SINK.INPUT),
        )

    def process_components(self) -> tuple[Component, ...]:
        # SOURCE and SINK get their own process; FILTER and FEATURES share the root's ("DEMO").
        return (self.SOURCE, self.SINK)


def output_topics(root: str = ROOT_NAME) -> list[str]:
    """Every OUTPUT topic of the demo pipeline under ``root``."""
    pipeline = DemoPipeline()
    return sorted(f"{root}/{name}/{stream_name}" for name, comp in pipeline.components().items()
                  for stream_name, stream in type(comp).streams().items() if isinstance(stream, OutputStream))


def run_demo(duration: float | None = None, address: Any = None, *, raise_on_error: bool = False) -> RunResult:
    """Run the demo pipeline as ``DEMO`` for ``duration`` seconds (None: until Ctrl+C/SIGTERM).

    Starts an embedded GraphServer when none answers at ``address``. A unit
    failure is reported in the result (``ok`` False) unless ``raise_on_error``.
    """
    return run(DemoPipeline(), name=ROOT_NAME, address=address, duration=duration, raise_on_error=raise_on_error)
