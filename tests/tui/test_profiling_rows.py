"""The Profiling tab's pure view-model: cells, thresholds (always with a glyph), rate falls, detail lines."""

from __future__ import annotations

import ast
from pathlib import Path

from ezmsg_console.protocol.profiling import (
    HistogramSnapshot,
    ProcessProfilingSnapshot,
    ProfilingError,
    ProfilingTraceSample,
    PublisherProfile,
    SubscriberProfile,
)
from ezmsg_console.tui import profiling_rows as pr

PID = "0123456789abcdef"


def _pub(**kw: object) -> PublisherProfile:
    base = dict(endpoint_id="A/OUT:1", topic="A/OUT", num_buffers=32, inflight_messages_current=0,
                messages_published_total=100, bytes_published_total=1000, backpressure_waits_total=0,
                backpressure_wait_ns_total=0, publish_rate_hz_window=50.0, bytes_rate_window=2000.0, shm_links=1)
    base.update(kw)
    return PublisherProfile(**base)  # type: ignore[arg-type]


def _sub(**kw: object) -> SubscriberProfile:
    base = dict(endpoint_id="B/IN:2", topic="B/IN", messages_received_total=100, bytes_received_total=1000,
                drops_total=0, channel_kind_last="SHM", receive_rate_hz_window=50.0)
    base.update(kw)
    return SubscriberProfile(**base)  # type: ignore[arg-type]


def _snap(pubs: tuple = (), subs: tuple = (), window: float = 1.0) -> ProcessProfilingSnapshot:
    return ProcessProfilingSnapshot(PID, 4242, "host", 0, 0.0, window, True, (), pubs, subs)


def test_the_module_imports_no_textual() -> None:
    tree = ast.parse(Path(pr.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert names and not [n for n in names if n.split(".")[0] == "textual"]


def test_inflight_thresholds_have_glyphs_not_just_colours() -> None:
    assert pr.inflight_cell(31, 32).text.plain == "▲ 31/32" and pr.inflight_cell(31, 32).text.style == pr.BAD
    assert pr.inflight_cell(17, 32).text.plain == "△ 17/32" and pr.inflight_cell(17, 32).text.style == pr.WARN
    assert pr.inflight_cell(3, 32).text.plain == "3/32"
    assert pr.inflight_cell(0, 0).text.plain == "0/0" and pr.inflight_cell(0, 0).raw == 0


def test_waits_and_drops_flag_the_window_and_dim_the_totals() -> None:
    assert pr.waits_cell(12, 40).text.plain == "▲ 12" and pr.waits_cell(12, 40).raw == 12
    quiet = pr.waits_cell(0, 40)
    assert quiet.text.plain == "40" and quiet.text.style == pr.DIM
    assert pr.drops_cell(12, 12).text.plain == "✕ 12" and pr.drops_cell(12, 12).text.style == pr.BAD
    assert pr.drops_cell(0, 5).text.plain == "5" and "✕" not in pr.drops_cell(0, 5).text.plain


def test_rate_fall_is_judged_against_the_recent_median() -> None:
    steady = [50.0] * 10
    assert not pr.rate_fell(steady + [49.0])
    assert pr.rate_fell(steady + [20.0])
    assert pr.rate_fell(steady + [0.0])
    assert not pr.rate_fell([50.0, 50.0, 10.0]), "too little history to judge"
    assert not pr.rate_fell([0.0] * 10 + [0.0]), "an idle endpoint did not fall"
    assert not pr.rate_fell([]) and pr.rate_fell(steady, current=10.0)
    # only the recent span counts: a long-gone high rate does not flag today's
    assert not pr.rate_fell([500.0] * 30 + [10.0] * 20 + [9.0])
    cell = pr.rate_cell(20.0, steady + [20.0])
    assert cell.text.plain == "▼ 20" and cell.text.style == pr.WARN and cell.raw == 20.0
    assert pr.rate_cell(None, steady).text.plain == "-"


def test_histograms_prefer_the_window_and_fall_back_to_totals_dimmed() -> None:
    window = HistogramSnapshot(count=5, p50_ns=1500, p99_ns=2_500_000)
    total = HistogramSnapshot(count=50, p50_ns=900, p99_ns=12_300_000)
    cell = pr.hist_cell(window, total)
    assert cell.text.plain == "1.50us/2.50ms" and cell.raw == 2_500_000 and cell.text.style == ""
    fallback = pr.hist_cell(HistogramSnapshot(), total)
    assert fallback.text.plain == "900ns/12.3ms" and fallback.text.style == pr.DIM
    assert pr.hist_cell(HistogramSnapshot(), HistogramSnapshot()).text.plain == "-"


def test_rows_per_endpoint_and_an_error_row_per_silent_process() -> None:
    snap = _snap((_pub(inflight_messages_current=30, backpressure_waits_window=3, publish_rate_hz_window=10.0),),
                 (_sub(drops_window=2, drops_total=9, channel_kind_last="UNKNOWN"),))
    err = ProfilingError("fedcba9876543210", "TIMEOUT", "no answer within 1 s")
    pubs, subs = pr.profiling_rows({PID: snap, err.process_id: err}, {"A/OUT:1": [50.0] * 8 + [10.0]},
                                   traced={"B/IN:2"}, pids={err.process_id: 77})
    assert set(pubs) == {"A/OUT:1", "!fedcba9876543210"} and set(subs) == {"B/IN:2", "!fedcba9876543210"}
    pub = {k: v.text.plain for (k, _l, _w), v in zip(pr.PUB_COLUMNS, pubs["A/OUT:1"])}
    assert pub == {"trace": "", "topic": "A/OUT", "pid": "012345/4242", "chan": "SHM", "rate": "▼ 10",
                   "bytes": "2.0 kB", "inflight": "▲ 30/32", "waits": "▲ 3", "subs": "0"}
    sub = {k: v.text.plain for (k, _l, _w), v in zip(pr.SUB_COLUMNS, subs["B/IN:2"])}
    assert sub["trace"] == "◉" and sub["drops"] == "✕ 2" and sub["chan"] == "-" and sub["rate"] == "50"
    error = [v.text.plain for v in subs["!fedcba9876543210"]]
    assert error[1] == "✕ TIMEOUT" and error[2] == "fedcba/77" and len(error) == len(pr.SUB_COLUMNS)
    assert len(pubs["!fedcba9876543210"]) == len(pr.PUB_COLUMNS)
    assert pr.find_endpoint({PID: snap}, "B/IN:2") == (snap, snap.subscribers[0])
    assert pr.find_endpoint({err.process_id: err}, "!fedcba9876543210") == (err, None)
    assert pr.find_endpoint({PID: snap}, "nope") is None


def test_the_first_snapshot_has_no_rates_yet() -> None:
    pubs, _subs = pr.profiling_rows({PID: _snap((_pub(),), window=0.0)}, {}, ())
    cells = dict(zip([c[0] for c in pr.PUB_COLUMNS], pubs["A/OUT:1"]))
    assert cells["rate"].raw is None and cells["rate"].text.plain == "-" and cells["bytes"].text.plain == "-"


def test_trace_lines_show_the_newest_samples_of_one_endpoint() -> None:
    now = 10_000_000_000
    samples = [ProfilingTraceSample(now - 2_000_000_000 + i, "B/IN:2", "B/IN", "handler_ns", 1500 * i, "SHM", i)
               for i in range(10)]
    samples.append(ProfilingTraceSample(now, "other:9", "X", "handler_ns", 5, "SHM", 99))
    held, lines = pr.trace_lines(samples, "B/IN:2", now, limit=3)
    assert held == 10 and len(lines) == 3
    assert "seq 9" in lines[0].plain and "13.5 us" in lines[0].plain and "2s ago" in lines[0].plain
    assert "handler_ns" in lines[0].plain and "seq 7" in lines[2].plain
    _held, future = pr.trace_lines([ProfilingTraceSample(now * 2, "B/IN:2", "B/IN", "handler_ns", 1, "", 1)],
                                   "B/IN:2", now)
    assert "- ago" in future[0].plain, "a clock from another host shows no age"


def test_detail_lines_have_sparklines_and_the_trace_state() -> None:
    snap = _snap((), (_sub(latency_ns_window=HistogramSnapshot(count=3, p50_ns=2000, p99_ns=9000)),))
    lines = [line.plain for line in pr.endpoint_detail(snap, snap.subscribers[0], [1.0, 5.0, 9.0], [10.0, 20.0])]
    assert lines[0].startswith("B/IN  subscriber") and "pid 4242" in lines[0]
    assert "▁▅█" in lines[1] and "now 9.00/s" in lines[1]
    assert lines[2].startswith("lat p50") and "now 20 ns" in lines[2]
    assert "latency p50 2.00 us" in lines[3] and "(window)" in lines[3]
    assert "no history yet" in pr.spark_line("rate", [], str).plain
    assert "◉ on, 42 s left" in pr.trace_status(True, 41.6, 7, False).plain
    assert "read-only" in pr.trace_status(False, 0, 0, True).plain
    assert "TIMEOUT" in pr.error_detail(ProfilingError(PID, "TIMEOUT", "late"))[0].plain


def test_what_a_backend_does_not_measure_reads_n_a_and_sorts_as_none() -> None:
    import dataclasses

    unmeasured = ("bytes", "backpressure", "drops", "queue", "links", "histograms", "latency")
    pub, sub = _pub(), _sub()
    snap = dataclasses.replace(_snap((pub,), (sub,)), unmeasured=unmeasured)
    cols = [c[0] for c in pr.PUB_COLUMNS]
    row = dict(zip(cols, (v.text.plain for v in pr.publisher_row(pub, snap, None, ()))))
    assert row["rate"] == "50" and row["inflight"] == "0/32"  # measured: shown
    assert [row[k] for k in ("chan", "bytes", "waits", "subs")] == ["n/a"] * 4
    cols = [c[0] for c in pr.SUB_COLUMNS]
    row = dict(zip(cols, (v.text.plain for v in pr.subscriber_row(sub, snap, None, ()))))
    assert row["chan"] == "SHM" and [row[k] for k in ("bytes", "queue", "drops", "latency")] == ["n/a"] * 4
    assert row["handler"] == "-"  # from trace samples: none yet
    record = ("sub", sub, snap, None, False)
    assert pr.record_sort_value(record, cols.index("drops")) is None
    assert pr.record_sort_value(record, cols.index("rate")) == 50.0
    detail = "\n".join(t.plain for t in pr.endpoint_detail(snap, sub, [1.0, 2.0], []))
    assert "handler n/a until traced" in detail and "latency n/a" in detail and "drops n/a" in detail
    native = dict(zip(cols, (v.text.plain for v in pr.subscriber_row(sub, _snap((), (sub,)), None, ()))))
    assert native["drops"] == "0" and native["queue"] == "0"  # measured zeros stay zeros


def test_sampled_timing_reads_sampled_1_in_k_next_to_the_percentiles() -> None:
    hist = HistogramSnapshot(count=40, p50_ns=2000, p99_ns=9000)
    sampled = _sub(handler_ns_window=hist, latency_ns_window=hist, timed_messages_total=40, timing_sample_k=25)
    lines = [line.plain for line in pr.endpoint_detail(_snap((), (sampled,)), sampled, [1.0], [2.0])]
    percentiles = next(line for line in lines if line.startswith("handler p50"))
    assert percentiles.endswith("sampled 1/25") and "latency p50 2.00 us" in percentiles
    assert "100 msgs (40 timed)" in "\n".join(lines)
    assert pr.sampled_text(sampled) == "sampled 1/25"

    every = _sub(handler_ns_window=hist, timed_messages_total=100, timing_sample_k=1)
    detail = "\n".join(line.plain for line in pr.endpoint_detail(_snap((), (every,)), every, [1.0], [2.0]))
    assert "sampled" not in detail and pr.sampled_text(every) == ""  # every message timed: no mark
    older = _sub(handler_ns_window=hist)  # a peer that does not report timing
    detail = "\n".join(line.plain for line in pr.endpoint_detail(_snap((), (older,)), older, [1.0], [2.0]))
    assert "sampled" not in detail and "timed" not in detail
