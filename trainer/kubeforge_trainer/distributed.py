"""The process group from torchrun's environment, and the agreement of all ranks at each step.

Under torchrun the trainer reads only RANK, LOCAL_RANK and WORLD_SIZE (and MASTER_ADDR and
MASTER_PORT, through `init_process_group`); started without torchrun it is a group of one. GPUs
use NCCL, CPUs gloo. A second, gloo group carries small control messages on the CPU, so that
agreeing on them never waits for the GPU.

A checkpoint is read from object storage by rank 0 alone, which hands its bytes to the others
(`broadcast_bytes`).

Decisions that must be taken at the same step on every rank but are seen by one rank (a SIGTERM
delivered to one pod, rank 0's clock saying a checkpoint is due) go through `StepAgreement`: each
step every rank sends its votes asynchronously and reads the outcome of the previous step's vote,
so all ranks act on the same step, one step late, without stalling.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the group."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    control: dist.ProcessGroup
    """A gloo group over the same ranks, for CPU-side control messages."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        dist.destroy_process_group()


def init_from_environment() -> Distributed:
    """Joins the group torchrun set up (or forms a group of one) on the best device there is."""
    launched = "RANK" in os.environ
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        log.warning(
            "torchrun shares its rendezvous store with the workers: a restarted group may fail "
            "to connect; set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for torchrun"
        )
    if launched:
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    else:
        # A group of one, on a store on a free loopback port.
        dist.init_process_group(backend, init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    control = dist.new_group(backend="gloo")
    assert isinstance(control, dist.ProcessGroup)  # every rank is a member
    return Distributed(rank, local_rank, world_size, device, control)


BROADCAST_CHUNK_BYTES = 256 * 1024 * 1024
"""The most bytes `broadcast_bytes` stages on a GPU at once."""


def broadcast_bytes(
    group: Distributed,
    data: torch.Tensor | None,
    size: int,
    *,
    chunk_bytes: int = BROADCAST_CHUNK_BYTES,
) -> torch.Tensor:
    """Rank 0's `data` (a 1-D uint8 CPU tensor of `size` bytes; None elsewhere) on every rank,
    through the group's own collective: NCCL between GPUs (staged on the device in chunks of
    `chunk_bytes`), gloo between CPUs (in place)."""
    if data is None:
        data = torch.empty(size, dtype=torch.uint8)
    if group.world_size == 1:
        return data
    on_cpu = group.device.type == "cpu"
    for start in range(0, size, chunk_bytes):
        chunk = data[start : start + chunk_bytes]
        if on_cpu:
            staged = chunk
        elif group.is_main:
            staged = chunk.to(group.device)
        else:
            staged = torch.empty(len(chunk), dtype=torch.uint8, device=group.device)
        dist.broadcast(staged, src=0)
        if staged is not chunk and not group.is_main:
            chunk.copy_(staged)
    return data


@dataclass(frozen=True)
class Decision:
    """What every rank does after the current step."""

    stop: bool = False
    checkpoint: bool = False


class StepAgreement:
    """Rank-wide OR of per-step votes, read one step later (see the module docstring)."""

    def __init__(self, group: dist.ProcessGroup) -> None:
        self.group = group
        self._alone = group.size() == 1  # its own votes are the outcome: nothing to send
        self._votes = torch.zeros(2)
        self._pending: dist.Work | None = None
        self._outcome: Decision | None = None

    def exchange(self, *, stop: bool, checkpoint: bool) -> Decision:
        """Sends this step's votes and returns the outcome of the previous step's."""
        decision = self.settle()
        if self._alone:
            self._outcome = Decision(stop=stop, checkpoint=checkpoint)
            return decision
        self._votes = torch.tensor([float(stop), float(checkpoint)])
        self._pending = dist.all_reduce(
            self._votes, op=dist.ReduceOp.MAX, group=self.group, async_op=True
        )
        return decision

    def settle(self) -> Decision:
        """Waits for the vote in flight, if any, and returns its outcome."""
        if self._outcome is not None:
            decision, self._outcome = self._outcome, None
            return decision
        if self._pending is None:
            return Decision()
        self._pending.wait()
        self._pending = None
        return Decision(stop=bool(self._votes[0]), checkpoint=bool(self._votes[1]))
