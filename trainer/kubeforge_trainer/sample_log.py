"""The consumed-sample log: which samples each rank trained on at each step, for audits and tests.

Set KUBEFORGE_SAMPLE_LOG to a local directory and every rank appends one JSON line per step to
its own file there: the group's generation (a number that grows with each start of the group,
so that a step redone after a restart supersedes the earlier attempt), the step, the rank, the
world size, the stream positions and the sample ids. Off by default.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TextIO

import torch.distributed as dist

from kubeforge_trainer.distributed import Distributed
from kubeforge_trainer.loader import Batch

SAMPLE_LOG_ENV = "KUBEFORGE_SAMPLE_LOG"


class SampleLog:
    def __init__(self, file: TextIO, generation: int, rank: int, world_size: int) -> None:
        self.file = file
        self.generation = generation
        self.rank = rank
        self.world_size = world_size

    @classmethod
    def from_environment(cls, group: Distributed) -> SampleLog | None:
        """The log the environment asks for (every rank sees the same environment)."""
        directory = os.environ.get(SAMPLE_LOG_ENV)
        if not directory:
            return None
        generation = [time.time_ns()]
        dist.broadcast_object_list(generation, src=0, group=group.control)
        path = Path(directory) / f"{generation[0]}-rank{group.rank}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path.open("a"), generation[0], group.rank, group.world_size)

    def record(self, step: int, batch: Batch) -> None:
        line = {
            "generation": self.generation,
            "step": step,
            "rank": self.rank,
            "worldSize": self.world_size,
            "positions": [batch.positions.start, batch.positions.stop],
            "samples": batch.sample_ids.tolist(),
            "time": time.time(),
        }
        self.file.write(json.dumps(line) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
