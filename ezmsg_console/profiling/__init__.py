"""Profiling: always-on counters, histograms of sampled timing, opt-in traces, per-observer snapshots."""

from .histogram import EDGES_NS, Histogram
from .sampling import TimingSampler
from .snapshot import SnapshotBuilder
from .trace import TraceRing, Tracer

__all__ = ["EDGES_NS", "Histogram", "SnapshotBuilder", "TimingSampler", "TraceRing", "Tracer"]
