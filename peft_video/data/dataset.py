"""`VideoTextDataset`: a map-style torch dataset over a `datasets.Dataset` of (video path, caption) rows.

Each item is decoded (or read from a frame cache), sampled with a `FrameSampling`, and transformed for CLIP. Decoding
happens in the process that asks for the item, i.e. inside DataLoader workers.

Bad input (`on_error`):
- `"skip"`: the item becomes a `FailedSample(video, reason)`; the failure is logged with the file and reason, the
  collator drops it and lists it under `batch["errors"]`, and `DataErrorSummary.track(loader)` counts it in the main
  process (worker processes cannot update an object of the main process).
- `"raise"`: a `VideoDecodeError` naming the file propagates (the DataLoader re-raises it in the main process).

Partly decodable files (fewer frames decode than the header announces: a truncated file, corrupt sample data) follow
the library's one policy (`decoding.partial_video`): with `"skip"` the item is the shorter video, a warning names the
file with decoded vs announced frames (once per file and process), and the item carries `partial` so that the
collator lists it under `batch["partial_videos"]` and `DataErrorSummary` counts it; with `"raise"` a
`PartialVideoError` propagates.

Hangs and crashes: with `decode_timeout` set (the default, 60 s) every video is decoded in a helper process owned by
the worker (`IsolatedDecoder`); a hang is killed after the timeout and a native crash kills only the helper, and both
are handled by `on_error` like any unreadable file. The worker pool itself never dies or blocks. `decode_timeout=None`
decodes in-process (slightly faster; use it for data that `peft-video validate` has checked or a frame cache).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .decoding import DecodedVideo, decode_frames, partial_video
from .errors import VideoDecodeError, partial_reason
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


class VideoTextSample(Mapping):
    """One loaded (video, caption) pair: a read-only mapping of `pixel_values`, `video_mask`, `video_id`, `caption`,
    `video` and `frame_indices`.

    A sample, not a `dict` of columns, on purpose: `transformers.Trainer` removes from every dict sample the keys that
    the model's forward does not name, and for a PeftModel it reads the *base* CLIPModel's forward, which names
    neither `video_mask` nor `caption`. Trainer leaves other samples to the collator whole.
    """

    def __init__(self, fields: Mapping[str, Any]):
        self._fields = dict(fields)

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"VideoTextSample(video={self._fields.get('video')!r}, caption={self._fields.get('caption')!r})"


@dataclass
class DataErrorSummary:
    """Failed samples seen in the main process. Use `for batch in summary.track(loader): ...` and print it at the end.

    `failures` maps each video to its (first) reason; `count` counts every failed item (a video can fail each epoch).
    `partial` maps each partly decodable video that was used as a shorter video to `(decoded, announced)` frames.
    """

    failures: dict[str, str] = field(default_factory=dict)
    count: int = 0
    reasons: Counter = field(default_factory=Counter)
    partial: dict[str, tuple[int, int]] = field(default_factory=dict)

    def record(self, errors: Iterable[dict[str, str]], partial: Iterable[dict[str, Any]] = ()) -> None:
        """Add a batch's `errors` list (and its `partial_videos` list)."""
        for error in errors:
            self.count += 1
            self.failures.setdefault(error["video"], error["reason"])
            self.reasons[_reason_kind(error["reason"])] += 1
        for item in partial:
            self.partial.setdefault(item["video"], (int(item["decoded_frames"]), int(item["announced_frames"])))

    def record_batch(self, batch: dict[str, Any]) -> None:
        """Add what a collated batch reports: its `errors` and `partial_videos`."""
        self.record(batch.get("errors", ()), batch.get("partial_videos", ()))

    def track(self, loader: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield the loader's batches, recording their errors and skipping batches whose samples all failed."""
        for batch in loader:
            self.record_batch(batch)
            if batch.get("batch_size", 1) > 0:
                yield batch

    def __str__(self) -> str:
        lines = []
        if self.count:
            lines.append(f"data errors: {self.count} failed samples from {len(self.failures)} videos")
            lines += [f"  {video}: {reason}" for video, reason in sorted(self.failures.items())]
        else:
            lines.append("data errors: none")
        if self.partial:
            lines.append(f"partly decodable videos used as shorter videos: {len(self.partial)}")
            lines += [
                f"  {video}: {partial_reason(decoded, announced)}"
                for video, (decoded, announced) in sorted(self.partial.items())
            ]
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
        self._warned_partial: set[str] = set()

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
        from .cache import manifest_frame_cache
        from .manifest import load_manifest

        if isinstance(cache, str) and cache == "auto":
            cache = manifest_frame_cache(manifest, sampling)
        return cls(load_manifest(manifest, split=split), sampling, transform, cache=cache, **kwargs)

    def __len__(self) -> int:
        return len(self._videos)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_decoder"] = None  # each worker starts its own helper process
        state["_warned_partial"] = set()
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

    def load(self, index: int) -> VideoTextSample:
        """The item at `index`; raises `VideoDecodeError` naming the file when it cannot be loaded."""
        path = self._videos[index]
        caption = self._captions[index]
        if not isinstance(caption, str) or not caption.strip():
            raise VideoDecodeError(path, f"empty caption at row {index}")
        video = self._decode(path)
        partial = partial_video_record(path, video, self.on_error, self._warned_partial)
        return VideoTextSample(
            {
                "pixel_values": self.transform.video_pixel_values(video.frames, video.mask, self.normalize),
                "video_mask": video.mask,
                "video_id": self._video_ids[index],
                "caption": caption,
                "video": path,
                "frame_indices": video.indices,
                "partial": partial,
                "duration": video.metadata.duration,
            }
        )

    def __getitem__(self, index: int) -> VideoTextSample | FailedSample:
        try:
            return self.load(index)
        except VideoDecodeError as err:
            if self.on_error == "raise":
                raise
            logger.warning("skipping sample %d: %s: %s", index, err.path, err.reason)
            return FailedSample(err.path, err.reason, index)


def partial_video_record(name: str, video: DecodedVideo, on_error: str, warned: set[str]) -> dict[str, Any] | None:
    """Apply the one partly-decodable-file policy (`decoding.partial_video`) to a decoded sample: raise with
    `on_error="raise"`; otherwise warn once per file (`warned` remembers which) and return the record that sample
    reports (`video`, `decoded_frames`, `announced_frames`), or None for a complete file."""
    warning = partial_video(name, video.metadata, "raise" if on_error == "raise" else "keep")
    if warning is None:
        return None
    if name not in warned:
        warned.add(name)
        logger.warning("%s", warning)
    return {
        "video": name,
        "decoded_frames": video.metadata.num_frames,
        "announced_frames": video.metadata.announced_frames,
    }


def _open_cache(cache: Any, sampling: FrameSampling):
    if cache is None:
        return None
    from .cache import FrameCache

    if isinstance(cache, (str, os.PathLike)):
        cache = FrameCache.open(cache)
    cache.check_sampling(sampling)
    return cache
