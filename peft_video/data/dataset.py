"""`VideoTextDataset`: a map-style torch dataset over a `datasets.Dataset` of (video path, caption) rows.

Each item is decoded (or read from a frame cache), sampled with a `FrameSampling`, and transformed for CLIP. Decoding
happens in the process that asks for the item, i.e. inside DataLoader workers.

Bad input (`on_error`):
- `"skip"`: the item becomes a `FailedSample(video, reason)`; the failure is logged with the file and reason, the
  collator drops it and lists it under `batch["errors"]`, and `DataErrorSummary.track(loader)` counts it in the main
  process (worker processes cannot update an object of the main process).
- `"raise"`: a `VideoDecodeError` naming the file propagates (the DataLoader re-raises it in the main process).

Hangs and crashes: with `decode_timeout` set (the default, 60 s) every video is decoded in a helper process owned by
the worker (`IsolatedDecoder`); a hang is killed after the timeout and a native crash kills only the helper, and both
are handled by `on_error` like any unreadable file. The worker pool itself never dies or blocks. `decode_timeout=None`
decodes in-process (slightly faster; use it for data that `peft-video validate` has checked or a frame cache).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from .decoding import DecodedVideo, decode_frames
from .errors import VideoDecodeError
from .isolation import IsolatedDecoder
from .sampling import FrameSampling
from .transforms import ClipFrameTransform

logger = logging.getLogger(__name__)

ON_ERROR = ("skip", "raise")


@dataclass(frozen=True)
class FailedSample:
    """Stands in for an item that could not be loaded (`on_error="skip"`)."""

    video: str
    reason: str
    index: int = -1


@dataclass
class DataErrorSummary:
    """Failed samples seen in the main process. Use `for batch in summary.track(loader): ...` and print it at the end.

    `failures` maps each video to its (first) reason; `count` counts every failed item (a video can fail each epoch).
    """

    failures: dict[str, str] = field(default_factory=dict)
    count: int = 0
    reasons: Counter = field(default_factory=Counter)

    def record(self, errors: Iterable[dict[str, str]]) -> None:
        """Add a batch's `errors` list."""
        for error in errors:
            self.count += 1
            self.failures.setdefault(error["video"], error["reason"])
            self.reasons[_reason_kind(error["reason"])] += 1

    def track(self, loader: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield the loader's batches, recording their errors and skipping batches whose samples all failed."""
        for batch in loader:
            self.record(batch.get("errors", ()))
            if batch.get("batch_size", 1) > 0:
                yield batch

    def __str__(self) -> str:
        if not self.count:
            return "data errors: none"
        lines = [f"data errors: {self.count} failed samples from {len(self.failures)} videos"]
        lines += [f"  {video}: {reason}" for video, reason in sorted(self.failures.items())]
        return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0][:60]


class VideoTextDataset(torch.utils.data.Dataset):
    """Decoded, sampled and CLIP-normalised clips with their captions.

    Args:
        data: A `datasets.Dataset` with string columns `video` (absolute path), `caption` and `video_id`
            (`load_manifest` and the benchmark builders produce one).
        sampling: Frame sampling (e.g. `FrameSampling.from_config(adapter_config)`).
        transform: CLIP preprocessing; default OpenAI CLIP settings at `sampling.image_size` or 224.
        train: Random frame positions (training) instead of the deterministic evaluation positions.
        backend: "auto" (decord, then PyAV), "decord", "pyav" or "torchcodec"; others installed act as fallbacks.
        on_error: "skip" or "raise" (see the module docstring).
        decode_timeout: Seconds per video in an isolated helper process; None decodes in-process.
        cache: A `FrameCache` (or its directory) built with the same sampling; videos found in it are not decoded.
        normalize: False returns uint8 `pixel_values` (resized and cropped, not normalised): a quarter of the bytes
            through the DataLoader and to the GPU; normalise there with `transform.normalize_batch(pixel_values,
            video_mask)`.
    """

    def __init__(
        self,
        data: Any,
        sampling: FrameSampling,
        transform: ClipFrameTransform | None = None,
        *,
        train: bool = False,
        backend: str = "auto",
        on_error: str = "skip",
        decode_timeout: float | None = 60.0,
        cache: Any = None,
        video_column: str = "video",
        caption_column: str = "caption",
        normalize: bool = True,
    ):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        missing = [c for c in (video_column, caption_column) if c not in data.column_names]
        if missing:
            raise ValueError(f"dataset lacks column(s) {missing}; it has {data.column_names}")
        self.data = data
        self.sampling = sampling
        self.transform = transform or ClipFrameTransform.for_image_size(sampling.image_size or 224)
        self.train = train
        self.backend = backend
        self.on_error = on_error
        self.decode_timeout = decode_timeout
        self.normalize = normalize
        self.video_column, self.caption_column = video_column, caption_column
        self._videos: list[str] = list(data[video_column])
        self._captions: list[Any] = list(data[caption_column])
        self._video_ids: list[str] = (
            [str(v) for v in data["video_id"]] if "video_id" in data.column_names else list(self._videos)
        )
        self.cache = _open_cache(cache, sampling)
        if self.cache is not None and train:
            logger.info("frame cache in use: training sees the cached evaluation positions (no temporal jitter)")
        self._decoder: IsolatedDecoder | None = None

    @classmethod
    def from_manifest(
        cls,
        manifest: str | os.PathLike,
        sampling: FrameSampling,
        transform: ClipFrameTransform | None = None,
        *,
        split: str | None = None,
        cache: Any = "auto",
        **kwargs: Any,
    ) -> VideoTextDataset:
        """Load a manifest (`load_manifest`) and, with `cache="auto"`, use the frame cache that `peft-video cache`
        wrote beside it (`<manifest>.frames/`) when there is one built with the same sampling; otherwise decode."""
        from .cache import INDEX_FILE, FrameCache, default_cache_dir
        from .manifest import load_manifest

        if isinstance(cache, str) and cache == "auto":
            directory = default_cache_dir(manifest)
            cache = None
            if (directory / INDEX_FILE).is_file():
                found = FrameCache.open(directory)
                try:
                    found.check_sampling(sampling)
                    cache = found
                    logger.info("using the frame cache at %s", directory)
                except ValueError as err:
                    logger.warning("not using the frame cache beside the manifest: %s", err)
        return cls(load_manifest(manifest, split=split), sampling, transform, cache=cache, **kwargs)

    def __len__(self) -> int:
        return len(self._videos)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_decoder"] = None  # each worker starts its own helper process
        return state

    def _decode(self, path: str) -> DecodedVideo:
        if self.cache is not None and path in self.cache:
            return self.cache.read(path)
        if self.decode_timeout is None:
            return decode_frames(path, self.sampling, train=self.train, backend=self.backend)
        if self._decoder is None:
            self._decoder = IsolatedDecoder(self.decode_timeout, backend=self.backend)
        # Draw the child's seed from this process's RNG so DataLoader worker seeding still governs training jitter.
        seed = int(torch.randint(0, 2**62, (1,)).item()) if self.train else None
        return self._decoder.decode(path, self.sampling, train=self.train, seed=seed)

    def load(self, index: int) -> dict[str, Any]:
        """The item at `index`; raises `VideoDecodeError` naming the file when it cannot be loaded."""
        path = self._videos[index]
        caption = self._captions[index]
        if not isinstance(caption, str) or not caption.strip():
            raise VideoDecodeError(path, f"empty caption at row {index}")
        video = self._decode(path)
        return {
            "pixel_values": clip_pixel_values(video, self.transform, self.normalize),
            "video_mask": video.mask,
            "video_id": self._video_ids[index],
            "caption": caption,
            "video": path,
            "frame_indices": video.indices,
        }

    def __getitem__(self, index: int) -> dict[str, Any] | FailedSample:
        try:
            return self.load(index)
        except VideoDecodeError as err:
            if self.on_error == "raise":
                raise
            logger.warning("skipping sample %d: %s: %s", index, err.path, err.reason)
            return FailedSample(err.path, err.reason, index)


def clip_pixel_values(video: DecodedVideo, transform: ClipFrameTransform, normalize: bool = True) -> torch.Tensor:
    """A decoded clip as the model's `pixel_values` [T, 3, H, W]: resized and cropped, normalised unless
    `normalize=False` (then uint8), padded frames exact zeros."""
    pixel_values = transform.resize_and_crop(video.frames)
    if normalize:
        pixel_values = transform.normalize(pixel_values)
    if not video.mask.all():
        pixel_values[~video.mask] = 0  # padded slots stay exact zeros after normalisation
    return pixel_values


def _open_cache(cache: Any, sampling: FrameSampling):
    if cache is None:
        return None
    from .cache import FrameCache

    if isinstance(cache, (str, os.PathLike)):
        cache = FrameCache.open(cache)
    cache.check_sampling(sampling)
    return cache
