"""Pure view-model of the Profiling tab: table rows, threshold cells and the detail panel.

No Textual here (only ``rich.text.Text``), so every rule is tested on plain data.
A cell is a :class:`Val`: the raw value sorted and exported by, and the styled
text shown. Thresholds always carry a glyph as well as a colour, so they read
on a monochrome terminal and to colour-blind eyes:

* ``▲ 31/32`` (red) in-flight messages near the publisher's ``num_buffers``;
  ``△ 17/32`` (yellow) past half of them;
* ``▲ 12`` (red) backpressure waits in the last window;
* ``✕ 12`` (red) drops in the last window;
* ``▼ 3.10`` (yellow) a rate that fell below half the median of its recent history;
* ``✕ TIMEOUT`` (red) a process that did not answer the profiling poll (its error code).

Window values (since the previous poll) are shown when the window has data;
otherwise the totals since the process started, dimmed. Percentiles come from
the *timed* messages; above its timing budget a subscriber times 1 in k, and the
detail panel says ``sampled 1/k`` next to them. A counter the process
does not measure (an ezmsg 3.9 process has no bytes, backpressure, drops,
queue or link counts) reads ``n/a``, never a fake zero.
"""

from __future__ import annotations

import statistics
from typing import Any, Collection, Iterable, Mapping, NamedTuple, Sequence

from rich.text import Text

from ..protocol.profiling import (
    HistogramSnapshot,
    ProcessProfilingSnapshot,
    ProfilingError,
    ProfilingTraceSample,
    PublisherProfile,
    SubscriberProfile,
)
from .format import fmt_age, fmt_bytes, fmt_count, fmt_ns, fmt_rate, sparkline

NEAR_FULL = 0.75
"""In-flight / num_buffers at or above this is red (▲)."""
HALF_FULL = 0.5
"""In-flight / num_buffers at or above this is yellow (△)."""
RATE_FALL = 0.5
"""A rate below this fraction of its recent median is flagged (▼)."""
RATE_HISTORY_MIN = 4
"""Earlier points needed before a fall is judged."""
RATE_HISTORY_SPAN = 20
"""How many earlier points the median is taken over."""
TRACE_LINES = 6

BAD = "bold red"
WARN = "bold yellow"
DIM = "dim"

PUB_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("trace", "T", 1), ("topic", "Topic", 28), ("pid", "Process", 12), ("chan", "Links", 9),
    ("rate", "Msgs/s", 7), ("bytes", "Bytes/s", 9), ("inflight", "In-flight", 9),
    ("waits", "BP waits", 8), ("subs", "Subs", 4))
SUB_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("trace", "T", 1), ("topic", "Topic", 28), ("pid", "Process", 12), ("chan", "Chan", 5),
    ("rate", "Msgs/s", 7), ("bytes", "Bytes/s", 9), ("queue", "Queue", 5), ("drops", "Drops", 6),
    ("handler", "Handler 50/99", 13), ("latency", "Latency 50/99", 13))


NA = "n/a"
MEASURE_OF = {"chan": "links", "bytes": "bytes", "waits": "backpressure", "subs": "links", "queue": "queue",
              "drops": "drops", "latency": "latency"}
"""Column key -> the name ``ProcessProfilingSnapshot.unmeasured`` uses for what it shows
("chan" only for publishers: a subscriber's channel kind is always measured)."""


class Val(NamedTuple):
    """One cell: ``raw`` (sort/export) and ``text`` (display)."""

    raw: Any
    text: Text


Row = tuple[Val, ...]
Profiling = Mapping[str, "ProcessProfilingSnapshot | ProfilingError"]


def _v(raw: Any, text: str, style: str = "") -> Val:
    return Val(raw, Text(text, style=style))


def short_id(process_id: str) -> str:
    return process_id[:6]


def compact_ns(ns: float | None) -> str:
    """fmt_ns without the space ("1.23ms"), for narrow columns."""
    return fmt_ns(ns).replace(" ", "")


# -- thresholds ---------------------------------------------------------------


def inflight_cell(inflight: int, num_buffers: int) -> Val:
    """``n/num_buffers``; ``▲`` red near full, ``△`` yellow past half."""
    text = f"{inflight}/{num_buffers}"
    ratio = inflight / num_buffers if num_buffers else 0.0
    if inflight and ratio >= NEAR_FULL:
        return _v(inflight, f"▲ {text}", BAD)
    if inflight and ratio >= HALF_FULL:
        return _v(inflight, f"△ {text}", WARN)
    return _v(inflight, text, "" if inflight else DIM)


def waits_cell(window: int, total: int) -> Val:
    """Backpressure waits: ``▲ n`` red when the window had any, else the total, dimmed."""
    if window > 0:
        return _v(window, f"▲ {fmt_count(window)}", BAD)
    return _v(total, fmt_count(total), DIM)


def drops_cell(window: int, total: int) -> Val:
    """Drops: ``✕ n`` red when the window had any, else the total, dimmed."""
    if window > 0:
        return _v(window, f"✕ {fmt_count(window)}", BAD)
    return _v(total, fmt_count(total), DIM)


def rate_fell(history: Sequence[float] | Iterable[float], current: float | None = None) -> bool:
    """True when ``current`` (default: the last point of ``history``) is below
    :data:`RATE_FALL` of the median of the up to :data:`RATE_HISTORY_SPAN` points before it."""
    points = list(history)
    if current is None:
        if not points:
            return False
        current, points = points[-1], points[:-1]
    earlier = points[-RATE_HISTORY_SPAN:]
    if len(earlier) < RATE_HISTORY_MIN:
        return False
    median = statistics.median(earlier)
    return median > 0 and current < median * RATE_FALL


def rate_cell(rate: float | None, history: Sequence[float] | None) -> Val:
    """msgs/s; ``▼`` yellow when it fell (see :func:`rate_fell`); ``-`` before the first window.
    ``history`` is the monitor's, whose last point is this same window's rate."""
    if rate is None:
        return _v(None, "-", DIM)
    if history and rate_fell(list(history)[:-1], current=rate):
        return _v(rate, f"▼ {fmt_rate(rate)}", WARN)
    return _v(rate, fmt_rate(rate), "" if rate else DIM)


def pick_hist(window: HistogramSnapshot, total: HistogramSnapshot) -> tuple[HistogramSnapshot, bool]:
    """(the histogram to show, whether it is the window's): the window when it has data."""
    return (window, True) if window.count else (total, False)


def hist_cell(window: HistogramSnapshot, total: HistogramSnapshot) -> Val:
    """``p50/p99`` (raw: p99); dimmed when the totals stand in for an empty window."""
    hist, is_window = pick_hist(window, total)
    if not hist.count:
        return _v(None, "-", DIM)
    return _v(hist.p99_ns, f"{compact_ns(hist.p50_ns)}/{compact_ns(hist.p99_ns)}", "" if is_window else DIM)


def sampled_text(sub: SubscriberProfile) -> str:
    """``sampled 1/k`` when the subscriber times only 1 in k messages (its percentiles are
    estimated from that sample), else "" (every message timed)."""
    k = sub.timing_sample_k
    return f"sampled 1/{k}" if k > 1 else ""


def links_text(pub: PublisherProfile) -> str:
    kinds = [name for name, n in (("SHM", pub.shm_links), ("TCP", pub.tcp_links), ("LOCAL", pub.local_subscribers))
             if n]
    return "+".join(kinds) if kinds else "-"


def _process_cell(process_id: str, pid: int | None) -> Val:
    """``shortid/pid`` (raw: the pid)."""
    return _v(pid, f"{short_id(process_id)}/{pid if pid else '-'}")


def _trace_cell(endpoint_id: str, traced: Collection[str]) -> Val:
    return _v(endpoint_id in traced, "◉", "bold magenta") if endpoint_id in traced else _v(False, "")


# -- rows -----------------------------------------------------------------------


def _na_unmeasured(row: list[Val], columns: Sequence[tuple[str, str, int]], snap: ProcessProfilingSnapshot,
                   is_pub: bool) -> Row:
    """``row`` with every cell of a column the process does not measure replaced by ``n/a``."""
    if snap.unmeasured:
        for i, (key, _label, _width) in enumerate(columns):
            what = MEASURE_OF.get(key)
            if what is not None and (is_pub or key != "chan") and not snap.measures(what):
                row[i] = _v(None, NA, DIM)
    return tuple(row)


def publisher_row(pub: PublisherProfile, snap: ProcessProfilingSnapshot, history: Sequence[float] | None,
                  traced: Collection[str]) -> Row:
    has_window = snap.window_seconds > 0
    return _na_unmeasured([
        _trace_cell(pub.endpoint_id, traced),
        _v(pub.topic, pub.topic),
        _process_cell(snap.process_id, snap.pid),
        _v(links_text(pub), links_text(pub)),
        rate_cell(pub.publish_rate_hz_window if has_window else None, history),
        _v(pub.bytes_rate_window, fmt_bytes(pub.bytes_rate_window)) if has_window else _v(None, "-", DIM),
        inflight_cell(pub.inflight_messages_current, pub.num_buffers),
        waits_cell(pub.backpressure_waits_window, pub.backpressure_waits_total),
        _v(pub.fanout, str(pub.fanout)),
    ], PUB_COLUMNS, snap, True)


def subscriber_row(sub: SubscriberProfile, snap: ProcessProfilingSnapshot, history: Sequence[float] | None,
                   traced: Collection[str]) -> Row:
    has_window = snap.window_seconds > 0
    chan = "-" if sub.channel_kind_last in ("", "UNKNOWN") else sub.channel_kind_last
    return _na_unmeasured([
        _trace_cell(sub.endpoint_id, traced),
        _v(sub.topic, sub.topic),
        _process_cell(snap.process_id, snap.pid),
        _v(chan, chan, "" if chan != "-" else DIM),
        rate_cell(sub.receive_rate_hz_window if has_window else None, history),
        _v(sub.bytes_rate_window, fmt_bytes(sub.bytes_rate_window)) if has_window else _v(None, "-", DIM),
        _v(sub.queue_depth, str(sub.queue_depth), "" if sub.queue_depth else DIM),
        drops_cell(sub.drops_window, sub.drops_total),
        hist_cell(sub.handler_ns_window, sub.handler_ns),
        hist_cell(sub.latency_ns_window, sub.latency_ns),
    ], SUB_COLUMNS, snap, False)


def error_key(process_id: str) -> str:
    return f"!{process_id}"


def error_row(err: ProfilingError, ncols: int, pid: int | None = None) -> Row:
    """A process that did not answer: ``✕ CODE (short id)`` in the topic column."""
    cells = [_v(False, ""), _v(f"!{err.error_code}", f"✕ {err.error_code}", BAD),
             _process_cell(err.process_id, pid)]
    cells += [_v(None, "-", DIM) for _ in range(ncols - len(cells))]
    return tuple(cells)


Record = tuple[str, Any, Any, Any, bool]
"""(kind "pub" | "sub" | "err", endpoint or error, snapshot, rate history, traced): a row before formatting."""


def profiling_records(profiling: Profiling, rate_history: Mapping[str, Sequence[float]], traced: Collection[str],
                      pids: Mapping[str, int | None] | None = None) -> tuple[dict[str, Record], dict[str, Record]]:
    """The rows unformatted: cells are made by :func:`record_cells` (the tab does it only for
    the rows on screen) and rows sorted by :func:`record_sort_value`."""
    pubs: dict[str, Record] = {}
    subs: dict[str, Record] = {}
    for process_id, snap in profiling.items():
        if isinstance(snap, ProfilingError):
            pid = (pids or {}).get(process_id)
            pubs[error_key(process_id)] = ("err", snap, pid, len(PUB_COLUMNS), False)
            subs[error_key(process_id)] = ("err", snap, pid, len(SUB_COLUMNS), False)
            continue
        for p in snap.publishers:
            pubs[p.endpoint_id] = ("pub", p, snap, rate_history.get(p.endpoint_id), p.endpoint_id in traced)
        for s in snap.subscribers:
            subs[s.endpoint_id] = ("sub", s, snap, rate_history.get(s.endpoint_id), s.endpoint_id in traced)
    return pubs, subs


def record_cells(record: Record) -> Row:
    kind, obj, snap, extra, traced = record
    if kind == "err":
        return error_row(obj, extra, snap)
    marks = (obj.endpoint_id,) if traced else ()
    return publisher_row(obj, snap, extra, marks) if kind == "pub" else subscriber_row(obj, snap, extra, marks)


def record_sort_value(record: Record, column: int) -> Any:
    """The raw value of ``column`` (an index into PUB_COLUMNS/SUB_COLUMNS), without formatting the row."""
    kind, obj, snap, _history, traced = record
    if kind == "err":
        return {1: f"!{obj.error_code}", 2: snap}.get(column)
    key = (PUB_COLUMNS if kind == "pub" else SUB_COLUMNS)[column][0]
    window = snap.window_seconds > 0
    what = MEASURE_OF.get(key)
    if what is not None and (kind == "pub" or key != "chan") and not snap.measures(what):
        return None
    if key == "trace":
        return traced
    if key == "topic":
        return obj.topic
    if key == "pid":
        return snap.pid
    if key == "chan":
        return links_text(obj) if kind == "pub" else obj.channel_kind_last
    if key == "rate":
        return (obj.publish_rate_hz_window if kind == "pub" else obj.receive_rate_hz_window) if window else None
    if key == "bytes":
        return obj.bytes_rate_window if window else None
    if key == "inflight":
        return obj.inflight_messages_current
    if key == "waits":
        return obj.backpressure_waits_window or obj.backpressure_waits_total
    if key == "subs":
        return obj.fanout
    if key == "queue":
        return obj.queue_depth
    if key == "drops":
        return obj.drops_window or obj.drops_total
    if key in ("handler", "latency"):
        hist, _ = pick_hist(*((obj.handler_ns_window, obj.handler_ns) if key == "handler"
                               else (obj.latency_ns_window, obj.latency_ns)))
        return hist.p99_ns if hist.count else None
    return None


def profiling_rows(profiling: Profiling, rate_history: Mapping[str, Sequence[float]], traced: Collection[str],
                   pids: Mapping[str, int | None] | None = None) -> tuple[dict[str, Row], dict[str, Row]]:
    """(publisher rows, subscriber rows) keyed by endpoint id; a process that failed to
    answer gets an error row (key ``!<process id>``) in both tables. Every row formatted:
    the tab itself formats only the rows on screen (:func:`profiling_records`)."""
    pubs, subs = profiling_records(profiling, rate_history, traced, pids)
    return {k: record_cells(r) for k, r in pubs.items()}, {k: record_cells(r) for k, r in subs.items()}


def find_endpoint(profiling: Profiling, key: str) -> tuple[ProcessProfilingSnapshot | ProfilingError,
                                                           PublisherProfile | SubscriberProfile | None] | None:
    """(process snapshot or error, endpoint profile) for a row key."""
    for process_id, snap in profiling.items():
        if isinstance(snap, ProfilingError):
            if key == error_key(process_id):
                return snap, None
            continue
        endpoints: list[PublisherProfile | SubscriberProfile] = [*snap.publishers, *snap.subscribers]
        for ep in endpoints:
            if ep.endpoint_id == key:
                return snap, ep
    return None


# -- the detail panel -------------------------------------------------------------------


def trace_lines(samples: Iterable[ProfilingTraceSample], endpoint_id: str, now_mono_ns: int,
                limit: int = TRACE_LINES) -> tuple[int, list[Text]]:
    """(how many samples of ``endpoint_id`` are held, the newest ``limit`` as lines, newest first)."""
    mine = [s for s in samples if s.endpoint_id == endpoint_id]
    lines = []
    for s in reversed(mine[-limit:]):
        age_s = (now_mono_ns - s.timestamp_mono_ns) / 1e9
        age = fmt_age(age_s) if 0 <= age_s < 86400 else "-"
        line = Text("  ")
        metric = s.metric
        if metric == "user_span_ns" and ":" in s.topic:  # a profile_span: name it by its label
            metric = f"span {s.topic.rsplit(':', 1)[1]}"
        line.append(f"{metric[:20]:<20}", style="cyan")
        line.append(f"{fmt_ns(s.value_ns):>9}")
        line.append(f"  seq {s.sample_seq:<8}", style=DIM)
        line.append(f" {s.channel_kind or '-':<5}", style=DIM)
        line.append(f"  {age} ago", style=DIM)
        lines.append(line)
    return len(mine), lines


def spark_line(label: str, values: Sequence[float], fmt: Any, width: int = 40) -> Text:
    """``label ▁▂▅█ now (min..max)`` for one history."""
    line = Text(f"{label:<8}", style="bold")
    data = list(values)
    if not data:
        line.append("no history yet", style=DIM)
        return line
    line.append(sparkline(data, width), style="green")
    line.append(f"  now {fmt(data[-1])}")
    line.append(f"  ({fmt(min(data[-width:]))} … {fmt(max(data[-width:]))})", style=DIM)
    return line


def endpoint_detail(snap: ProcessProfilingSnapshot, ep: PublisherProfile | SubscriberProfile,
                    rates: Sequence[float], latencies: Sequence[float]) -> list[Text]:
    """Header, sparklines and totals of one endpoint."""
    is_pub = isinstance(ep, PublisherProfile)
    head = Text()
    head.append(ep.topic, style="bold")
    head.append(f"  {'publisher' if is_pub else 'subscriber'}  ", style="italic")
    head.append(f"process {short_id(snap.process_id)} pid {snap.pid} on {snap.host}", style=DIM)
    head.append(f"  id {ep.endpoint_id.rsplit(':', 1)[-1][:8]}", style=DIM)
    lines = [head, spark_line("rate", rates, lambda v: f"{fmt_rate(v)}/s")]

    def m(what: str, text: str) -> str:
        return text if snap.measures(what) else NA

    if isinstance(ep, PublisherProfile):
        waits = m("backpressure", f"{fmt_count(ep.backpressure_waits_total)} waits, "
                                  f"{fmt_ns(ep.backpressure_wait_ns_total)}")
        links = m("links", f"shm {ep.shm_links} tcp {ep.tcp_links} local {ep.local_subscribers}")
        lines.append(Text(
            f"totals  {fmt_count(ep.messages_published_total)} msgs  {m('bytes', fmt_bytes(ep.bytes_published_total))}"
            f"  backpressure {waits}  buffers {ep.inflight_messages_current}/{ep.num_buffers}  links {links}",
            style=DIM))
    else:
        if snap.measures("latency"):
            lines.append(spark_line("lat p50", latencies, fmt_ns))
        hist, is_window = pick_hist(ep.handler_ns_window, ep.handler_ns)
        lat, lat_window = pick_hist(ep.latency_ns_window, ep.latency_ns)
        if hist.count or snap.measures("histograms"):
            handler = (f"p50 {fmt_ns(hist.p50_ns)} p90 {fmt_ns(hist.p90_ns)} p99 {fmt_ns(hist.p99_ns)} "
                       f"max {fmt_ns(hist.max_ns)} ({'window' if is_window else 'total'})")
        else:
            handler = "n/a until traced (t)"
        latency = m("latency", f"p50 {fmt_ns(lat.p50_ns)} p99 {fmt_ns(lat.p99_ns)} max {fmt_ns(lat.max_ns)} "
                               f"({'window' if lat_window else 'total'})")
        line = Text(f"handler {handler}   latency {latency}")
        if sampled_text(ep):
            line.append(f"   {sampled_text(ep)}", style="italic")
        lines.append(line)
        lines.extend(span_lines(ep))
        timed = "" if ep.timed_messages_total is None else f" ({fmt_count(ep.timed_messages_total)} timed)"
        lines.append(Text(
            f"totals  {fmt_count(ep.messages_received_total)} msgs{timed}  "
            f"{m('bytes', fmt_bytes(ep.bytes_received_total))}"
            f"  drops {m('drops', fmt_count(ep.drops_total))}  {'leaky' if ep.leaky else 'lossless'}  "
            f"publishers {m('links', str(ep.publishers))}  queue {m('queue', str(ep.queue_depth))}", style=DIM))
    return lines


def span_lines(ep: SubscriberProfile, limit: int = 3) -> list[Text]:
    """One line per profile_span label of the handler (the first ``limit``, then a count)."""
    lines = []
    for span in ep.user_spans[:limit]:
        hist, is_window = pick_hist(span.span_ns_window, span.span_ns)
        line = Text("span    ", style="bold")
        line.append(f"{span.label[:24]:<24}", style="cyan")
        line.append(f" p50 {fmt_ns(hist.p50_ns)} p90 {fmt_ns(hist.p90_ns)} p99 {fmt_ns(hist.p99_ns)} "
                    f"max {fmt_ns(hist.max_ns)}")
        line.append(f"  {fmt_count(hist.count)} runs ({'window' if is_window else 'total'})", style=DIM)
        lines.append(line)
    more = len(ep.user_spans) - limit
    if more > 0 or ep.user_spans_untracked:
        extra = f"+{more} more labels" if more > 0 else ""
        if ep.user_spans_untracked:
            extra += f"{'; ' if extra else ''}{fmt_count(ep.user_spans_untracked)} runs past the label cap, untimed"
        lines.append(Text(f"        {extra}", style=DIM))
    return lines


def error_detail(err: ProfilingError) -> list[Text]:
    line = Text()
    line.append(f"✕ {err.error_code}", style=BAD)
    line.append(f"  process {err.process_id} did not answer the profiling poll: {err.error}")
    return [line]


def trace_status(traced: bool, ttl_s: float, held: int, read_only: bool) -> Text:
    """The trace line of the detail panel."""
    line = Text("trace   ", style="bold")
    if traced:
        line.append(f"◉ on, {max(0.0, ttl_s):.0f} s left", style="bold magenta")
        line.append(f"  {held} samples held  (t: stop)", style=DIM)
    elif read_only:
        line.append("off (read-only: tracing is refused)", style=DIM)
    else:
        line.append("off  (t: trace this endpoint for 60 s)", style=DIM)
    return line
