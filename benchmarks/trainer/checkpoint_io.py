"""Checkpoint save and restore against raw S3 put and get of the same bytes.

A GPT's full training state (weights, AdamW moments, schedule, data position, RNG) is encoded by the
trainer's `state_file`, saved through `Checkpoints.commit` (state object, a multipart upload of 64
MiB parts from 64 MiB up as `S3Store` writes it, manifest with its xxh3-128, `latest` carrying the
manifest, pruning) and restored through `Checkpoints.newest_valid` + `Checkpoints.load` (`latest`,
the state in concurrent ranged GETs hashed as they arrive, its size alongside, decoding into views).
The peers, with the same boto3 client and the very same bytes: one `put_object` (which S3 refuses
above 5 GB); one `get_object` (the goal's floor); the same ranged `get_object`s on the same number
of threads with nothing else done (the floor of a concurrent read); and boto3's own concurrent
download (`download_fileobj` into memory, same part size and concurrency). Side by side in the same
rounds: the same state as a checkpoint of the previous format (`torch.save`, sha256), restored by
the same `Checkpoints` (its `torch.load(weights_only=True)` path).
Encoding and `torch.save`, the xxh3-128 and sha256 of the state, and decoding and `torch.load`
are timed on their own too. Each figure is the median of ROUNDS interleaved rounds. The S3
server is the rig's SeaweedFS on loopback (`make dev-cluster`). Run from the repository root:

    .venv/bin/python -m benchmarks.trainer.checkpoint_io [LAYERSxWIDTH ...]

(default: every shape of SHAPES, 7 MB to 1 GB of state).
"""

from __future__ import annotations

import hashlib
import io
import logging
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import boto3
import torch
import xxhash
from boto3.s3.transfer import TransferConfig
from torch.optim.lr_scheduler import LambdaLR

from kubeforge.storage import S3Store
from kubeforge_trainer import state_file
from kubeforge_trainer.checkpoint import Checkpoints
from kubeforge_trainer.gpt import GPT
from kubeforge_trainer.ranged_read import PART_BYTES, READERS
from kubeforge_trainer.schedule import warmup_cosine
from tests.conftest import REPO_ROOT, read_env_file
from tests.torch_save_checkpoints import put_torch_save_checkpoint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ROUNDS = 5
SHAPES = ("2x128", "4x256", "8x512", "12x768")  # GPT layers x width


def training_state(layers: int, width: int) -> dict[str, Any]:
    """What the trainer saves (`Trainer.state_dict`), for a GPT of this shape on one rank."""
    model = GPT(257, 1024, layers=layers, hidden_size=width, heads=width // 64)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = LambdaLR(optimizer, warmup_cosine(10, 1000))
    loss = model(torch.zeros(1, 8, dtype=torch.long)).sum()
    torch.autograd.backward(loss)
    optimizer.step()  # materialise both AdamW moments
    scheduler.step()
    return {
        "step": 1,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "data": {"consumed": 64, "seed": 0, "num_samples": 100_000, "fingerprint": "bench"},
        "progress": {"history": [{"step": 1, "loss": 5.5, "samplesPerSecond": 100.0}]},
        "rng": [{"cpu": torch.get_rng_state()}],
    }


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


def as_buffer(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def measure(client: S3Client, bucket: str, layers: int, width: int) -> tuple[str, str]:
    """One row of each table: checkpoint vs raw S3; the format's parts vs torch.save's."""
    state = training_state(layers, width)
    encode = statistics.median(timed(state_file.encode, state) for _ in range(3))
    buffer = io.BytesIO()
    torch_save = timed(torch.save, state, buffer)
    pickled = buffer.getvalue()
    encoded = state_file.encode(state)
    xxh3 = statistics.median(timed(xxhash.xxh3_128_hexdigest, encoded) for _ in range(3))
    sha256 = statistics.median(timed(hashlib.sha256, pickled) for _ in range(3))
    decode = statistics.median(timed(state_file.decode, as_buffer(encoded)) for _ in range(3))
    torch_load = statistics.median(
        timed(lambda: torch.load(io.BytesIO(pickled), weights_only=True)) for _ in range(3)
    )
    del state, buffer

    checkpoints = Checkpoints(S3Store(bucket, f"ckpt-{width}", client), keep=2)
    old_format = S3Store(bucket, f"torch-save-{width}", client)
    put_torch_save_checkpoint(old_format, 1, pickled)
    previous = Checkpoints(old_format, keep=2)
    raw_key = f"raw-{width}/state.kft"
    transfer = TransferConfig(
        multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=READERS
    )
    put, commit, get, ranged, download, load, load_previous = [], [], [], [], [], [], []
    for step in range(1, ROUNDS + 1):
        put.append(timed(lambda: client.put_object(Bucket=bucket, Key=raw_key, Body=encoded)))
        commit.append(timed(checkpoints.commit, step, encoded, 1))
        get.append(timed(lambda: client.get_object(Bucket=bucket, Key=raw_key)["Body"].read()))
        ranged.append(timed(ranged_get, client, bucket, raw_key, len(encoded)))
        download.append(
            timed(lambda: client.download_fileobj(bucket, raw_key, io.BytesIO(), Config=transfer))
        )
        load.append(timed(restore, checkpoints))
        load_previous.append(timed(restore, previous))
    p, c = statistics.median(put), statistics.median(commit)
    g, rg, d = statistics.median(get), statistics.median(ranged), statistics.median(download)
    r, rp = statistics.median(load), statistics.median(load_previous)
    name = f"GPT {layers} x {width} + AdamW"
    transfer_row = (
        f"| {name} | {len(encoded) / 1e6:,.0f} | {p:.2f} | {c:.2f} | {p / c:.2f} | {g:.2f} | "
        f"{rg:.2f} | {d:.2f} | {r:.2f} | **{g / r:.2f}** | {rg / r:.2f} | {d / r:.2f} | "
        f"{rp:.2f} | {g / rp:.2f} |"
    )
    parts_row = (
        f"| {name} | {len(encoded) / 1e6:,.0f} | {len(pickled) / 1e6:,.0f} | {encode:.3f} | "
        f"{torch_save:.3f} | {xxh3:.3f} | {sha256:.3f} | {decode:.4f} | {torch_load:.4f} |"
    )
    return transfer_row, parts_row


def main() -> None:
    env = read_env_file(REPO_ROOT / ".dev-cluster" / "env")
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )
    # The previous format's `latest` is not a manifest: its restore warns about it every round.
    logging.getLogger("kubeforge_trainer.checkpoint").setLevel(logging.ERROR)
    bucket = f"kf-bench-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    rows = []
    print(
        "| state | MB | raw put s | commit s | put ratio | raw get s | raw ranged get s "
        "| boto3 download_fileobj s | restore s | restore ratio vs get | vs ranged get "
        "| vs download_fileobj | torch.save checkpoint restore s | its ratio vs get |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    try:
        for shape in sys.argv[1:] or SHAPES:
            layers, width = (int(number) for number in shape.split("x"))
            transfer_row, parts_row = measure(client, bucket, layers, width)
            print(transfer_row, flush=True)
            rows.append(parts_row)
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
    print()
    print(
        "| state | MB | torch.save MB | encode s | torch.save s | xxh3_128 s | sha256 s "
        "| decode s | torch.load s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
