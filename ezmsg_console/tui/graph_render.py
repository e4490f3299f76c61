"""Draw a dataflow graph as lines of text for a terminal (pure: no Textual, no Rich).

Theory of operation. Edges arrive between topics; ``node_of`` maps each topic
to the box it belongs to (a unit address, or the topic itself), so a graph of
units comes out. Each weakly connected part is drawn on its own, one under the
other; nodes with no edge at all are listed on one line at the end.

A part without cycles gets a layered left-to-right layout (a small Sugiyama):

1. layer = longest path from a source; a source is then pulled right to sit
   just before its nearest successor, so short side branches stay short;
2. an edge spanning several layers gets a dummy node in each layer between
   (drawn as a straight line through that column);
3. layers are ordered by barycentre sweeps, keeping the order with the
   fewest crossings; each node gets a row slot (the rounded-down mean of its
   predecessors' slots, below its upper neighbour);
4. lines are drawn on a canvas of direction bits, so crossings and
   junctions come out as the right box-drawing character (``┬ ┼ ┘``); each
   source that bends gets its own vertical channel in the gap after it.

If that does not fit ``width``, each name is cut to its shortest unique tail
of ``/``-segments (``DEMO/FILTER`` -> ``FILTER``), then shortened with ``…``
(down to ``min_label`` characters); if it still does not fit, or the
part has a cycle, it is drawn as an indented flow (``└─▶``) instead, where
``↑`` marks a node already drawn above and ``↻`` an edge closing a cycle (explained in a
first line when used).
"""

from __future__ import annotations

import dataclasses
import graphlib
from typing import Callable, Collection, Iterable

N, E, S, W = 1, 2, 4, 8
_LINES = " ╵╶└╷│┌├╴┘─┴┐┤┬┼"  # indexed by the direction bits of a cell
ARROW = "▶"
_BOXES = {"plain": "┌┐└┘─│├", "heavy": "┏┓┗┛━┃┣", "round": "╭╮╰╯─│├"}
PITCH = 4  # rows per slot: a 3-row box and a free row for vertical lines
MIN_LABEL = 6
NO_EDGES = "(no edges)"


def render_graph(edges: Iterable[tuple[str, str]], width: int, *, nodes: Iterable[str] = (),
                 node_of: Callable[[str], str] | None = None, internal: Callable[[str], bool] | None = None,
                 selected: str | None = None, rounded: Collection[str] = (),
                 min_label: int = MIN_LABEL) -> list[str]:
    """Lines (each at most ``width`` characters) drawing the graph of ``edges``.

    ``edges`` are (from topic, to topic); ``node_of`` maps a topic to its node (default: the topic);
    edges touching a topic for which ``internal`` is true are left out; ``nodes`` adds nodes that may
    have no edge; ``selected`` is drawn with a heavy box, nodes in ``rounded`` with round corners.
    """
    width = max(12, width)
    to_node = node_of or (lambda topic: topic)
    pairs: set[tuple[str, str]] = set()
    loops: set[str] = set()
    names = set(nodes)
    for a, b in edges:
        if internal is not None and (internal(a) or internal(b)):
            continue
        u, v = to_node(a), to_node(b)
        names |= {u, v}
        if u == v:
            loops.add(u)
        else:
            pairs.add((u, v))
    if not names:
        return [NO_EDGES]
    suffixes = unique_suffixes(names)
    out: list[str] = []
    flow_used = False
    parts, isolated = _components(names, pairs, loops)
    for part_nodes, part_edges in parts:
        if out:
            out.append("")
        lines, flow = _render_part(part_nodes, part_edges, width, suffixes, selected, rounded, min_label)
        out.extend(lines)
        flow_used |= flow
        out.extend(_fit(f"↻ {n} feeds itself", width) for n in sorted(loops & part_nodes))
    if isolated:
        if out:
            out.append("")
        out.extend(_wrap("unconnected: ", sorted(isolated), width))
    if flow_used and any(line.endswith((" ↑", " ↻")) for line in out):
        out.insert(0, _fit("↑ drawn above  ↻ cycle", width))
    return out


def truncate(label: str, limit: int) -> str:
    """``label`` in at most ``limit`` characters, keeping more of the end (where unit names are)."""
    if len(label) <= limit:
        return label
    if limit <= 1:
        return "…"[:limit]
    head = (limit - 1) // 3
    tail = limit - 1 - head
    return label[:head] + "…" + label[len(label) - tail:]


def _fit(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def _wrap(lead: str, words: list[str], width: int) -> list[str]:
    lines, line = [], lead
    for word in words:
        piece = word if line == lead else ", " + word
        if len(line) + len(piece) + 1 > width and line != lead:  # + 1: the comma that ends the line
            lines.append(line + ",")
            line = "  " + word
        else:
            line += piece
    lines.append(line)
    return [_fit(x, width) for x in lines]


def _components(names: set[str], pairs: set[tuple[str, str]],
                loops: set[str]) -> tuple[list[tuple[set[str], set[tuple[str, str]]]], set[str]]:
    """Weakly connected parts with at least one edge (by first name), and the nodes with none."""
    parent = {n: n for n in names}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for u, v in pairs:
        parent[find(u)] = find(v)
    groups: dict[str, set[str]] = {}
    for n in names:
        groups.setdefault(find(n), set()).add(n)
    parts, isolated = [], set()
    for group in sorted(groups.values(), key=min):
        part_edges = {(u, v) for u, v in pairs if u in group}
        if part_edges or group & loops:
            parts.append((group, part_edges))
        else:
            isolated |= group
    return parts, isolated


@dataclasses.dataclass
class _Plan:
    """A layered layout before labels are known: node i is ``names[i]`` ("" for a dummy)."""

    names: list[str]
    layers: list[list[int]]
    succ: list[list[int]]
    slot: list[int]

    def dummy(self, i: int) -> bool:
        return not self.names[i]


def _render_part(nodes: set[str], edges: set[tuple[str, str]], width: int, suffixes: dict[str, str],
                 selected: str | None, rounded: Collection[str], min_label: int) -> tuple[list[str], bool]:
    """(lines, whether the flow fallback was used)."""
    plan = _plan(nodes, edges)
    short = {n: suffixes[n] for n in nodes}
    if plan is not None:
        longest = max(len(v) for v in short.values())
        candidates = [{n: n for n in nodes}, short]
        candidates += [{n: truncate(v, k) for n, v in short.items()} for k in range(longest - 1, min_label - 1, -1)]
        for labels in candidates:
            if _width(plan, labels) <= width:
                return _draw(plan, labels, selected, rounded), False
    return _flow(nodes, edges, short, width), True


def unique_suffixes(names: Collection[str]) -> dict[str, str]:
    """Each name's shortest tail of ``/``-segments that no other name has (``DEMO/FILTER`` -> ``FILTER``)."""
    out = {}
    for name in names:
        segs = name.split("/")
        for k in range(1, len(segs) + 1):
            tail = "/".join(segs[-k:])
            if not any(other != name and (other == tail or other.endswith("/" + tail)) for other in names):
                break
        out[name] = tail
    return out


def _plan(nodes: set[str], edges: set[tuple[str, str]]) -> _Plan | None:
    """Layers, dummies, order and slots of an acyclic part (None if it has a cycle)."""
    order = sorted(nodes)
    index = {n: i for i, n in enumerate(order)}
    succ: list[list[int]] = [[] for _ in order]
    pred: dict[int, list[int]] = {i: [] for i in range(len(order))}
    for src, dst in sorted(edges):
        succ[index[src]].append(index[dst])
        pred[index[dst]].append(index[src])
    try:
        topo = list(graphlib.TopologicalSorter(pred).static_order())
    except graphlib.CycleError:
        return None
    layer = [0] * len(order)
    for i in topo:
        for j in succ[i]:
            layer[j] = max(layer[j], layer[i] + 1)
    for i in range(len(order)):
        if not pred[i] and succ[i]:
            layer[i] = min(layer[j] for j in succ[i]) - 1
    names = list(order)
    succ2: list[list[int]] = [[] for _ in order]
    for u in range(len(order)):
        for v in succ[u]:
            prev = u
            for lay in range(layer[u] + 1, layer[v]):
                names.append("")
                layer.append(lay)
                succ2.append([])
                succ2[prev].append(len(names) - 1)
                prev = len(names) - 1
            succ2[prev].append(v)
    pred2: list[list[int]] = [[] for _ in names]
    for u, targets in enumerate(succ2):
        for v in targets:
            pred2[v].append(u)
    layers = _initial_order(names, layer, succ2, pred2)
    layers = _sweep(layers, succ2, pred2)
    slot = [0] * len(names)
    for members in layers:
        below = -1
        for i in members:
            preds = [slot[p] for p in pred2[i]]
            want = sum(preds) // len(preds) if preds else below + 1
            slot[i] = max(below + 1, want)
            below = slot[i]
    return _Plan(names, layers, succ2, slot)


def _initial_order(names: list[str], layer: list[int], succ: list[list[int]],
                   pred: list[list[int]]) -> list[list[int]]:
    """Depth-first from the sources (by name), so chains start out side by side."""
    layers: list[list[int]] = [[] for _ in range(max(layer) + 1)]
    seen: set[int] = set()
    roots = [i for i in range(len(names)) if not pred[i]]
    stack = list(reversed(roots))
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        layers[layer[i]].append(i)
        stack.extend(reversed(succ[i]))
    return layers


def _crossings(layers: list[list[int]], succ: list[list[int]]) -> int:
    total = 0
    for upper, lower in zip(layers, layers[1:]):
        pos = {n: k for k, n in enumerate(lower)}
        segs = [(a, pos[t]) for a, n in enumerate(upper) for t in succ[n] if t in pos]
        total += sum(1 for x, (a1, b1) in enumerate(segs) for a2, b2 in segs[x + 1:] if (a1 - a2) * (b1 - b2) < 0)
    return total


def _sweep(layers: list[list[int]], succ: list[list[int]], pred: list[list[int]]) -> list[list[int]]:
    """Barycentre sweeps down and up; the order with the fewest crossings wins."""
    best, best_cross = [list(x) for x in layers], _crossings(layers, succ)
    current = [list(x) for x in layers]
    for _round in range(4):
        for rng, near in ((range(1, len(current)), pred), (range(len(current) - 2, -1, -1), succ)):
            for lay in rng:
                ref = current[lay - 1] if near is pred else current[lay + 1]
                pos = {n: k for k, n in enumerate(ref)}
                own = {n: k for k, n in enumerate(current[lay])}

                def key(n: int, pos: dict[int, int] = pos, own: dict[int, int] = own,
                        near: list[list[int]] = near) -> float:
                    ks = [pos[m] for m in near[n] if m in pos]
                    return sum(ks) / len(ks) if ks else float(own[n])

                current[lay].sort(key=key)
            cross = _crossings(current, succ)
            if cross < best_cross:
                best, best_cross = [list(x) for x in current], cross
        if best_cross == 0:
            break
    return best


def _column_widths(plan: _Plan, labels: dict[str, str]) -> list[int]:
    return [max([len(labels[plan.names[i]]) + 4 for i in members if not plan.dummy(i)] or [1])
            for members in plan.layers]


def _channels(plan: _Plan, members: list[int]) -> dict[int, int]:
    """Channel number of each node of a layer whose edges bend. A source whose line ends at another
    source's row gets a later channel than that source, so it joins that row after the other source
    has branched off (else the other source would seem to reach this one's targets)."""
    bending = [s for s in members if any(plan.slot[t] != plan.slot[s] for t in plan.succ[s])]
    before: dict[int, set[int]] = {s: set() for s in bending}  # s -> channels that must come before s
    for s2 in bending:
        rows = {plan.slot[t] for t in plan.succ[s2]}
        for s1 in bending:
            if s1 != s2 and plan.slot[s1] in rows:
                before[s2].add(s1)
    ordered: list[int] = []
    pending = sorted(bending, key=lambda s: plan.slot[s])
    while pending:
        ready = [s for s in pending if not (before[s] - set(ordered))] or pending[:1]
        ordered.append(ready[0])
        pending.remove(ready[0])
    return {s: k for k, s in enumerate(ordered)}


def _gap_width(channels: int) -> int:
    return 2 * channels + 2 if channels else 3


def _width(plan: _Plan, labels: dict[str, str]) -> int:
    gaps = sum(_gap_width(len(_channels(plan, m))) for m in plan.layers[:-1])
    return sum(_column_widths(plan, labels)) + gaps


class _Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.bits = [[0] * width for _ in range(height)]
        self.chars: dict[tuple[int, int], str] = {}

    def hline(self, x1: int, x2: int, y: int) -> None:
        for x in range(min(x1, x2), max(x1, x2)):
            self.bits[y][x] |= E
            self.bits[y][x + 1] |= W

    def vline(self, x: int, y1: int, y2: int) -> None:
        for y in range(min(y1, y2), max(y1, y2)):
            self.bits[y][x] |= S
            self.bits[y + 1][x] |= N

    def text(self, x: int, y: int, text: str) -> None:
        for k, ch in enumerate(text):
            self.chars[(x + k, y)] = ch

    def lines(self) -> list[str]:
        out = ["".join(self.chars.get((x, y)) or _LINES[b] for x, b in enumerate(row)).rstrip()
               for y, row in enumerate(self.bits)]
        while out and not out[-1]:
            out.pop()
        return out


def _draw(plan: _Plan, labels: dict[str, str], selected: str | None, rounded: Collection[str]) -> list[str]:
    widths = _column_widths(plan, labels)
    chans = [_channels(plan, m) for m in plan.layers[:-1]]
    xs, x = [], 0
    for lay, w in enumerate(widths):
        xs.append(x)
        x += w + (_gap_width(len(chans[lay])) if lay < len(chans) else 0)
    canvas = _Canvas(x, (max(plan.slot) + 1) * PITCH - 1)
    right: dict[int, int] = {}  # node -> x of its right edge (where its edges leave)
    for lay, members in enumerate(plan.layers):
        for i in members:
            y = plan.slot[i] * PITCH
            if plan.dummy(i):
                canvas.hline(xs[lay], xs[lay] + widths[lay] - 1, y + 1)
                right[i] = xs[lay] + widths[lay] - 1
                continue
            name = plan.names[i]
            style = "heavy" if name == selected else "round" if name in rounded else "plain"
            tl, tr, bl, br, h, v, _tee = tuple(_BOXES[style])
            label = labels[name]
            inner = len(label) + 2
            canvas.text(xs[lay], y, tl + h * inner + tr)
            canvas.text(xs[lay], y + 1, f"{v} {label} {v}")
            canvas.text(xs[lay], y + 2, bl + h * inner + br)
            right[i] = xs[lay] + inner + 1
    for lay, members in enumerate(plan.layers[:-1]):
        x0 = xs[lay] + widths[lay]
        arrow_x = x0 + _gap_width(len(chans[lay])) - 1
        for s in members:
            ys = plan.slot[s] * PITCH + 1
            if plan.succ[s] and not plan.dummy(s):
                canvas.text(right[s], ys, _BOXES["heavy" if plan.names[s] == selected else "plain"][6])
            for t in plan.succ[s]:
                yt = plan.slot[t] * PITCH + 1
                end = xs[lay + 1] if plan.dummy(t) else arrow_x
                if ys == yt:
                    canvas.hline(right[s], end, ys)
                else:
                    cx = x0 + 1 + 2 * chans[lay][s]
                    canvas.hline(right[s], cx, ys)
                    canvas.vline(cx, ys, yt)
                    canvas.hline(cx, end, yt)
                if not plan.dummy(t):
                    canvas.text(arrow_x, yt, ARROW)
    return canvas.lines()


def _flow(nodes: set[str], edges: set[tuple[str, str]], labels: dict[str, str], width: int) -> list[str]:
    """An indented tree of the part from its sources: ``↑`` already drawn above, ``↻`` a cycle."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    has_pred: set[str] = set()
    for u, v in sorted(edges):
        succ[u].append(v)
        has_pred.add(v)
    out: list[str] = []
    done: set[str] = set()
    roots = [n for n in sorted(nodes) if n not in has_pred]
    stack: list[tuple[str, str, str, frozenset[str]]] = [(r, "", "", frozenset()) for r in reversed(roots)]
    while True:
        if not stack:
            rest = [n for n in sorted(nodes) if n not in done]
            if not rest:
                break
            stack.append((rest[0], "", "", frozenset()))
        node, lead, branch, above = stack.pop()
        label = labels[node]
        if node in above:
            out.append(_fit(f"{lead}{branch}{label} ↻", width))
            continue
        if node in done:
            out.append(_fit(f"{lead}{branch}{label} ↑", width))
            continue
        done.add(node)
        out.append(_fit(f"{lead}{branch}{label}", width))
        inner = lead + ("" if not branch else "    " if branch.startswith("└") else "│   ")
        kids = succ[node]
        for k in range(len(kids) - 1, -1, -1):
            stack.append((kids[k], inner, "└─▶ " if k == len(kids) - 1 else "├─▶ ", above | {node}))
    return out
