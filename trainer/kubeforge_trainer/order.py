"""The global data order: which sample each position of the endless training stream holds.

Training consumes one stream of positions 0, 1, 2, ... Position p belongs to epoch p // N (N
samples in the dataset) and holds the sample at p % N of that epoch's permutation. The
permutation depends only on the seed and the epoch, never on the number of processes, so a
checkpoint needs nothing but the count of positions consumed, and every sample is consumed
exactly once per epoch however often the world size changes.

Samples come in blocks (a text dataset's parts): an epoch shuffles the blocks, then the samples
within each block, so consecutive positions stay within one block and a reader fetches few
objects at a time. Each rank takes a contiguous share of every global batch (`rank_share`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

SampleIds = npt.NDArray[np.int64]


class GlobalOrder:
    """The deterministic order of samples, epoch after epoch."""

    def __init__(self, block_sizes: Sequence[int], seed: int) -> None:
        if not block_sizes or min(block_sizes) < 1:
            raise ValueError("a dataset needs at least one sample and no empty blocks")
        self.block_sizes = tuple(block_sizes)
        self.seed = seed
        self.num_samples = sum(self.block_sizes)
        self._block_starts = np.cumsum((0, *self.block_sizes[:-1]))
        self._epoch: tuple[int, SampleIds] | None = None

    def permutation(self, epoch: int) -> SampleIds:
        """The sample ids of an epoch, in the order they are consumed."""
        if self._epoch is not None and self._epoch[0] == epoch:
            return self._epoch[1]
        rng = np.random.Generator(np.random.PCG64([self.seed, epoch]))
        blocks = rng.permutation(len(self.block_sizes))
        ids = np.concatenate(
            [self._block_starts[b] + rng.permutation(self.block_sizes[b]) for b in blocks]
        ).astype(np.int64)
        self._epoch = (epoch, ids)
        return ids

    def samples(self, start: int, stop: int) -> SampleIds:
        """The sample ids at positions start..stop-1 of the stream (epochs follow each other)."""
        pieces = []
        position = start
        while position < stop:
            epoch, offset = divmod(position, self.num_samples)
            take = min(stop - position, self.num_samples - offset)
            pieces.append(self.permutation(epoch)[offset : offset + take])
            position += take
        return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)


def rank_share(global_size: int, rank: int, world_size: int) -> range:
    """The offsets within a global batch that one rank trains on: contiguous, and the shares of
    all ranks differ in size by at most one sample, so any world size up to the batch works."""
    return range(rank * global_size // world_size, (rank + 1) * global_size // world_size)
