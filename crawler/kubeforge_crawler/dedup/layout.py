"""Where the dedup stages keep their input list, outputs and task markers, and their progress.

Documents are numbered densely in corpus order (shards, then their parts, then rows), so a
document is one uint64 everywhere (runs, pairs, the union-find array) and "first" means earliest.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from kubeforge.crawlconfig import CrawlerConfig
from kubeforge.dataset import (
    ManifestPart,
    PartInfo,
    ShardMarker,
    part_stem,
    read_manifest,
    read_shard_marker,
)
from kubeforge.storage import ObjectNotFound, ObjectStore, open_store

PREFIX = "dedup/"


class Stage(enum.StrEnum):
    BUCKETS = "buckets"
    CLUSTERS = "clusters"
    FILTER = "filter"


class StagesIncomplete(Exception):
    """A stage's input is not complete yet: an earlier stage (or a shard) has not committed."""


def runs_prefix(band: int) -> str:
    return f"{PREFIX}runs/band-{band:04d}/"


def pairs_prefix(band: int) -> str:
    return f"{PREFIX}pairs/band-{band:04d}/"


PAIRS_PREFIX = f"{PREFIX}pairs/"


def removed_key(part_key: str) -> str:
    """The rows of a part that the clusters stage removes (uint32, ascending, raw)."""
    return f"{PREFIX}removed/{part_stem(part_key)}.u32"


def filtered_key(part_key: str) -> str:
    """Where the filter stage writes a part that lost documents."""
    return f"{PREFIX}{part_key}"


def task_key(stage: Stage, task: int) -> str:
    return f"{PREFIX}tasks/{stage.value}/{task:05d}.json"


class TaskMarker(BaseModel):
    """A committed task: its share of the stage and what it counted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: Stage
    task: int
    tasks: int
    items: int  # bands (buckets), documents (clusters), parts (filter) this task covered
    items_total: int  # of the whole stage
    documents: int  # documents it read (every task of the buckets stage reads all)
    duplicates: int  # pairs found (buckets), documents removed (clusters, filter)
    parts: tuple[ManifestPart, ...] = ()  # the filter stage's parts, as the manifest lists them


def read_task(store: ObjectStore, stage: Stage, task: int) -> TaskMarker | None:
    try:
        return TaskMarker.model_validate_json(store.get(task_key(stage, task)))
    except ObjectNotFound:
        return None


def commit_task(store: ObjectStore, marker: TaskMarker) -> None:
    store.put(task_key(marker.stage, marker.task), marker.model_dump_json().encode())


def completed_tasks(store: ObjectStore, stage: Stage) -> list[TaskMarker]:
    """The committed tasks of a stage, in task order; raises StagesIncomplete while some of the
    tasks their markers count are missing, and returns [] when none has committed."""
    markers = [
        TaskMarker.model_validate_json(store.get(key))
        for key in sorted(store.list(f"{PREFIX}tasks/{stage.value}/"))
    ]
    if markers and len(markers) != markers[0].tasks:
        raise StagesIncomplete(
            f"{store.uri}: {len(markers)} of {markers[0].tasks} {stage} tasks committed"
        )
    return markers


def _published_shards(uri: str) -> list[int]:
    """The shards of a published version."""
    try:
        return [shard.shard for shard in read_manifest(open_store(uri)).shards]
    except ObjectNotFound:
        raise ValueError(f"{uri}: not published (dedupAgainst names published versions)") from None


@dataclass(frozen=True)
class CorpusPart:
    store: ObjectStore  # of its version
    earlier: bool  # of an earlier version: compared against, never filtered
    key: str
    sha256: str
    documents: int
    first: int  # the number of its first document
    shard: int
    position: int  # its position in its shard's marker


@dataclass(frozen=True)
class Corpus:
    """The committed parts of every shard of the earlier versions deduplicated against, then of
    this version, in order, with their documents' numbers (an earlier version's documents come
    first, so a cluster keeps them and removes this version's copies).

    It holds a few fields per part, not the documents' provenance: the shard markers are read one
    at a time, here and by `PartInfos`."""

    parts: tuple[CorpusPart, ...]

    @classmethod
    def read(cls, store: ObjectStore, config: CrawlerConfig) -> Corpus:
        parts: list[CorpusPart] = []
        versions = [(open_store(uri), _published_shards(uri), True) for uri in config.dedup_against]
        for version, shards, earlier in [*versions, (store, range(config.shards), False)]:
            for shard in shards:
                try:
                    marker = read_shard_marker(version, shard)
                except ObjectNotFound:
                    raise StagesIncomplete(
                        f"{version.uri}: shard {shard} is not complete"
                    ) from None
                for position, part in enumerate(marker.parts):
                    first = parts[-1].first + parts[-1].documents if parts else 0
                    parts.append(
                        CorpusPart(
                            version,
                            earlier,
                            part.key,
                            part.sha256,
                            part.documents,
                            first,
                            shard,
                            position,
                        )
                    )
        return cls(tuple(parts))

    @property
    def current(self) -> tuple[CorpusPart, ...]:
        """This version's parts."""
        return tuple(part for part in self.parts if not part.earlier)

    @property
    def documents(self) -> int:
        return self.parts[-1].first + self.parts[-1].documents if self.parts else 0

    @cached_property
    def _firsts(self) -> npt.NDArray[np.int64]:
        return np.array([part.first for part in self.parts], dtype=np.int64)

    def locate(self, document: int) -> tuple[CorpusPart, int]:
        """The part a document is in, and its row there."""
        part = self.parts[int(np.searchsorted(self._firsts, document, side="right")) - 1]
        return part, document - part.first

    def share(self, task: int, tasks: int) -> Iterator[CorpusPart]:
        """This version's parts of one task out of `tasks` (contiguous, in order)."""
        current = self.current
        yield from current[task * len(current) // tasks : (task + 1) * len(current) // tasks]


class PartInfos:
    """A part as its shard's marker describes it, provenance included (the last marker read is
    kept, so parts read in order read each marker once)."""

    def __init__(self) -> None:
        self._shard: tuple[str, int] | None = None
        self._marker: ShardMarker | None = None

    def __call__(self, part: CorpusPart) -> PartInfo:
        if self._marker is None or self._shard != (part.store.uri, part.shard):
            self._marker = read_shard_marker(part.store, part.shard)
            self._shard = (part.store.uri, part.shard)
        return self._marker.parts[part.position]


@dataclass(frozen=True)
class StageProgress:
    """A stage's progress, summed over its committed tasks."""

    stage: Stage
    tasks_done: int
    tasks: int
    items_done: int
    items: int
    documents: int
    duplicates: int


def progress(store: ObjectStore) -> list[StageProgress]:
    """Each stage that has committed a task, in stage order."""
    summary = []
    for stage in Stage:
        markers = [
            TaskMarker.model_validate_json(store.get(key))
            for key in store.list(f"{PREFIX}tasks/{stage.value}/")
        ]
        if markers:
            summary.append(
                StageProgress(
                    stage=stage,
                    tasks_done=len(markers),
                    tasks=markers[0].tasks,
                    items_done=sum(marker.items for marker in markers),
                    items=markers[0].items_total,
                    documents=(max if stage is Stage.BUCKETS else sum)(
                        marker.documents for marker in markers
                    ),
                    duplicates=sum(marker.duplicates for marker in markers),
                )
            )
    return summary
