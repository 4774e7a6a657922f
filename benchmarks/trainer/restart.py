"""Seconds from a worker kill to the first step after resume, under torchrun on the CPU.

A TrainingJob of 2 agents x 1 process (as pods run it: the command `plan_training` builds, its
rendezvous store on loopback) trains the MLP with checkpoints every 25 steps to the rig's S3
store. Once step 60 is logged, the worker of the second agent is SIGKILLed; both agents end
(they restart no workers: the operator owns restarts), and new agents start at once, as
replaced pods would on nodes that have the image. The figure is the time from the kill to the
first step the new group finishes (its consumed-sample log time), which covers failure
detection, the agents' exit and start, re-rendezvous, process start (importing torch),
checkpoint download and load. Also reported: the steps redone (trained since the last
checkpoint, lost with the worker). Run from the repository root, with the rig up
(`make dev-cluster`):

    .venv/bin/python -m benchmarks.trainer.restart
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import boto3

from tests.conftest import local_rig
from tests.polling import wait_for
from tests.workloads.trainer_runs import Launch, highest_logged_step, training_job

ROUNDS = 3
KILL_AT_STEP = 60


def one_restart(workdir: Path, bucket: str, name: str) -> tuple[float, int]:
    spec = {
        "trainer": {
            "model": {"architecture": "mlp"},
            "optimizer": {"name": "adam", "learningRate": 0.001},
            "batch": {"globalSize": 64, "microSize": 16},
            "steps": 2000,
        },
        "checkpoint": {"uri": f"s3://{bucket}/{name}", "intervalSteps": 25},
    }
    job = training_job(name, 2, spec)
    launch = Launch(job, workdir, local_rig())
    try:
        launch.start()
        wait_for(lambda: highest_logged_step(launch.sample_log) >= KILL_AT_STEP, "step 60", 300)
        killed_at = time.time()
        os.kill(launch.workers(1)[0], signal.SIGKILL)
        launch.wait()  # the agents do not restart workers: the group ends, as its pods would
        launch.start()  # replaced, as the Job controller replaces the pods; the store stays up
        wait_for(lambda: len(_generations(launch.sample_log)) > 1, "a step after the kill", 300)
    finally:
        launch.kill()
    before, after = _generations(launch.sample_log)[-2:]
    first = min(after, key=lambda line: line["time"])
    redone = max(line["step"] for line in before) - (first["step"] - 1)
    return first["time"] - killed_at, int(redone)


def _generations(directory: Path) -> list[list[dict[str, float]]]:
    """The consumed-sample log's lines, grouped by generation of the group, oldest first."""
    lines = [
        json.loads(line)
        for path in directory.glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    generations = sorted({line["generation"] for line in lines})
    return [[line for line in lines if line["generation"] == g] for g in generations]


def main() -> None:
    rig = local_rig()
    client = boto3.client(
        "s3",
        endpoint_url=rig.s3_endpoint,
        aws_access_key_id=rig.s3_access_key,
        aws_secret_access_key=rig.s3_secret_key,
        region_name=rig.s3_region,
    )
    bucket = f"kf-bench-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    seconds, redone = [], []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for round_ in range(ROUNDS):
                workdir = Path(scratch) / f"round-{round_}"
                workdir.mkdir()
                took, lost = one_restart(workdir, bucket, f"restart-{round_}")
                seconds.append(took)
                redone.append(lost)
                print(f"round {round_}: {took:.1f} s from kill to first step, {lost} steps redone")
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
    median, low, high = statistics.median(seconds), min(seconds), max(seconds)
    print(f"median {median:.1f} s (min {low:.1f}, max {high:.1f})")


if __name__ == "__main__":
    main()
