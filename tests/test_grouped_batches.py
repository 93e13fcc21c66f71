"""GroupedBatchSampler: groups stay in one global (or process) batch, rows without a group fill batches, epochs are
functions of (seed, epoch), resuming skips exactly what was consumed, and Accelerate's sharding gives each process its
own slice of every global batch."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from accelerate.data_loader import prepare_data_loader, skip_first_batches

from peft_video.data import GroupedBatchSampler


def _world_like(num_pairs: int = 40, num_single: int = 30, seed: int = 0) -> list:
    """A column like the offline world's `order_pair_id`: pairs and rows without a group, interleaved."""
    column = [f"pair{i}" for i in range(num_pairs) for _ in range(2)] + [None] * num_single
    return [column[i] for i in np.random.default_rng(seed).permutation(len(column))]


def _groups_of(column) -> dict:
    groups: dict = {}
    for row, key in enumerate(column):
        if key is not None:
            groups.setdefault(key, set()).add(row)
    return groups


def _assert_groups_whole(batches, column) -> None:
    where = {row: b for b, batch in enumerate(batches) for row in batch}
    for key, rows in _groups_of(column).items():
        placed = {where[r] for r in rows if r in where}
        assert len(placed) <= 1 and (not placed or all(r in where for r in rows)), (key, rows, placed)


@pytest.mark.parametrize("num_processes", [1, 2, 4])
def test_groups_stay_in_one_global_batch_and_batches_are_full(num_processes):
    column = _world_like()
    sampler = GroupedBatchSampler(column, batch_size=5, num_processes=num_processes, seed=3)
    assert len(sampler) == (110 // (5 * num_processes)) * num_processes
    for epoch in range(4):
        sampler.set_epoch(epoch)
        local = list(sampler)
        assert len(local) == len(sampler) and all(len(b) == 5 for b in local)
        global_batches = [sum(local[i : i + num_processes], []) for i in range(0, len(local), num_processes)]
        rows = [r for b in global_batches for r in b]
        assert len(rows) == len(set(rows))  # no row twice in an epoch
        _assert_groups_whole(global_batches, column)
        assert sampler.split_groups == 0
        # the rows without a group are not pushed out: they are used in proportion to their share
        assert sum(column[r] is None for r in rows) >= 30 - 5 * num_processes


def test_every_batch_mixes_grouped_and_ungrouped_rows_evenly():
    column = _world_like(num_pairs=64, num_single=128)
    batches = list(GroupedBatchSampler(column, batch_size=16, seed=0))
    grouped = [sum(column[r] is not None for r in b) for b in batches]
    assert max(grouped) - min(grouped) <= 2, grouped  # 128 of 256 rows are in pairs: 8 per batch of 16


def test_an_epoch_is_a_function_of_seed_and_epoch():
    column = _world_like()
    a, b = GroupedBatchSampler(column, 8, seed=1), GroupedBatchSampler(column, 8, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    assert list(a) != list(GroupedBatchSampler(column, 8, seed=2))


def test_resuming_mid_epoch_yields_exactly_the_remaining_batches():
    column = _world_like()
    full = GroupedBatchSampler(column, 6, num_processes=2, seed=5)
    full.set_epoch(1)
    expected = list(full)
    resumed = GroupedBatchSampler(column, 6, num_processes=2, seed=5)  # a new process after a restart
    resumed.set_epoch(1)
    assert list(itertools.islice(resumed, 7, None)) == expected[7:]
    # through a DataLoader and Accelerate's skip_first_batches, as a training script resumes
    dataset = torch.utils.data.TensorDataset(torch.arange(len(column)))
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=resumed)
    skipped = [batch[0].tolist() for batch in skip_first_batches(loader, 7)]
    assert skipped == expected[7:]


def test_accelerate_gives_each_process_its_slice_of_every_global_batch():
    column = _world_like(num_pairs=50, num_single=21)
    dataset = torch.utils.data.TensorDataset(torch.arange(len(column)))
    sampler = GroupedBatchSampler(column, 4, num_processes=2, seed=7)
    sampler.set_epoch(4)
    expected = sampler.global_batches()
    per_process = []
    for process in range(2):
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler)
        prepared = prepare_data_loader(loader, num_processes=2, process_index=process, put_on_device=False)
        per_process.append([batch[0].tolist() for batch in prepared])
        # sharding without Accelerate gives the same slices
        own = GroupedBatchSampler(column, 4, num_processes=2, process_index=process, seed=7)
        own.set_epoch(4)
        assert list(own) == per_process[-1]
    assert len(per_process[0]) == len(per_process[1]) == len(expected)
    for step, batch in enumerate(expected):
        assert per_process[0][step] + per_process[1][step] == batch.tolist()
    _assert_groups_whole([a + b for a, b in zip(*per_process)], column)


def test_process_scope_keeps_groups_on_one_process():
    column = _world_like(num_pairs=30, num_single=10)
    sampler = GroupedBatchSampler(column, 4, num_processes=2, seed=0, group_scope="process")
    for epoch in range(3):
        sampler.set_epoch(epoch)
        _assert_groups_whole(list(sampler), column)  # every local batch holds whole groups


def test_groups_larger_than_a_batch_are_refused_by_name():
    column = ["big"] * 9 + [None] * 40
    with pytest.raises(ValueError, match=r"group 'big' has 9 rows, more than one global batch .* \(8\)"):
        GroupedBatchSampler(column, 4, num_processes=2)
    GroupedBatchSampler(column, 5, num_processes=2)  # fits in 10
    with pytest.raises(ValueError, match=r"process's batch holds \(5\)"):
        GroupedBatchSampler(column, 5, num_processes=2, group_scope="process")
    with pytest.raises(ValueError, match="no full global batch"):
        GroupedBatchSampler([None] * 7, 4, num_processes=2)
    with pytest.raises(ValueError, match="group_scope"):
        GroupedBatchSampler([None] * 8, 4, group_scope="batch")


def test_rows_without_a_group_and_empty_keys_are_ungrouped():
    column = [None, "", float("nan"), "a", "a", None, None, None]
    batches = list(GroupedBatchSampler(column, 4, seed=0))
    assert len(batches) == 2
    assert any({3, 4} <= set(b) for b in batches)
    assert sorted(r for b in batches for r in b) == list(range(8))


def test_groups_are_only_split_when_ungrouped_rows_cannot_fill_the_batches():
    # triples in batches of 4: each batch holds one triple and needs one ungrouped row; with too few of those the
    # batches are completed from triples that found no room, and the sampler says how many it split
    column = [f"t{i // 3}" for i in range(30)] + [None] * 2
    sampler = GroupedBatchSampler(column, 4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 8 and all(len(b) == 4 for b in batches)
    assert len({r for b in batches for r in b}) == 32
    assert sampler.split_groups > 0
    sizes = Counter(sum(1 for r in b if column[r] == key) for b in batches for key in {column[r] for r in b} - {None})
    assert sizes[3] >= 2  # whole triples are placed first
