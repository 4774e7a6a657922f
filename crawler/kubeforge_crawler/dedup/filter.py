"""The filter stage: one task's share of the parts, without the documents clusters removed.

A part that lost documents is rewritten (same format) under the dedup prefix; one that lost none
is listed as it is. The task's marker lists its parts as the manifest will, so publish only
concatenates the markers.
"""

from __future__ import annotations

import hashlib

import numpy as np

from kubeforge.crawlconfig import CrawlerConfig
from kubeforge.dataset import (
    ManifestPart,
    encode_part,
    part_format,
    read_part,
    total_text_bytes,
)
from kubeforge.storage import ObjectStore
from kubeforge_crawler.dedup.layout import (
    Corpus,
    CorpusPart,
    PartInfos,
    Stage,
    StagesIncomplete,
    TaskMarker,
    commit_task,
    completed_tasks,
    filtered_key,
    read_task,
    removed_key,
)


def _filtered(store: ObjectStore, part: CorpusPart, infos: PartInfos) -> tuple[ManifestPart, int]:
    """The part as the manifest lists it after the filter, and how many documents it lost."""
    removed = set(np.frombuffer(store.get(removed_key(part.key)), dtype="<u4").tolist())
    info = infos(part)
    if not removed:
        return ManifestPart(
            key=part.key,
            documents=part.documents,
            bytes=info.bytes,
            sha256=part.sha256,
            text_bytes=total_text_bytes(info.provenance),
        ), 0
    kept = [
        document
        for row, document in enumerate(read_part(store, part.key, part.sha256))
        if row not in removed
    ]
    data = encode_part(kept, part_format(part.key))
    key = filtered_key(part.key)
    store.put(key, data)
    return ManifestPart(
        key=key,
        documents=len(kept),
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        text_bytes=sum(len(document.text.encode("utf-8")) for document in kept),
    ), len(removed)


def run_filter(store: ObjectStore, config: CrawlerConfig, task: int, tasks: int) -> TaskMarker:
    """Runs (or returns, when committed) one task of the filter stage."""
    done = read_task(store, Stage.FILTER, task)
    if done is not None:
        return done
    if not completed_tasks(store, Stage.CLUSTERS):
        raise StagesIncomplete(f"{store.uri}: the clusters stage has not committed yet")
    corpus = Corpus.read(store, config)
    infos = PartInfos()
    parts, removed, documents = [], 0, 0
    for part in corpus.share(task, tasks):
        filtered, lost = _filtered(store, part, infos)
        parts.append(filtered)
        removed += lost
        documents += part.documents
    marker = TaskMarker(
        stage=Stage.FILTER,
        task=task,
        tasks=tasks,
        items=len(parts),
        items_total=len(corpus.current),
        documents=documents,
        duplicates=removed,
        parts=tuple(parts),
    )
    commit_task(store, marker)
    return marker
