"""The distributed dedup stages in one process on file-system storage: the streaming merge of
sorted runs, the stages against the single-pod pass on planted copies, publish from the filter
stage's parts, and what a rerun or a stage started too early does. Real files under a temporary
directory (the rig test runs the stages' commands against S3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kubeforge.crawlconfig import CrawlerConfig
from kubeforge.dataset import iter_documents, read_manifest, read_shard_marker
from kubeforge.storage import FileStore, ObjectStore
from kubeforge_crawler.__main__ import main
from kubeforge_crawler.dedup.buckets import all_bands
from kubeforge_crawler.dedup.layout import (
    Corpus,
    Stage,
    StagesIncomplete,
    TaskMarker,
    commit_task,
    progress,
    removed_key,
    runs_prefix,
)
from kubeforge_crawler.dedup.runs import ENTRY, merge_runs, write_run
from kubeforge_crawler.dedup.stages import run_stage
from kubeforge_crawler.publish import publish
from tests.dedupcorpus import PlantedCorpus, dedup_config, write_corpus

SHARDS = 3


def test_the_merge_of_sorted_runs_streams_every_entry_in_hash_order(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    rng = np.random.default_rng(1)
    runs = []
    for number in range(5):
        entries = np.empty(3000, dtype=ENTRY)
        entries["hash"] = rng.integers(0, 500, size=3000)  # many equal hashes across chunks
        entries["document"] = rng.integers(0, 2**63, size=3000)
        write_run(store, f"runs/{number}", entries)
        runs.append(entries)
    batches = list(merge_runs(store, [f"runs/{n}" for n in range(5)], memory_entries=2048))
    merged = np.concatenate(batches)
    assert len(batches) > 1, "the merge held a chunk of each run, not the runs"
    assert np.array_equal(merged["hash"], np.sort(np.concatenate(runs)["hash"]))
    assert sorted(merged.tolist()) == sorted(np.concatenate(runs).tolist())


def removed_ids(store: ObjectStore, config: CrawlerConfig) -> set[str]:
    """The documents the clusters stage removed."""
    removed = set()
    for part in Corpus.read(store, config).current:
        provenance = read_shard_marker(store, part.shard).parts[part.position].provenance
        rows = np.frombuffer(store.get(removed_key(part.key)), dtype="<u4")
        removed |= {provenance[row].id for row in rows.tolist()}
    return removed


def run_all(store: ObjectStore, config: CrawlerConfig, memory_entries: int) -> None:
    for task in range(4):
        run_stage(store, config, Stage.BUCKETS, task, 4, memory_entries)
    run_stage(store, config, Stage.CLUSTERS, 0, 1, memory_entries)
    for task in range(2):
        run_stage(store, config, Stage.FILTER, task, 2, memory_entries)


@pytest.fixture
def planted(tmp_path: Path) -> tuple[FileStore, str, PlantedCorpus]:
    uri = f"file://{tmp_path}/v1"
    store = FileStore(tmp_path / "v1")
    return store, uri, write_corpus(store, dedup_config(uri, SHARDS), 400, part_documents=30)


def test_the_stages_remove_the_planted_copies_as_the_single_pod_pass_does(
    tmp_path: Path, planted: tuple[FileStore, str, PlantedCorpus]
) -> None:
    store, uri, corpus = planted
    single_store = FileStore(tmp_path / "single")
    write_corpus(single_store, dedup_config(f"file://{tmp_path}/single", SHARDS), 400, 30)
    single = publish(single_store, dedup_config(f"file://{tmp_path}/single", SHARDS))
    single_removed = {document for part in single.parts for document in part.removed}

    config = dedup_config(uri, SHARDS)
    run_all(store, config, memory_entries=500)  # far fewer than the entries: every band spills
    removed = removed_ids(store, config)
    precision, recall = corpus.precision_recall(removed)
    single_precision, single_recall = corpus.precision_recall(single_removed)
    assert precision >= single_precision
    assert recall >= single_recall
    assert precision == 1.0
    assert recall > 0.9

    manifest = publish(store, dedup_config(uri, SHARDS))
    kept = list(iter_documents(store, manifest))
    assert manifest.duplicates_removed == len(removed)
    assert manifest.documents == len(kept) == corpus.documents - len(removed)
    assert {document.id for document in kept}.isdisjoint(removed)
    assert all(not part.removed for part in manifest.parts), "the parts were rewritten"
    stages = {stage.stage: stage for stage in progress(store)}
    assert [stages[stage].tasks_done for stage in Stage] == [4, 1, 2]
    assert stages[Stage.BUCKETS].items_done == stages[Stage.BUCKETS].items
    assert stages[Stage.FILTER].items == len(manifest.parts)
    assert stages[Stage.CLUSTERS].duplicates == stages[Stage.FILTER].duplicates == len(removed)


def test_a_committed_task_is_skipped_and_an_interrupted_one_starts_over(
    planted: tuple[FileStore, str, PlantedCorpus],
) -> None:
    store, uri, _ = planted
    config = dedup_config(uri, SHARDS)
    first = run_stage(store, config, Stage.BUCKETS, 0, 2, 500)
    # Task 1 was interrupted after a run of a band that is not the one it will write now.
    band = all_bands(config)[-1]
    store.put(f"{runs_prefix(band)}99999", b"\xff" * 16)
    run_stage(store, config, Stage.BUCKETS, 1, 2, 500)
    assert not store.list(runs_prefix(band)), "the leftover run was removed"
    # A rerun of a committed task returns its marker without reading the corpus again.
    store.delete("shards/00000.json")
    assert run_stage(store, config, Stage.BUCKETS, 0, 2, 500) == first


def test_a_stage_before_its_input_is_committed_exits_with_3(
    tmp_path: Path, planted: tuple[FileStore, str, PlantedCorpus]
) -> None:
    store, uri, _ = planted
    config = dedup_config(uri, SHARDS)
    with pytest.raises(StagesIncomplete):
        run_stage(store, config, Stage.CLUSTERS, 0, 1, 500)
    run_stage(store, config, Stage.BUCKETS, 0, 2, 500)
    with pytest.raises(StagesIncomplete, match="1 of 2 buckets tasks"):
        run_stage(store, config, Stage.CLUSTERS, 0, 1, 500)
    path = tmp_path / "crawler.yaml"
    path.write_text(config.model_dump_json(by_alias=True))
    assert main(["--config", str(path), "--stage", "dedup-filter", "--tasks", "2"]) == 3
    marker = TaskMarker(
        stage=Stage.FILTER, task=0, tasks=2, items=0, items_total=1, documents=0, duplicates=0
    )
    commit_task(store, marker)  # one of two filter tasks
    assert main(["--config", str(path), "--stage", "publish"]) == 3
    assert main(["--config", str(path), "--stage", "dedup-clusters", "--tasks", "2"]) == 2
    assert main(["--config", str(path), "--stage", "dedup-filter", "--shard", "2"]) == 2


def test_exact_deduplication_alone_removes_only_identical_texts(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/v1"
    store = FileStore(tmp_path / "v1")
    config = dedup_config(uri, SHARDS)
    config = config.model_copy(
        update={
            "processing": config.processing.model_copy(
                update={
                    "dedup": config.processing.dedup.model_copy(update={"near_duplicates": False})
                }
            )
        }
    )
    corpus = write_corpus(store, config, 300, part_documents=40)
    assert all_bands(config) == [all_bands(dedup_config(uri, SHARDS))[-1]]
    for task in range(2):  # more tasks than bands: the second has none
        run_stage(store, config, Stage.BUCKETS, task, 2, 500)
    run_stage(store, config, Stage.CLUSTERS, 0, 1, 500)
    removed = removed_ids(store, config)
    documents = {
        document.id: document.content_hash
        for part in Corpus.read(store, config).parts
        for document in read_shard_marker(store, part.shard).parts[part.position].provenance
    }
    kept_hashes = [hash_ for id_, hash_ in documents.items() if id_ not in removed]
    assert len(kept_hashes) == len(set(kept_hashes)), "no two kept documents are identical"
    assert len(set(documents.values())) == len(kept_hashes)
    assert 0 < len(removed) < corpus.copies, "the near copies stay"


def test_a_new_version_publishes_only_what_no_earlier_version_has(tmp_path: Path) -> None:
    first_uri, second_uri = f"file://{tmp_path}/v1", f"file://{tmp_path}/v2"
    first_store, second_store = FileStore(tmp_path / "v1"), FileStore(tmp_path / "v2")
    first_config = dedup_config(first_uri, SHARDS)
    first = write_corpus(first_store, first_config, 300, part_documents=40)
    run_all(first_store, first_config, memory_entries=500)
    publish(first_store, first_config)

    second_config = dedup_config(second_uri, 2).model_copy(update={"dedup_against": [first_uri]})
    second = write_corpus(
        second_store, second_config, 300, part_documents=40, seed=8, earlier=first.texts
    )
    assert any(cluster.earlier for cluster in second.clusters), "copies of the first version"
    run_all(second_store, second_config, memory_entries=500)
    removed = removed_ids(second_store, second_config)
    precision, recall = second.precision_recall(removed)
    assert precision == 1.0
    assert recall > 0.9
    manifest = publish(second_store, second_config)
    assert manifest.documents == 300 - len(removed)
    first_texts = {
        document.text for document in iter_documents(first_store, read_manifest(first_store))
    }
    second_texts = [document.text for document in iter_documents(second_store, manifest)]
    assert first_texts.isdisjoint(second_texts), "no exact copy of the first version is published"


def test_an_earlier_version_that_is_not_published_is_a_config_error(tmp_path: Path) -> None:
    config = dedup_config(f"file://{tmp_path}/v2", 1).model_copy(
        update={"dedup_against": [f"file://{tmp_path}/v1"]}
    )
    with pytest.raises(ValueError, match="not published"):
        Corpus.read(FileStore(tmp_path / "v2"), config)
