"""Checkpoint save and restore against raw S3 put and get of the same bytes.

A GPT's full training state (weights, AdamW moments, schedule, data position, RNG) is saved
through the trainer's `Checkpoints.commit` (state object, manifest with its sha256, `latest`,
pruning) and restored through `Checkpoints.newest_valid` + `Checkpoints.load` (listing, reading
the manifest, reading and hashing the state, `torch.load`); the floor is one `put_object` and
one `get_object` of the very same bytes with the same boto3 client. Serialisation (`torch.save`),
which the trainer does before handing the bytes to its upload thread, is reported on its own.
The S3 server is the rig's SeaweedFS on loopback (`make dev-cluster`). Run from the repository
root:

    .venv/bin/python -m benchmarks.trainer.checkpoint_io
"""

from __future__ import annotations

import hashlib
import io
import statistics
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
import torch

from kubeforge.storage import S3Store
from kubeforge_trainer.checkpoint import Checkpoints
from kubeforge_trainer.gpt import GPT
from tests.conftest import REPO_ROOT, read_env_file

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ROUNDS = 5


def training_state(layers: int, width: int) -> dict[str, Any]:
    model = GPT(257, 1024, layers=layers, hidden_size=width, heads=width // 64)
    optimizer = torch.optim.AdamW(model.parameters())
    loss = model(torch.zeros(1, 8, dtype=torch.long)).sum()
    torch.autograd.backward(loss)
    optimizer.step()  # materialise both AdamW moments
    return {"step": 1, "model": model.state_dict(), "optimizer": optimizer.state_dict()}


def timed(action: Callable[..., object], *arguments: object) -> float:
    started = time.perf_counter()
    action(*arguments)
    return time.perf_counter() - started


def restore(checkpoints: Checkpoints) -> None:
    step = checkpoints.newest_valid()
    assert step is not None
    checkpoints.load(step)


def measure(client: S3Client, bucket: str, layers: int, width: int) -> str:
    """One row of the table."""
    buffer = io.BytesIO()
    serialise = timed(torch.save, training_state(layers, width), buffer)
    state = buffer.getvalue()
    digest = timed(hashlib.sha256, state)
    deserialise = timed(torch.load, io.BytesIO(state))
    checkpoints = Checkpoints(S3Store(bucket, f"ckpt-{width}", client), keep=2)
    raw_key = f"raw-{width}/state.pt"
    put, commit, get, load = [], [], [], []
    for step in range(1, ROUNDS + 1):
        put.append(timed(lambda: client.put_object(Bucket=bucket, Key=raw_key, Body=state)))
        commit.append(timed(checkpoints.commit, step, state, 1))
        get.append(timed(lambda: client.get_object(Bucket=bucket, Key=raw_key)["Body"].read()))
        load.append(timed(restore, checkpoints))
    p, c = statistics.median(put), statistics.median(commit)
    g, r = statistics.median(get), statistics.median(load)
    return (
        f"| GPT {layers} x {width} + AdamW | {len(state):,} | {serialise:.2f} | {p:.2f} | "
        f"{c:.2f} | {p / c:.2f} | {g:.2f} | {r:.2f} | {g / r:.2f} | {digest:.2f} | "
        f"{deserialise:.2f} |"
    )


def main() -> None:
    env = read_env_file(REPO_ROOT / ".dev-cluster" / "env")
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )
    bucket = f"kf-bench-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    print(
        "| state | bytes | torch.save s | raw put s | commit s | put ratio | raw get s "
        "| restore s | get ratio | of which sha256 s | of which torch.load s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    try:
        for layers, width in ((4, 256), (8, 512)):
            print(measure(client, bucket, layers, width), flush=True)
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)


if __name__ == "__main__":
    main()
