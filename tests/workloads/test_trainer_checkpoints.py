"""The trainer's checkpoints in real object storage (SeaweedFS from the rig): the commit order,
what a resume skips, and how many are kept. The trainer's processes are not needed here; the
runs in test_trainer.py resume through the same `Checkpoints`.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

import pytest
import torch

from kubeforge.storage import S3Store
from kubeforge_trainer.checkpoint import Checkpoints

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
    assert "skipping checkpoint step-000000030: state.pt has" in caplog.text
    assert checkpoints.load(20)["step"] == 20
    with pytest.raises(ValueError, match="do not match its manifest"):
        checkpoints.load(30)


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
