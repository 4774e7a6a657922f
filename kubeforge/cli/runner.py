"""`kubeforge run FILE --local`: a file's DataIngests, then its TrainingJobs, on this machine.

DataIngests run first (a TrainingJob waits for the DataIngest its `datasetRef` names, which may
also come from an earlier local run), then TrainingJobs, one resource at a time: a laptop has
few cores, and the order is the dependency order. A Ctrl-C (or SIGTERM) stops every child
cleanly (`processes`): workers commit a checkpoint and crawler shards keep their last commit, so
running the same command again resumes. At the end the report is written.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console

from kubeforge.api.dataingest import DataIngest
from kubeforge.api.trainingjob import TrainingJob
from kubeforge.cli.local_ingest import plan_ingest, run_ingest
from kubeforge.cli.local_state import PublishedDataset, StateDir
from kubeforge.cli.local_training import (
    free_port,
    is_finished,
    plan_local_training,
    resolve_dataset,
    run_training,
)
from kubeforge.cli.processes import Children
from kubeforge.cli.report import IngestResult, TrainingResult, write_report
from kubeforge.cli.resources import load_resources
from kubeforge.cli.view import RunView


def run_local(
    path: Path,
    state: StateDir,
    environ: Mapping[str, str],
    *,
    console: Console | None = None,
    kill_worker_at_step: int | None = None,
) -> Path:
    """Runs the file's resources to completion and returns the report's path.

    Raises InvalidResources before anything starts when the file is not valid; KeyboardInterrupt
    after stopping every child when interrupted.
    """
    resources = load_resources(path)
    ingests = [r for r in resources if isinstance(r, DataIngest)]
    jobs = [r for r in resources if isinstance(r, TrainingJob)]
    children = Children()
    datasets: dict[str, PublishedDataset] = {}
    ingest_results: list[IngestResult] = []
    training_results: list[TrainingResult] = []
    try:
        with RunView(console) as view:
            for ingest in ingests:
                name = ingest.metadata.name or ""
                datasets[name] = run_ingest(plan_ingest(ingest, state, environ), children, view)
                ingest_results.append(IngestResult(name, datasets[name]))
            for job in jobs:
                dataset = resolve_dataset(job, state, datasets)
                local = plan_local_training(job, state, environ, dataset, free_port())
                started = time.monotonic()
                if is_finished(local):
                    view.event(f"TrainingJob {job.metadata.name}: already succeeded")
                else:
                    run_training(local, children, view, kill_worker_at_step=kill_worker_at_step)
                    view.event(f"TrainingJob {job.metadata.name}: succeeded")
                training_results.append(TrainingResult(local, time.monotonic() - started))
    finally:
        children.stop()
    return write_report(path.stem, state.report_dir(path.stem), ingest_results, training_results)
