"""The demo pipeline: its DSP without processes, and ``ezmsg-console demo --headless`` for real."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from ezmsg_console.runtime.assembly import assemble
from ezmsg_console.runtime.demo import (
    LINE_NOISE_FRACTION,
    LINE_NOISE_HZ,
    BandPower,
    BandPowerSettings,
    BandpassFilter,
    DemoPipeline,
    FilterMode,
    FilterSettings,
    IIRFilter,
    PowerEstimator,
    SineGenerator,
    Sink,
    SourceSettings,
    SyntheticSource,
    design_butterworth,
    output_topics,
)

from ..conftest import TIMEOUT, free_port

FS = 1000.0
SHM_DIR = "/dev/shm"


def sine(freq: float, seconds: float = 2.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * FS)) / FS
    return np.tile(np.sin(2 * np.pi * freq * t)[:, None], (1, channels))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def steady_rms(filt: IIRFilter, x: np.ndarray) -> float:
    """RMS of the filter's output after the first half second (the transient)."""
    return rms(filt.process(x)[int(0.5 * FS):])


def response(sos: np.ndarray, freq: float) -> float:
    z = np.exp(-2j * np.pi * freq / FS)
    h = np.prod([(b0 + b1 * z + b2 * z * z) / (1 + a1 * z + a2 * z * z) for b0, b1, b2, a1, a2 in sos])
    return float(abs(h))


def pull(agen, n: int) -> list:
    """The first ``n`` (stream, message) pairs of a handler's async generator."""
    async def collect() -> list:
        out = []
        async for item in agen:
            out.append(item)
            if len(out) == n:
                break
        await agen.aclose()
        return out
    return asyncio.run(asyncio.wait_for(collect(), 10.0))


# -- filter math -------------------------------------------------------------

@pytest.mark.parametrize("order", [1, 2, 4, 8])
def test_lowpass_attenuates_high_frequencies(order):
    sos = design_butterworth(30.0, FS, order, FilterMode.LOWPASS)
    low, high = steady_rms(IIRFilter(sos), sine(5.0)), steady_rms(IIRFilter(sos), sine(200.0))
    assert low > 0.95 * rms(sine(5.0))
    assert high < 0.15 * low if order == 1 else high < 0.02 * low
    assert response(sos, 30.0) == pytest.approx(10 ** (-3.0103 / 20), rel=1e-3)  # -3 dB at the cutoff


@pytest.mark.parametrize("order", [1, 2, 4, 8])
def test_highpass_attenuates_low_frequencies(order):
    sos = design_butterworth(30.0, FS, order, FilterMode.HIGHPASS)
    low, high = steady_rms(IIRFilter(sos), sine(5.0)), steady_rms(IIRFilter(sos), sine(200.0))
    assert high > 0.95 * rms(sine(200.0))
    assert low < 0.2 * high if order == 1 else low < 0.05 * high
    assert response(sos, 30.0) == pytest.approx(10 ** (-3.0103 / 20), rel=1e-3)


@pytest.mark.parametrize("mode", list(FilterMode))
@pytest.mark.parametrize("order", [1, 2, 6])
def test_chunked_filtering_equals_one_block(mode, order):
    x = np.random.default_rng(1).standard_normal((1000, 32))
    sos = design_butterworth(45.0, FS, order, mode)
    whole = IIRFilter(sos).process(x)
    chunked_filter = IIRFilter(sos)
    chunks = np.concatenate([chunked_filter.process(x[i:i + 20]) for i in range(0, len(x), 20)])
    assert np.allclose(whole, chunks, rtol=1e-12, atol=1e-12)


def test_filter_does_not_modify_read_only_input():
    x = np.ones((20, 4))
    x.flags.writeable = False  # like a zero-copy shared-memory delivery
    y = IIRFilter(design_butterworth(30.0, FS, 2, FilterMode.LOWPASS)).process(x)
    assert y.shape == (20, 4) and np.all(x == 1.0)


def test_on_settings_redesigns_the_filter():
    unit = BandpassFilter()
    asyncio.run(unit.initialize())
    old_settings, old_sos = unit.SETTINGS, unit.filter.sos.copy()
    unit.filter.process(np.ones((20, 32)))
    new_settings = dataclasses.replace(old_settings, cutoff_hz=60.0)
    unit.SETTINGS = new_settings
    unit.on_settings(old_settings, new_settings)
    assert not np.allclose(unit.filter.sos, old_sos)
    assert response(unit.filter.sos, 60.0) == pytest.approx(10 ** (-3.0103 / 20), rel=1e-3)
    assert unit.filter.state is not None  # same structure: the state carries over
    higher = dataclasses.replace(new_settings, order=8)
    unit.on_settings(new_settings, higher)
    assert unit.filter.sos.shape == (4, 5) and unit.filter.state is None


def test_design_rejects_cutoff_at_or_above_nyquist():
    with pytest.raises(ValueError, match="Nyquist"):
        design_butterworth(500.0, FS, 2, FilterMode.LOWPASS)


def test_settings_enforce_their_bounds_and_choices():
    with pytest.raises(ValueError, match="cutoff_hz"):
        FilterSettings(cutoff_hz=300.0)
    with pytest.raises(ValueError, match="order"):
        FilterSettings(order=3)
    with pytest.raises(ValueError, match="window_chunks"):
        BandPowerSettings(window_chunks=0)
    with pytest.raises(ValueError, match="frequency_hz"):
        SourceSettings(frequency_hz=float("nan"))
    meta = {f.name: f.metadata for f in dataclasses.fields(SourceSettings)}
    assert all(meta[name]["read_only"] for name in ("channels", "sample_rate_hz", "chunk_size"))
    for cls in (SourceSettings, FilterSettings, BandPowerSettings):
        assert all(f.metadata.get("description") for f in dataclasses.fields(cls))


# -- source ------------------------------------------------------------------

def test_generator_phase_is_continuous_across_chunks():
    gen = SineGenerator(channels=32, sample_rate_hz=FS)
    chunks = np.concatenate([gen.next_chunk(20, 10.0, 2.0, 0.0) for _ in range(50)])
    t = np.arange(1000)[:, None] / FS
    expected = 2.0 * (gen.gain * np.sin(2 * np.pi * 10.0 * t + gen.phase)
                      + LINE_NOISE_FRACTION * np.sin(2 * np.pi * LINE_NOISE_HZ * t))
    assert chunks.shape == (1000, 32) and np.allclose(chunks, expected)


def test_source_unit_paces_itself_and_keeps_time_when_disabled():
    unit = SyntheticSource(SourceSettings(noise_level=0.0))
    asyncio.run(unit.initialize())
    started = time.monotonic()
    first = [msg for _stream, msg in pull(unit.produce(), 10)]
    elapsed = time.monotonic() - started
    assert 0.15 < elapsed < 2.0  # 10 chunks of 20 ms, in real time
    assert all(m.shape == (20, 32) and m.dtype == np.float64 for m in first)
    assert np.allclose(np.concatenate(first), unit.generator.clean(0, 200, 10.0, 1.0))

    unit.SETTINGS = dataclasses.replace(unit.SETTINGS, enabled=False)

    async def disabled_for(seconds: float) -> None:
        task = asyncio.ensure_future(unit.produce().__anext__())
        await asyncio.sleep(seconds)
        assert not task.done()  # nothing published
        task.cancel()
    asyncio.run(disabled_for(0.1))
    assert unit.generator.sample >= 200 + 3 * 20  # ... but time kept passing


# -- features, sink, wiring --------------------------------------------------

def test_power_estimator_moving_average_and_log_scale():
    est = PowerEstimator(window=2)
    assert np.allclose(est.update(np.full((20, 3), 2.0)), 4.0)
    assert np.allclose(est.update(np.zeros((20, 3))), 2.0)
    assert np.allclose(est.update(np.zeros((20, 3))), 0.0)  # the 4.0 chunk left the window
    est.resize(3)
    assert np.allclose(est.update(np.full((20, 3), 3.0), log_scale=True), 10 * np.log10(3.0))


def test_units_chain_in_process():
    source, filt, features, sink = SyntheticSource(), BandpassFilter(), BandPower(), Sink()
    for unit in (source, filt, features, sink):
        asyncio.run(unit.initialize())
    for _ in range(5):
        chunk = source.generator.next_chunk(20, 10.0, 1.0, 0.1)
        [(_, filtered)] = pull(filt.on_chunk(chunk), 1)
        [(_, power)] = pull(features.on_chunk(filtered), 1)
        assert power.shape == (32,) and power.dtype == np.float64
        asyncio.run(sink.on_features(power))
    assert sink.summary.messages == 5 and np.isfinite(sink.summary.running_mean)


def test_pipeline_runs_in_three_processes():
    assembly = assemble({"DEMO": DemoPipeline()})
    groups = {name: sorted(u.address for u in units) for name, units in assembly.groups}
    assert groups == {"DEMO": ["DEMO/FEATURES", "DEMO/FILTER"], "DEMO/SINK": ["DEMO/SINK"],
                      "DEMO/SOURCE": ["DEMO/SOURCE"]}
    assert assembly.edges == (("DEMO/SOURCE/OUTPUT", "DEMO/FILTER/INPUT"),
                              ("DEMO/FILTER/OUTPUT", "DEMO/FEATURES/INPUT"),
                              ("DEMO/FEATURES/OUTPUT", "DEMO/SINK/INPUT"))
    assert all(c.dynamic_settings for c in assembly.metadata.components if c.component_type.name == "UNIT")


# -- the command, for real -----------------------------------------------------

def shm_entries(prefix: str = "") -> set[str]:
    start = f"ezc_{prefix}"
    return {name for name in os.listdir(SHM_DIR) if name.startswith(start)} if os.path.isdir(SHM_DIR) else set()


def parse_table(stdout: str) -> dict[str, tuple[int, float, int]]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["TOPIC", "MESSAGES"])
    rows = {}
    for line in lines[start + 1:]:
        cells = line.split()
        if len(cells) != 4 or not cells[1].isdigit():
            break
        rows[cells[0]] = (int(cells[1]), float(cells[2]), int(cells[3]))
    return rows


def test_demo_headless_runs_reports_and_cleans_up(monkeypatch):
    prefix = f"t{os.getpid()}x"  # this run's segments, whatever else runs on the machine
    monkeypatch.setenv("EZMSG_CONSOLE_RUN_TAG_PREFIX", prefix)
    before = shm_entries(prefix)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ezmsg_console", "demo", "--headless", "--duration", "3",
         "--address", f"127.0.0.1:{free_port()}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 6 * TIMEOUT
    try:
        parent = psutil.Process(proc.pid)
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                for child in parent.children(recursive=True):
                    if child.pid not in workers and "ezmsg_console.runtime.worker" in " ".join(child.cmdline()):
                        workers[child.pid] = child
            except psutil.Error:
                pass  # the runner or a child exited between calls
            time.sleep(0.1)
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    table = parse_table(out)
    for topic in output_topics():
        assert table.get(topic, (0, 0.0, 0))[0] > 0, f"{topic} published nothing:\n{out}"
    assert table["DEMO/SOURCE/OUTPUT"][0] >= 100  # about 50 chunks/s for 3 s
    assert len(workers) == 3
    assert not [p for p in workers.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert shm_entries(prefix) - before == set()


def test_demo_without_headless_is_not_available_yet():
    result = subprocess.run([sys.executable, "-m", "ezmsg_console", "demo"], capture_output=True, text=True,
                            timeout=3 * TIMEOUT)
    assert result.returncode == 64
    assert "--headless" in result.stderr and len(result.stderr.strip().splitlines()) == 1
