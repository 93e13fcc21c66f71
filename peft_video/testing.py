"""Small CLIP configurations, random inputs and test videos for tests and benchmarks (nothing is downloaded)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPConfig, CLIPModel


def tiny_clip_config(**overrides) -> CLIPConfig:
    """A CLIP with 2-layer towers of width 32, 32-px frames in 8-px patches and a 100-token
    vocabulary (SOT 98, EOT 99).

    `overrides` may hold `vision={...}`, `text={...}` (merged into the tower configs) and top-level CLIPConfig fields.
    """
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    text = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        vocab_size=100,
        max_position_embeddings=77,
        bos_token_id=98,
        eos_token_id=99,
        pad_token_id=99,
    )
    vision.update(overrides.pop("vision", {}))
    text.update(overrides.pop("text", {}))
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=16, **overrides)


def vit_b32_config() -> CLIPConfig:
    """The shapes of openai/clip-vit-base-patch32 (its weights are not needed to count parameters or time a step)."""
    return CLIPConfig(
        text_config=dict(
            hidden_size=512,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=8,
            vocab_size=49408,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            image_size=224,
            patch_size=32,
        ),
        projection_dim=512,
    )


def make_clip(config: CLIPConfig, seed: int = 0) -> CLIPModel:
    """A randomly initialised CLIPModel in eval mode, seeded."""
    torch.manual_seed(seed)
    return CLIPModel(config).eval()


def random_captions(config: CLIPConfig, batch: int, length: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """input_ids [batch, length] of the form SOT w… EOT pad… with varied lengths, and the matching attention_mask."""
    text = config.text_config
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, text.bos_token_id - 1, (batch, length), generator=generator)
    lengths = torch.randint(2, length + 1, (batch,), generator=generator)
    positions = torch.arange(length)[None]
    ids[:, 0] = text.bos_token_id
    ids = torch.where(positions == (lengths[:, None] - 1), text.eos_token_id, ids)
    ids = torch.where(positions >= lengths[:, None], text.pad_token_id, ids)
    mask = (positions < lengths[:, None]).long()
    return {"input_ids": ids, "attention_mask": mask}


def random_videos(config: CLIPConfig, batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """pixel_values [batch, frames, 3, H, W] drawn from N(0, 1)."""
    size = config.vision_config.image_size
    return torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


LEVEL_OFFSET = 16
LEVEL_STEP = 7
MAX_INDEXED_FRAMES = (235 - LEVEL_OFFSET) // LEVEL_STEP  # stay inside video-range luma


def frame_level(index: int) -> int:
    """Grey level written into frame `index` of an indexed test video."""
    if index > MAX_INDEXED_FRAMES:
        raise ValueError(f"indexed test videos hold at most {MAX_INDEXED_FRAMES + 1} frames, asked for index {index}")
    return LEVEL_OFFSET + LEVEL_STEP * index


def frame_index_of(frame: np.ndarray) -> int:
    """Recover the index written by `frame_level` from a decoded RGB frame (any size)."""
    return int(round((float(np.asarray(frame, dtype=np.float64).mean()) - LEVEL_OFFSET) / LEVEL_STEP))


def _indexed_frames(num_frames: int, width: int, height: int) -> list[np.ndarray]:
    return [np.full((height, width, 3), frame_level(i), dtype=np.uint8) for i in range(num_frames)]


def _pattern_frames(num_frames: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """Moving, textured frames (a realistic encoding load for benchmarks, unlike flat grey)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(height, width * 2, 3), dtype=np.uint8)
    base = ((base.astype(np.uint16) + np.roll(base, 1, axis=1)) // 2).astype(np.uint8)
    frames = []
    for i in range(num_frames):
        shift = (i * 4) % width
        frames.append(np.ascontiguousarray(base[:, shift : shift + width]))
    return frames


def write_video(
    path: str | os.PathLike,
    *,
    num_frames: int = 8,
    width: int = 64,
    height: int = 48,
    fps: int = 8,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    container_format: str | None = None,
    frames: list[np.ndarray] | None = None,
    pattern: str = "indexed",
    metadata: dict[str, str] | None = None,
    rotation: int | None = None,
) -> Path:
    """Write a video with PyAV and return its path.

    `pattern="indexed"` writes flat frames whose grey level encodes their index; `"moving"` writes textured frames.
    `rotation` stores display-matrix rotation metadata (degrees) on the stream when this PyAV build allows it.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if frames is None:
        make = _indexed_frames if pattern == "indexed" else _pattern_frames
        frames = make(num_frames, width, height)
    with av.open(str(path), mode="w", format=container_format) as container:
        if metadata:
            container.metadata.update(metadata)
        stream = container.add_stream(codec, rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = pix_fmt
        stream.time_base = Fraction(1, fps)
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "18"}
        if rotation is not None:
            stream.metadata["rotate"] = str(rotation)
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
