"""Sharded checkpoints: every rank writes its own shards of the model and optimiser state in
parallel, with `torch.distributed.checkpoint` (DCP) over kubeforge's object storage.

Layout under the checkpoint URI, beside the checkpoints of the state-file format (`checkpoint`):

    step-000000120/state.kft            the trainer's own state (step, schedule, data position,
                                        progress, every rank's RNG), written by rank 0
    step-000000120/shards/__R_0.distcp  rank R's shards of the model and optimiser (DCP's files),
                                        written by every rank at once
    step-000000120/shards/metadata      DCP's index of the shards, written by rank 0 once every
                                        rank's shards are in
    step-000000120/manifest.json        then the size and xxh3-128 digest of every file above
    latest                              last, a copy of that manifest

Each rank hashes what it wrote; rank 0 gathers the digests and commits the manifest and `latest`
(`Checkpoints.commit_written`), so a checkpoint is complete only once all shards, then DCP's
metadata, are stored, and older ones beyond `keep` are removed as for any checkpoint. A restore
reads every file through the manifest: a file it does not list, or whose bytes do not match its
digest, fails the load on every rank (DCP gathers each rank's errors).

DCP's metadata says which slice of which tensor each file holds, so any number of ranks can load
what any number saved: each reads the slices its own shards need. The model and optimiser states
are those of `torch.distributed.checkpoint.state_dict`, keyed by parameter name, the same whether
the model is sharded (FSDP) or whole (DDP), so either strategy resumes from either. A checkpoint
of the state-file format (a whole model saved by DDP) loads into a sharded model too
(`load_whole_state`).

DCP's `FileSystemWriter` and `FileSystemReader` do the work; `ObjectStoreFileSystem` gives them
objects instead of files: a file written is uploaded (atomically, as every object) when it is
closed, a file read is downloaded whole and verified first.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Generator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.filesystem import (
    FileSystemBase,
    FileSystemReader,
    FileSystemWriter,
)
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.checkpoint.state_dict_loader import load
from torch.distributed.checkpoint.state_dict_saver import async_save

from kubeforge.api.trainingjob import CheckpointRecord
from kubeforge.storage import ObjectStore
from kubeforge_trainer import state_file
from kubeforge_trainer.checkpoint import (
    STATE,
    Checkpoints,
    FileDigest,
    StateFormat,
    read_verified_file,
    step_directory,
)
from kubeforge_trainer.distributed import Distributed

log = logging.getLogger(__name__)

SHARDS = "shards"


class _Upload(io.BytesIO):
    """A file being written: its bytes are stored as one object when it is closed."""

    def __init__(self, on_close: Any) -> None:
        super().__init__()
        self._on_close = on_close

    def close(self) -> None:
        if not self.closed:
            self._on_close(self.getvalue())
        super().close()


class ObjectStoreFileSystem(FileSystemBase):
    """DCP's view of one checkpoint directory in object storage. Paths are keys; what is written
    is recorded in `written` (name relative to the step's directory -> digest), and what is read
    is checked against `expected`."""

    def __init__(
        self, store: ObjectStore, step: int, expected: Mapping[str, FileDigest] | None = None
    ) -> None:
        self.store = store
        self.step = step
        self.directory = step_directory(step)
        self.expected = expected
        self.written: dict[str, FileDigest] = {}
        self._lock = threading.Lock()  # DCP may write from several threads

    def _name(self, path: str | PathLike[str]) -> str:
        return str(path).removeprefix(f"{self.directory}/")

    def record(self, key: str, data: bytes) -> None:
        """Stores `data` under `key` and records its digest."""
        self.store.put(key, data)
        with self._lock:
            self.written[self._name(key)] = FileDigest.of(data)

    @contextmanager
    def create_stream(
        self, path: str | PathLike[str], mode: str
    ) -> Generator[io.IOBase, None, None]:
        key = str(path)
        if mode == "wb":
            stream: io.BytesIO = _Upload(lambda data: self.record(key, data))
        elif mode == "rb":
            stream = io.BytesIO(self._verified(key))
        else:
            raise ValueError(f"checkpoint files are written or read whole, not opened {mode!r}")
        try:
            yield stream
        finally:
            stream.close()

    def _verified(self, key: str) -> bytes:
        name = self._name(key)
        if self.expected is None or name not in self.expected:
            raise ValueError(f"{self.directory}: its manifest lists no {name}")
        buffer = read_verified_file(self.store, self.step, name, self.expected[name])
        return buffer.numpy().tobytes()

    def concat_path(self, path: str | PathLike[str], suffix: str) -> str:
        # DCP names its metadata `.metadata`; a file store hides names that start with a dot from
        # listings (they are its temporaries), which would keep it from ever being pruned.
        return f"{path}/{suffix.removeprefix('.')}"

    def rename(self, path: str | PathLike[str], new_path: str | PathLike[str]) -> None:
        self.record(str(new_path), self.store.get(str(path)))
        self.rm_file(path)

    def init_path(self, path: str | PathLike[str]) -> str:
        return str(path)

    def mkdir(self, path: str | PathLike[str]) -> None:
        """Object storage has no directories."""

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | PathLike[str]) -> bool:
        return False  # only ever used through the writer and reader below, never chosen by id

    def exists(self, path: str | PathLike[str]) -> bool:
        return self.store.exists(str(path))

    def rm_file(self, path: str | PathLike[str]) -> None:
        self.store.delete(str(path))
        with self._lock:
            self.written.pop(self._name(path), None)


class ShardWriter(FileSystemWriter):
    """DCP's writer, one file per rank, into object storage."""

    def __init__(self, files: ObjectStoreFileSystem) -> None:
        path = f"{files.directory}/{SHARDS}"
        super().__init__(path, sync_files=False)  # a stored object is durable once put
        self.fs = files  # type: ignore[assignment]  # DCP types it as its FileSystem; any FileSystemBase serves
        self.path = path


class ShardReader(FileSystemReader):
    """DCP's reader, from object storage, verifying each file."""

    def __init__(self, files: ObjectStoreFileSystem) -> None:
        path = f"{files.directory}/{SHARDS}"
        super().__init__(path)
        self.fs = files  # type: ignore[assignment]  # DCP types it as its FileSystem; any FileSystemBase serves
        self.path = path


@dataclass(frozen=True)
class _InFlight:
    step: int
    files: ObjectStoreFileSystem
    done: Future[Any]


class ShardedCheckpointWriter:
    """Saves sharded checkpoints from the training loop, uploading in the background; every rank
    has one and takes part.

    A save copies this rank's shards to host memory (DCP's staging) and returns while a thread
    uploads them (`async_save`), on a gloo group of its own so that its collectives never
    interleave with the loop's. The checkpoint is committed at the next save, or at once when the
    save must finish (`wait`: SIGTERM, the end), when every rank has waited for its upload: the
    ranks exchange their files' digests there, in the training thread, at the same step."""

    def __init__(
        self,
        checkpoints: Checkpoints,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        group: Distributed,
    ) -> None:
        self.checkpoints = checkpoints
        self.model = model
        self.optimizer = optimizer
        self.group = group
        self.blocked_seconds = 0.0
        self._committed: list[CheckpointRecord] = []
        self._in_flight: _InFlight | None = None
        uploads = dist.new_group(backend="gloo")  # every rank builds its writer
        assert isinstance(uploads, dist.ProcessGroup)  # every rank is a member
        self._uploads = uploads

    def save(self, step: int, trainer_state: dict[str, Any], *, wait: bool) -> None:
        """Commits the previous checkpoint, snapshots this one and starts its upload (rank 0
        writes the trainer's state too); `wait` returns only once it is committed."""
        started = time.monotonic()
        self._finish()
        files = ObjectStoreFileSystem(self.checkpoints.store, step)
        if self.group.is_main:
            files.record(f"{files.directory}/{STATE}", state_file.encode(trainer_state))
        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        done = async_save(
            {"model": model_state, "optimizer": optimizer_state},
            storage_writer=ShardWriter(files),
            process_group=self._uploads,
        )
        assert isinstance(done, Future)  # a thread, without a stager of ours
        self._in_flight = _InFlight(step, files, done)
        if wait:
            self._finish()
        self.blocked_seconds += time.monotonic() - started

    def committed(self) -> list[CheckpointRecord]:
        """The checkpoints committed since the last call (on rank 0)."""
        records, self._committed = self._committed, []
        return records

    def close(self) -> None:
        """Commits the checkpoint in flight, if any (a collective call)."""
        self._finish()

    def _finish(self) -> None:
        """Waits for the upload in flight and commits it (on rank 0) once every rank's is in."""
        if self._in_flight is None:
            return
        in_flight, self._in_flight = self._in_flight, None
        try:
            in_flight.done.result()  # DCP gathers every rank's errors: all ranks fail alike
        except Exception:
            # The next checkpoint tries again; until then a restart resumes from an older one.
            log.exception("the upload of the checkpoint of step %d failed", in_flight.step)
            return
        every_rank: list[dict[str, FileDigest] | None] = [None] * self.group.world_size
        dist.all_gather_object(every_rank, in_flight.files.written, group=self.group.control)
        if self.group.is_main:
            written = {name: digest for rank in every_rank for name, digest in (rank or {}).items()}
            self._committed.append(
                self.checkpoints.commit_written(
                    in_flight.step, written, StateFormat.SHARDED, self.group.world_size
                )
            )


def load_shards(
    store: ObjectStore,
    step: int,
    files: Mapping[str, FileDigest],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    group: Distributed,
) -> None:
    """Loads the model and optimiser states of the sharded checkpoint of `step` (whose manifest
    lists `files`) into this rank's part of them, whatever the world size that saved it."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state: dict[str, Any] = {"model": model_state, "optimizer": optimizer_state}
    try:
        load(
            state,
            storage_reader=ShardReader(ObjectStoreFileSystem(store, step, files)),
            process_group=group.control,
        )
    except CheckpointException as error:  # every rank gets every rank's errors
        problems = "; ".join(
            f"rank {rank}: {_first(failure)}" for rank, failure in sorted(error.failures.items())
        )
        raise ValueError(f"{step_directory(step)} does not load: {problems}") from None
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
    )


def _first(failure: object) -> object:
    """The exception of a DCP failure (an exception and its traceback)."""
    return failure[0] if isinstance(failure, tuple) else failure


def load_whole_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    model_state: dict[str, Any],
    optimizer_state: dict[str, Any],
) -> None:
    """Loads a whole model's state and its optimiser's (`optimizer.state_dict()` of an unsharded
    model, as the state-file format holds them) into a possibly sharded model: each rank keeps
    its shards of them."""
    set_state_dict(
        model,
        optimizer,
        model_state_dict=model_state,
        optim_state_dict=keyed_by_name(model, optimizer, optimizer_state),
        options=StateDictOptions(full_state_dict=True),
    )


def keyed_by_name(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> dict[str, Any]:
    """An `optimizer.state_dict()` (parameters numbered in the optimiser's order) with the
    parameters named instead, as `set_state_dict` takes it. The numbering is that of the
    optimiser that saved it, built over the same model in the same order as this one."""
    names = {parameter: name for name, parameter in model.named_parameters()}
    order = [names[parameter] for group in optimizer.param_groups for parameter in group["params"]]
    return {
        "state": {order[index]: value for index, value in state["state"].items()},
        "param_groups": [
            {**group, "params": [order[index] for index in group["params"]]}
            for group in state["param_groups"]
        ],
    }


def whole_model_state(model: nn.Module) -> dict[str, Any]:
    """The model's whole state on rank 0's CPU (empty elsewhere); a collective call for a sharded
    model, which is gathered one tensor at a time."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)
