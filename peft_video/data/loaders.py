"""Training data loaders that a resumed run reads exactly as the uninterrupted run did, and the batches they yield.

- `training_loader`: manifest rows as whole contrastive batches (a contrastive batch needs its negatives: the last,
  incomplete batch of an epoch is dropped), optionally grouped (`GroupedBatchSampler`: rows sharing a group column in
  one global batch); the order is a function of (data_seed, epoch) through Accelerate's seedable sampler once the
  loader is `prepare`d, and every random draw of a sample (frame jitter) a function of (seed, epoch, sample).
- `streaming_training_loader`: this process' share of a streamed split, in a torchdata `StatefulDataLoader` whose
  position is saved per process (`peft_video.checkpointing`); not for `accelerator.prepare`, whose default for an
  IterableDataset lets process 0 read every batch.
- `TrainingBatches`: the batches of one epoch from where a run stands (skipping what a resumed run had read), with
  the batches that cannot be trained on (every sample failed; a single pair, whose contrastive loss is constant)
  counted and skipped, and the run's data problems gathered from every process.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, Protocol

import torch

from .dataset import DataErrorSummary, VideoTextDataset
from .grouped_batches import GroupedBatchSampler
from .sampling import FrameSampling
from .seeding import EpochSeededDataset
from .streaming import StreamingVideoTextDataset


def training_sampling(sampling: FrameSampling, train_num_frames: int | None) -> FrameSampling:
    """`sampling` with `train_num_frames` frames (fewer frames in training only, as Prompt Switch trains); None keeps
    it. A count the sampling cannot take is an error naming it."""
    try:
        return replace(sampling, num_frames=train_num_frames or sampling.num_frames)
    except ValueError as err:
        raise ValueError(f"train_num_frames={train_num_frames} does not fit the frame sampling: {err}") from err


def training_loader(
    rows,
    sampling: FrameSampling,
    transform,
    collator,
    *,
    batch_size: int,
    seed: int,
    data_seed: int,
    num_processes: int = 1,
    num_workers: int = 0,
    group_by_column: str | None = None,
    backend: str = "auto",
    on_error: str = "skip",
    decode_timeout: float | None = None,
    frame_cache: str | None = None,
) -> tuple[EpochSeededDataset, torch.utils.data.DataLoader]:
    """The training (video, caption) pairs of manifest `rows` (a `datasets.Dataset`) and their loader, to pass through
    `accelerator.prepare` (with `DataLoaderConfiguration(use_seedable_sampler=True, data_seed=data_seed)`); iterate
    it with `TrainingBatches`.

    `batch_size` pairs per process; full batches only. With `group_by_column`, the rows sharing a value of that column
    land in one global batch of `batch_size × num_processes` (`GroupedBatchSampler`, its order a function of
    (data_seed, epoch)); a column the rows do not have is an error naming it and the columns there are."""
    dataset = VideoTextDataset(
        rows, sampling, transform, train=True, backend=backend, on_error=on_error, decode_timeout=decode_timeout,
        cache=frame_cache,
    )  # fmt: skip
    items = EpochSeededDataset(dataset, seed)
    if group_by_column is None:
        loader = torch.utils.data.DataLoader(
            items, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=num_workers, collate_fn=collator
        )
        return items, loader
    if group_by_column not in rows.column_names:
        raise ValueError(
            f"group_by_column {group_by_column!r} is not a column of the training split ({rows.column_names})"
        )
    sampler = GroupedBatchSampler(rows[group_by_column], batch_size, num_processes=num_processes, seed=data_seed)
    loader = torch.utils.data.DataLoader(items, batch_sampler=sampler, num_workers=num_workers, collate_fn=collator)
    return items, loader


def streaming_training_loader(
    samples,
    sampling: FrameSampling,
    transform,
    collator,
    *,
    batch_size: int,
    data_seed: int,
    process_index: int,
    num_processes: int,
    shuffle_buffer: int,
    num_workers: int = 0,
    backend: str = "auto",
    on_error: str = "skip",
    decode_timeout: float | None = None,
):
    """This process' share of a streamed training split (its shards, split again over its DataLoader workers: each
    sample once per epoch across the job), shuffled per epoch from `data_seed` (shard order and windows of
    `shuffle_buffer` samples; frame jitter and the caption drawn among several too), in a torchdata
    `StatefulDataLoader` whose `state_dict()` is the process' position. An epoch's last batch per worker may be
    smaller (no sample is dropped). Returns (dataset, loader)."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    warnings.filterwarnings("ignore", message="'set_vital' is deprecated")  # torchdata 0.11 on torch 2.13, harmless
    dataset = StreamingVideoTextDataset(
        samples, sampling, transform, train=True, shuffle_buffer=shuffle_buffer, seed=data_seed, rank=process_index,
        world_size=num_processes, backend=backend, on_error=on_error, decode_timeout=decode_timeout,
    )  # fmt: skip
    workers = max(1, num_workers)
    if dataset.num_shards < workers:
        warnings.warn(
            f"process {process_index} reads {dataset.num_shards} shard(s) with {workers} DataLoader worker(s): the "
            "workers without a shard stay idle (write at least processes × workers shards)",
            stacklevel=2,
        )
    loader = StatefulDataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collator)
    return dataset, loader


class EpochPosition(Protocol):
    """Where a run stands: its epoch and the batches read in it (e.g. a run state saved with each checkpoint)."""

    epoch: int
    batches_in_epoch: int


class TrainingBatches:
    """The batches one process trains on, epoch by epoch, and the data problems met on the way.

    Args:
        items: the training dataset (`set_epoch`: frame jitter, and a stream's order, a function of the epoch).
        loader: `training_loader`'s loader after `accelerator.prepare`, or `streaming_training_loader`'s.
        accelerator: the run's `Accelerator`.
        streamed: whether `loader` is a stream's (each process goes through its own shards at its own pace).
        earlier_errors, earlier_skipped: what the run reported before it was resumed (from its checkpoint), added to
            `report()`.
    """

    def __init__(
        self,
        items,
        loader,
        accelerator: Any,
        *,
        streamed: bool = False,
        earlier_errors: Mapping[str, Any] | None = None,
        earlier_skipped: Mapping[str, int] | None = None,
    ) -> None:
        self.items, self.loader, self.accelerator, self.streamed = items, loader, accelerator, streamed
        self.errors, self.skipped = DataErrorSummary(), Counter()
        self._earlier = (DataErrorSummary.from_dict(earlier_errors or {}), Counter(earlier_skipped or {}))

    def epoch(self, position: EpochPosition) -> Iterator[dict[str, Any]]:
        """The batches of epoch `position.epoch`, on the accelerator's device, from where the run stands
        (`position.batches_in_epoch` counts the batches read; it is advanced here). Manifest rows: the prepared
        loader, its order a function of (data_seed, epoch), the batches a resumed run had read skipped
        (`skip_first_batches`). A stream: the loader's own resumable position. Batches `usable` refuses are read,
        counted and skipped; an epoch of which none could be trained on is an error (it would repeat forever)."""
        accelerator = self.accelerator
        self.items.set_epoch(position.epoch)
        batches = self.loader
        if not self.streamed:
            self.loader.set_epoch(position.epoch)  # data order: a function of data_seed and epoch
            GroupedBatchSampler.set_loader_epoch(self.loader, position.epoch)
            if position.batches_in_epoch:  # resumed inside an epoch: skip what the checkpointed run had read
                batches = accelerator.skip_first_batches(self.loader, position.batches_in_epoch)
                batches.set_epoch(position.epoch)
        resumed_at, trained = position.batches_in_epoch, 0
        for batch in batches:
            position.batches_in_epoch += 1
            if self.usable(batch):
                trained += 1
                yield {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        read = position.batches_in_epoch - resumed_at
        if trained == 0 and (read > 0 or resumed_at == 0):  # (a run resumed at an epoch's very end reads nothing)
            raise RuntimeError(
                f"process {accelerator.process_index} could train on no batch of epoch {position.epoch}: "
                + (
                    f"{read} read, skipped {dict(self.skipped)}; {self.errors}"
                    if read
                    else "its data yielded no sample"
                )
            )

    def usable(self, batch: Mapping[str, Any]) -> bool:
        """Count a batch's failed and partly decodable samples, and say whether to train on it. Skipped (and counted):
        a batch whose samples all failed (with several processes only from a stream, whose processes go through their
        shards independently; otherwise one process skipping would leave the others waiting in the loss's
        all-gather: refused), and with one process a batch of one pair (its contrastive loss is constant)."""
        self.errors.record_batch(batch)
        size, processes = batch.get("batch_size", 1), self.accelerator.num_processes
        if size == 0 and processes > 1 and not self.streamed:
            raise RuntimeError(
                f"every sample of a training batch failed to load on process {self.accelerator.process_index} "
                f"({[e['video'] for e in batch['errors']]}); with several processes this cannot be skipped. Fix or "
                "remove the files (or build a frame cache)."
            )
        if size == 0 or (size == 1 and processes == 1):
            self.skipped["all_failed" if size == 0 else "single_pair"] += 1
            return False
        return True

    def stream_position(self, position: EpochPosition) -> dict[str, Any] | None:
        """What `save_checkpoint(stream_position=...)` keeps of a stream (None for manifest rows, whose position the
        run state and Accelerate's sampler state already hold); `load_stream_state` gives back epoch and batches."""
        if not self.streamed:
            return None
        return {"loader": self.loader.state_dict(), "epoch": position.epoch, "batches": position.batches_in_epoch}

    def report(self) -> tuple[DataErrorSummary, Counter]:
        """The run's failed and partly decodable samples and skipped batches: every process's (a collective: all
        call it), plus what the run reported before it was resumed."""
        from accelerate.utils import gather_object

        errors = DataErrorSummary.merged([self._earlier[0], *gather_object([self.errors])])
        skipped = sum(gather_object([self.skipped]), Counter(self._earlier[1]))
        return errors, skipped
