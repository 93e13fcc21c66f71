"""CLIP frame preprocessing in torch on uint8 frame tensors: resize the shortest side, centre crop, normalise.

It reproduces `CLIPImageProcessor` (resize shortest edge with bicubic, centre crop, rescale 1/255, normalise with the
processor's mean/std) for whole clips at once, instead of calling the processor frame by frame through PIL. Resized
values are rounded to uint8 levels like PIL's; outputs match the processor with a mean absolute difference below 0.005
(normalised units) and at most about 0.1 at isolated pixels when shrinking (`tests/test_data_transforms.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL resample codes the CLIP processors use


def _size_value(size: Any, keys: Sequence[str]) -> int | None:
    if size is None:
        return None
    if isinstance(size, int):
        return size
    for key in keys:
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        if value:
            return int(value)
    return None


def resize_output_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """(height, width) after scaling the shortest side to `shortest_edge`, as transformers computes it."""
    short, long = (height, width) if height <= width else (width, height)
    new_short, new_long = shortest_edge, int(shortest_edge * long / short)
    return (new_short, new_long) if height <= width else (new_long, new_short)


@dataclass(frozen=True)
class ClipFrameTransform:
    """uint8 frames [T, H, W, 3] -> normalised float [T, 3, crop, crop].

    Args:
        shortest_edge: Target of the shortest-side resize (`processor.size["shortest_edge"]`).
        crop_size: Side of the centre crop (`processor.crop_size`).
        mean, std: Per-channel normalisation (`processor.image_mean` / `image_std`).
        interpolation: "bicubic" (CLIP's), "bilinear" or "nearest".
    """

    shortest_edge: int = 224
    crop_size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bicubic"

    @classmethod
    def from_processor(cls, processor: Any, image_size: int | None = None) -> ClipFrameTransform:
        """Settings of a `CLIPImageProcessor` (or its `image_processor` inside a `CLIPProcessor`).
        `image_size` (an adapter's recorded resolution) overrides both the resize and the crop."""
        processor = getattr(processor, "image_processor", processor)
        shortest = _size_value(getattr(processor, "size", None), ("shortest_edge", "height"))
        crop = _size_value(getattr(processor, "crop_size", None), ("height", "width")) or shortest
        if image_size is not None:
            shortest, crop = image_size, image_size
        if not shortest:
            raise ValueError(f"cannot read a resize size from {type(processor).__name__}.size={processor.size!r}")
        resample = getattr(processor, "resample", 3)
        resample = int(getattr(resample, "value", resample)) if resample is not None else 3
        return cls(
            shortest_edge=shortest,
            crop_size=crop,
            mean=tuple(float(m) for m in getattr(processor, "image_mean", CLIP_MEAN)),
            std=tuple(float(s) for s in getattr(processor, "image_std", CLIP_STD)),
            interpolation=_RESAMPLE.get(resample, "bicubic"),
        )

    @classmethod
    def for_image_size(cls, image_size: int) -> ClipFrameTransform:
        """OpenAI CLIP settings at `image_size` (resize and crop to the same side)."""
        return cls(shortest_edge=image_size, crop_size=image_size)

    def resize_and_crop(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> uint8 [T, 3, crop, crop] (resize shortest side, centre crop)."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames [T, H, W, 3], got shape {tuple(frames.shape)}")
        # Work on contiguous NCHW: elementwise and resampling kernels on the channels-last view are many times slower.
        x = frames.permute(0, 3, 1, 2).contiguous()
        height, width = x.shape[-2:]
        new_h, new_w = resize_output_size(height, width, self.shortest_edge)
        if (new_h, new_w) != (height, width):
            antialias = self.interpolation in ("bilinear", "bicubic")
            x = F.interpolate(
                x.float(),
                size=(new_h, new_w),
                mode=self.interpolation,
                antialias=antialias,
                **({} if self.interpolation == "nearest" else {"align_corners": False}),
            )
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        return center_crop(x, self.crop_size).contiguous()

    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [..., 3, H, W] -> float32 normalised with mean/std (on the frames' device)."""
        std = torch.tensor(self.std, dtype=torch.float32, device=frames.device).view(3, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=frames.device).view(3, 1, 1)
        return frames.contiguous().float().mul_(1.0 / (std * 255.0)).add_(-mean / std)

    def normalize_batch(self, pixel_values: torch.Tensor, video_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalise a uint8 batch [B, T, 3, H, W] from a dataset built with `normalize=False` (e.g. after moving it
        to the GPU: a quarter of the bytes to transfer), keeping padded frames (`video_mask` False) exact zeros."""
        if pixel_values.dtype != torch.uint8:
            raise ValueError(f"normalize_batch expects uint8 pixel_values, got {pixel_values.dtype}")
        out = self.normalize(pixel_values)
        if video_mask is not None and not bool(video_mask.all()):
            out[~video_mask.to(out.device)] = 0.0
        return out

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.resize_and_crop(frames))

    def video_pixel_values(self, frames: torch.Tensor, mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """One sampled clip as the model sees it: uint8 frames [T, H, W, 3] -> [T, 3, crop, crop] (float normalised,
        or uint8 when `normalize` is False), padded slots (`mask` False) exact zeros. The one place that turns decoded
        frames into model inputs: datasets, the frame cache and `VideoTextProcessor` all go through it."""
        pixel_values = self.resize_and_crop(frames)
        if normalize:
            pixel_values = self.normalize(pixel_values)
        if not mask.all():
            pixel_values[~mask] = 0  # padded slots stay exact zeros after normalisation
        return pixel_values


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop [..., H, W] to size x size, zero-padding first when smaller (as transformers does)."""
    height, width = x.shape[-2:]
    if height < size or width < size:
        pad_h, pad_w = max(size - height, 0), max(size - width, 0)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        height, width = x.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return x[..., top : top + size, left : left + size]
