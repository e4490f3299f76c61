"""Publishers, subscribers and the routes between them.

Pure and synchronous. A subscriber on topic T is fed by every publisher whose
topic is T or reaches T along the edges. After any change (an endpoint comes
or goes, an edge appears or vanishes) :meth:`EndpointStore.changed_routes`
returns the subscribers whose set of publishers is different, with the new
set, so the server can push exactly those updates.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

from ..protocol.errors import InvalidRequest
from ..protocol.graph import PublisherInfo, SubscriberInfo


class EndpointStore:
    def __init__(self) -> None:
        self.publishers: dict[str, PublisherInfo] = {}
        self.subscribers: dict[str, SubscriberInfo] = {}
        self._routes: dict[str, tuple[str, ...]] = {}  # sub_id -> sorted pub_ids last announced

    def _check_new(self, endpoint_id: str, topic: str) -> None:
        if not endpoint_id or not topic:
            raise InvalidRequest("an endpoint needs an id and a topic", {"endpoint_id": endpoint_id})
        if endpoint_id in self.publishers or endpoint_id in self.subscribers:
            raise InvalidRequest(f"endpoint {endpoint_id} is already registered", {"endpoint_id": endpoint_id})

    def add_publisher(self, peer_id: str, info: PublisherInfo) -> None:
        self._check_new(info.pub_id, info.topic)
        self.publishers[info.pub_id] = dataclasses.replace(info, peer_id=peer_id)

    def add_subscriber(self, peer_id: str, info: SubscriberInfo) -> None:
        self._check_new(info.sub_id, info.topic)
        self.subscribers[info.sub_id] = dataclasses.replace(info, peer_id=peer_id)

    def remove(self, peer_id: str, endpoint_id: str) -> None:
        for table in (self.publishers, self.subscribers):
            info = table.get(endpoint_id)
            if info is not None:
                if info.peer_id != peer_id:
                    raise InvalidRequest(f"endpoint {endpoint_id} belongs to another connection",
                                         {"endpoint_id": endpoint_id})
                del table[endpoint_id]
                self._routes.pop(endpoint_id, None)
                return
        raise InvalidRequest(f"no endpoint {endpoint_id}", {"endpoint_id": endpoint_id})

    def drop_peer(self, peer_id: str) -> None:
        for table in (self.publishers, self.subscribers):
            for endpoint_id in [k for k, v in table.items() if v.peer_id == peer_id]:
                del table[endpoint_id]
                self._routes.pop(endpoint_id, None)

    def changed_routes(self, upstream_of: Callable[[str], Iterable[str]]
                       ) -> list[tuple[SubscriberInfo, tuple[PublisherInfo, ...]]]:
        """Subscribers whose feeding publishers changed since last asked, with the new set.

        ``upstream_of(topic)`` gives every topic that reaches ``topic`` along edges.
        """
        by_topic: dict[str, list[PublisherInfo]] = {}
        for pub in self.publishers.values():
            by_topic.setdefault(pub.topic, []).append(pub)
        sources_cache: dict[str, tuple[PublisherInfo, ...]] = {}
        changes = []
        for sub in self.subscribers.values():
            sources = sources_cache.get(sub.topic)
            if sources is None:
                topics = {sub.topic, *upstream_of(sub.topic)}
                found = [p for t in topics for p in by_topic.get(t, ())]
                sources = tuple(sorted(found, key=lambda p: p.pub_id))
                sources_cache[sub.topic] = sources
            ids = tuple(p.pub_id for p in sources)
            if self._routes.get(sub.sub_id) != ids:
                self._routes[sub.sub_id] = ids
                changes.append((sub, sources))
        return changes

    def publisher_list(self) -> tuple[PublisherInfo, ...]:
        return tuple(sorted(self.publishers.values(), key=lambda p: (p.topic, p.pub_id)))

    def subscriber_list(self) -> tuple[SubscriberInfo, ...]:
        return tuple(sorted(self.subscribers.values(), key=lambda s: (s.topic, s.sub_id)))
