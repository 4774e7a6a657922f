"""What the torchrun benchmarks share: the rig's S3 store and TrainingJobs launched as pods would
be (through `tests.workloads.trainer_runs.Launch`, i.e. the command `plan_training` builds)."""

from __future__ import annotations

import json
import pydoc
import statistics
from pathlib import Path
from typing import Any

from kubeforge.storage import open_store
from tests.conftest import REPO_ROOT, Rig, read_env_file
from tests.workloads.trainer_runs import Launch, training_job, write_text_dataset


def local_rig() -> Rig:
    """The rig `make dev-cluster` started (only its S3 store is used)."""
    env = read_env_file(REPO_ROOT / ".dev-cluster" / "env")
    return Rig(
        kubeconfig=Path(env["KUBECONFIG"]),
        s3_endpoint=env["AWS_ENDPOINT_URL"],
        s3_access_key=env["AWS_ACCESS_KEY_ID"],
        s3_secret_key=env["AWS_SECRET_ACCESS_KEY"],
        s3_region=env["AWS_REGION"],
        local=True,
    )


def docs_dataset(directory: Path) -> str:
    """A small text dataset (standard-library documentation) in a local directory; its URI."""
    modules = ["json", "csv", "textwrap", "shlex", "heapq", "bisect", "argparse", "logging"]
    texts = [[pydoc.plain(pydoc.render_doc(name))] for name in modules]
    write_text_dataset(open_store(directory.as_uri()), texts)
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
