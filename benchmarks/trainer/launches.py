"""What the torchrun benchmarks share: the rig's S3 store and TrainingJobs launched as pods would
be (through `tests.workloads.trainer_runs.Launch`, i.e. the command `plan_training` builds)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from kubeforge.storage import open_store
from tests.conftest import local_rig
from tests.workloads.trainer_runs import Launch, module_docs, training_job, write_text_dataset


def docs_dataset(directory: Path) -> str:
    """A small text dataset (standard-library documentation) in a local directory; its URI."""
    modules = ["json", "csv", "textwrap", "shlex", "heapq", "bisect", "argparse", "logging"]
    write_text_dataset(open_store(directory.as_uri()), module_docs(modules))
    return directory.as_uri()


def run_to_completion(
    name: str, replicas: int, spec: dict[str, Any], workdir: Path, dataset_uri: str | None = None
) -> dict[str, Any]:
    """Runs a TrainingJob to its end and returns its final metrics.json."""
    workdir.mkdir(parents=True)
    launch = Launch(
        training_job(name, replicas, spec), workdir, local_rig(), dataset_uri=dataset_uri
    )
    try:
        launch.start()
        codes = launch.wait(timeout=900)
    finally:
        launch.kill()
    if codes != [0] * replicas:
        raise RuntimeError(launch.output())
    checkpoint_dir = Path(spec["checkpoint"]["uri"].removeprefix("file://"))
    metrics: dict[str, Any] = json.loads((checkpoint_dir / "final" / "metrics.json").read_text())
    return metrics


def steady_rate(metrics: dict[str, Any]) -> float:
    """Samples per second over the last two measurement windows (startup excluded)."""
    return statistics.mean(float(entry["samplesPerSecond"]) for entry in metrics["history"][-2:])
