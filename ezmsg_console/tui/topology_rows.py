"""Pure view-model of the Topology tab: component tree, edges, event log, focus (no Textual).

Everything here works on a :class:`~ezmsg_console.protocol.graph.GraphSnapshot`
and plain data, so it is tested without an app. Terms:

* a *node* is what the graph draws as a box: the component (unit or
  collection) that declares a stream with that topic, or, for a topic no
  component declares (a bare ``connect("TEST/A", "TEST/B")``), the topic;
* an *internal* topic is plumbing every unit has (``*INPUT_SETTINGS``);
  ``x`` hides them;
* a :class:`Focus` is the one-hop neighbourhood of a component or topic:
  the edges touching it and the nodes at their ends (``f``).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Iterable

from rich.text import Text

from ..protocol.graph import (
    PERSISTENT_OWNER,
    ComponentMetadata,
    ComponentType,
    GraphSnapshot,
    ProcessInfo,
    StreamDirection,
    TopologyEvent,
)
from .format import age_since

INTERNAL_SUFFIXES = ("INPUT_SETTINGS",)
"""Stream names ending so are internal (runtime.unit.SETTINGS_STREAM; not imported: tui -> client only)."""
OTHER_KEY = "g:other"

TREE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("name", "Name", 20), ("proc", "Proc", 6), ("pid", "PID", 7), ("host", "Host", 6), ("ps", "P/S", 4))
EDGE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("from", "From", 22), ("to", "To", 22), ("owner", "Owner", 12))
EVENT_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("seq", "Seq", 5), ("kind", "Kind", 7), ("topics", "Topics", 26), ("source", "Source", 10), ("age", "Age", 4))

Val = tuple[Any, "str | Text"]
"""A cell: (raw value sorted and exported by, text shown)."""


def is_internal(topic: str) -> bool:
    """Whether ``topic`` is per-unit plumbing (``*INPUT_SETTINGS``)."""
    return topic.rsplit("/", 1)[-1].endswith(INTERNAL_SUFFIXES)


def short_id(ident: str | None, n: int = 6) -> str:
    return (ident or "")[:n]


@dataclasses.dataclass
class Model:
    """What the tab needs from one snapshot, indexed."""

    components: dict[str, ComponentMetadata]
    owner: dict[str, str]  # topic -> address of the component declaring it
    process: dict[str, ProcessInfo]  # unit address -> its process
    pubs: collections.Counter[str]
    subs: collections.Counter[str]
    edges: list[tuple[str, str, tuple[str, ...]]]  # (from, to, owners)
    sessions: dict[str, str]  # session id -> name
    topics: set[str]

    def node_of(self, topic: str) -> str:
        return self.owner.get(topic, topic)

    def parent(self, address: str) -> str | None:
        parts = address.split("/")
        for k in range(len(parts) - 1, 0, -1):
            candidate = "/".join(parts[:k])
            if candidate in self.components:
                return candidate
        return None

    def under(self, address: str) -> set[str]:
        """``address`` and every component below it."""
        return {a for a in self.components if a == address or a.startswith(address + "/")}


def build_model(snap: GraphSnapshot) -> Model:
    components: dict[str, ComponentMetadata] = {}
    for session in snap.sessions:
        for comp in session.metadata.components if session.metadata else ():
            components[comp.address] = comp
    process: dict[str, ProcessInfo] = {}
    for proc in snap.processes:
        for unit in proc.units:
            process[unit] = proc
            if unit not in components:
                components[unit] = ComponentMetadata(unit, unit.rsplit("/", 1)[-1], ComponentType.UNIT)
    owner = {s.topic: c.address for c in components.values() for s in c.streams}
    edges = [(e.from_topic, e.to_topic, tuple(e.owners)) for e in snap.edge_owners]
    topics = set(owner) | set(snap.graph) | {t for ts in snap.graph.values() for t in ts}
    topics |= {t for f, to, _o in edges for t in (f, to)}
    topics |= {p.topic for p in snap.publishers} | {s.topic for s in snap.subscribers}
    return Model(components, owner, process, collections.Counter(p.topic for p in snap.publishers),
                 collections.Counter(s.topic for s in snap.subscribers), edges,
                 {s.session_id: s.name for s in snap.sessions}, topics)


# -- focus -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Focus:
    """The one-hop neighbourhood of ``target`` (a component address or a topic)."""

    target: str
    center: frozenset[str]  # the topics of the target itself
    edges: frozenset[tuple[str, str]]
    nodes: frozenset[str]

    @property
    def topics(self) -> frozenset[str]:
        return self.center | {t for e in self.edges for t in e}


def focus_on(model: Model, target: str) -> Focus:
    if target in model.components:
        inside = model.under(target)
        center = {t for t, owner in model.owner.items() if owner in inside}
        nodes = set(inside)
    else:
        center, nodes = {target}, {model.node_of(target)}
    edges = {(f, t) for f, t, _o in model.edges if f in center or t in center}
    nodes |= {model.node_of(x) for e in edges for x in e}
    return Focus(target, frozenset(center), frozenset(edges), frozenset(nodes))


def visible_edges(model: Model, hide_internal: bool, focus: Focus | None) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(f, t, o) for f, t, o in model.edges
            if not (hide_internal and (is_internal(f) or is_internal(t)))
            and (focus is None or (f, t) in focus.edges)]


def graph_nodes(model: Model, hide_internal: bool, focus: Focus | None) -> list[str]:
    """Units drawn even without an edge (every running unit; in focus, the neighbourhood's)."""
    if focus is not None:
        return sorted(n for n in focus.nodes if n in model.process or n not in model.components)
    return sorted(model.process)


# -- the tree ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TreeRow:
    key: str  # "c:" collection, "u:" unit, "s:" stream (by topic), "t:" bare topic, OTHER_KEY
    kind: str  # collection | unit | stream | topic | group
    target: str  # component address or topic ("" for the group)
    depth: int
    name: str
    process: str = ""
    pid: int | None = None
    host: str = ""
    direction: str = ""  # IN / OUT for streams
    pubs: int | None = None
    subs: int | None = None
    internal: bool = False
    unit: str = ""  # the component a stream belongs to


def tree_rows(model: Model, hide_internal: bool = False, focus: Focus | None = None) -> list[TreeRow]:
    """Collections, units (with their process) and streams, depth-first by name."""
    def topic_shown(topic: str) -> bool:
        return not (hide_internal and is_internal(topic)) and (focus is None or topic in focus.topics)

    shown = set(model.components)
    if focus is not None:
        shown = {a for a in focus.nodes if a in model.components}
        for address in list(shown):
            parent = model.parent(address)
            while parent is not None:
                shown.add(parent)
                parent = model.parent(parent)
    children: dict[str | None, list[str]] = collections.defaultdict(list)
    for address in sorted(shown):
        children[model.parent(address)].append(address)
    rows: list[TreeRow] = []
    stack = [(a, 0) for a in reversed(children[None])]
    while stack:
        address, depth = stack.pop()
        comp = model.components[address]
        parent = model.parent(address)
        name = address[len(parent) + 1:] if parent else address
        if comp.component_type is ComponentType.COLLECTION:
            rows.append(TreeRow(f"c:{address}", "collection", address, depth, name))
        else:
            proc = model.process.get(address)
            rows.append(TreeRow(f"u:{address}", "unit", address, depth, name, short_id(proc.process_id) if proc
                                else "", proc.pid if proc else None, (proc.host or "") if proc else "",
                                unit=address))
        streams = sorted(comp.streams, key=lambda s: (s.direction is not StreamDirection.INPUT, s.name))
        for st in streams:
            if topic_shown(st.topic):
                rows.append(TreeRow(f"s:{st.topic}", "stream", st.topic, depth + 1, st.name,
                                    direction="IN" if st.direction is StreamDirection.INPUT else "OUT",
                                    pubs=model.pubs[st.topic], subs=model.subs[st.topic],
                                    internal=is_internal(st.topic), unit=address))
        stack.extend((a, depth + 1) for a in reversed(children[address]))
    bare = sorted(t for t in model.topics - set(model.owner) if topic_shown(t))
    if bare:
        rows.append(TreeRow(OTHER_KEY, "group", "", 0, "(other topics)"))
        rows.extend(TreeRow(f"t:{t}", "topic", t, 1, t, pubs=model.pubs[t], subs=model.subs[t],
                            internal=is_internal(t)) for t in bare)
    return rows


def tree_cells(row: TreeRow, order: int) -> tuple[Val, ...]:
    """Cells of a tree row; the name's raw value is the row's place in the tree (sorting keeps it)."""
    indent = "  " * row.depth
    if row.kind == "collection":
        name = Text(f"{indent}{row.name}/", style="bold")
    elif row.kind == "unit":
        name = Text(f"{indent}{row.name}", style="bold cyan")
    elif row.kind == "group":
        name = Text(f"{indent}{row.name}", style="italic dim")
    else:
        arrow = "←" if row.direction == "IN" else "→" if row.direction == "OUT" else "·"
        name = Text(f"{indent}{arrow} {row.name}", style="dim" if row.internal else "")
    if row.kind == "unit":
        proc: Val = (row.process, row.process or Text("-", style="dim"))
    else:
        proc = (row.direction, Text(row.direction, style="dim"))
    ps = "" if row.pubs is None else f"{row.pubs}/{row.subs}"
    return ((order, name), proc, (row.pid, "" if row.pid is None else str(row.pid)), (row.host, row.host),
            (ps, Text(ps, style="dim" if row.internal else "")))


# -- edges and events --------------------------------------------------------------


def owner_label(model: Model, owner: str, my_session: str = "") -> str:
    if owner == PERSISTENT_OWNER:
        return "persistent"
    if my_session and owner == my_session:
        return "this console"
    return model.sessions.get(owner) or short_id(owner, 8)


def edge_key(from_topic: str, to_topic: str) -> str:
    return f"{from_topic} -> {to_topic}"


def edge_cells(model: Model, edge: tuple[str, str, tuple[str, ...]], my_session: str = "") -> tuple[Val, ...]:
    f, t, owners = edge
    labels = ", ".join(owner_label(model, o, my_session) for o in owners)
    style = "yellow" if PERSISTENT_OWNER in owners else ""
    return ((f, Text(f, style="dim" if is_internal(f) else "")), (t, Text(t, style="dim" if is_internal(t) else "")),
            (list(owners), Text(labels, style=style)))


def edge_export(model: Model, edges: Iterable[tuple[str, str, tuple[str, ...]]],
                my_session: str = "") -> list[dict[str, Any]]:
    return [{"from": f, "to": t, "from_node": model.node_of(f), "to_node": model.node_of(t),
             "owners": list(o), "owner_names": [owner_label(model, x, my_session) for x in o]}
            for f, t, o in edges]


def event_key(event: TopologyEvent) -> str:
    return f"{event.server_epoch}:{event.seq}"


def event_source(event: TopologyEvent, model: Model | None, my_session: str = "") -> str:
    if event.source_session_id:
        if my_session and event.source_session_id == my_session:
            return "this console"
        name = model.sessions.get(event.source_session_id) if model else None
        return name or f"s:{short_id(event.source_session_id)}"
    if event.source_process_id:
        return f"p:{short_id(event.source_process_id)}"
    return "server"


def event_cells(event: TopologyEvent, model: Model | None, now: float, my_session: str = "") -> tuple[Val, ...]:
    """Seq, kind, topics (for a process event with none: that process's units, dimmed), source, age."""
    kind = "graph" if event.event_type.value == "GRAPH_CHANGED" else "process"
    topics: str | Text = ", ".join(event.changed_topics)
    if not topics:
        procs = model.process.items() if model else ()
        units = sorted(u for u, p in procs if p.process_id == event.source_process_id)
        topics = Text(", ".join(units) or "-", style="dim")
    return ((event.seq, str(event.seq)), (kind, Text(kind, style="cyan" if kind == "graph" else "magenta")),
            (list(event.changed_topics), topics), (event_source(event, model, my_session),
                                                    event_source(event, model, my_session)),
            (event.timestamp, age_since(event.timestamp, now)))
