"""The publish stage: deduplicate across shards, then write the dataset's manifest.

Runs once every shard has its completion marker (`--stage publish`, its own Job). Each shard
already removed duplicates among its own documents while crawling. When the distributed dedup
stages ran (`kubeforge_crawler.dedup`), the manifest lists the parts their filter stage wrote;
otherwise this pass walks all parts in shard order with the same rules (exact content hash,
then MinHash near-duplicates against what was kept before, one index in memory) and lists the
documents it removes in the manifest, without rewriting parts.
With `output.tokenizer` it then trains the version's tokenizer on the kept documents and counts
each part's tokens (`kubeforge_crawler.tokenizer`), before the manifest that names them.
Rerunning it after the manifest exists returns that manifest.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from kubeforge.crawlconfig import CrawlerConfig
from kubeforge.dataset import (
    MANIFEST_KEY,
    Manifest,
    ManifestPart,
    ShardMarker,
    ShardSummary,
    read_manifest,
    read_shard_marker,
    shard_marker_key,
    total_text_bytes,
    write_manifest,
)
from kubeforge.storage import ObjectNotFound, ObjectStore
from kubeforge_crawler.checkpoint import signatures_key
from kubeforge_crawler.dedup.layout import Stage, completed_tasks
from kubeforge_crawler.minhash import NearDuplicateIndex, decode_signatures
from kubeforge_crawler.tokenizer import publish_tokenizer

log = logging.getLogger(__name__)


class ShardsIncomplete(Exception):
    """Some shards have no completion marker yet."""


def _markers(store: ObjectStore, shards: int) -> list[ShardMarker]:
    markers, missing = [], []
    for shard in range(shards):
        try:
            markers.append(read_shard_marker(store, shard))
        except ObjectNotFound:
            missing.append(shard_marker_key(shard))
    if missing:
        raise ShardsIncomplete(f"{store.uri}: no completion marker yet: {', '.join(missing)}")
    return markers


def _single_pass(
    store: ObjectStore, config: CrawlerConfig, markers: list[ShardMarker]
) -> list[ManifestPart]:
    """The parts with the documents one in-memory pass over every signature removes."""
    dedup = config.processing.dedup
    hashes: set[str] = set()
    index = NearDuplicateIndex(dedup.threshold, dedup.permutations)
    parts: list[ManifestPart] = []
    for marker in markers:
        for part in marker.parts:
            signatures = decode_signatures(store.get(signatures_key(part.key)))
            removed, kept = [], []
            for provenance, signature in zip(part.provenance, signatures, strict=True):
                exact = dedup.exact and provenance.content_hash in hashes
                if exact or (dedup.near_duplicates and index.find(signature) is not None):
                    removed.append(provenance.id)
                    continue
                hashes.add(provenance.content_hash)
                index.add(signature)
                kept.append(provenance)
            parts.append(
                ManifestPart(
                    key=part.key,
                    documents=part.documents,
                    bytes=part.bytes,
                    sha256=part.sha256,
                    removed=tuple(removed),
                    text_bytes=total_text_bytes(kept),
                )
            )
    return parts


def publish(store: ObjectStore, config: CrawlerConfig) -> Manifest:
    """Deduplicates across the shards' parts and writes the manifest (or returns it)."""
    if store.exists(MANIFEST_KEY):
        return read_manifest(store)
    markers = _markers(store, config.shards)
    filtered = completed_tasks(store, Stage.FILTER)
    if filtered:  # the distributed stages ran
        parts = [part for task in filtered for part in task.parts]
        removed_by_stages = sum(task.duplicates for task in filtered)
    else:
        parts = _single_pass(store, config, markers)
        removed_by_stages = 0
    tokenizer = None
    if config.output.tokenizer is not None:
        tokenizer, counted = publish_tokenizer(store, parts, config.output.tokenizer)
        parts = list(counted)
    listed = sum(len(part.removed) for part in parts)  # removed, but still in their parts
    removed_total = removed_by_stages + listed
    manifest = Manifest(
        created_at=datetime.now(UTC),
        shards=tuple(
            ShardSummary(
                shard=marker.shard,
                marker=shard_marker_key(marker.shard),
                documents=sum(part.documents for part in marker.parts),
                counters=marker.counters,
            )
            for marker in markers
        ),
        parts=tuple(parts),
        documents=sum(part.documents for part in parts) - listed,
        bytes=sum(part.bytes for part in parts),
        duplicates_removed=removed_total,
        tokenizer=tokenizer,
    )
    write_manifest(store, manifest)
    log.info(
        "published %s: %d documents, %d duplicates removed across shards",
        store.uri,
        manifest.documents,
        removed_total,
    )
    return manifest
