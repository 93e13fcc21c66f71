"""The tiny CLIP of the offline world: its architecture, where its committed weights live, and how well it knows
still frames (text-to-image recall on static captions).

The weights are made by `examples/pretrain_tiny_clip.py` (still frames, static captions, CLIP's contrastive loss) and
committed in `peft_video/synthetic/tiny-clip/`, a standard Hugging Face folder:

    CLIPModel.from_pretrained(TINY_CLIP_PATH); AutoTokenizer.from_pretrained(TINY_CLIP_PATH)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import CLIPConfig

from .tokenizer import BOS_TOKEN, EOS_TOKEN, MODEL_MAX_LENGTH, world_vocabulary

TINY_CLIP_PATH = Path(__file__).resolve().parent / "tiny-clip"

# OpenAI CLIP's normalisation, kept so that the usual CLIPImageProcessor settings apply unchanged.
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


def world_clip_config(image_size: int = 64) -> CLIPConfig:
    """The tiny CLIP's architecture: ViT 64 px / patch 16 / width 128 / 4 layers, text width 128 / 4 layers,
    vocabulary = the world's words, 77 text positions, projection 128 (1.7 M parameters)."""
    vocab = world_vocabulary()
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 128,
        "intermediate_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "max_position_embeddings": MODEL_MAX_LENGTH,
        "bos_token_id": vocab[BOS_TOKEN],
        "eos_token_id": vocab[EOS_TOKEN],
        "pad_token_id": vocab[EOS_TOKEN],
    }
    vision = {
        "image_size": image_size,
        "patch_size": 16,
        "hidden_size": 128,
        "intermediate_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
    }
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=128)


def frames_to_pixel_values(frames: np.ndarray) -> torch.Tensor:
    """uint8 RGB [..., H, W, 3] -> float32 [..., 3, H, W], scaled to [0, 1] and normalised with CLIP's mean/std
    (what `CLIPImageProcessor` does to a frame that already has the model's size)."""
    if frames.dtype != np.uint8 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [..., H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255.0)
    pixels = (pixels - torch.tensor(IMAGE_MEAN)) / torch.tensor(IMAGE_STD)
    return pixels.movedim(-1, -3).contiguous()


def load_tiny_clip(path: str | Path = TINY_CLIP_PATH):
    """(CLIPModel in eval mode, tokenizer) from the committed folder, with a clear error when it is missing."""
    from transformers import AutoTokenizer, CLIPModel

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no tiny CLIP in {path} (config.json missing); recreate it with `python examples/pretrain_tiny_clip.py`"
        )
    return CLIPModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def still_frame_recall(
    model, tokenizer, images: np.ndarray, captions: list[str], ks: tuple[int, ...] = (1, 5), batch_size: int = 256
) -> dict[str, float]:
    """Text-to-image recall@k (in %) of `model` on still frames whose captions are all different.

    Ranks are pessimistic under ties (an image scoring exactly as high as the right one counts as ranked above it),
    so a model that collapses to constant embeddings scores 0, not 100.
    """
    if len(images) != len(captions):
        raise ValueError(f"got {len(images)} images but {len(captions)} captions")
    if len(set(captions)) != len(captions):
        raise ValueError("captions must be unique for recall to be well defined (use unique_captions=True)")
    was_training = model.training
    model.eval()
    image_embeds, text_embeds = [], []
    for start in range(0, len(images), batch_size):
        pixels = frames_to_pixel_values(images[start : start + batch_size])
        image_embeds.append(model.get_image_features(pixel_values=pixels).pooler_output)
        tokens = tokenizer(captions[start : start + batch_size], padding=True, return_tensors="pt")
        text_embeds.append(model.get_text_features(**tokens).pooler_output)
    model.train(was_training)
    image = torch.nn.functional.normalize(torch.cat(image_embeds), dim=-1)
    text = torch.nn.functional.normalize(torch.cat(text_embeds), dim=-1)
    scores = text @ image.T
    correct = scores.diagonal()[:, None]
    ranks = (scores > correct).sum(1) + (scores == correct).sum(1) - 1  # 0 = retrieved first
    return {f"R@{k}": float((ranks < k).float().mean() * 100) for k in ks} | {"n": len(captions)}
