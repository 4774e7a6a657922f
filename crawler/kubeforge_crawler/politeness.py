"""Per-host politeness: how many requests are in flight to a host and how far apart they start.

Every request to a host (robots.txt, pages, redirects, retries) takes a turn. A turn waits for a
free slot (`crawl.perHostConcurrency`) and for the host's next start time, the last start plus the
host's delay: `crawl.minDelaySeconds`, or robots.txt's Crawl-delay when it asks for more (honoured
up to `crawl.maxCrawlDelaySeconds`). Hosts are split between shards, so this holds across pods.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


def host_delay(min_delay: float, crawl_delay: float | None, max_crawl_delay: float) -> float:
    """Seconds between request starts: the policy's floor, or Crawl-delay up to its cap."""
    requested = min(crawl_delay, max_crawl_delay) if crawl_delay is not None else 0.0
    return max(min_delay, requested)


class HostTurns:
    """The turns of one host."""

    def __init__(self, concurrency: int, delay: float) -> None:
        self.delay = delay
        self._slots = asyncio.Semaphore(concurrency)
        self._last_start: float | None = None

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Waits for a slot and the host's next start time, then holds the slot.

        The next start is computed from the last one with the delay in force now, so a
        Crawl-delay learnt from robots.txt already spaces the request that follows it.
        """
        async with self._slots:
            now = asyncio.get_running_loop().time()
            start = now if self._last_start is None else max(now, self._last_start + self.delay)
            self._last_start = start
            if start > now:
                await asyncio.sleep(start - now)
            yield
