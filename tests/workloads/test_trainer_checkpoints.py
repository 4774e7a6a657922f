"""The trainer's checkpoints in real object storage (SeaweedFS from the rig, and a directory):
the commit order, what a resume reads and what it skips, how many are kept, checkpoints of the
previous format (torch.save, sha256), states uploaded in parts (S3 multipart uploads), and the
concurrent ranged reads a restore is made of. The trainer's processes are not needed here; the
runs in test_trainer.py resume through the same `Checkpoints`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
import xxhash

from kubeforge.storage import (
    MIN_PART_BYTES,
    MULTIPART_THRESHOLD_VARIABLE,
    PART_BYTES_VARIABLE,
    FileStore,
    ObjectNotFound,
    ObjectStore,
    S3Store,
)
from kubeforge_trainer import state_file
from kubeforge_trainer.checkpoint import Checkpoints
from kubeforge_trainer.ranged_read import PART_BYTES, read_object
from tests.torch_save_checkpoints import put_torch_save_checkpoint, torch_saved

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration


def state_bytes(step: int) -> bytes:
    return state_file.encode({"step": step, "weights": torch.full((256,), float(step))})


def committed_checkpoints(
    store: ObjectStore, steps: Iterable[int], keep: int = 3, world_size: int = 1
) -> Checkpoints:
    """`Checkpoints` over `store`, keeping `keep`, with `state_bytes(step)` committed per step."""
    checkpoints = Checkpoints(store, keep=keep)
    for step in steps:
        checkpoints.commit(step, state_bytes(step), world_size=world_size)
    return checkpoints


class RecordingStore:
    """A real store that records which calls reach it: (method, key)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.calls: list[tuple[str, str]] = []

    @property
    def uri(self) -> str:
        return self.store.uri

    def get(self, key: str) -> bytes:
        self.calls.append(("get", key))
        return self.store.get(key)

    def size(self, key: str) -> int:
        self.calls.append(("size", key))
        return self.store.size(key)

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        self.calls.append(("get_range", key))
        return self.store.get_range(key, start, stop)

    def put(self, key: str, data: bytes) -> None:
        self.calls.append(("put", key))
        self.store.put(key, data)

    def exists(self, key: str) -> bool:
        self.calls.append(("exists", key))
        return self.store.exists(key)

    def list(self, prefix: str = "") -> list[str]:
        self.calls.append(("list", prefix))
        return self.store.list(prefix)

    def delete(self, key: str) -> None:
        self.calls.append(("delete", key))
        self.store.delete(key)


def test_truncated_and_partial_checkpoints_are_skipped_with_a_warning(
    bucket: str, s3: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    store = S3Store(bucket, "jobs/a/checkpoints", s3)
    checkpoints = committed_checkpoints(store, (10, 20), world_size=2)
    record = checkpoints.commit(30, state_bytes(30), world_size=2)
    assert record.uri == f"s3://{bucket}/jobs/a/checkpoints/step-000000030"
    assert store.get("latest") == store.get("step-000000030/manifest.json")
    # The newest state is cut short (a torn copy); a newer upload died before its manifest.
    newest = store.get("step-000000030/state.kft")
    store.put("step-000000030/state.kft", newest[: len(newest) // 2])
    store.put("step-000000040/state.kft", state_bytes(40))

    with caplog.at_level(logging.WARNING):
        assert checkpoints.newest_valid() == 20
    assert "skipping checkpoint step-000000040: no manifest" in caplog.text
    assert (
        f"skipping checkpoint step-000000030: 'step-000000030/state.kft' has {len(newest) // 2} "
        f"bytes, not {len(newest)}"
    ) in caplog.text
    assert checkpoints.load(20)["step"] == 20
    with pytest.raises(ValueError, match="bytes, not"):
        checkpoints.load(30)


def test_altered_or_extended_states_are_skipped(
    bucket: str, s3: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    store = S3Store(bucket, "checkpoints", s3)
    checkpoints = committed_checkpoints(store, (1, 2, 3))
    # Step 3: one byte flipped, the size unchanged. Step 2: bytes appended after the real ones.
    altered = bytearray(store.get("step-000000003/state.kft"))
    altered[len(altered) // 2] ^= 0xFF
    store.put("step-000000003/state.kft", bytes(altered))
    committed = store.get("step-000000002/state.kft")
    store.put("step-000000002/state.kft", committed + b"tail")

    with caplog.at_level(logging.WARNING):
        assert checkpoints.newest_valid() == 1
    assert "skipping checkpoint step-000000003: state.kft has xxh3_128" in caplog.text
    assert (
        f"skipping checkpoint step-000000002: 'step-000000002/state.kft' has {len(committed) + 4} "
        f"bytes, not {len(committed)}"
    ) in caplog.text
    assert checkpoints.load(1)["step"] == 1


def test_a_state_of_several_parts_restores_exactly(bucket: str, s3: S3Client) -> None:
    weights = torch.randn(PART_BYTES // 4 * 2 + 12345, generator=torch.Generator().manual_seed(0))
    encoded = state_file.encode({"step": 7, "weights": weights, "nested": {"w": weights[:10]}})
    assert len(encoded) > 2 * PART_BYTES
    checkpoints = Checkpoints(S3Store(bucket, "big", s3), keep=1)
    checkpoints.commit(7, encoded, world_size=1)

    assert checkpoints.newest_valid() == 7
    state = checkpoints.load(7)
    assert state["step"] == 7
    assert torch.equal(state["weights"], weights)
    assert torch.equal(state["nested"]["w"], weights[:10])


def test_a_state_above_the_threshold_is_uploaded_in_parts_and_restores_exactly(
    bucket: str, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPART_THRESHOLD_VARIABLE, str(MIN_PART_BYTES))
    monkeypatch.setenv(PART_BYTES_VARIABLE, str(MIN_PART_BYTES))
    weights = torch.randn(3 * MIN_PART_BYTES // 4 + 999, generator=torch.Generator().manual_seed(1))
    encoded = state_file.encode({"step": 5, "weights": weights})
    parts = -(-len(encoded) // MIN_PART_BYTES)
    assert parts == 4
    checkpoints = Checkpoints(S3Store(bucket, "parts", s3), keep=1)  # settings from the env
    checkpoints.commit(5, encoded, world_size=1)

    state_key = "parts/step-000000005/state.kft"
    # A multipart object's ETag ends in its number of parts; the small manifest is one PUT.
    assert s3.head_object(Bucket=bucket, Key=state_key)["ETag"].strip('"').endswith(f"-{parts}")
    manifest = s3.head_object(Bucket=bucket, Key="parts/step-000000005/manifest.json")
    assert "-" not in manifest["ETag"]
    first = s3.head_object(Bucket=bucket, Key=state_key, PartNumber=1)
    assert (first["ContentLength"], first.get("PartsCount")) == (MIN_PART_BYTES, parts)
    assert checkpoints.newest_valid() == 5
    assert checkpoints.read_verified(5).buffer.numpy().tobytes() == encoded
    assert torch.equal(checkpoints.load(5)["weights"], weights)


class PartLost(Exception):
    """The injected failure of an upload's part."""


def test_a_failed_multipart_upload_is_aborted_and_leaves_the_previous_checkpoint(
    bucket: str, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPART_THRESHOLD_VARIABLE, str(MIN_PART_BYTES))
    monkeypatch.setenv(PART_BYTES_VARIABLE, str(MIN_PART_BYTES))
    checkpoints = committed_checkpoints(S3Store(bucket, "aborted", s3), (1,))
    encoded = state_file.encode({"step": 2, "weights": torch.zeros(MIN_PART_BYTES // 2)})
    sent: list[int] = []

    def lose_the_second_part(params: dict[str, Any], **_: object) -> None:
        sent.append(params["PartNumber"])
        if params["PartNumber"] == 2:
            raise PartLost("part 2 lost")

    # Registered on the real client: the other parts really reach SeaweedFS.
    s3.meta.events.register("provide-client-params.s3.UploadPart", lose_the_second_part)
    try:
        with pytest.raises(PartLost):
            checkpoints.commit(2, encoded, world_size=1)
    finally:
        s3.meta.events.unregister("provide-client-params.s3.UploadPart", lose_the_second_part)

    assert 2 in sent
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert checkpoints.store.list("step-000000002") == []
    assert checkpoints.newest_valid() == 1
    assert checkpoints.load(1)["step"] == 1


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
        read = read_object(
            store, "object", len(data), hashlib.sha256, part_bytes=part_bytes, readers=readers
        )
        assert read.buffer.numpy().tobytes() == data
        assert read.digest == hashlib.sha256(data).hexdigest()
    read = read_object(store, "object", len(data), xxhash.xxh3_128, part_bytes=4_096)
    assert read.digest == xxhash.xxh3_128_hexdigest(data)
    with pytest.raises(ValueError, match="ends before byte"):
        read_object(store, "object", len(data) + 1, hashlib.sha256, part_bytes=1_000)
    with pytest.raises(ValueError, match="'object' has 10000 bytes, not 9999"):
        read_object(store, "object", len(data) - 1, hashlib.sha256, part_bytes=1_000)
    with pytest.raises(ObjectNotFound):
        read_object(store, "missing", 10, hashlib.sha256, part_bytes=1_000)
    # An object of one part is read with one GET; its length is the size check.
    with pytest.raises(ValueError, match="'object' has 10000 bytes, not 10001"):
        read_object(store, "object", len(data) + 1, hashlib.sha256)
    with pytest.raises(ValueError, match="'object' has 10000 bytes, not 9999"):
        read_object(store, "object", len(data) - 1, hashlib.sha256)
    with pytest.raises(ObjectNotFound):
        read_object(store, "missing", 10, hashlib.sha256)


def test_a_restore_reads_latest_then_only_the_state(bucket: str, s3: S3Client) -> None:
    committed_checkpoints(S3Store(bucket, "checkpoints", s3), (1, 2, 3))
    store = RecordingStore(S3Store(bucket, "checkpoints", s3))
    checkpoints = Checkpoints(store, keep=3)

    assert checkpoints.newest_valid() == 3
    assert checkpoints.load(3)["step"] == 3
    # No listing and no manifest: `latest` carries the manifest, and the state's parts follow.
    assert store.calls == [("get", "latest"), ("get", "step-000000003/state.kft")]
    # Another rank, told the step, reads the manifest and the state.
    store.calls.clear()
    assert checkpoints.load(2)["step"] == 2
    assert store.calls[0] == ("get", "step-000000002/manifest.json")


def test_without_a_usable_latest_the_newest_checkpoint_is_found(
    bucket: str, s3: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    store = S3Store(bucket, "checkpoints", s3)
    checkpoints = committed_checkpoints(store, (1, 2, 3))
    store.delete("latest")
    with caplog.at_level(logging.WARNING):
        assert checkpoints.newest_valid() == 3
    assert caplog.text == ""
    assert checkpoints.load(3)["step"] == 3

    store.put("latest", b"step-000000002")  # what kubeforge wrote before latest held a manifest
    with caplog.at_level(logging.WARNING):
        assert checkpoints.newest_valid() == 3
    assert "latest is not a manifest" in caplog.text
    assert checkpoints.load(3)["step"] == 3


def test_checkpoints_of_the_torch_save_format_still_load(
    bucket: str, s3: S3Client, caplog: pytest.LogCaptureFixture
) -> None:
    store = S3Store(bucket, "checkpoints", s3)
    weights = torch.randn(1000, generator=torch.Generator().manual_seed(3))
    step_5 = torch_saved({"step": 5, "weights": weights, "betas": (0.9, 0.95)})
    put_torch_save_checkpoint(store, 5, step_5, world_size=2)
    data = torch_saved({"step": 6, "weights": weights})
    put_torch_save_checkpoint(store, 6, data, world_size=2)
    store.put("step-000000006/state.pt", data[:-1] + bytes([data[-1] ^ 1]))
    checkpoints = Checkpoints(store, keep=2)

    with caplog.at_level(logging.WARNING):
        assert checkpoints.newest_valid() == 5
    assert "skipping checkpoint step-000000006: state.pt has sha256" in caplog.text
    state = checkpoints.load(5)
    assert state["betas"] == (0.9, 0.95)
    assert torch.equal(state["weights"], weights)

    # Training goes on in the current format; the old checkpoints age out as usual.
    checkpoints.commit(7, state_bytes(7), world_size=1)
    checkpoints.commit(8, state_bytes(8), world_size=1)
    assert checkpoints.newest_valid() == 8
    assert checkpoints.steps() == [8, 7]


def test_only_the_newest_checkpoints_are_kept(bucket: str, s3: S3Client) -> None:
    store = S3Store(bucket, "checkpoints", s3)
    checkpoints = committed_checkpoints(store, range(1, 6), keep=2)
    assert checkpoints.steps() == [5, 4]
    assert store.list() == [
        "latest",
        "step-000000004/manifest.json",
        "step-000000004/state.kft",
        "step-000000005/manifest.json",
        "step-000000005/state.kft",
    ]
    # An upload that died before its manifest, then two more commits: the partial one goes too.
    store.put("step-000000006/state.kft", state_bytes(6))
    checkpoints.commit(7, state_bytes(7), world_size=1)
    assert checkpoints.steps() == [7, 5]
    checkpoints.commit(8, state_bytes(8), world_size=1)
    assert checkpoints.steps() == [8, 7]
