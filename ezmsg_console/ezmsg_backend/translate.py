"""Upstream ezmsg 3.9 control-plane objects as this project's types.

Pure functions over duck-typed upstream objects (``ezmsg.core.graphmeta``
dataclasses): nothing here imports ezmsg, so the translation is tested on its
own and the rest of the package never needs upstream's classes.

What upstream does not have is said, not invented: snapshots list no
publishers or subscribers and no session names; profiling snapshots carry no
bytes, backpressure, drops, queue depths, links or histograms
(:data:`UNMEASURED`), and subscribers no rate (computed here from the window
count). Handler percentiles come from traced ``lease_time_ns`` samples, when
tracing is on (see :func:`histogram`).
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping, Sequence

from ..protocol.graph import (ComponentMetadata, ComponentType, EdgeOwners, EdgeRef, GraphMetadata, GraphSnapshot,
                              ProcessInfo, SessionInfo, StreamDirection, StreamMetadata, TopologyEvent,
                              TopologyEventType)
from ..protocol.profiling import (HistogramSnapshot, ProcessProfilingSnapshot, ProfilingTraceBatch,
                                  ProfilingTraceSample, PublisherProfile, SpanProfile, SubscriberProfile)
from ..protocol.settings import SettingsChangedEvent, SettingsEventType, SettingsSnapshotValue
from .schema import plain_schema

UNMEASURED = ("bytes", "backpressure", "drops", "queue", "links", "histograms", "latency")
"""What an ezmsg 3.9 process does not measure (shown as "n/a", exported as null)."""
HANDLER_METRIC = "lease_time_ns"
"""Upstream's subscriber metric: a message's lease (handler start to release), our handler time."""
SPAN_METRIC = "user_span_ns"
"""Upstream's per-callable span (topic ``topic:callable``): our ``user_spans``, labelled by callable."""


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


# -- graph ----------------------------------------------------------------------------------


def _streams(meta: Any) -> tuple[StreamMetadata, ...]:
    streams: list[StreamMetadata] = []
    groups = [getattr(meta, "streams", None) or {}, getattr(meta, "topics", None) or {},
              getattr(meta, "relays", None) or {}]
    for group in groups:
        for name, s in group.items():
            cls = type(s).__name__
            direction = StreamDirection.INPUT if cls.startswith("Input") else StreamDirection.OUTPUT
            options = {k: v for k, v in vars(s).items() if k not in ("name", "address", "msg_type") and v is not None
                       and isinstance(v, (bool, int, float, str))} if hasattr(s, "__dict__") else {}
            streams.append(StreamMetadata(str(getattr(s, "name", name)), direction, str(getattr(s, "address", name)),
                                          str(getattr(s, "msg_type", "typing.Any")), options))
    return tuple(streams)


def component(meta: Any) -> ComponentMetadata:
    """An upstream UnitMetadata / CollectionMetadata / ComponentMetadata."""
    initial = getattr(meta, "initial_settings", None)
    repr_value = initial[1] if isinstance(initial, tuple) and len(initial) == 2 else None
    dynamic = getattr(meta, "dynamic_settings", None)
    is_collection = hasattr(meta, "children") or type(meta).__name__ == "CollectionMetadata"
    return ComponentMetadata(
        address=str(meta.address), name=str(getattr(meta, "name", meta.address)),
        component_type=ComponentType.COLLECTION if is_collection else ComponentType.UNIT,
        python_type=str(getattr(meta, "component_type", "")),
        children=tuple(str(c) for c in getattr(meta, "children", None) or ()), streams=_streams(meta),
        settings_type=_str(getattr(meta, "settings_type", None)),
        initial_settings=repr_value if isinstance(repr_value, dict) else None,
        settings_schema=plain_schema(getattr(meta, "settings_schema", None), repr_value),
        dynamic_settings=bool(getattr(dynamic, "enabled", False)))


def graph_metadata(meta: Any) -> GraphMetadata | None:
    if meta is None:
        return None
    comps = []
    for c in (getattr(meta, "components", None) or {}).values():
        try:
            comps.append(component(c))
        except ValueError:  # an address this project cannot name (empty segment): leave it out
            continue
    return GraphMetadata(tuple(comps))


def graph_snapshot(snap: Any, *, server_id: str, epoch: str, topology_seq: int) -> GraphSnapshot:
    """An upstream GraphSnapshot (graph, edge owners, sessions, processes); upstream names no sessions."""
    owners = sorted((EdgeOwners(str(e[0]), str(e[1]), tuple(sorted(str(o) for o in who)))
                     for e, who in (snap.edge_owners or {}).items()), key=lambda e: (e.from_topic, e.to_topic))
    sessions = tuple(
        SessionInfo(str(sid), "", "session", "", 0.0,
                    tuple(EdgeRef(str(e[0]), str(e[1])) for e in (s.edges or ())), graph_metadata(s.metadata))
        for sid, s in sorted((snap.sessions or {}).items(), key=lambda kv: str(kv[0])))
    processes = tuple(
        ProcessInfo(str(p.process_id), p.pid, p.host, tuple(sorted(str(u) for u in p.units or ())), 0.0)
        for p in sorted((getattr(snap, "processes", None) or {}).values(), key=lambda p: str(p.process_id)))
    graph = {str(k): tuple(sorted(str(t) for t in v)) for k, v in sorted((snap.graph or {}).items())}
    return GraphSnapshot(server_id, epoch, topology_seq, time.time(), graph, tuple(owners), sessions, processes)


def topology_event(event: Any, epoch: str) -> TopologyEvent:
    return TopologyEvent(
        seq=int(event.seq), event_type=TopologyEventType(_enum_value(event.event_type)),
        timestamp=float(event.timestamp), changed_topics=tuple(str(t) for t in event.changed_topics or ()),
        source_session_id=_str(event.source_session_id), source_process_id=_str(event.source_process_id),
        server_epoch=epoch)


# -- settings --------------------------------------------------------------------------------


def settings_value(value: Any) -> SettingsSnapshotValue:
    """An upstream SettingsSnapshotValue; the pickled ``serialized`` form is never read."""
    structured = getattr(value, "structured_value", None)
    repr_value = getattr(value, "repr_value", None)
    if structured is None and isinstance(repr_value, dict):
        structured = repr_value
    return SettingsSnapshotValue(structured, repr_value if repr_value is not None else structured,
                                 plain_schema(getattr(value, "settings_schema", None), structured))


def settings_event(event: Any, epoch: str) -> SettingsChangedEvent:
    return SettingsChangedEvent(
        seq=int(event.seq), event_type=SettingsEventType(_enum_value(event.event_type)),
        component_address=str(event.component_address), timestamp=float(event.timestamp),
        value=settings_value(event.value), source_session_id=_str(event.source_session_id),
        source_process_id=_str(event.source_process_id), server_epoch=epoch)


# -- profiling -------------------------------------------------------------------------------


def trace_sample(s: Any) -> ProfilingTraceSample:
    kind = getattr(s, "channel_kind", None)
    return ProfilingTraceSample(int(s.timestamp), str(s.endpoint_id), str(s.topic), str(s.metric), int(s.value),
                                _enum_value(kind) if kind is not None else "UNKNOWN", int(s.sample_seq or 0))


def trace_batch(batch: Any, tracing: bool = True, pid: int | None = None) -> ProfilingTraceBatch:
    """An upstream ProcessProfilingTraceBatch as one columnar batch (``pid``: the registered one, which
    upstream's batch can get wrong: a forked worker reports its parent's)."""
    return ProfilingTraceBatch(str(batch.process_id), int(batch.pid if pid is None else pid), str(batch.host),
                               [trace_sample(s) for s in batch.samples or ()], tracing=tracing,
                               timestamp_wall_s=time.time())


def histogram(values: Sequence[int]) -> HistogramSnapshot:
    """Percentiles of traced samples (exact, from the samples themselves; no buckets)."""
    if not values:
        return HistogramSnapshot()
    ordered = sorted(values)

    def pct(q: float) -> float:
        return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])

    return HistogramSnapshot(count=len(ordered), sum_ns=int(sum(ordered)), p50_ns=pct(0.5), p90_ns=pct(0.9),
                             p99_ns=pct(0.99), max_ns=float(ordered[-1]))


def _span_profiles(topic: str, spans: Mapping[str, tuple[Sequence[int], Sequence[int]]]) -> tuple[SpanProfile, ...]:
    """Traced spans of one subscriber (sample topic -> (window values, all kept)) by label."""
    prefix = f"{topic}:"
    out = [SpanProfile(t[len(prefix):] if t.startswith(prefix) else t, histogram(total), histogram(window))
           for t, (window, total) in spans.items()]
    return tuple(sorted(out, key=lambda p: p.label))


def profiling_snapshot(snap: Any, handler_samples: Mapping[str, Sequence[int]] | None = None,
                       handler_totals: Mapping[str, Sequence[int]] | None = None,
                       spans: Mapping[str, Mapping[str, tuple[Sequence[int], Sequence[int]]]] | None = None,
                       ) -> ProcessProfilingSnapshot:
    """An upstream ProcessProfilingSnapshot. ``handler_samples``: traced lease times per subscriber
    endpoint over this window; ``handler_totals``: those kept since tracing began; ``spans``: traced
    ``user_span_ns`` values per endpoint and sample topic, as (this window's, all kept)."""
    window = float(snap.window_seconds or 0.0)
    pubs = tuple(
        PublisherProfile(
            endpoint_id=str(p.endpoint_id), topic=str(p.topic), num_buffers=int(p.num_buffers or 0),
            inflight_messages_current=int(p.inflight_messages_current or 0),
            messages_published_total=int(p.messages_published_total), bytes_published_total=0,
            backpressure_waits_total=0, backpressure_wait_ns_total=0,
            messages_published_window=int(p.messages_published_window),
            publish_rate_hz_window=float(p.publish_rate_hz_window))
        for p in sorted((snap.publishers or {}).values(), key=lambda p: (str(p.topic), str(p.endpoint_id))))
    subs = []
    for s in sorted((snap.subscribers or {}).values(), key=lambda s: (str(s.topic), str(s.endpoint_id))):
        eid = str(s.endpoint_id)
        count = int(s.messages_received_window)
        subs.append(SubscriberProfile(
            endpoint_id=eid, topic=str(s.topic), messages_received_total=int(s.messages_received_total),
            bytes_received_total=0, drops_total=0, channel_kind_last=_enum_value(s.channel_kind_last),
            messages_received_window=count, receive_rate_hz_window=count / window if window > 0 else 0.0,
            handler_ns_window=histogram((handler_samples or {}).get(eid, ())),
            handler_ns=histogram((handler_totals or {}).get(eid, ())),
            user_spans=_span_profiles(str(s.topic), (spans or {}).get(eid, {}))))
    return ProcessProfilingSnapshot(
        process_id=str(snap.process_id), pid=int(snap.pid), host=str(snap.host),
        timestamp_mono_ns=int(snap.timestamp), timestamp_wall_s=time.time(), window_seconds=window,
        histograms_enabled=False, histogram_edges_ns=(), publishers=pubs, subscribers=tuple(subs),
        unmeasured=UNMEASURED)


def process_stats(stats: Any) -> dict[str, Any]:
    """An upstream ProcessStats (pid, host, owned units, timestamp) as our stats mapping."""
    return {"process_id": str(stats.process_id), "pid": int(stats.pid), "host": str(stats.host),
            "units": sorted(str(u) for u in stats.owned_units or ()), "timestamp": float(stats.timestamp)}


def process_ping(ping: Any) -> dict[str, Any]:
    return {"process_id": str(ping.process_id), "pid": int(ping.pid), "host": str(ping.host),
            "timestamp": float(ping.timestamp)}
