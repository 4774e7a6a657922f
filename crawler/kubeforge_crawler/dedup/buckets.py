"""The buckets stage: one task's bands, from signatures to verified duplicate pairs.

The task reads every part's signatures once, hashes its bands (and, with exact deduplication,
an extra band: the content hash), and buffers (hash, document) entries; when `memory_entries`
are buffered it writes each band's buffer as a sorted run. Then, band by band, it merges the
runs: documents that share a band hash are candidates, and a candidate is paired with the first
of the group's first few documents whose signatures estimate a similarity at or above the
threshold (signatures read by ranged reads, a bounded number cached). Pairs are written in
chunks of raw (earlier, later) uint64s under the band's prefix.
"""

from __future__ import annotations

import struct
from collections import OrderedDict

import numpy as np
import numpy.typing as npt

from kubeforge.crawlconfig import CrawlerConfig
from kubeforge.storage import ObjectStore
from kubeforge_crawler.checkpoint import signatures_key
from kubeforge_crawler.dedup.layout import (
    Corpus,
    PartInfos,
    Stage,
    TaskMarker,
    commit_task,
    pairs_prefix,
    read_task,
    runs_prefix,
)
from kubeforge_crawler.dedup.runs import ENTRY, Entries, merge_runs, write_run
from kubeforge_crawler.minhash import (
    Signature,
    band_hashes,
    decode_signature_matrix,
    estimated_similarity,
    optimal_bands,
)

REPRESENTATIVES = 8
"""Documents of one band group a candidate is compared with (the group's first ones that are
not duplicates of each other); bounds the work on a band that many documents share."""
CACHED_SIGNATURES = 4096


class _Signatures:
    """Single signatures read by ranged reads from their part's .npy, the recent ones cached."""

    def __init__(self, corpus: Corpus, permutations: int) -> None:
        self._corpus = corpus
        self._row_bytes = permutations * 4
        self._data_offsets: dict[tuple[str, str], int] = {}
        self._cache: OrderedDict[int, Signature] = OrderedDict()

    def _data_offset(self, store: ObjectStore, key: str) -> int:
        if (store.uri, key) not in self._data_offsets:
            head = store.get_range(key, 0, 12)
            if head[6] == 1:  # .npy version 1: a 2-byte header length, else 4 bytes
                offset = 10 + struct.unpack("<H", head[8:10])[0]
            else:
                offset = 12 + struct.unpack("<I", head[8:12])[0]
            self._data_offsets[store.uri, key] = offset
        return self._data_offsets[store.uri, key]

    def __getitem__(self, document: int) -> Signature:
        if document in self._cache:
            self._cache.move_to_end(document)
            return self._cache[document]
        part, row = self._corpus.locate(document)
        key = signatures_key(part.key)
        start = self._data_offset(part.store, key) + row * self._row_bytes
        signature = np.frombuffer(
            part.store.get_range(key, start, start + self._row_bytes), dtype="<u4"
        )
        self._cache[document] = signature
        if len(self._cache) > CACHED_SIGNATURES:
            self._cache.popitem(last=False)
        return signature


def all_bands(config: CrawlerConfig) -> list[int]:
    """The bands the stage covers; band `bands` (one past the MinHash bands) is the exact one."""
    dedup = config.processing.dedup
    bands, _ = optimal_bands(dedup.threshold, dedup.permutations)
    return (list(range(bands)) if dedup.near_duplicates else []) + ([bands] if dedup.exact else [])


def _exact_hashes(content_hashes: list[str]) -> npt.NDArray[np.uint64]:
    """The first 64 bits of each document's sha256 (`sha256:<hex>`)."""
    return np.array([int(value[7:23], 16) for value in content_hashes], dtype=np.uint64)


def _write_runs(store: ObjectStore, buffers: dict[int, list[Entries]], runs: int) -> None:
    for band, entries in buffers.items():
        write_run(store, f"{runs_prefix(band)}{runs:05d}", np.concatenate(entries))
        entries.clear()


def _band_pairs(
    store: ObjectStore,
    band: int,
    signatures: _Signatures | None,
    threshold: float,
    memory_entries: int,
) -> int:
    """Merges a band's runs and writes its duplicate pairs; returns how many. Without
    `signatures` (the exact band) every candidate is a duplicate."""
    pairs: list[tuple[int, int]] = []
    written = 0

    def flush() -> None:
        nonlocal written
        if pairs:
            key = f"{pairs_prefix(band)}{written:010d}"
            store.put(key, np.array(pairs, dtype="<u8").tobytes())
            written += len(pairs)
            pairs.clear()

    group_hash: int | None = None
    representatives: list[int] = []
    keys = sorted(store.list(runs_prefix(band)))
    for batch in merge_runs(store, keys, memory_entries):
        hashes, documents = batch["hash"], batch["document"]
        starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
        stops = np.r_[starts[1:], len(batch)]
        # Single-document groups need no work, except the first (it may continue the previous
        # batch's last group) and the last (the next batch may continue it).
        visit = np.flatnonzero(stops - starts > 1).tolist()
        for group in sorted({0, len(starts) - 1, *visit}):
            value = int(hashes[starts[group]])
            if value != group_hash:
                group_hash, representatives = value, []
            for document in documents[starts[group] : stops[group]].tolist():
                if not representatives:
                    representatives.append(document)
                    continue
                for earlier in representatives:
                    if signatures is None or (
                        estimated_similarity(signatures[earlier], signatures[document]) >= threshold
                    ):
                        pairs.append((earlier, document))
                        break
                else:
                    if len(representatives) < REPRESENTATIVES:
                        representatives.append(document)
            if len(pairs) >= memory_entries:
                flush()
    flush()
    return written


def run_buckets(
    store: ObjectStore, config: CrawlerConfig, task: int, tasks: int, memory_entries: int
) -> TaskMarker:
    """Runs (or returns, when committed) one task of the buckets stage."""
    done = read_task(store, Stage.BUCKETS, task)
    if done is not None:
        return done
    corpus = Corpus.read(store, config)
    dedup = config.processing.dedup
    bands, rows = optimal_bands(dedup.threshold, dedup.permutations)
    every = all_bands(config)
    mine = every[task * len(every) // tasks : (task + 1) * len(every) // tasks]
    for band in mine:  # what an interrupted attempt left
        for key in store.list(runs_prefix(band)) + store.list(pairs_prefix(band)):
            store.delete(key)
    buffers: dict[int, list[Entries]] = {band: [] for band in mine}
    buffered = runs = 0
    infos = PartInfos()
    for part in corpus.parts:
        matrix = None
        if any(band < bands for band in mine):
            matrix = decode_signature_matrix(part.store.get(signatures_key(part.key)))
        documents = np.arange(part.first, part.first + part.documents, dtype=np.uint64)
        for band in mine:
            entries = np.empty(part.documents, dtype=ENTRY)
            entries["document"] = documents
            if band == bands:
                provenance = infos(part).provenance
                entries["hash"] = _exact_hashes([p.content_hash for p in provenance])
            else:
                assert matrix is not None
                entries["hash"] = band_hashes(matrix, band, rows)
            buffers[band].append(entries)
            buffered += part.documents
        if buffered >= memory_entries:
            _write_runs(store, buffers, runs)
            buffered, runs = 0, runs + 1
    if buffered:
        _write_runs(store, buffers, runs)
    signatures = _Signatures(corpus, dedup.permutations)
    pairs = sum(
        _band_pairs(
            store,
            band,
            None if band == bands else signatures,
            dedup.threshold,
            memory_entries,
        )
        for band in mine
    )
    for band in mine:
        for key in store.list(runs_prefix(band)):
            store.delete(key)
    marker = TaskMarker(
        stage=Stage.BUCKETS,
        task=task,
        tasks=tasks,
        items=len(mine),
        items_total=len(every),
        documents=corpus.documents,
        duplicates=pairs,
    )
    commit_task(store, marker)
    return marker
