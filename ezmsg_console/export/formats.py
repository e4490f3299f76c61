"""Writers for snapshot documents: JSON, CSV tables, Graphviz DOT and Mermaid (pure functions).

Every function here takes the plain-data document built by
:mod:`ezmsg_console.export.document` (dicts, lists, numbers, strings) and
returns text; nothing does I/O. Output is deterministic: the same document
gives the same bytes, so two snapshots diff cleanly.
"""

from __future__ import annotations

import base64
import csv
import enum
import io
import json
import math
import re
from typing import Any, Iterable, Sequence

PERSISTENT_OWNER = "persistent"

SECTION_TABLES: dict[str, tuple[str, ...]] = {
    "topology": ("edges",),
    "processes": ("processes",),
    "settings": ("settings",),
    "profiling": ("publishers", "subscribers", "spans"),
}
"""The CSV tables of each document section (``errors.csv`` goes with every folder export)."""

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "edges": ("from_topic", "to_topic", "from_unit", "to_unit", "owners"),
    "processes": ("process_id", "pid", "host", "units", "connected_since", "ping_ms", "cpu_percent",
                  "memory_rss_bytes", "uptime_s", "error"),
    "settings": ("component", "field", "value", "type", "seq"),
    "publishers": ("topic", "process_id", "endpoint_id", "messages_published_total", "bytes_published_total",
                   "publish_rate_hz_window", "bytes_rate_window", "inflight_messages_current", "num_buffers",
                   "backpressure_waits_total", "backpressure_wait_ns_total", "fanout", "shm_links", "tcp_links",
                   "local_subscribers"),
    "subscribers": ("topic", "process_id", "endpoint_id", "messages_received_total", "bytes_received_total",
                    "drops_total", "receive_rate_hz_window", "bytes_rate_window", "latency_p50_ns",
                    "latency_p99_ns", "handler_p50_ns", "handler_p99_ns", "queue_depth", "leaky", "publishers",
                    "channel_kind_last", "timed_messages_total", "timing_sample_k"),
    "spans": ("topic", "process_id", "endpoint_id", "label", "count", "p50_ns", "p90_ns", "p99_ns", "max_ns",
              "mean_ns"),
    "errors": ("section", "process_id", "error_code", "error"),
}


# -- JSON ---------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` as strict JSON data: tuples become lists, enums their values, bytes base64
    text, and non-finite floats the strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return repr(value)


def to_json(document: Any) -> str:
    """The document as indented JSON with sorted keys (and a final newline)."""
    return json.dumps(jsonable(document), sort_keys=True, indent=2, allow_nan=False) + "\n"


def to_json_line(record: Any) -> str:
    """One JSON object on one line, keys sorted (for ``watch --jsonl``)."""
    return json.dumps(jsonable(record), sort_keys=True, allow_nan=False)


# -- CSV ----------------------------------------------------------------------------


def cell(value: Any) -> str:
    """A CSV cell: text as is, booleans ``true``/``false``, None empty, lists and dicts compact JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"))
    if isinstance(value, float):
        return json.dumps(jsonable(value))
    return str(value)


def to_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A header line and one line per row; cells quoted only where needed (RFC 4180, ``\\n`` line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue()


def table(document: dict[str, Any], name: str) -> tuple[tuple[str, ...], list[list[Any]]]:
    """(columns, rows) of the CSV table ``name`` (a key of :data:`TABLE_COLUMNS`)."""
    rows = _TABLE_ROWS[name](document)
    return TABLE_COLUMNS[name], rows


def table_csv(document: dict[str, Any], name: str) -> str:
    return to_csv(*table(document, name))


def _edge_rows(doc: dict[str, Any]) -> list[list[Any]]:
    topo = doc.get("topology") or {}
    units = topic_units(doc)
    return [[e["from"], e["to"], units.get(e["from"]), units.get(e["to"]), ";".join(e.get("owners", ()))]
            for e in topo.get("edges", ())]


def _process_rows(doc: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for p in doc.get("processes") or ():
        stats = p.get("stats") or {}
        rows.append([p["process_id"], p.get("pid"), p.get("host"), ";".join(p.get("units", ())),
                     p.get("connected_since"), p.get("ping_ms"), stats.get("cpu_percent"),
                     stats.get("memory_rss_bytes"), stats.get("uptime_s"), p.get("error")])
    return rows


def _settings_rows(doc: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for component, entry in sorted((doc.get("settings") or {}).items()):
        schema = entry.get("schema") or {}
        for path, value, kind in flatten_settings(entry.get("value"), schema.get("fields")):
            rows.append([component, path, value, kind, entry.get("seq")])
    return rows


def flatten_settings(value: Any, fields: Any = None, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted field path, value, type) of every leaf field of a settings value.

    The type is the schema's ``kind`` where the schema names the field, else
    the JSON type of the value. Nested settings (and plain dicts) are walked;
    lists are leaves.
    """
    if not isinstance(value, dict):
        return [] if not prefix and value is None else [(prefix or "(value)", value, _json_type(value))]
    by_name = {f.get("name"): f for f in fields or () if isinstance(f, dict)}
    out: list[tuple[str, Any, str]] = []
    for name in _ordered_keys(value, by_name):
        path = f"{prefix}.{name}" if prefix else str(name)
        field = by_name.get(name) or {}
        sub = value[name]
        if isinstance(sub, dict) and (field.get("kind") in (None, "nested", "any") or field.get("fields")):
            out.extend(flatten_settings(sub, field.get("fields"), path))
        else:
            out.append((path, sub, str(field.get("kind") or _json_type(sub))))
    return out


def _ordered_keys(value: dict[str, Any], by_name: dict[Any, Any]) -> list[str]:
    """Schema order first (the dataclass's field order), then any extra keys sorted."""
    known = [name for name in by_name if name in value]
    return known + sorted(k for k in value if k not in by_name)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float, str)):
        return type(value).__name__
    return "list" if isinstance(value, (list, tuple)) else "dict" if isinstance(value, dict) else type(value).__name__


def _profiles(doc: dict[str, Any], side: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for process_id, snap in sorted((doc.get("profiling") or {}).items()):
        for entry in (snap or {}).get(side) or ():
            found.append((process_id, entry))
    return sorted(found, key=lambda pe: (pe[1].get("topic", ""), pe[0], pe[1].get("endpoint_id", "")))


def _publisher_rows(doc: dict[str, Any]) -> list[list[Any]]:
    cols = TABLE_COLUMNS["publishers"]
    return [[p.get("topic"), pid, *(p.get(c) for c in cols[2:])] for pid, p in _profiles(doc, "publishers")]


def _subscriber_rows(doc: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for pid, s in _profiles(doc, "subscribers"):
        lat, han = s.get("latency_ns") or {}, s.get("handler_ns") or {}
        rows.append([s.get("topic"), pid, s.get("endpoint_id"), s.get("messages_received_total"),
                     s.get("bytes_received_total"), s.get("drops_total"), s.get("receive_rate_hz_window"),
                     s.get("bytes_rate_window"), lat.get("p50_ns"), lat.get("p99_ns"), han.get("p50_ns"),
                     han.get("p99_ns"), s.get("queue_depth"), s.get("leaky"), s.get("publishers"),
                     s.get("channel_kind_last"), s.get("timed_messages_total"), s.get("timing_sample_k")])
    return rows


def _span_rows(doc: dict[str, Any]) -> list[list[Any]]:
    """One row per profile_span label of each subscriber (totals since the run began)."""
    rows = []
    for pid, s in _profiles(doc, "subscribers"):
        for span in s.get("user_spans") or ():
            h = span.get("span_ns") or {}
            count = h.get("count") or 0
            rows.append([s.get("topic"), pid, s.get("endpoint_id"), span.get("label"), count, h.get("p50_ns"),
                         h.get("p90_ns"), h.get("p99_ns"), h.get("max_ns"),
                         (h.get("sum_ns") or 0) / count if count else None])
    return rows


def _error_rows(doc: dict[str, Any]) -> list[list[Any]]:
    return [[e.get("section"), e.get("process_id"), e.get("error_code"), e.get("error")]
            for e in doc.get("errors") or ()]


_TABLE_ROWS = {"edges": _edge_rows, "processes": _process_rows, "settings": _settings_rows,
               "publishers": _publisher_rows, "subscribers": _subscriber_rows, "spans": _span_rows,
               "errors": _error_rows}


# -- topology graphs ----------------------------------------------------------------


def topic_units(doc: dict[str, Any]) -> dict[str, str]:
    """topic -> the unit that declares it (from the sessions' component metadata)."""
    units: dict[str, str] = {}
    for session in (doc.get("topology") or {}).get("sessions", ()):
        for comp in session.get("components", ()):
            for stream in comp.get("streams", ()):
                units.setdefault(stream["topic"], comp["address"])
    return units


def topology_groups(doc: dict[str, Any]) -> tuple[dict[str | None, list[str]], list[tuple[str, str, bool]]]:
    """({unit or None: sorted topics}, sorted [(from, to, persistent only)]) of the document's graph.

    Nodes are the topics of the graph; a topic no component declares is
    grouped by its address minus the last segment, or under None (no unit).
    """
    topo = doc.get("topology") or {}
    topics: set[str] = set()
    for src, dsts in (topo.get("graph") or {}).items():
        topics.add(src)
        topics.update(dsts)
    edges = []
    for e in topo.get("edges", ()):
        topics.update((e["from"], e["to"]))
        owners = tuple(e.get("owners", ()))
        edges.append((e["from"], e["to"], bool(owners) and all(o == PERSISTENT_OWNER for o in owners)))
    declared = topic_units(doc)
    groups: dict[str | None, list[str]] = {}
    for topic in sorted(topics):
        unit = declared.get(topic) or (topic.rsplit("/", 1)[0] if "/" in topic else None)
        groups.setdefault(unit, []).append(topic)
    return groups, sorted(edges)


def _short(topic: str, unit: str | None) -> str:
    return topic[len(unit) + 1:] if unit and topic.startswith(unit + "/") else topic


def dot_quote(text: str) -> str:
    """A DOT double-quoted ID: backslashes and quotes escaped, line breaks as ``\\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n") + '"'


def to_dot(doc: dict[str, Any]) -> str:
    """A Graphviz digraph: one node per topic, a cluster per unit, an edge per graph edge
    (dashed when only persistent, i.e. no session owns it)."""
    groups, edges = topology_groups(doc)
    lines = [f"// ezmsg-console topology of {_comment(doc)}",
             "digraph ezmsg {",
             "  graph [rankdir=LR, fontname=\"Helvetica\"];",
             "  node [shape=box, style=rounded, fontname=\"Helvetica\"];"]
    index = 0
    for unit, topics in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
        indent = "  "
        if unit is not None:
            index += 1
            lines.append(f"  subgraph cluster_{index} {{")
            lines.append(f"    label={dot_quote(unit)};")
            indent = "    "
        for topic in topics:
            lines.append(f"{indent}{dot_quote(topic)} [label={dot_quote(_short(topic, unit))}];")
        if unit is not None:
            lines.append("  }")
    for src, dst, persistent in edges:
        style = " [style=dashed]" if persistent else ""
        lines.append(f"  {dot_quote(src)} -> {dot_quote(dst)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _comment(doc: dict[str, Any]) -> str:
    text = f"{doc.get('address', '?')} at {(doc.get('captured') or {}).get('iso', '?')}"
    return text.replace("\n", " ").replace("*/", "* /")


_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


class MermaidIds:
    """Stable, collision-free Mermaid node ids: ``prefix`` + the name with anything but
    ``[A-Za-z0-9_]`` replaced by ``_`` (``_2``, ``_3``, ... appended on a clash)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._ids: dict[str, str] = {}
        self._taken: set[str] = set()

    def __call__(self, name: str) -> str:
        if name not in self._ids:
            base = self.prefix + _UNSAFE.sub("_", name)
            candidate, n = base, 1
            while candidate in self._taken:
                n += 1
                candidate = f"{base}_{n}"
            self._taken.add(candidate)
            self._ids[name] = candidate
        return self._ids[name]


def mermaid_label(text: str) -> str:
    """A double-quoted Mermaid label with quotes and angle brackets as entity codes."""
    for raw, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(raw, code)
    return '"' + " ".join(text.splitlines()) + '"'


def to_mermaid(doc: dict[str, Any]) -> str:
    """A Mermaid flowchart: a subgraph per unit, a node per topic, an edge per graph edge
    (dotted when only persistent)."""
    groups, edges = topology_groups(doc)
    node_id, unit_id = MermaidIds("t_"), MermaidIds("u_")
    lines = [f"%% ezmsg-console topology of {_comment(doc)}", "flowchart LR"]
    for unit, topics in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
        indent = "  "
        if unit is not None:
            lines.append(f"  subgraph {unit_id(unit)}[{mermaid_label(unit)}]")
            indent = "    "
        for topic in topics:
            lines.append(f"{indent}{node_id(topic)}[{mermaid_label(_short(topic, unit))}]")
        if unit is not None:
            lines.append("  end")
    for src, dst, persistent in edges:
        lines.append(f"  {node_id(src)} {'-.->' if persistent else '-->'} {node_id(dst)}")
    return "\n".join(lines) + "\n"
