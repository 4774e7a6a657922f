"""The trainer's checkpoints in real object storage (SeaweedFS from the rig, and a directory):
the commit order, what a resume skips, how many are kept, and the concurrent ranged reads a
restore is made of. The trainer's processes are not needed here; the runs in test_trainer.py
resume through the same `Checkpoints`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from kubeforge.storage import FileStore, ObjectNotFound, ObjectStore, S3Store
from kubeforge_trainer.checkpoint import Checkpoints
from kubeforge_trainer.ranged_read import PART_BYTES, PartsFile, read_parts

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration


def state_bytes(step: int) -> bytes:
    buffer = io.BytesIO()
    torch.save({"step": step, "weights": torch.full((256,), float(step))}, buffer)
    return buffer.getvalue()


def test_truncated_and_partial_checkpoints_are_skipped_with_a_warning(
    bucket: str, s3: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    store = S3Store(bucket, "jobs/a/checkpoints", s3)
    checkpoints = Checkpoints(store, keep=3)
    for step in (10, 20, 30):
        record = checkpoints.commit(step, state_bytes(step), world_size=2)
    assert record.uri == f"s3://{bucket}/jobs/a/checkpoints/step-000000030"
    assert store.get("latest") == b"step-000000030"
    # The newest state is cut short (a torn copy); a newer upload died before its manifest.
    newest = store.get("step-000000030/state.pt")
    store.put("step-000000030/state.pt", newest[: len(newest) // 2])
    store.put("step-000000040/state.pt", state_bytes(40))

    with caplog.at_level(logging.WARNING):
        assert checkpoints.newest_valid() == 20
    assert "skipping checkpoint step-000000040: no manifest" in caplog.text
    assert (
        "skipping checkpoint step-000000030: 'step-000000030/state.pt' ends before" in caplog.text
    )
    assert checkpoints.load(20)["step"] == 20
    with pytest.raises(ValueError, match="ends before byte"):
        checkpoints.load(30)


def test_altered_or_extended_states_are_skipped(
    bucket: str, s3: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    store = S3Store(bucket, "checkpoints", s3)
    checkpoints = Checkpoints(store, keep=3)
    for step in (1, 2, 3):
        checkpoints.commit(step, state_bytes(step), world_size=1)
    # Step 3: one byte flipped, the size unchanged. Step 2: bytes appended after the real ones.
    altered = bytearray(store.get("step-000000003/state.pt"))
    altered[len(altered) // 2] ^= 0xFF
    store.put("step-000000003/state.pt", bytes(altered))
    committed = store.get("step-000000002/state.pt")
    store.put("step-000000002/state.pt", committed + b"tail")

    with caplog.at_level(logging.WARNING):
        assert checkpoints.newest_valid() == 1
    assert "skipping checkpoint step-000000003: state.pt has sha256" in caplog.text
    assert (
        f"skipping checkpoint step-000000002: 'step-000000002/state.pt' has {len(committed) + 4} "
        f"bytes, not {len(committed)}"
    ) in caplog.text
    assert checkpoints.load(1)["step"] == 1


def test_a_state_of_several_parts_restores_exactly(bucket: str, s3: S3Client) -> None:
    weights = torch.randn(PART_BYTES // 4 * 2 + 12345, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    torch.save({"step": 7, "weights": weights, "nested": {"w": weights[:10].clone()}}, buffer)
    assert len(buffer.getvalue()) > 2 * PART_BYTES
    checkpoints = Checkpoints(S3Store(bucket, "big", s3), keep=1)
    checkpoints.commit(7, buffer.getvalue(), world_size=1)

    assert checkpoints.newest_valid() == 7
    state = checkpoints.load(7)
    assert state["step"] == 7
    assert torch.equal(state["weights"], weights)
    assert torch.equal(state["nested"]["w"], weights[:10])


@pytest.fixture(params=["s3", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "file":
        return FileStore(tmp_path)
    bucket: str = request.getfixturevalue("bucket")
    s3: S3Client = request.getfixturevalue("s3")
    return S3Store(bucket, "ranges", s3)


def test_objects_read_in_ranges(store: ObjectStore) -> None:
    data = os.urandom(10_000)
    store.put("object", data)
    assert store.size("object") == len(data)
    assert store.get_range("object", 0, 10_000) == data
    assert store.get_range("object", 1234, 5678) == data[1234:5678]
    assert store.get_range("object", 500, 500) == b""
    with pytest.raises(ValueError, match="ends before byte 10001"):
        store.get_range("object", 9_000, 10_001)
    with pytest.raises(ValueError, match="ends before byte"):
        store.get_range("object", 10_000, 10_010)
    with pytest.raises(ObjectNotFound):
        store.size("missing")
    with pytest.raises(ObjectNotFound):
        store.get_range("missing", 0, 1)

    for part_bytes, readers in ((1_000, 3), (3_333, 8), (20_000, 2)):
        parts = read_parts(store, "object", len(data), part_bytes=part_bytes, readers=readers)
        assert b"".join(parts.parts) == data
        assert parts.sha256 == hashlib.sha256(data).hexdigest()
    with pytest.raises(ValueError, match="ends before byte"):
        read_parts(store, "object", len(data) + 1, part_bytes=1_000)
    with pytest.raises(ValueError, match="'object' has 10000 bytes, not 9999"):
        read_parts(store, "object", len(data) - 1, part_bytes=1_000)
    with pytest.raises(ObjectNotFound):
        read_parts(store, "missing", 10, part_bytes=1_000)


def test_parts_read_as_one_file() -> None:
    data = os.urandom(5_000)
    parts = [data[:1], data[1:1000], b"", data[1000:4321], data[4321:]]
    file, reference = PartsFile(parts), io.BytesIO(data)
    for offset, whence, length in (
        (0, io.SEEK_SET, 10),
        (995, io.SEEK_SET, 2000),
        (-7, io.SEEK_END, 100),
        (-3000, io.SEEK_CUR, 4000),
        (5_000, io.SEEK_SET, 1),
    ):
        assert file.seek(offset, whence) == reference.seek(offset, whence)
        assert file.read(length) == reference.read(length)
        assert file.tell() == reference.tell()
    file.seek(0)
    assert file.read() == data


def test_only_the_newest_checkpoints_are_kept(bucket: str, s3: S3Client) -> None:
    store = S3Store(bucket, "checkpoints", s3)
    checkpoints = Checkpoints(store, keep=2)
    for step in range(1, 6):
        checkpoints.commit(step, state_bytes(step), world_size=1)
    assert checkpoints.steps() == [5, 4]
    assert store.list() == [
        "latest",
        "step-000000004/manifest.json",
        "step-000000004/state.pt",
        "step-000000005/manifest.json",
        "step-000000005/state.pt",
    ]
