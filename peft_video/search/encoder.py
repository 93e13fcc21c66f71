"""`VideoTextEncoder`: a retrieval model (base CLIP + adapter, or the zero-shot baseline) with its processor, and the
identity that an index records so that it never mixes embeddings of different models or sampling.

    encoder = VideoTextEncoder.load(adapter="outputs/demo_tfvl")           # base model from adapter_config.json
    encoder = VideoTextEncoder.load(base_model="openai/clip-vit-base-patch32", num_frames=12)   # zero-shot
    texts = encoder.encode_text(["a dog catches a frisbee"])               # float32 [1, P], L2-normalised
    videos = encoder.encode_videos(["clip.mp4"])
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..processing import VideoTextProcessor, _hub_file

IDENTITY_FIELDS = ("base_model", "base_model_config", "adapter_weights", "sampling", "transform", "embedding_dim")
"""Identity fields that must agree for two sets of embeddings to share an index (names and paths may differ)."""

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _sha256_file(path: str | os.PathLike | None) -> str | None:
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _name(source: str | os.PathLike) -> str:
    """A local folder as an absolute path (an index may be searched from another working directory); a Hub id as is."""
    return str(Path(source).resolve()) if Path(source).exists() else str(source)


@dataclass
class VideoTextEncoder:
    """A retrieval model in eval mode, its `VideoTextProcessor`, and its `identity` (see `IDENTITY_FIELDS`)."""

    model: Any
    processor: VideoTextProcessor
    identity: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        adapter: str | os.PathLike | None = None,
        base_model: str | os.PathLike | None = None,
        *,
        num_frames: int = 12,
        device: str | torch.device | None = None,
        dtype: str = "float32",
        **sampling: Any,
    ) -> VideoTextEncoder:
        """Load base model + adapter (`adapter` a folder or Hub id; `base_model` default: the adapter config's
        `base_model_name_or_path`), or the zero-shot baseline of `base_model` (mean pooling over `num_frames`
        frames drawn with `sampling`). `dtype` loads the base model in `"bfloat16"` / `"float16"` (adapter weights
        stay float32, as in every peft tuner). The model is loaded by `peft_video.loading.load_trained_model`, as
        `examples/evaluate.py` loads it; every failure names what could not be found."""
        from ..loading import load_trained_model

        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if adapter is None and base_model is None:
            raise ValueError("give an adapter (folder or Hub id) or a base_model (for the zero-shot baseline)")
        loaded = load_trained_model(
            None if adapter is None else str(adapter), None if base_model is None else str(base_model), num_frames,
            dtype=_DTYPES[dtype],
        )  # fmt: skip
        if loaded.method == "full_finetune":
            raise ValueError(
                f"{str(adapter)!r} is a fine-tuned CLIPModel folder, not an adapter; index with it as the base model "
                "(base_model=..., --base-model: mean pooling over its frames, as it was trained)"
            )
        model, base_model, method = loaded.model, loaded.base_model, loaded.method
        if adapter is not None:
            processor = VideoTextProcessor.from_pretrained(str(adapter), base_model=str(base_model))
        else:
            processor = VideoTextProcessor.from_base_model(str(base_model), num_frames=num_frames, **sampling)
        device = torch.device(device) if device is not None else torch.device("cpu")
        model = model.to(device).eval()
        identity = {
            "method": method,
            "adapter": _name(adapter) if adapter is not None else None,
            "adapter_weights": _sha256_file(_adapter_weights(adapter)) if adapter is not None else None,
            "base_model": _name(base_model),
            "base_model_config": _sha256_file(_hub_file(base_model, "config.json")),
            "sampling": processor.sampling.to_dict(),
            "transform": processor.to_dict()["transform"],
            "max_text_length": processor.max_text_length,
            "embedding_dim": int(_clip(model).config.projection_dim),
            "dtype": dtype,
        }
        return cls(model, processor, identity)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_pixels(self, pixel_values: torch.Tensor, video_mask: torch.Tensor) -> np.ndarray:
        """L2-normalised video embeddings float32 [B, P] of a batch of processor/dataset outputs."""
        device = self.device
        features = self.model.get_video_features(
            pixel_values=pixel_values.to(device, non_blocking=True), video_mask=video_mask.to(device)
        ).pooler_output
        return F.normalize(features.float(), dim=-1).cpu().numpy()

    @torch.no_grad()
    def encode_text(self, texts: str | list[str]) -> np.ndarray:
        """L2-normalised caption embeddings float32 [N, P] (tokenized as in training)."""
        tokens = self.processor.tokenize(texts)
        features = self.model.get_text_features(
            input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
        ).pooler_output
        return F.normalize(features.float(), dim=-1).cpu().numpy()

    def encode_videos(self, videos: Any, batch_size: int = 8) -> np.ndarray:
        """L2-normalised embeddings [N, P] of videos given as the processor takes them (paths, arrays, rows)."""
        from ..processing import _as_batch

        items = _as_batch(videos)
        parts = []
        for start in range(0, len(items), batch_size):
            inputs = self.processor.process_videos(items[start : start + batch_size])
            parts.append(self.encode_pixels(inputs["pixel_values"], inputs["video_mask"]))
        return np.concatenate(parts) if parts else np.zeros((0, self.identity["embedding_dim"]), np.float32)


def _clip(model: Any):
    """The CLIPModel inside an adapter model or a mean-pooling baseline."""
    return model.clip if hasattr(model, "clip") else model.get_base_model()


def _adapter_weights(adapter: str | os.PathLike) -> str | None:
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        path = _hub_file(adapter, name)
        if path:
            return path
    raise OSError(f"adapter {str(adapter)!r} has no adapter_model.safetensors (or .bin)")


def identity_differences(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields of `IDENTITY_FIELDS` on which two identities disagree: {field: (ours, theirs)}."""
    return {k: (ours.get(k), theirs.get(k)) for k in IDENTITY_FIELDS if ours.get(k) != theirs.get(k)}
