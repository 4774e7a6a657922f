"""The distributed dedup stages run as the commands their pods run (local processes, tasks of a
stage side by side) against the rig's S3 on a generated dataset with planted exact and near
copies, at two corpus sizes: they remove the copies at least as well as the single-pod publish
pass, and the peak memory of each stage's process does not grow with the corpus.

The larger corpus has more shards of the same size: a task parses one shard's completion marker
at a time, and a marker lists the provenance of every document of its shard, so what a task
holds grows with the documents per shard (about 2.3 KiB of parsed marker a document), not with
the corpus.

Real: the rig's S3 server (SeaweedFS), the crawler's entry point in child processes (their peak
resident memory from `wait4`), the dataset written as shards write it (`tests.dedupcorpus`).
The figures are printed (run with -s); no duration is asserted.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from kubeforge.crawlconfig import SHARD_INDEX_ENV, dedup_command, publish_command
from kubeforge.dataset import MANIFEST_KEY, iter_documents, read_manifest, read_shard_marker
from kubeforge.storage import S3Store
from kubeforge_crawler.dedup.layout import progress
from kubeforge_crawler.dedup.stages import DEDUP_STAGES
from tests.conftest import Rig
from tests.dedupcorpus import dedup_config, write_corpus
from tests.workloads.crawls import s3_environment

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # 16 processes, 3000 documents

SHARD_DOCUMENTS = 300
PART_DOCUMENTS = 100
MEMORY_ENTRIES = 1000  # far below the entries of either corpus: every band spills runs
TASKS = {"dedup-buckets": 3, "dedup-clusters": 1, "dedup-filter": 2}
SIZES = (600, 2400)
MEMORY_SLACK_KIB = 8 * 1024  # allocator and import noise between two runs of the same command


def high_water_kib(pid: int) -> int | None:
    """The process's peak resident memory so far (VmHWM: since its exec, unlike its rusage,
    which starts from what this process held when it forked); None once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None  # a zombie: its memory is gone


def run_processes(
    commands: list[list[str]], environment: Mapping[str, str], logs: Path
) -> list[int]:
    """Runs the commands side by side (each its task index in JOB_COMPLETION_INDEX); their peak
    resident memory in KiB, as last read while they ran. Each must succeed."""
    started = []
    for index, command in enumerate(commands):
        stage = command[command.index("--stage") + 1]
        with (logs / f"{stage}-{index}.log").open("ab") as log:
            started.append(
                subprocess.Popen(
                    command,
                    env={**environment, SHARD_INDEX_ENV: str(index)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    peaks = [0] * len(started)
    while any(process.poll() is None for process in started):
        for number, process in enumerate(started):
            peaks[number] = max(peaks[number], high_water_kib(process.pid) or 0)
        time.sleep(0.02)
    for process in started:
        assert process.returncode == 0, f"{process.args!r} failed; see the logs in {logs}"
    return peaks


def test_the_stages_remove_planted_copies_in_memory_that_does_not_grow_with_the_corpus(
    rig: Rig, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    environment = s3_environment(rig)
    peaks: dict[int, dict[str, int]] = {}
    for size in SIZES:
        prefix = f"datasets/dedup-{size}/v1"
        shards = size // SHARD_DOCUMENTS
        config = dedup_config(f"s3://{bucket}/{prefix}", shards)
        store = S3Store(bucket, prefix, s3)
        planted = write_corpus(store, config, size, PART_DOCUMENTS)
        config_path = tmp_path / f"crawler-{size}.yaml"
        config_path.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True)))
        every_id = {
            document.id
            for shard in range(shards)
            for part in read_shard_marker(store, shard).parts
            for document in part.provenance
        }

        # The single-pod pass first (no filter stage has committed), then the stages.
        single_peak = run_processes(
            [publish_command(str(config_path), python=sys.executable)], environment, tmp_path
        )
        single = read_manifest(store)
        single_removed = {document for part in single.parts for document in part.removed}
        store.delete(MANIFEST_KEY)
        peaks[size] = {"publish (single pass)": single_peak[0]}
        for stage in DEDUP_STAGES:
            command = dedup_command(
                str(config_path), stage, TASKS[stage], MEMORY_ENTRIES, python=sys.executable
            )
            peaks[size][stage] = max(run_processes([command] * TASKS[stage], environment, tmp_path))
        peaks[size]["publish (from the filter stage)"] = run_processes(
            [publish_command(str(config_path), python=sys.executable)], environment, tmp_path
        )[0]
        manifest = read_manifest(store)
        kept = {document.id for document in iter_documents(store, manifest)}
        removed = every_id - kept

        precision, recall = planted.precision_recall(removed)
        single_precision, single_recall = planted.precision_recall(single_removed)
        print(
            f"\n{size} documents in {shards} shards, {planted.copies} planted copies: "
            f"stages removed {len(removed)} "
            f"(precision {precision:.4f}, recall {recall:.4f}); single pass removed "
            f"{len(single_removed)} (precision {single_precision:.4f}, recall {single_recall:.4f})"
        )
        for summary in progress(store):
            print(f"  {summary}")
        assert precision >= single_precision
        assert recall >= single_recall
        assert manifest.duplicates_removed == len(removed)
        assert manifest.documents == len(kept) == size - len(removed)

    print("\npeak resident memory (MiB) per process, by corpus size:")
    for name in peaks[SIZES[0]]:
        print(f"  {name:34} " + "  ".join(f"{peaks[size][name] / 1024:7.1f}" for size in SIZES))
    for stage in DEDUP_STAGES:
        assert peaks[SIZES[1]][stage] <= peaks[SIZES[0]][stage] + MEMORY_SLACK_KIB, stage
