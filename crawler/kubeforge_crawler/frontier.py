"""The frontier of one shard: the URLs it still has to visit, by origin, and every URL it has
already decided about (the seen-set), so a URL is visited or dropped at most once.

A URL taken for a visit stays pending until it is marked done, so a checkpoint taken while it is
in flight still lists it and a restarted shard visits it again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from kubeforge_crawler.urls import origin_of


class LinkKind(StrEnum):
    """What a URL is expected to be."""

    PAGE = "page"
    SITEMAP = "sitemap"


@dataclass(frozen=True)
class Link:
    """A URL to visit, at a depth (links followed from a seed) and of a kind."""

    url: str
    depth: int
    kind: LinkKind = LinkKind.PAGE


class Frontier:
    """Queues by origin, URLs in flight, and the seen-set."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._queues: dict[str, deque[Link]] = {}
        self._in_flight: dict[str, Link] = {}

    def mark_seen(self, url: str) -> bool:
        """Records a URL as decided; False when it already was."""
        if url in self.seen:
            return False
        self.seen.add(url)
        return True

    def push(self, link: Link) -> None:
        """Queues a link (its URL should be marked seen)."""
        self._queues.setdefault(origin_of(link.url), deque()).append(link)

    def origins_with_work(self) -> list[str]:
        return [origin for origin, queue in self._queues.items() if queue]

    def take(self, origin: str) -> Link | None:
        """The next link of an origin, now in flight, or None."""
        queue = self._queues.get(origin)
        if not queue:
            return None
        link = queue.popleft()
        self._in_flight[link.url] = link
        return link

    def done(self, link: Link) -> None:
        self._in_flight.pop(link.url, None)

    def drain(self, origin: str) -> list[Link]:
        """Removes and returns every queued link of an origin."""
        queue = self._queues.pop(origin, deque())
        return list(queue)

    def pending(self) -> list[Link]:
        """Every link not yet done: in flight first, then queued."""
        queued = [link for queue in self._queues.values() for link in queue]
        return [*self._in_flight.values(), *queued]
