"""The trainer's global data order: pure functions of the seed and the epoch, checked for the
properties exact resumption rests on (no torch, no processes)."""

from __future__ import annotations

import pytest

from kubeforge_trainer.order import GlobalOrder, rank_share


@pytest.mark.parametrize("global_size", [1, 7, 64])
def test_rank_shares_split_a_global_batch_at_any_world_size(global_size: int) -> None:
    for world_size in range(1, global_size + 1):
        shares = [rank_share(global_size, rank, world_size) for rank in range(world_size)]
        assert [offset for share in shares for offset in share] == list(range(global_size))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_each_epoch_is_a_permutation_with_blocks_kept_together() -> None:
    order = GlobalOrder([3, 5, 2], seed=1)
    stream = order.samples(0, 3 * order.num_samples).tolist()
    blocks = [range(0, 3), range(3, 8), range(8, 10)]
    for epoch in range(3):
        ids = stream[epoch * 10 : (epoch + 1) * 10]
        assert sorted(ids) == list(range(10))
        runs = [next(i for i, block in enumerate(blocks) if sample in block) for sample in ids]
        assert len([i for i in range(10) if i == 0 or runs[i] != runs[i - 1]]) == 3
    assert stream[:10] != stream[10:20]


def test_any_slice_of_the_stream_reads_the_same_samples() -> None:
    order = GlobalOrder([4, 9], seed=3)
    whole = order.samples(0, 50).tolist()
    for start, stop in [(0, 13), (11, 29), (12, 13), (26, 50), (7, 7)]:
        assert GlobalOrder([4, 9], seed=3).samples(start, stop).tolist() == whole[start:stop]


def test_the_seed_alone_decides_the_order() -> None:
    assert (
        GlobalOrder([100], 1).samples(0, 100).tolist()
        != GlobalOrder([100], 2).samples(0, 100).tolist()
    )
    assert (
        GlobalOrder([100], 1).samples(0, 100).tolist()
        == GlobalOrder([100], 1).samples(0, 100).tolist()
    )
