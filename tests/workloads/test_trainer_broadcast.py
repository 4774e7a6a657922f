"""Rank 0's checkpoint bytes reach every rank: `broadcast_bytes` in a real two-process gloo group
on loopback (the collective the trainer's restore uses on CPUs), in several chunks and in one."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection

import pytest
import torch
import torch.distributed as dist

from kubeforge_trainer.distributed import Distributed, broadcast_bytes
from tests.workloads.trainer_runs import free_port

SIZE = 100_003  # not a multiple of any chunk below


def _rank(
    rank: int, port: int, chunk_bytes: int, results: multiprocessing.connection.Connection
) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        group = Distributed(rank, rank, 2, torch.device("cpu"), dist.group.WORLD)
        generator = torch.Generator().manual_seed(11)
        mine = torch.randint(0, 256, (SIZE,), dtype=torch.uint8, generator=generator)
        received = broadcast_bytes(
            group, mine if rank == 0 else None, SIZE, chunk_bytes=chunk_bytes
        )
        results.send(
            (rank, bool(torch.equal(received, mine)), received.data_ptr() == mine.data_ptr())
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("chunk_bytes", [4096, 1 << 20])
def test_every_rank_receives_rank_0s_bytes(chunk_bytes: int) -> None:
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    port = free_port()
    ranks = [context.Process(target=_rank, args=(r, port, chunk_bytes, sender)) for r in (0, 1)]
    for process in ranks:
        process.start()
    try:
        results = []
        for _ in ranks:
            # A rank that crashed sends nothing: fail with its exit code rather than hang.
            assert receiver.poll(120), [process.exitcode for process in ranks]
            results.append(receiver.recv())
        results.sort()
    finally:
        for process in ranks:
            process.join(timeout=60)
    assert [process.exitcode for process in ranks] == [0, 0]
    # Rank 0 keeps its own buffer; rank 1 gets an equal copy of it.
    assert results == [(0, True, True), (1, True, False)]
