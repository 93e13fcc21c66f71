"""Small CLIP configurations and random inputs for tests and benchmarks (no weights are downloaded anywhere)."""

from __future__ import annotations

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
