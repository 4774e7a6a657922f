"""The publish stage: deduplicate across shards, then write the dataset's manifest.

Runs once every shard has its completion marker (`--stage publish`, its own Job). Each shard
already removed duplicates among its own documents while crawling; this pass walks all parts in
shard order with the same rules (exact content hash, then MinHash near-duplicates against what
was kept before) and lists the documents it removes in the manifest, without rewriting parts.
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
    DocumentProvenance,
    Manifest,
    ManifestPart,
    ShardMarker,
    ShardSummary,
    read_manifest,
    read_shard_marker,
    shard_marker_key,
    write_manifest,
)
from kubeforge.storage import ObjectNotFound, ObjectStore
from kubeforge_crawler.checkpoint import signatures_key
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


def _text_bytes(documents: list[DocumentProvenance]) -> int | None:
    """The UTF-8 bytes of the documents' texts; None if a marker from before they were recorded
    lacks one."""
    total = 0
    for document in documents:
        if document.text_bytes is None:
            return None
        total += document.text_bytes
    return total


def publish(store: ObjectStore, config: CrawlerConfig) -> Manifest:
    """Deduplicates across the shards' parts and writes the manifest (or returns it)."""
    if store.exists(MANIFEST_KEY):
        return read_manifest(store)
    markers = _markers(store, config.shards)
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
                    text_bytes=_text_bytes(kept),
                )
            )
    tokenizer = None
    if config.output.tokenizer is not None:
        tokenizer, counted = publish_tokenizer(store, parts, config.output.tokenizer)
        parts = list(counted)
    removed_total = sum(len(part.removed) for part in parts)
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
        documents=sum(part.documents for part in parts) - removed_total,
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
