"""robots.txt per RFC 9309, fetched once per origin and kept for a while.

- 2xx: the rules apply (the first 500 KiB are parsed, as the RFC requires at least).
- 4xx (but 429): no rules, everything is allowed.
- 429, 5xx, a timeout or a network error: the host is unavailable, nothing is fetched from it,
  and robots.txt is tried again after a backoff; after `crawl.retries` more failures its URLs
  are dropped as RobotsUnavailable.
- A host whose address the SSRF guard refuses, or whose TLS certificate does not verify, is
  refused for good with that reason (BlockedAddress, TlsUntrusted, TlsExpired, TlsHostMismatch).
- Redirects are followed up to five hops, each checked like any request.

Entries are kept for `crawl.robotsCacheSeconds`, then fetched again. Rules are matched with the
user agent's product token (Protego).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum

from protego import Protego

from kubeforge.api.dataingest import CrawlPolicy, DropReason
from kubeforge_crawler.fetch import HOST_REFUSALS, Downloader, Refused, Response
from kubeforge_crawler.politeness import HostTurns
from kubeforge_crawler.urls import normalize

ROBOTS_MAX_BYTES = 512 * 1024
ROBOTS_MAX_REDIRECTS = 5


class Verdict(StrEnum):
    """What robots.txt says about one URL."""

    ALLOWED = "allowed"
    DISALLOWED = "disallowed"
    UNAVAILABLE = "unavailable"
    REFUSED = "refused"


@dataclass
class RobotsEntry:
    """What is known of one origin's robots.txt."""

    rules: Protego | None = None
    available: bool = True
    expires: float = 0.0
    failures: int = 0
    sitemaps: list[str] = field(default_factory=list)
    refused: DropReason | None = None

    def verdict(self, url: str, product: str) -> Verdict:
        if self.refused is not None:
            return Verdict.REFUSED
        if not self.available:
            return Verdict.UNAVAILABLE
        if self.rules is None or self.rules.can_fetch(url, product):
            return Verdict.ALLOWED
        return Verdict.DISALLOWED

    def crawl_delay(self, product: str) -> float | None:
        if self.rules is None:
            return None
        delay = self.rules.crawl_delay(product)
        return None if delay is None else float(delay)


class RobotsCache:
    """robots.txt entries by origin, fetched on demand within the host's politeness."""

    def __init__(self, downloader: Downloader, policy: CrawlPolicy) -> None:
        self._downloader = downloader
        self._policy = policy
        self._entries: dict[str, RobotsEntry] = {}

    def entry(self, origin: str) -> RobotsEntry:
        """The current entry of an origin (stale or empty until `refresh` runs)."""
        return self._entries.setdefault(origin, RobotsEntry())

    def is_fresh(self, origin: str) -> bool:
        entry = self._entries.get(origin)
        return entry is not None and asyncio.get_running_loop().time() < entry.expires

    async def refresh(self, origin: str, turns: HostTurns) -> RobotsEntry:
        """Fetches the origin's robots.txt and records what it says."""
        entry = self.entry(origin)
        now = asyncio.get_running_loop().time()
        try:
            response = await self._fetch(f"{origin}/robots.txt", turns)
        except Refused as refused:
            if refused.reason in HOST_REFUSALS:
                entry.refused = refused.reason
                entry.expires = now + self._policy.robots_cache_seconds
                return entry
            response = None
        if response is None or response.status == 429 or response.status >= 500:
            entry.available = False
            entry.failures += 1
            entry.expires = now + self._policy.backoff_seconds * 2 ** (entry.failures - 1)
            return entry
        entry.available = True
        entry.failures = 0
        entry.expires = now + self._policy.robots_cache_seconds
        if 200 <= response.status < 300:
            text = response.body.decode(response.charset or "utf-8", errors="replace")
            entry.rules = Protego.parse(text)
            entry.sitemaps = list(entry.rules.sitemaps)
        else:
            entry.rules = None
            entry.sitemaps = []
        return entry

    async def _fetch(self, url: str, turns: HostTurns) -> Response | None:
        """The final response after redirects, or None when the redirects lead nowhere."""
        for _ in range(ROBOTS_MAX_REDIRECTS + 1):
            async with turns.turn():
                response = await self._downloader.get(
                    url, max_bytes=ROBOTS_MAX_BYTES, truncate=True
                )
            target = response.location
            if target is None:
                return response
            next_url = normalize(target, base=url)
            if next_url is None:
                return None
            url = next_url
        return None
