"""The prefetching loader: each rank's share of every global batch, read ahead of compute.

A background thread walks the global order from the resume position, reads this rank's samples
through its source and splits them into micro-batches, a few steps ahead, so the training loop
waits on storage only when the thread falls behind; the time it waits is counted. The loader's
state is the number of positions consumed, which is the same on every rank.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from kubeforge_trainer.order import GlobalOrder, SampleIds, rank_share

PREFETCH_STEPS = 4


class SampleSource(Protocol):
    """A dataset the loader reads: samples addressed by id, grouped in blocks."""

    @property
    def block_sizes(self) -> tuple[int, ...]:
        """Samples per block (e.g. per part), in id order."""
        ...

    @property
    def fingerprint(self) -> str:
        """Identifies the data, so a checkpoint is never resumed on other data."""
        ...

    def collate(self, ids: SampleIds) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of the samples, stacked."""
        ...


@dataclass(frozen=True)
class Batch:
    """One rank's share of one global batch."""

    positions: range
    """The stream positions this rank trains on."""
    sample_ids: SampleIds
    micro_batches: list[tuple[torch.Tensor, torch.Tensor]]


class BatchLoader:
    """Yields this rank's share of consecutive global batches, prefetched in a thread."""

    def __init__(
        self,
        source: SampleSource,
        order: GlobalOrder,
        *,
        global_size: int,
        micro_size: int | None,
        rank: int,
        world_size: int,
        pin_memory: bool = False,
    ) -> None:
        if world_size > global_size:
            raise ValueError(f"{world_size} processes cannot share a global batch of {global_size}")
        self.source = source
        self.order = order
        self.global_size = global_size
        self.micro_size = micro_size or math.ceil(global_size / world_size)
        self.share = rank_share(global_size, rank, world_size)
        # Shares differ by one sample at most, so the largest is the rounded-up mean.
        self.group_micro_batches = math.ceil(math.ceil(global_size / world_size) / self.micro_size)
        """The most micro-batches any rank of the group has in a step (a sharded model needs
        every rank in every forward and backward, so each rank makes that many passes)."""
        self.pin_memory = pin_memory
        self.consumed = 0
        self.wait_seconds = 0.0
        self._queue: queue.Queue[Batch | BaseException] = queue.Queue(maxsize=PREFETCH_STEPS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "consumed": self.consumed,
            "seed": self.order.seed,
            "num_samples": self.order.num_samples,
            "fingerprint": self.source.fingerprint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._thread is not None:
            raise RuntimeError("the loader's position is set before it starts reading")
        expected = (self.order.seed, self.order.num_samples, self.source.fingerprint)
        found = (state["seed"], state["num_samples"], state["fingerprint"])
        if found != expected:
            raise ValueError(
                f"the checkpoint was trained on other data or another order ({found}), "
                f"not this one ({expected}); resuming would repeat or skip samples"
            )
        self.consumed = int(state["consumed"])

    def next(self) -> Batch:
        """The next batch; blocks (and counts the wait) when the reader is behind."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._read_ahead, args=(self.consumed,), name="prefetch", daemon=True
            )
            self._thread.start()
        started = time.monotonic()
        item = self._queue.get()
        self.wait_seconds += time.monotonic() - started
        if isinstance(item, BaseException):
            raise RuntimeError("reading training data failed") from item
        self.consumed += self.global_size
        return item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._queue.get_nowait()  # unblock a reader waiting to put
                except queue.Empty:
                    self._thread.join(timeout=0.05)

    def _read_ahead(self, start: int) -> None:
        position = start
        try:
            while not self._stop.is_set():
                batch = self._read(position)
                while not self._stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                position += self.global_size
        except BaseException as error:  # handed to the training loop, which raises it
            self._queue.put(error)

    def _read(self, batch_start: int) -> Batch:
        positions = range(batch_start + self.share.start, batch_start + self.share.stop)
        ids = self.order.samples(positions.start, positions.stop)
        micro_batches = []
        for offset in range(0, len(ids), self.micro_size):
            inputs, targets = self.source.collate(ids[offset : offset + self.micro_size])
            if self.pin_memory:
                inputs, targets = inputs.pin_memory(), targets.pin_memory()
            micro_batches.append((inputs, targets))
        return Batch(positions=positions, sample_ids=ids, micro_batches=micro_batches)
