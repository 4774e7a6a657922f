"""The clusters stage: union-find over every band's duplicate pairs, then each part's removals.

The parent of each document lives in a memory-mapped file on local disk (8 bytes a document),
so the process holds the pages it touches, not the array, and the pairs stream in chunks. A
union makes the earlier root the parent, so each cluster's root is its first document: it is
kept and the rest are removed, as the single-pod pass kept the first of near-identical texts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kubeforge.crawlconfig import CrawlerConfig
from kubeforge.storage import ObjectStore
from kubeforge_crawler.dedup.layout import (
    PAIRS_PREFIX,
    Corpus,
    Stage,
    StagesIncomplete,
    TaskMarker,
    commit_task,
    completed_tasks,
    read_task,
    removed_key,
)

PAIR_BYTES = 16


def _find(parent: npt.NDArray[np.int64], document: int) -> int:
    while (up := int(parent[document])) != document:
        parent[document] = parent[up]  # path halving
        document = up
    return document


def _union_pairs(store: ObjectStore, parent: npt.NDArray[np.int64], memory_entries: int) -> None:
    chunk = max(memory_entries, 1) * PAIR_BYTES
    for key in sorted(store.list(PAIRS_PREFIX)):
        size = store.size(key)
        for start in range(0, size, chunk):
            pairs = np.frombuffer(store.get_range(key, start, min(start + chunk, size)), "<u8")
            for first, second in pairs.reshape(-1, 2).tolist():
                first, second = _find(parent, first), _find(parent, second)
                if first != second:
                    parent[max(first, second)] = min(first, second)


def run_clusters(
    store: ObjectStore, config: CrawlerConfig, memory_entries: int, scratch: Path | None = None
) -> TaskMarker:
    """Runs (or returns, when committed) the clusters stage (one task)."""
    done = read_task(store, Stage.CLUSTERS, 0)
    if done is not None:
        return done
    if not completed_tasks(store, Stage.BUCKETS):
        raise StagesIncomplete(f"{store.uri}: no buckets task has committed yet")
    corpus = Corpus.read(store, config)
    removed = 0
    with tempfile.TemporaryDirectory(dir=scratch) as directory:
        parent = np.memmap(
            Path(directory) / "parents", dtype=np.int64, mode="w+", shape=(corpus.documents or 1,)
        )
        for start in range(0, len(parent), max(memory_entries, 1)):
            stop = min(start + max(memory_entries, 1), len(parent))
            parent[start:stop] = np.arange(start, stop, dtype=np.int64)
        _union_pairs(store, parent, memory_entries)
        for part in corpus.current:
            stop = part.first + part.documents
            rows = np.flatnonzero(parent[part.first : stop] != np.arange(part.first, stop))
            store.put(removed_key(part.key), rows.astype("<u4").tobytes())
            removed += len(rows)
        del parent
    marker = TaskMarker(
        stage=Stage.CLUSTERS,
        task=0,
        tasks=1,
        items=corpus.documents,  # every version's, earlier ones included
        items_total=corpus.documents,
        documents=corpus.documents,
        duplicates=removed,
    )
    commit_task(store, marker)
    return marker
