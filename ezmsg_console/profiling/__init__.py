"""Profiling: always-on counters and histograms, opt-in traces, per-observer snapshots."""

from .histogram import EDGES_NS, Histogram
from .snapshot import SnapshotBuilder
from .trace import TraceRing, Tracer

__all__ = ["EDGES_NS", "Histogram", "SnapshotBuilder", "TraceRing", "Tracer"]
