"""A crawled dataset written here as the shards write it (parts, their MinHash signatures and
completion markers), with planted exact and near copies of earlier documents in other shards.

The distinct documents are random sequences of the words of pydoc's text of standard-library
modules (real words; two such documents share no 5-word shingle in practice); a near copy is
`near_copy` of an earlier document (one word in 100 replaced: estimated similarity about 0.9).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from kubeforge.api.dataingest import CrawlCounters
from kubeforge.crawlconfig import CrawlerConfig
from kubeforge.dataset import (
    Document,
    ShardMarker,
    content_hash,
    document_id,
    write_part,
    write_shard_marker,
)
from kubeforge.storage import ObjectStore
from kubeforge_crawler.checkpoint import signatures_key
from kubeforge_crawler.minhash import MinHasher, encode_signatures
from tests import warcfiles
from tests.workloads.test_crawler_imports import near_copy

WORDS_PER_DOCUMENT = 300
MODULES = ("json", "csv", "argparse", "collections", "pathlib", "logging", "typing", "decimal")


@cache
def vocabulary() -> tuple[str, ...]:
    text = " ".join(warcfiles.module_text(name) for name in MODULES)
    return tuple(sorted(set(re.findall(r"\b[A-Za-z]{3,}\b", text))))  # not bits of addresses


@dataclass(frozen=True)
class Cluster:
    """A text's documents in this corpus: one is kept, unless the text is an earlier corpus's."""

    ids: frozenset[str]
    earlier: bool

    @property
    def copies(self) -> int:
        return len(self.ids) - (0 if self.earlier else 1)


@dataclass(frozen=True)
class PlantedCorpus:
    documents: int
    texts: tuple[str, ...]  # in the order written (what a later corpus may copy)
    clusters: tuple[Cluster, ...]  # of the texts with copies

    @property
    def copies(self) -> int:
        """Documents a perfect deduplication removes."""
        return sum(cluster.copies for cluster in self.clusters)

    def precision_recall(self, removed: set[str]) -> tuple[float, float]:
        """Of the removed documents, the fraction that are copies; of the copies, the fraction
        removed. A cluster removed whole counts one removal as wrong."""
        right = sum(min(len(cluster.ids & removed), cluster.copies) for cluster in self.clusters)
        return (right / len(removed) if removed else 1.0), right / self.copies


def dedup_config(dataset_uri: str, shards: int) -> CrawlerConfig:
    """The config of a dataset written by `write_corpus` (its sources are never read)."""
    return CrawlerConfig.model_validate(
        {
            "datasetUri": dataset_uri,
            "shards": shards,
            "sources": {"seeds": ["https://docs.example/"]},
            "crawl": {"userAgent": {"product": "KubeforgeTest", "contact": "tests@kubeforge.dev"}},
        }
    )


def write_corpus(
    store: ObjectStore,
    config: CrawlerConfig,
    documents: int,
    part_documents: int,
    copy_fraction: float = 0.2,
    seed: int = 7,
    earlier: tuple[str, ...] = (),
) -> PlantedCorpus:
    """Writes `documents` documents round-robin over the shards, about `copy_fraction` of them
    exact or near copies of a random earlier one (of this corpus, or of the texts of an
    `earlier` corpus), and completes every shard."""
    rng = random.Random(seed)  # noqa: S311 (test data, not secrets)
    words = vocabulary()
    dedup = config.processing.dedup
    hasher = MinHasher(dedup.permutations, dedup.shingle_words)
    texts: list[str] = list(earlier)
    origins: list[int] = list(range(len(earlier)))  # the first text each one copies (or itself)
    for number in range(len(earlier), len(earlier) + documents):
        if texts and rng.random() < copy_fraction:
            original = rng.randrange(len(texts))
            text = texts[original]
            texts.append(text if rng.random() < 0.3 else near_copy(text, every=100))
            origins.append(origins[original])
        else:
            texts.append(" ".join(rng.choices(words, k=WORDS_PER_DOCUMENT)))
            origins.append(number)
    texts, origins = texts[len(earlier) :], origins[len(earlier) :]
    ids: dict[int, str] = {}
    # Document `number` is in shard number % shards: copies land in other shards and parts.
    fetched_at = datetime(2024, 3, 1, tzinfo=UTC)
    for shard in range(config.shards):
        numbers = list(range(shard, documents, config.shards))
        parts = []
        for index, start in enumerate(range(0, len(numbers), part_documents)):
            rows = numbers[start : start + part_documents]
            batch = [
                Document(
                    id=document_id(shard, index, row),
                    url=f"https://docs.example/{number}",
                    fetched_at=fetched_at,
                    content_hash=content_hash(texts[number]),
                    text=texts[number],
                )
                for row, number in enumerate(rows)
            ]
            ids.update((number, document.id) for number, document in zip(rows, batch, strict=True))
            part = write_part(store, shard, index, batch, [200] * len(batch))
            signatures = [hasher.signature(document.text) for document in batch]
            store.put(signatures_key(part.key), encode_signatures(signatures, dedup.permutations))
            parts.append(part)
        write_shard_marker(
            store,
            ShardMarker(
                shard=shard,
                parts=tuple(parts),
                counters=CrawlCounters(),
                user_agent="KubeforgeTest",
                extractor="test",
                completed_at=fetched_at,
            ),
        )
    clusters: dict[int, set[str]] = {}
    for number, origin in enumerate(origins):
        clusters.setdefault(origin, set()).add(ids[number])
    planted = (Cluster(frozenset(c), origin < len(earlier)) for origin, c in clusters.items())
    return PlantedCorpus(
        documents, tuple(texts), tuple(cluster for cluster in planted if cluster.copies)
    )
