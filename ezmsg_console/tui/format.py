"""Pure formatting for the console's cells (tested without Textual)."""

from __future__ import annotations

import math
import time
from typing import Any


def fmt_count(n: float | int | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}" if n == int(n) else f"{n:.1f}"


def fmt_rate(hz: float | None) -> str:
    """Messages per second."""
    if hz is None:
        return "-"
    if hz == 0:
        return "0"
    if hz < 10:
        return f"{hz:.2f}"
    return fmt_count(hz)


def fmt_bytes(n: float | int | None, per_s: bool = False) -> str:
    if n is None:
        return "-"
    suffix = "/s" if per_s else ""
    n = float(n)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}{suffix}"
    return f"{n:.0f} B{suffix}"


def fmt_ns(ns: float | int | None) -> str:
    """A duration given in nanoseconds, in the most readable unit."""
    if ns is None or (isinstance(ns, float) and math.isnan(ns)):
        return "-"
    ns = float(ns)
    if ns <= 0:
        return "0"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            value = ns / scale
            return f"{value:.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}" if value >= 10 \
                else f"{value:.2f} {unit}"
    return f"{ns:.0f} ns"


def fmt_age(seconds: float | None) -> str:
    """How long ago, compactly: 3s, 4m, 2h, 5d."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def age_since(wall_time: float | None, now: float | None = None) -> str:
    if not wall_time:
        return "-"
    return fmt_age((now if now is not None else time.time()) - wall_time)


def fmt_value(value: Any, limit: int = 60) -> str:
    """A settings value on one line."""
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(fmt_value(v, limit) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {fmt_value(v, limit)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float] | tuple[float, ...], width: int = 30) -> str:
    """The last ``width`` values as block characters scaled to their own range."""
    data = [v for v in values if v is not None and math.isfinite(v)][-width:]
    if not data:
        return ""
    low, high = min(data), max(data)
    if high == low:
        return SPARK[0 if high == 0 else 3] * len(data)
    span = high - low
    return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1) + 0.5))] for v in data)
