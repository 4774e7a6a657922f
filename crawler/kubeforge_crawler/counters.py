"""The counters of one shard, in the shape of the DataIngest status (`CrawlCounters`)."""

from __future__ import annotations

from collections import Counter

from kubeforge.api.dataingest import CrawlCounters, DropReason


class ShardCounters:
    """What a shard has done: responses by status class, bytes, documents kept, drops."""

    def __init__(self, saved: CrawlCounters | None = None) -> None:
        saved = saved or CrawlCounters()
        self.pages_by_status: Counter[str] = Counter(saved.pages_by_status)
        self.dropped: Counter[str] = Counter(saved.dropped_by_reason)
        self.bytes_fetched = saved.bytes_fetched
        self.documents_kept = saved.documents_kept

    def response(self, status: int, wire_bytes: int) -> None:
        self.pages_by_status[f"{status // 100}xx"] += 1
        self.bytes_fetched += wire_bytes

    def drop(self, reason: str, count: int = 1) -> None:
        """Counts drops under their reason: a `DropReason` or a filter rule's `Filter:rule`."""
        self.dropped[str(reason)] += count

    def kept(self) -> None:
        self.documents_kept += 1

    def snapshot(self) -> CrawlCounters:
        duplicates = (
            self.dropped[DropReason.EXACT_DUPLICATE] + self.dropped[DropReason.NEAR_DUPLICATE]
        )
        return CrawlCounters(
            pages_by_status=dict(sorted(self.pages_by_status.items())),
            bytes_fetched=self.bytes_fetched,
            documents_kept=self.documents_kept,
            dropped_by_reason=dict(sorted(self.dropped.items())),
            duplicates_removed=duplicates,
        )
