"""Checkpoints in object storage: committed atomically, kept K deep, resumed from the newest that
verifies.

Layout under the checkpoint URI (`s3://` or `file://`, through `kubeforge.storage`):

    step-000000120/state.kft       the training state, written first (`state_file`)
    step-000000120/manifest.json   then its size and xxh3-128 digest, the step, torch version,
                                   world size: its presence makes the checkpoint complete
    latest                         last, a copy of the newest checkpoint's manifest

A restore reads `latest` and starts reading the state it names at once: two sequential round
trips (the pointer, then the state's parts in parallel). The state is read with concurrent
ranged GETs, hashed while its parts arrive (`ranged_read`) and, only once the digest matches,
decoded into views of the downloaded buffer. When `latest` is missing, is not a manifest (an older
kubeforge wrote it) or names a checkpoint that does not verify, the restore lists the step
directories and takes the newest complete one that verifies. A partial checkpoint (no manifest)
or a corrupt one (truncated, extended, altered) is skipped with a warning and never decoded.
Older checkpoints beyond `keep` are removed after a commit, manifest first, so a half-removed
checkpoint is a partial one.

The digest guards against torn, partial and corrupted objects, not against someone who can write
to the bucket (they could rewrite the manifest too), so it is a fast non-cryptographic hash.
Checkpoints written before this format (`state.pt` by `torch.save`, with a sha256) still load,
verified by their sha256 and read with `torch.load(weights_only=True)`.

Only rank 0 writes. `CheckpointWriter` encodes the state in the training thread (a consistent
snapshot) and uploads it in a background thread, so training waits for storage only when the
previous upload is still running or the save must finish (SIGTERM, the end).
"""

from __future__ import annotations

import builtins
import hashlib
import io
import logging
import re
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import torch
import xxhash
from pydantic import AwareDatetime, BaseModel, ValidationError

from kubeforge.api.trainingjob import CheckpointRecord
from kubeforge.storage import ObjectNotFound, ObjectStore
from kubeforge_trainer import state_file
from kubeforge_trainer.ranged_read import Hash, read_object

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LATEST = "latest"
STEP_DIRECTORY = re.compile(r"^step-(\d{9})/")


class StateFormat(StrEnum):
    STATE_FILE = "kubeforge-state-1"  # `state_file`, digest xxh3_128
    SHARDED = "kubeforge-sharded-1"  # `sharded_checkpoint`: state.kft and DCP shards
    TORCH_SAVE = "torch.save"  # written before kubeforge-state-1, digest sha256; read only


STATE_FILES = {
    StateFormat.STATE_FILE: "state.kft",
    StateFormat.SHARDED: "state.kft",
    StateFormat.TORCH_SAVE: "state.pt",
}
STATE = STATE_FILES[StateFormat.STATE_FILE]


def step_directory(step: int) -> str:
    return f"step-{step:09d}"


class FileDigest(BaseModel):
    bytes: int
    xxh3_128: str | None = None
    sha256: str | None = None  # checkpoints in the torch.save format

    @classmethod
    def of(cls, data: builtins.bytes) -> FileDigest:
        return cls(bytes=len(data), xxh3_128=xxhash.xxh3_128_hexdigest(data))

    def expected(self) -> tuple[str, Callable[[], Hash], str]:
        """The hash's name, a constructor of it, and the digest the file must have."""
        if self.xxh3_128 is not None:
            return "xxh3_128", xxhash.xxh3_128, self.xxh3_128
        if self.sha256 is not None:
            return "sha256", hashlib.sha256, self.sha256
        raise ValueError("its manifest gives the state no digest")


class CheckpointManifest(BaseModel):
    """What a checkpoint holds; its presence makes the checkpoint complete."""

    step: int
    files: dict[str, FileDigest]
    # Manifests written before the format was named hold torch.save states.
    state_format: StateFormat = StateFormat.TORCH_SAVE
    torch_version: str
    world_size: int
    created_at: AwareDatetime


@dataclass(frozen=True)
class VerifiedState:
    """A checkpoint's state as read and verified, not yet decoded."""

    step: int
    state_format: StateFormat
    buffer: torch.Tensor  # 1-D uint8, on the CPU
    files: dict[str, FileDigest]
    """Every file of the checkpoint, as its manifest lists them."""


def decode_state(state_format: StateFormat, buffer: torch.Tensor) -> dict[str, Any]:
    """The state held in `buffer` (a verified state's bytes). In the current format its tensors
    are views of the buffer, on the CPU."""
    if state_format != StateFormat.TORCH_SAVE:
        state = state_file.decode(buffer)
    else:
        state = torch.load(
            io.BytesIO(buffer.numpy().tobytes()), map_location="cpu", weights_only=True
        )
    if not isinstance(state, dict):
        raise ValueError(f"the state is a {type(state).__name__}, not a dict")
    return state


class Checkpoints:
    """The checkpoints under one object-storage location."""

    def __init__(self, store: ObjectStore, keep: int) -> None:
        self.store = store
        self.keep = keep
        self._verified: VerifiedState | None = None  # what newest_valid read, for read_verified

    def commit(self, step: int, state: bytes, world_size: int) -> CheckpointRecord:
        """Writes a checkpoint of `state` (as `state_file.encode` gives it): state, manifest,
        `latest`; then drops those beyond `keep`."""
        self.store.put(f"{step_directory(step)}/{STATE}", state)
        return self.commit_written(
            step, {STATE: FileDigest.of(state)}, StateFormat.STATE_FILE, world_size
        )

    def commit_written(
        self,
        step: int,
        files: dict[str, FileDigest],
        state_format: StateFormat,
        world_size: int,
    ) -> CheckpointRecord:
        """Commits the files already written under the step's directory (named relative to it):
        manifest, `latest`; then drops those beyond `keep`."""
        directory = step_directory(step)
        manifest = CheckpointManifest(
            step=step,
            files=files,
            state_format=state_format,
            torch_version=torch.__version__,
            world_size=world_size,
            created_at=datetime.now(UTC),
        )
        encoded = manifest.model_dump_json(indent=2).encode()
        self.store.put(f"{directory}/{MANIFEST}", encoded)
        self.store.put(LATEST, encoded)
        self._prune(step)
        return CheckpointRecord(
            step=step, uri=f"{self.store.uri}/{directory}", time=manifest.created_at
        )

    def steps(self) -> list[int]:
        """Steps that have a checkpoint directory, complete or not, newest first."""
        found = {
            int(m.group(1)) for key in self.store.list("step-") if (m := STEP_DIRECTORY.match(key))
        }
        return sorted(found, reverse=True)

    def newest_valid(self, failed: Collection[int] = ()) -> int | None:
        """The step of the checkpoint to resume from: the one `latest` names if it verifies,
        else the newest that does, but none of the steps that `failed` to load; warns about each
        one skipped."""
        latest = self._latest()
        if latest is not None and latest.step not in failed:
            try:
                self._verified = self._verified_state(latest)
                return latest.step
            except (ObjectNotFound, ValueError) as problem:
                log.warning("skipping checkpoint %s: %s", step_directory(latest.step), problem)
        for step in self.steps():
            if step in failed or (latest is not None and step == latest.step):
                continue
            try:
                self._verified = self._verified_state(self._manifest(step))
            except (ObjectNotFound, ValueError) as problem:
                log.warning("skipping checkpoint %s: %s", step_directory(step), problem)
                continue
            return step
        return None

    def read_verified(self, step: int) -> VerifiedState:
        """The bytes of the state saved at `step`, verified (once: newest_valid's read is
        reused)."""
        verified = self._verified
        self._verified = None
        if verified is None or verified.step != step:
            verified = self._verified_state(self._manifest(step))
        return verified

    def load(self, step: int) -> dict[str, Any]:
        """The state saved at `step`, after verifying it. Its tensors are on the CPU; in the
        current format they are views of one buffer."""
        verified = self.read_verified(step)
        return decode_state(verified.state_format, verified.buffer)

    def _latest(self) -> CheckpointManifest | None:
        try:
            pointer = self.store.get(LATEST)
        except ObjectNotFound:
            return None
        try:
            return CheckpointManifest.model_validate_json(pointer)
        except ValidationError:
            log.warning(
                "%s is not a manifest (an older kubeforge wrote it, or it is damaged): "
                "looking for the newest checkpoint instead",
                LATEST,
            )
            return None

    def _manifest(self, step: int) -> CheckpointManifest:
        try:
            manifest = CheckpointManifest.model_validate_json(self.store.get(_manifest_key(step)))
        except ObjectNotFound:
            raise ValueError("no manifest: the checkpoint was never committed") from None
        except ValidationError as error:
            raise ValueError(f"its manifest is malformed: {error}") from None
        if manifest.step != step:
            raise ValueError(f"its manifest is that of step {manifest.step}")
        return manifest

    def _verified_state(self, manifest: CheckpointManifest) -> VerifiedState:
        name = STATE_FILES[manifest.state_format]
        if name not in manifest.files:
            raise ValueError(f"its manifest lists no {name}")
        buffer = read_verified_file(self.store, manifest.step, name, manifest.files[name])
        return VerifiedState(manifest.step, manifest.state_format, buffer, manifest.files)

    def _prune(self, newest: int) -> None:
        """Removes the complete checkpoints beyond `keep` and the partial ones older than the
        newest kept, from one listing."""
        keys: dict[int, list[str]] = {}
        for key in self.store.list("step-"):
            if match := STEP_DIRECTORY.match(key):
                keys.setdefault(int(match.group(1)), []).append(key)
        committed = sorted(
            (step for step, found in keys.items() if _manifest_key(step) in found), reverse=True
        )
        kept = set(committed[: self.keep])
        for step, found in keys.items():
            if step in kept or step > newest:
                continue
            manifest = _manifest_key(step)
            if manifest in found:
                self.store.delete(manifest)  # first: from here on it is a partial checkpoint
            for key in found:
                if key != manifest:
                    self.store.delete(key)


def read_verified_file(
    store: ObjectStore, step: int, name: str, expected: FileDigest
) -> torch.Tensor:
    """The bytes of the checkpoint's file `name` (1-D uint8); raises ValueError unless they are
    those its manifest describes."""
    hash_name, new_hash, digest = expected.expected()
    data = read_object(store, f"{step_directory(step)}/{name}", expected.bytes, new_hash)
    if data.digest != digest:
        raise ValueError(
            f"{name} has {hash_name} {data.digest}, its manifest {digest}: its bytes were altered"
        )
    return data.buffer


def _manifest_key(step: int) -> str:
    return f"{step_directory(step)}/{MANIFEST}"


class CheckpointWriter:
    """Saves checkpoints from the training loop, uploading in the background (rank 0 only)."""

    def __init__(self, checkpoints: Checkpoints, world_size: int) -> None:
        self.checkpoints = checkpoints
        self.world_size = world_size
        self.blocked_seconds = 0.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._in_flight: Future[CheckpointRecord] | None = None
        self._committed: list[CheckpointRecord] = []

    def save(self, step: int, state: dict[str, Any], *, wait: bool) -> None:
        """Snapshots the state and commits it; `wait` returns only once it is committed."""
        started = time.monotonic()
        self._finish(raise_errors=False)
        encoded = state_file.encode(state)
        self._in_flight = self._executor.submit(
            self.checkpoints.commit, step, encoded, self.world_size
        )
        if wait:
            self._finish(raise_errors=True)
        self.blocked_seconds += time.monotonic() - started

    def committed(self) -> list[CheckpointRecord]:
        """The checkpoints committed since the last call."""
        if self._in_flight is not None and self._in_flight.done():
            self._finish(raise_errors=False)
        records, self._committed = self._committed, []
        return records

    def close(self) -> None:
        self._finish(raise_errors=False)
        self._executor.shutdown()

    def _finish(self, *, raise_errors: bool) -> None:
        if self._in_flight is None:
            return
        future, self._in_flight = self._in_flight, None
        try:
            self._committed.append(future.result())
        except Exception:
            if raise_errors:
                raise
            # The next checkpoint tries again; until then a restart resumes from an older one.
            log.exception("a checkpoint upload failed")
