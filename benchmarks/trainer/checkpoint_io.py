"""Checkpoint save and restore against raw S3 put and get of the same bytes.

A GPT's full training state (weights, AdamW moments, schedule, data position, RNG) is saved
through the trainer's `Checkpoints.commit` (state object, manifest with its sha256, `latest`,
pruning) and restored through `Checkpoints.newest_valid` + `Checkpoints.load` (listing, reading
the manifest, the state's size, reading it in concurrent ranges while hashing it, `torch.load`).
The peers, with the same boto3 client and the very same bytes: one `put_object`; one
`get_object` (the goal's floor); the same ranged `get_object`s on the same number of threads
with nothing else done (the floor of a concurrent read); and boto3's own concurrent download
(`download_fileobj` into memory, same part size and concurrency). Serialisation (`torch.save`),
which the trainer does before handing the bytes to its upload thread, and the sha256 and
`torch.load` of the whole state are timed on their own too. Each figure is the median of ROUNDS
interleaved rounds. The S3 server is the rig's SeaweedFS on loopback (`make dev-cluster`). Run
from the repository root:

    .venv/bin/python -m benchmarks.trainer.checkpoint_io [LAYERSxWIDTH ...]

(default: every shape of SHAPES, 7 MB to 1 GB of state).
"""

from __future__ import annotations

import hashlib
import io
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import boto3
import torch
from boto3.s3.transfer import TransferConfig

from kubeforge.storage import S3Store
from kubeforge_trainer.checkpoint import Checkpoints
from kubeforge_trainer.gpt import GPT
from kubeforge_trainer.ranged_read import PART_BYTES, READERS
from tests.conftest import REPO_ROOT, read_env_file

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ROUNDS = 5
SHAPES = ("2x128", "4x256", "8x512", "12x768")  # GPT layers x width


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


def ranged_get(client: S3Client, bucket: str, key: str, size: int) -> list[bytes]:
    """The object as PART_BYTES ranges fetched on READERS threads, nothing else done."""

    def part(start: int) -> bytes:
        end = min(start + PART_BYTES, size) - 1
        body: bytes = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")[
            "Body"
        ].read()
        return body

    with ThreadPoolExecutor(max_workers=READERS) as pool:
        return list(pool.map(part, range(0, size, PART_BYTES)))


def measure(client: S3Client, bucket: str, layers: int, width: int) -> str:
    """One row of the table."""
    buffer = io.BytesIO()
    serialise = timed(torch.save, training_state(layers, width), buffer)
    state = buffer.getvalue()
    digest = timed(hashlib.sha256, state)
    deserialise = statistics.median(timed(torch.load, io.BytesIO(state)) for _ in range(3))
    checkpoints = Checkpoints(S3Store(bucket, f"ckpt-{width}", client), keep=2)
    raw_key = f"raw-{width}/state.pt"
    transfer = TransferConfig(
        multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=READERS
    )
    put, commit, get, ranged, download, load = [], [], [], [], [], []
    for step in range(1, ROUNDS + 1):
        put.append(timed(lambda: client.put_object(Bucket=bucket, Key=raw_key, Body=state)))
        commit.append(timed(checkpoints.commit, step, state, 1))
        get.append(timed(lambda: client.get_object(Bucket=bucket, Key=raw_key)["Body"].read()))
        ranged.append(timed(ranged_get, client, bucket, raw_key, len(state)))
        download.append(
            timed(lambda: client.download_fileobj(bucket, raw_key, io.BytesIO(), Config=transfer))
        )
        load.append(timed(restore, checkpoints))
    p, c = statistics.median(put), statistics.median(commit)
    g, rg, d = statistics.median(get), statistics.median(ranged), statistics.median(download)
    r = statistics.median(load)
    return (
        f"| GPT {layers} x {width} + AdamW | {len(state) / 1e6:,.0f} | {serialise:.2f} | "
        f"{p:.2f} | {c:.2f} | {p / c:.2f} | {g:.2f} | {rg:.2f} | {d:.2f} | {r:.2f} | "
        f"**{g / r:.2f}** | {rg / r:.2f} | {d / r:.2f} | {digest:.2f} | {deserialise:.2f} |"
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
        "| state | MB | torch.save s | raw put s | commit s | put ratio | raw get s "
        "| raw ranged get s | boto3 download_fileobj s | restore s | restore ratio vs get "
        "| vs ranged get | vs download_fileobj | sha256 alone s | torch.load alone s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    try:
        for shape in sys.argv[1:] or SHAPES:
            layers, width = (int(number) for number in shape.split("x"))
            print(measure(client, bucket, layers, width), flush=True)
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)


if __name__ == "__main__":
    main()
