"""Which frames of a video a model sees: the `FrameSampling` record and the index samplers.

Strategy names are the ones adapter configs store in `frame_sampling`:

- `"segments"`: the video is split into T equal segments; evaluation takes each segment's centre frame, training a
  random frame inside each segment.
- `"chunked_segments"` (Prompt Cube / Prompt Switch): the video is split into `frame_chunk_size` equal segments; with
  k = T / frame_chunk_size chunks, chunk j takes in every segment the frame at the (j+1)/(k+1) point of the segment
  (evaluation) or a random frame of the segment (training). Output is chunk-major, so every chunk covers the video.
- `"fps"`: frames at a fixed `sampling_fps` from the start, the first T; evaluation starts at frame 0, training at a
  random offset inside the first sampling interval.

Videos with fewer usable positions than T follow `short_video_policy`: `"repeat"` spreads the available frames evenly
over the T slots (every slot real, mask all True); `"pad"` keeps the real frames first and fills the rest with zero
frames whose mask is False.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .defaults import DEFAULT_NUM_FRAMES, FRAME_SAMPLING_STRATEGIES, SHORT_VIDEO_POLICIES


@dataclass(frozen=True)
class FrameSampling:
    """How frames are drawn from a video and at what resolution. Built from an adapter config with `from_config`, and
    recorded by the cache, `validate` and the training script so that data and adapter agree.

    Args:
        num_frames: Frames per video (T).
        frame_sampling: `"segments"`, `"chunked_segments"` or `"fps"` (see the module docstring).
        sampling_fps: Frames per second for `"fps"`.
        frame_chunk_size: Frames per chunk (= number of segments) for `"chunked_segments"`; divides `num_frames`.
        image_size: Square frame resolution fed to the model; None means "take it from the image processor".
        short_video_policy: `"repeat"` or `"pad"` for videos with fewer usable frames than `num_frames`.
    """

    num_frames: int = DEFAULT_NUM_FRAMES
    frame_sampling: str = "segments"
    sampling_fps: float | None = None
    frame_chunk_size: int | None = None
    image_size: int | None = None
    short_video_policy: str = "pad"

    def __post_init__(self) -> None:
        if not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {self.num_frames!r}")
        if self.frame_sampling not in FRAME_SAMPLING_STRATEGIES:
            raise ValueError(f"frame_sampling must be one of {FRAME_SAMPLING_STRATEGIES}, got {self.frame_sampling!r}")
        if self.frame_sampling == "fps" and not (self.sampling_fps and self.sampling_fps > 0):
            raise ValueError(f"frame_sampling='fps' needs a positive sampling_fps, got {self.sampling_fps!r}")
        if self.frame_sampling == "chunked_segments" and (
            not self.frame_chunk_size or self.frame_chunk_size < 1 or self.num_frames % self.frame_chunk_size
        ):
            raise ValueError(
                "frame_sampling='chunked_segments' needs a frame_chunk_size that divides num_frames; got "
                f"frame_chunk_size={self.frame_chunk_size!r}, num_frames={self.num_frames}"
            )
        if self.short_video_policy not in SHORT_VIDEO_POLICIES:
            raise ValueError(
                f"short_video_policy must be one of {SHORT_VIDEO_POLICIES}, got {self.short_video_policy!r}"
            )
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size!r}")

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> FrameSampling:
        """Build from any object with the adapter-config fields (`num_frames`, `frame_sampling`, `sampling_fps`,
        `frame_chunk_size`, `image_size`; a dict works too). `overrides` (e.g. `short_video_policy`) win."""
        get = config.get if isinstance(config, dict) else lambda name, default=None: getattr(config, name, default)
        values = {
            "num_frames": get("num_frames", DEFAULT_NUM_FRAMES),
            "frame_sampling": get("frame_sampling", "segments"),
            "sampling_fps": get("sampling_fps", None),
            "frame_chunk_size": get("frame_chunk_size", None),
            "image_size": get("image_size", None),
            "short_video_policy": get("short_video_policy", "pad") or "pad",
        }
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the sampling (written beside caches and run outputs)."""
        return asdict(self)


def _rand_int(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [low, high] (inclusive)."""
    if high <= low:
        return low
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def _segment_positions(num_frames: int, count: int, train: bool, generator) -> list[int]:
    bounds = [num_frames * i / count for i in range(count + 1)]
    positions = []
    for i in range(count):
        start, end = math.floor(bounds[i]), max(math.floor(bounds[i]), math.ceil(bounds[i + 1]) - 1)
        if train:
            positions.append(_rand_int(start, min(end, num_frames - 1), generator))
        else:
            positions.append(min(int((bounds[i] + bounds[i + 1]) / 2), num_frames - 1))
    return positions


def _chunked_positions(num_frames: int, total: int, chunk_size: int, train: bool, generator) -> list[int]:
    chunks = total // chunk_size
    bounds = [num_frames * i / chunk_size for i in range(chunk_size + 1)]
    positions = []
    for j in range(chunks):
        for s in range(chunk_size):
            start, stop = bounds[s], bounds[s + 1]
            if train:
                low, high = math.floor(start), max(math.floor(start), math.ceil(stop) - 1)
                positions.append(_rand_int(low, min(high, num_frames - 1), generator))
            else:
                positions.append(min(int(start + (stop - start) * (j + 1) / (chunks + 1)), num_frames - 1))
    return positions


def _fps_positions(num_frames: int, fps: float, target_fps: float, limit: int, train: bool, generator) -> list[int]:
    if not fps or fps <= 0:
        raise ValueError("frame_sampling='fps' needs the video's frame rate, which this file does not report")
    step = fps / target_fps
    offset = float(torch.rand((), generator=generator).item()) * step if train and step > 1 else 0.0
    positions = []
    t = offset
    while len(positions) < limit and int(t) < num_frames:
        positions.append(int(t))
        t += step
    return positions


def sample_frame_indices(
    num_frames: int,
    fps: float,
    sampling: FrameSampling,
    *,
    train: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[list[int], torch.Tensor]:
    """Frame indices to decode and the frame mask [T] (True = real frame, real frames first).

    With the `"pad"` policy and a short video, fewer than T indices are returned (the caller appends zero frames);
    otherwise exactly T. Training draws use `generator` (default: torch's global RNG, which DataLoader seeds per
    worker).
    """
    if num_frames < 1:
        raise ValueError(f"cannot sample frames from a video with {num_frames} frames")
    total = sampling.num_frames
    if sampling.frame_sampling == "fps":
        positions = _fps_positions(num_frames, fps, sampling.sampling_fps, total, train, generator)
        if not positions:
            positions = [0]
    elif num_frames < total:
        positions = list(range(num_frames))  # every frame is used; the policy decides what fills the rest
    elif sampling.frame_sampling == "segments":
        positions = _segment_positions(num_frames, total, train, generator)
    else:
        positions = _chunked_positions(num_frames, total, sampling.frame_chunk_size, train, generator)
    if len(positions) >= total:
        return positions[:total], torch.ones(total, dtype=torch.bool)
    if sampling.short_video_policy == "repeat":
        if sampling.frame_sampling == "chunked_segments":
            positions = _chunked_positions(num_frames, total, sampling.frame_chunk_size, False, None)
        else:
            positions = [positions[(i * len(positions)) // total] for i in range(total)]
        return positions, torch.ones(total, dtype=torch.bool)
    mask = torch.zeros(total, dtype=torch.bool)
    mask[: len(positions)] = True
    return positions, mask
