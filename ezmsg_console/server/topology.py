"""The topic graph: edges with owners, cycle refusal, and topology events.

Pure and synchronous: every mutation returns the :class:`TopologyEvent` it
caused (or None); the async shell publishes it. An edge exists while it has
at least one owner: a session id, or :data:`PERSISTENT_OWNER` for one-shot
connects. Events are emitted only when an edge really appears or disappears.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from ..protocol.errors import CycleError, InvalidRequest
from ..protocol.graph import PERSISTENT_OWNER, EdgeOwners, EdgeRef, TopologyEvent, TopologyEventType


def _check_topic(topic: str, what: str) -> None:
    if not isinstance(topic, str) or not topic or topic != topic.strip():
        raise InvalidRequest(f"{what} must be a non-empty topic name without surrounding spaces",
                             {"field": what, "value": topic})


class TopologyStore:
    """Edges, owners and the topology sequence counter."""

    def __init__(self, epoch: str = "", clock: Callable[[], float] = time.time) -> None:
        self.epoch = epoch
        self.seq = 0
        self._clock = clock
        self._owners: dict[tuple[str, str], set[str]] = {}
        self._down: dict[str, set[str]] = {}
        self._up: dict[str, set[str]] = {}

    # -- queries ---------------------------------------------------------

    def has_edge(self, from_topic: str, to_topic: str) -> bool:
        return (from_topic, to_topic) in self._owners

    @staticmethod
    def _closure(topic: str, index: dict[str, set[str]]) -> set[str]:
        """Every node reachable from ``topic`` through ``index`` (not including itself)."""
        stack, seen = [topic], set()
        while stack:
            for nxt in index.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def reaches(self, start: str, target: str) -> bool:
        """Whether ``target`` is reachable from ``start`` along edges."""
        return start == target or target in self._closure(start, self._down)

    def downstream(self, topic: str) -> set[str]:
        """Every topic reachable from ``topic`` (not including itself)."""
        return self._closure(topic, self._down)

    def upstream(self, topic: str) -> set[str]:
        """Every topic from which ``topic`` is reachable (not including itself)."""
        return self._closure(topic, self._up)

    def graph(self) -> dict[str, tuple[str, ...]]:
        """Node -> sorted downstream neighbours, for every edge endpoint."""
        nodes: dict[str, set[str]] = {}
        for (src, dst) in self._owners:
            nodes.setdefault(src, set()).add(dst)
            nodes.setdefault(dst, set())
        return {node: tuple(sorted(nodes[node])) for node in sorted(nodes)}

    def edge_owners(self) -> tuple[EdgeOwners, ...]:
        return tuple(
            EdgeOwners(src, dst, tuple(sorted(owners)))
            for (src, dst), owners in sorted(self._owners.items())
        )

    def edges_of(self, owner: str) -> tuple[EdgeRef, ...]:
        return tuple(EdgeRef(src, dst) for (src, dst), owners in sorted(self._owners.items()) if owner in owners)

    # -- mutations -------------------------------------------------------

    def _event(self, topics: Iterable[str], session_id: str | None) -> TopologyEvent:
        self.seq += 1
        return TopologyEvent(
            seq=self.seq,
            event_type=TopologyEventType.GRAPH_CHANGED,
            timestamp=self._clock(),
            changed_topics=tuple(sorted(set(topics))),
            source_session_id=session_id,
            server_epoch=self.epoch,
        )

    def process_changed(self, process_id: str) -> TopologyEvent:
        """A process's unit set changed or its connection closed."""
        self.seq += 1
        return TopologyEvent(
            seq=self.seq,
            event_type=TopologyEventType.PROCESS_CHANGED,
            timestamp=self._clock(),
            changed_topics=(),
            source_process_id=process_id,
            server_epoch=self.epoch,
        )

    def connect(self, from_topic: str, to_topic: str, owner: str) -> TopologyEvent | None:
        """Add ``owner`` to the edge; an event only if the edge is new.

        Raises CycleError (nothing changed) for a self-loop or a cycle.
        """
        _check_topic(from_topic, "from_topic")
        _check_topic(to_topic, "to_topic")
        key = (from_topic, to_topic)
        if key in self._owners:
            self._owners[key].add(owner)
            return None
        if from_topic == to_topic or self.reaches(to_topic, from_topic):
            raise CycleError(
                f"connecting {from_topic} -> {to_topic} would create a cycle",
                {"from_topic": from_topic, "to_topic": to_topic},
            )
        self._owners[key] = {owner}
        self._down.setdefault(from_topic, set()).add(to_topic)
        self._up.setdefault(to_topic, set()).add(from_topic)
        return self._event([to_topic], None if owner == PERSISTENT_OWNER else owner)

    def disconnect(self, from_topic: str, to_topic: str, owner: str) -> TopologyEvent | None:
        """Remove ``owner`` from the edge; an event only if that was its last owner.

        Disconnecting an edge one does not own is a silent no-op.
        """
        key = (from_topic, to_topic)
        owners = self._owners.get(key)
        if owners is None or owner not in owners:
            return None
        owners.discard(owner)
        if owners:
            return None
        self._remove(key)
        return self._event([to_topic], None if owner == PERSISTENT_OWNER else owner)

    def drop_owner(self, owner: str) -> TopologyEvent | None:
        """Remove ``owner`` from every edge; one event for all edges that vanish."""
        removed: list[str] = []
        for key in [k for k, owners in self._owners.items() if owner in owners]:
            owners = self._owners[key]
            owners.discard(owner)
            if not owners:
                self._remove(key)
                removed.append(key[1])
        return self._event(removed, owner) if removed else None

    def _remove(self, key: tuple[str, str]) -> None:
        del self._owners[key]
        for index, key_node, other in ((self._down, key[0], key[1]), (self._up, key[1], key[0])):
            linked = index[key_node]
            linked.discard(other)
            if not linked:
                del index[key_node]
