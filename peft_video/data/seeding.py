"""Training data whose random draws depend only on (seed, epoch, sample): what makes a resumed run exact."""

from __future__ import annotations

import torch


class EpochSeededDataset(torch.utils.data.Dataset):
    """Makes every random draw of `dataset[i]` (e.g. training frame positions) a function of (seed, epoch, i) only.

    Without it, the draws depend on torch's global RNG at the moment the item is loaded, which changes with
    prefetching, worker count and where a run was resumed; with it, a resumed run sees exactly the frames the
    uninterrupted run saw. Call `set_epoch` before iterating an epoch (DataLoader workers get a copy at iteration).
    """

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item_seed = (self.seed * 1_000_003 + self.epoch) * 10_000_019 + int(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed % (2**63 - 1))
            return self.dataset[index]
