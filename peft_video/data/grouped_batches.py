"""Training batches in which rows that share a group land in the same contrastive batch.

A contrastive loss only teaches what tells the rows of one batch apart. When the hardest negatives of a caption
(the same video played backwards, another clip of the same scene, a paraphrase of the same event) are in other
batches, content alone satisfies the loss; `GroupedBatchSampler` puts them in the same batch. Groups come from a
column: the offline world's `order_pair_id` (a video and its time-reversed twin), or any hard-negative grouping of
real data. Rows without a group fill the batches as a plain shuffle would.

    sampler = GroupedBatchSampler(train["order_pair_id"], batch_size=32, num_processes=accelerator.num_processes,
                                  seed=seed)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collator)
    loader = accelerator.prepare(loader)            # each process gets its own slice of every global batch
    for epoch in ...:
        sampler.set_epoch(epoch)                    # (accelerate's prepared loader does not reach it)
        for batch in accelerator.skip_first_batches(loader, done) if resuming else loader: ...

Where a group must land: peft_video's loss gathers the embeddings of every process (with gradients) before the
softmax, so a group only needs to be inside one GLOBAL batch (`group_scope="global"`, the default); its rows may sit
on different processes. A loss that does not gather needs `group_scope="process"`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Sequence
from typing import Literal

import numpy as np
import torch

GROUP_SCOPES = ("global", "process")


def _group_key(value) -> Hashable | None:
    """A row's group, or None for rows without one (None, "", NaN)."""
    if value is None or (isinstance(value, str) and not value):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class GroupedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of row indices in which the rows of a group are always in the same global batch (or, with
    `group_scope="process"`, in the same process's batch).

    Every epoch is a function of `(seed, epoch)` only: a resumed run that skips the batches it already consumed
    (`accelerator.skip_first_batches`, or `itertools.islice`) sees exactly the remaining batches. Every batch is full
    and every epoch has the same number of batches, `len(self)`; the rows that do not fill a last batch are left out of
    that epoch (like `drop_last=True`), different ones each epoch.

    Packing: groups are dealt in a random order to the global batches in turn (so every batch gets about the same
    share of grouped rows), then rows without a group fill the remaining places. A group is never split, except when
    the rows without a group are too few to fill the batches around the groups (e.g. groups of 3 in batches of 4);
    then the rows of groups that found no room complete the batches, and `split_groups` counts them for the last
    epoch drawn. Pairs never need that when the global batch is even.

    Args:
        groups: one group key per row (e.g. `dataset["order_pair_id"]`); None, "" and NaN mean "no group".
        batch_size: rows per batch on one process.
        num_processes: processes that share a global contrastive batch (`accelerator.num_processes`).
        process_index: None (default): yield the batches of every process, process by process within each global
            batch (`[g0 p0, g0 p1, …, g1 p0, …]`), which is what Accelerate's `prepare` (and its `BatchSamplerShard`)
            distributes: process p gets batches p, p + P, p + 2P, …. An int: yield only that process's batches (to
            shard without Accelerate).
        seed: seed of the shuffles; the same on every process.
        group_scope: `"global"`: a group stays within one global batch of `batch_size × num_processes` rows (enough
            when the loss gathers every process's embeddings, as peft_video's does). `"process"`: within one
            process's batch.
    """

    drop_last = True  # read by Accelerate's BatchSamplerShard

    def __init__(
        self,
        groups: Sequence,
        batch_size: int,
        *,
        num_processes: int = 1,
        process_index: int | None = None,
        seed: int = 0,
        group_scope: Literal["global", "process"] = "global",
    ) -> None:
        if batch_size < 1 or num_processes < 1:
            raise ValueError(f"batch_size and num_processes must be >= 1, got {batch_size} and {num_processes}")
        if process_index is not None and not 0 <= process_index < num_processes:
            raise ValueError(f"process_index must be in [0, {num_processes}), got {process_index}")
        if group_scope not in GROUP_SCOPES:
            raise ValueError(f"group_scope must be one of {GROUP_SCOPES}, got {group_scope!r}")
        self.batch_size, self.num_processes, self.process_index = batch_size, num_processes, process_index
        self.seed, self.group_scope, self.epoch = int(seed), group_scope, 0
        self.split_groups = 0
        members: dict[Hashable, list[int]] = {}
        singles: list[int] = []
        for row, value in enumerate(groups):
            key = _group_key(value)
            if key is None:
                singles.append(row)
            else:
                members.setdefault(key, []).append(row)
        self.num_rows = len(singles) + sum(len(rows) for rows in members.values())
        self.global_batch_size = batch_size * num_processes
        # the unit a group must fit in
        self.bin_size = self.global_batch_size if group_scope == "global" else batch_size
        largest = max(members.items(), key=lambda item: len(item[1]), default=(None, []))
        if len(largest[1]) > self.bin_size:
            where = "global batch (batch_size × num_processes)" if group_scope == "global" else "process's batch"
            raise ValueError(
                f"group {largest[0]!r} has {len(largest[1])} rows, more than one {where} holds ({self.bin_size}): "
                "raise the batch size or split the group"
            )
        self.num_global_batches = self.num_rows // self.global_batch_size
        if self.num_global_batches == 0:
            raise ValueError(
                f"{self.num_rows} rows make no full global batch of {self.global_batch_size} "
                f"({batch_size} × {num_processes} processes); lower the batch size"
            )
        self._groups = [np.asarray(rows, dtype=np.int64) for rows in members.values()]
        self._singles = np.asarray(singles, dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches `__iter__` yields (call it before each epoch, on every process)."""
        self.epoch = int(epoch)

    @staticmethod
    def set_loader_epoch(loader, epoch: int) -> None:
        """Set the epoch of the `GroupedBatchSampler` inside `loader` (a DataLoader, or one Accelerate prepared or
        `skip_first_batches` wrapped), if it has one: Accelerate's `set_epoch` reaches a sampler inside a batch
        sampler, not a batch sampler inside its shard wrapper."""
        sampler = getattr(loader, "batch_sampler", None)
        while sampler is not None and not isinstance(sampler, GroupedBatchSampler):
            sampler = getattr(sampler, "batch_sampler", None)
        if sampler is not None:
            sampler.set_epoch(epoch)

    def __len__(self) -> int:
        per_process = self.num_global_batches
        return per_process if self.process_index is not None else per_process * self.num_processes

    def global_batches(self, epoch: int | None = None) -> list[np.ndarray]:
        """The global batches of an epoch (default: the current one), each an array of `batch_size × num_processes`
        row indices; process p's part of a batch is `batch[p * batch_size:(p + 1) * batch_size]`."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
        num_bins = self.num_global_batches * (self.num_processes if self.group_scope == "process" else 1)
        bins: list[list[int]] = [[] for _ in range(num_bins)]
        room = np.full(num_bins, self.bin_size)
        leftover: list[np.ndarray] = []
        # groups, dealt to the bins in turn in a random order of both, each to the next bin with room
        turn = rng.permutation(num_bins)
        cursor = 0
        for index in rng.permutation(len(self._groups)):
            rows = self._groups[index][rng.permutation(len(self._groups[index]))]
            for probe in range(num_bins):
                target = turn[(cursor + probe) % num_bins]
                if room[target] >= len(rows):
                    bins[target].extend(rows.tolist())
                    room[target] -= len(rows)
                    cursor = (cursor + probe + 1) % num_bins
                    break
            else:
                leftover.append(rows)
        # then rows without a group, then (only if those run out) rows of groups that found no room
        fill = np.concatenate([self._singles[rng.permutation(len(self._singles))], *leftover]).astype(np.int64)
        position = 0
        for target in turn:
            bins[target].extend(fill[position : position + room[target]].tolist())
            position += room[target]
        self.split_groups = self._count_split(bins, leftover)
        # rows of a bin in a random order, so that a global batch's groups spread over its processes
        batches = [np.asarray(rows, dtype=np.int64)[rng.permutation(len(rows))] for rows in bins]
        if self.group_scope == "process":
            batches = [
                np.concatenate(batches[i : i + self.num_processes]) for i in range(0, num_bins, self.num_processes)
            ]
        return batches

    def _count_split(self, bins: list[list[int]], leftover: list[np.ndarray]) -> int:
        """Groups (only those that found no room can be) with rows in more than one batch, or only partly placed."""
        if not leftover:
            return 0
        batch_of = {row: index for index, rows in enumerate(bins) for row in rows}
        split = 0
        for rows in leftover:
            placed = {batch_of[row] for row in rows.tolist() if row in batch_of}
            count = sum(row in batch_of for row in rows.tolist())
            split += bool(placed) and (len(placed) > 1 or count < len(rows))
        return split

    def __iter__(self) -> Iterator[list[int]]:
        size = self.batch_size
        for batch in self.global_batches():
            processes = range(self.num_processes) if self.process_index is None else [self.process_index]
            for process in processes:
                yield batch[process * size : (process + 1) * size].tolist()
