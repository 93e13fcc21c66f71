"""`StreamingVideoTextDataset`: decoded clips from a stream of shards, split across processes and DataLoader workers,
shuffled per epoch, and resumable exactly after a kill.

    samples = webdataset_samples("data/shards/train/shard-{00000..00063}.tar")
    train = StreamingVideoTextDataset(samples, sampling, transform, train=True, shuffle_buffer=256, seed=0,
                                      rank=accelerator.process_index, world_size=accelerator.num_processes)
    loader = StatefulDataLoader(train, batch_size=32, num_workers=4, collate_fn=VideoTextCollator(tokenizer))
    train.set_epoch(epoch)                       # before each pass; reaches persistent workers too
    state = loader.state_dict()                  # with the checkpoint; on restart: loader.load_state_dict(state)

Who reads what. `split_dataset_by_node` (datasets) gives each process the shards `rank::world_size` when the shard
count is a multiple of `world_size` (otherwise each process reads every shard and keeps every `world_size`-th sample:
still each sample once, at more reading cost); inside a process `datasets` gives DataLoader worker `w` of `n` the
shards `w::n`. So each sample is read once per epoch across the whole job. Workers without a shard stay idle: use at
least `world_size x num_workers` shards.

Shuffling (`shuffle_buffer > 0`). The shard order is permuted per epoch (`datasets`' `shuffle(seed)` +
`set_epoch`, the same permutation on every process), then each worker permutes its stream in consecutive windows of
`shuffle_buffer` samples, seeded by (seed, epoch, rank, worker, window). `datasets`' own shuffle buffer is not used:
its state does not hold the buffer, so a resumed run loses the samples that were in it (datasets documents this).
Windows are exactly resumable: the state holds the stream position at the window's start and how many of its samples
were handed out, and a resumed worker reads the window again, permutes it with the same seed and skips those.

Resume (`state_dict` / `load_state_dict`, per worker; torchdata's `StatefulDataLoader` collects them with each batch
and restores them): no sample is repeated or skipped relative to the batches the training loop received, provided
the job resumes with the same shards, `world_size`, `num_workers`, `shuffle_buffer` and seed. The stream position is
`datasets`' own (shard index, sample index in that shard): a resumed worker re-reads its current shard from the start
up to its position (bytes only, no decoding). Frame positions (training jitter) and the caption picked among several
are drawn from (seed, epoch, sample key), so a resumed run sees the same frames and captions too.

Captions: every item carries all of its video's `captions`; `caption` is one of them, drawn per epoch when training
(`caption_choice="random"`: each epoch may pair the video with a different caption, as X-Pool trains on MSR-VTT) or
the first one (`"first"`, the default for evaluation, which uses `captions`).

Metadata: every item carries `meta`, its video's metadata (`peft_video.data.shards`: the manifest's other columns
as `peft-video shard` stored them) as a dict, or None; a failed sample keeps it too (`FailedStreamSample.meta`), so
an evaluation knows the twins and subsets of a video that failed.

Bad samples (the reader's `error` rows, bytes that are not a video, a decoder hang or crash) follow `on_error` like
`VideoTextDataset`: `"skip"` yields a `FailedSample` named `<shard>#<key>` (the collator lists it in
`batch["errors"]`), `"raise"` raises `VideoDecodeError` with that name. The rest of the shard is read on.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
import torch

from .dataset import ON_ERROR, FailedSample, VideoTextSample, partial_video_record
from .decoding import DecodedVideo, VideoBytes, decode_frames, sample_name
from .errors import VideoDecodeError
from .isolation import IsolatedDecoder
from .sampling import FrameSampling
from .shards import parse_meta
from .transforms import ClipFrameTransform

logger = logging.getLogger(__name__)

CAPTION_CHOICES = ("random", "first")
STATE_VERSION = 1
RESUME_INVARIANTS = ("shuffle_buffer", "seed", "rank", "world_size")
"""What a resumed dataset must share with the one that saved the state (the shard list and DataLoader worker count
too, which the state cannot check: the stream position is an index into this process' shards)."""


@dataclass(frozen=True)
class FailedStreamSample(FailedSample):
    """A `FailedSample` from a stream: `video` is `<shard>#<key>`; it also keeps the sample's `video_id`, `captions`
    and `meta` (an evaluation counts the captions of a video that failed as misses instead of dropping them, with the
    video's metadata)."""

    key: str = ""
    shard: str = ""
    video_id: str = ""
    captions: tuple[str, ...] = ()
    meta: dict[str, Any] | None = field(default=None, hash=False, compare=False)

    @property
    def details(self) -> dict[str, Any]:
        """Extra fields for the collator's `batch["errors"]` entries."""
        return {
            "key": self.key, "shard": self.shard, "video_id": self.video_id, "captions": list(self.captions),
            "meta": self.meta,
        }  # fmt: skip


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from the parts' text, equal in every process (Python's `hash` of a str is not)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class _BufferWarningFilter(logging.Filter):
    """datasets warns, on every resume through `shuffle()`, that the shuffle buffer's content was not saved; ours has
    size 1 and is always empty between samples, so the warning is wrong here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "shuffle buffer of a dataset without the buffer content" not in record.getMessage()


def _quiet_buffer_warning() -> None:
    target = logging.getLogger("datasets.iterable_dataset")
    if not any(isinstance(f, _BufferWarningFilter) for f in target.filters):
        target.addFilter(_BufferWarningFilter())


def _process_group() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class StreamingVideoTextDataset(torch.utils.data.IterableDataset):
    """Decoded, sampled and CLIP-normalised clips with captions from a stream of raw samples.

    Args:
        samples: A `datasets.IterableDataset` of raw samples (`webdataset_samples`, `parquet_samples`,
            `dataset_samples` in `peft_video.data.shards`).
        sampling: Frame sampling (e.g. `FrameSampling.from_config(adapter_config)`).
        transform: CLIP preprocessing; default OpenAI CLIP settings at `sampling.image_size` or 224.
        train: Random frame positions inside each segment, and a random caption per epoch among several.
        shuffle_buffer: 0 reads in shard order (evaluation); N > 0 permutes the shard order per epoch and the samples
            in windows of N (memory: N raw videos per worker).
        seed: Seeds the shard order, the windows, frame jitter and caption choice (with the epoch).
        rank, world_size: This process among the job's (default: `torch.distributed`'s, or 0 and 1).
        caption_choice: "random" or "first" (default: "random" when `train`, else "first").
        backend, on_error, decode_timeout, normalize: as in `VideoTextDataset`.
    """

    def __init__(
        self,
        samples: Any,
        sampling: FrameSampling,
        transform: ClipFrameTransform | None = None,
        *,
        train: bool = False,
        shuffle_buffer: int = 0,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        caption_choice: str | None = None,
        backend: str = "auto",
        on_error: str = "skip",
        decode_timeout: float | None = 60.0,
        normalize: bool = True,
    ):
        import datasets

        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        caption_choice = caption_choice or ("random" if train else "first")
        if caption_choice not in CAPTION_CHOICES:
            raise ValueError(f"caption_choice must be one of {CAPTION_CHOICES}, got {caption_choice!r}")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        if not isinstance(samples, datasets.IterableDataset):
            raise TypeError(
                f"expected a datasets.IterableDataset of raw samples (peft_video.data.shards), got {type(samples)}"
            )
        missing = [c for c in ("key", "shard", "video", "path", "captions", "error") if c not in samples.column_names]
        if missing:
            raise ValueError(
                f"samples lack column(s) {missing}; build them with webdataset_samples, parquet_samples or "
                "dataset_samples (peft_video.data.shards)"
            )
        default_rank, default_world = _process_group()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world_size {self.world_size}")
        self.samples = samples
        self.sampling = sampling
        self.transform = transform or ClipFrameTransform.for_image_size(sampling.image_size or 224)
        self.train = train
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.caption_choice = caption_choice
        self.backend = backend
        self.on_error = on_error
        self.decode_timeout = decode_timeout
        self.normalize = normalize
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # seen by persistent workers
        self._state: dict[str, Any] | None = None
        self._resume: dict[str, Any] | None = None
        self._decoder: IsolatedDecoder | None = None
        self._warned_partial: set[str] = set()

    @property
    def num_shards(self) -> int:
        """Shards this process reads (all of them when they do not divide evenly across processes)."""
        return self.stream(self.epoch).num_shards

    def stream(self, epoch: int):
        """This process' `datasets` stream of raw samples for `epoch` (shard order permuted when shuffling)."""
        from datasets.distributed import split_dataset_by_node

        stream = self.samples
        if self.shuffle_buffer > 0:
            # A new permutation per epoch, the same on every process. Not through `set_epoch` of datasets: its
            # in-place `+=` on a tensor shared with the DataLoader workers races when workers set it. buffer_size=1:
            # samples pass straight through (datasets' buffer would lose its samples on resume); the windows of
            # `__iter__` shuffle them. max_buffer_input_shards=1: datasets 5.2 cannot restore interleaved shards
            # inside a DataLoader worker (it first loads the worker's state into the unsplit stream: IndexError).
            stream = stream.shuffle(seed=stable_seed(self.seed, epoch), buffer_size=1, max_buffer_input_shards=1)
            _quiet_buffer_warning()
        if self.world_size > 1:
            stream = split_dataset_by_node(stream, rank=self.rank, world_size=self.world_size)
        return stream

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (shard order, windows, jitter, captions); call before iterating each epoch."""
        self._epoch.fill_(int(epoch))

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_decoder"] = None  # each worker starts its own helper process
        return state

    # ------------------------------------------------------------------------------------------------ resume state

    def state_dict(self) -> dict[str, Any]:
        """Where this worker's stream stands after the last item it yielded (for `StatefulDataLoader`)."""
        if self._state is None:
            return self._make_state(self.epoch, None, 0, 0)
        return dict(self._state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from `state_dict()` at the next iteration: the state's epoch, then the items not yet yielded."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown streaming state version {state.get('version')!r}; expected {STATE_VERSION}")
        saved = {name: state.get(name) for name in RESUME_INVARIANTS}
        current = {name: getattr(self, name) for name in RESUME_INVARIANTS}
        if saved != current:
            differ = ", ".join(
                f"{n}={saved[n]} (now {current[n]})" for n in RESUME_INVARIANTS if saved[n] != current[n]
            )
            raise ValueError(f"the state was saved with {differ}: resuming would repeat or skip samples")
        self._resume = dict(state)

    # ------------------------------------------------------------------------------------------------- iteration

    def __iter__(self) -> Iterator[dict[str, Any] | FailedSample]:
        # Take the loaded state now, not at the first item: a StatefulDataLoader restored at the end of an epoch
        # creates the iterator but never advances it, and the next epoch must not inherit the old state.
        resume, self._resume = self._resume, None
        return self._iterate(resume)

    def _iterate(self, resume: dict[str, Any] | None) -> Iterator[dict[str, Any] | FailedSample]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        if resume is not None:
            self.set_epoch(resume["epoch"])
        epoch = self.epoch
        stream = self.stream(epoch)
        start = resume["stream"] if resume is not None else None
        if start is not None:
            stream.load_state_dict(start)
        window_index = resume["window"] if resume is not None else 0
        skip = resume["emitted"] if resume is not None else 0
        if resume is not None and resume.get("finished"):
            self._state = dict(resume)
            return
        rows = iter(stream)
        size = max(1, self.shuffle_buffer)
        while True:
            window = list(islice(rows, size))
            if not window:
                break
            order = np.arange(len(window))
            if self.shuffle_buffer > 0:
                rng = np.random.default_rng(stable_seed(self.seed, epoch, self.rank, worker, window_index))
                order = rng.permutation(len(window))
            for emitted, position in enumerate(order[skip:], start=skip + 1):
                self._state = self._make_state(epoch, start, window_index, emitted)
                yield self._item(window[position], epoch)
            start = stream.state_dict()
            window_index, skip = window_index + 1, 0
        self._state = {**self._make_state(epoch, start, window_index, 0), "finished": True}

    def _make_state(self, epoch: int, stream: dict | None, window: int, emitted: int) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "epoch": epoch,
            "stream": stream,
            "window": window,
            "emitted": emitted,
            **{name: getattr(self, name) for name in RESUME_INVARIANTS},
        }

    def _item(self, row: dict[str, Any], epoch: int) -> dict[str, Any] | FailedSample:
        name = sample_name(row["shard"], row["key"])
        try:
            return self.load(row, epoch)
        except VideoDecodeError as err:
            if self.on_error == "raise":
                raise
            logger.warning("skipping sample %s: %s", err.path, err.reason)
            video_id = row.get("video_id") or row["key"]
            captions = tuple(row.get("captions") or ())
            meta = parse_meta(row.get("meta"))
            return FailedStreamSample(
                err.path or name, err.reason, -1, row["key"], row["shard"], video_id, captions, meta
            )

    def load(self, row: dict[str, Any], epoch: int | None = None) -> dict[str, Any]:
        """Decode one raw sample; raises `VideoDecodeError` named `<shard>#<key>` when it cannot be loaded."""
        epoch = self.epoch if epoch is None else epoch
        name = sample_name(row["shard"], row["key"])
        if row.get("error"):
            raise VideoDecodeError(name, row["error"])
        captions = list(row["captions"])
        seed = stable_seed(self.seed, epoch, row["key"])  # not the shard URL: a moved copy draws the same
        caption = captions[0]
        if self.caption_choice == "random" and len(captions) > 1:
            caption = captions[int(np.random.default_rng(seed).integers(len(captions)))]
        source = VideoBytes(row["video"], name) if row.get("video") is not None else row["path"]
        try:
            video = self._decode(source, seed)
        except VideoDecodeError as err:
            if err.path == name:
                raise
            raise type(err)(name, f"{err.path}: {err.reason}") from err  # a path row: name the sample and its file
        partial = partial_video_record(name, video, self.on_error, self._warned_partial)
        return VideoTextSample(
            {
                "pixel_values": self.transform.video_pixel_values(video.frames, video.mask, self.normalize),
                "video_mask": video.mask,
                "video_id": row.get("video_id") or row["key"],
                "caption": caption,
                "captions": captions,
                "meta": parse_meta(row.get("meta")),
                "video": name,
                "key": row["key"],
                "shard": row["shard"],
                "frame_indices": video.indices,
                "partial": partial,
                "duration": video.metadata.duration,
            }
        )

    def _decode(self, source: VideoBytes | str, seed: int) -> DecodedVideo:
        seed = seed if self.train else None
        if self.decode_timeout is None:
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            return decode_frames(source, self.sampling, train=self.train, generator=generator, backend=self.backend)
        if self._decoder is None:
            self._decoder = IsolatedDecoder(self.decode_timeout, backend=self.backend)
        return self._decoder.decode(source, self.sampling, train=self.train, seed=seed)
