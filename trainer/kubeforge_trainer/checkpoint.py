"""Checkpoints in object storage: committed atomically, kept K deep, resumed from the newest that
verifies.

Layout under the checkpoint URI (`s3://` or `file://`, through `kubeforge.storage`):

    step-000000120/state.pt        the training state, written first (torch.save)
    step-000000120/manifest.json   then its size and sha256, the step, torch version, world size
    latest                         last, the directory of the newest committed checkpoint

A checkpoint exists once its manifest does. On start, the newest checkpoint whose files match
their manifest is loaded; a partial one (no manifest) or a corrupt one (truncated, altered) is
skipped with a warning and never loaded. The state is read with concurrent ranged GETs, hashed
while its parts arrive and deserialised from those parts (`ranged_read`). Older checkpoints
beyond `keep` are removed after a commit, manifest first, so a half-removed checkpoint is a
partial one.

Only rank 0 writes. `CheckpointWriter` serialises the state in the training thread (a
consistent snapshot) and uploads it in a background thread, so training waits for storage only
when the previous upload is still running or the save must finish (SIGTERM, the end).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import torch
from pydantic import AwareDatetime, BaseModel

from kubeforge.api.trainingjob import CheckpointRecord
from kubeforge.storage import ObjectNotFound, ObjectStore
from kubeforge_trainer.ranged_read import ObjectParts, read_parts

log = logging.getLogger(__name__)

STATE = "state.pt"
MANIFEST = "manifest.json"
LATEST = "latest"
STEP_DIRECTORY = re.compile(r"^step-(\d{9})/")


def step_directory(step: int) -> str:
    return f"step-{step:09d}"


class FileDigest(BaseModel):
    bytes: int
    sha256: str


class CheckpointManifest(BaseModel):
    """What a committed checkpoint holds; its presence commits the checkpoint."""

    step: int
    files: dict[str, FileDigest]
    torch_version: str
    world_size: int
    created_at: AwareDatetime


def _digest(data: bytes) -> FileDigest:
    return FileDigest(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


class Checkpoints:
    """The checkpoints under one object-storage location."""

    def __init__(self, store: ObjectStore, keep: int) -> None:
        self.store = store
        self.keep = keep
        self._verified: tuple[int, ObjectParts] | None = None  # what newest_valid read, for load

    def commit(self, step: int, state: bytes, world_size: int) -> CheckpointRecord:
        """Writes a checkpoint: state, manifest, `latest`; then drops those beyond `keep`."""
        directory = step_directory(step)
        self.store.put(f"{directory}/{STATE}", state)
        manifest = CheckpointManifest(
            step=step,
            files={STATE: _digest(state)},
            torch_version=torch.__version__,
            world_size=world_size,
            created_at=datetime.now(UTC),
        )
        self.store.put(f"{directory}/{MANIFEST}", manifest.model_dump_json(indent=2).encode())
        self.store.put(LATEST, directory.encode())
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

    def newest_valid(self) -> int | None:
        """The step of the newest checkpoint that verifies, warning about each one skipped."""
        for step in self.steps():
            try:
                self._verified = (step, self._verified_state(step))
            except (ObjectNotFound, ValueError) as problem:
                log.warning("skipping checkpoint %s: %s", step_directory(step), problem)
                continue
            return step
        return None

    def load(self, step: int) -> dict[str, Any]:
        """The state saved at `step`, after verifying it (once: newest_valid's read is reused)."""
        if self._verified is not None and self._verified[0] == step:
            data = self._verified[1]
        else:
            data = self._verified_state(step)
        self._verified = None
        with data.open() as file:
            state: dict[str, Any] = torch.load(file, map_location="cpu", weights_only=True)
        return state

    def _verified_state(self, step: int) -> ObjectParts:
        directory = step_directory(step)
        try:
            manifest = CheckpointManifest.model_validate_json(
                self.store.get(f"{directory}/{MANIFEST}")
            )
        except ObjectNotFound:
            raise ValueError("no manifest: the checkpoint was never committed") from None
        expected = manifest.files[STATE]
        data = read_parts(self.store, f"{directory}/{STATE}", expected.bytes)
        if data.sha256 != expected.sha256:
            raise ValueError(
                f"{STATE} has sha256 {data.sha256}, its manifest {expected.sha256}: "
                "its bytes were altered"
            )
        return data

    def _prune(self, newest: int) -> None:
        committed = [
            s for s in self.steps() if self.store.exists(f"{step_directory(s)}/{MANIFEST}")
        ]
        kept = set(committed[: self.keep])
        for step in self.steps():
            if step in kept or step > newest:
                continue
            directory = step_directory(step)
            self.store.delete(f"{directory}/{MANIFEST}")
            for key in self.store.list(f"{directory}/"):
                self.store.delete(key)


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
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self._in_flight = self._executor.submit(
            self.checkpoints.commit, step, buffer.getvalue(), self.world_size
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
