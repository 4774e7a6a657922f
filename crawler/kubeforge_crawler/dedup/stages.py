"""One task of any dedup stage, as the entry point runs it."""

from __future__ import annotations

from pathlib import Path

from kubeforge.crawlconfig import CrawlerConfig
from kubeforge.storage import ObjectStore
from kubeforge_crawler.dedup.buckets import run_buckets
from kubeforge_crawler.dedup.clusters import run_clusters
from kubeforge_crawler.dedup.filter import run_filter
from kubeforge_crawler.dedup.layout import Stage, TaskMarker

DEDUP_STAGES = tuple(f"dedup-{stage.value}" for stage in Stage)
"""The entry point's names of the stages, in the order they run."""
MEMORY_ENTRIES = 2_000_000
"""Entries (16 bytes each) a task buffers by default: about 32 MB, a few times that at a sort."""


def run_stage(
    store: ObjectStore,
    config: CrawlerConfig,
    stage: Stage,
    task: int,
    tasks: int,
    memory_entries: int,
    scratch: Path | None = None,
) -> TaskMarker:
    """Runs (or returns, when committed) one task of a stage; raises StagesIncomplete when its
    input is not complete."""
    if stage is Stage.BUCKETS:
        return run_buckets(store, config, task, tasks, memory_entries)
    if stage is Stage.CLUSTERS:
        if tasks != 1:
            raise ValueError("the clusters stage runs as one task (--tasks 1)")
        return run_clusters(store, config, memory_entries, scratch)
    return run_filter(store, config, task, tasks)
