"""The two baselines every video method is compared with, behind the same interface as a peft_video adapter model.

- **zero-shot**: a frozen CLIP, each frame encoded on its own, the L2-normalised frame embeddings averaged over the
  real frames (CLIP4Clip's meanP: its `_loose_similarity` normalises each frame before the masked mean);
- **full fine-tuning with mean pooling** (CLIP4Clip-meanP): the same model with every CLIP weight trained.

`normalize_frames=False` averages the unnormalised frame embeddings instead (frames with larger embedding norms then
weigh more); it is offered to reproduce numbers of code that pools that way, not as the baseline.

`PeftModelForVideoTextRetrieval` already computes the zero-shot baseline under `disable_adapter()`; a model without
any adapter is cleaner for the fine-tuning baseline (no peft wrapper whose "adapter" would be the whole CLIP, and the
saved result is a plain `CLIPModel` folder that `CLIPModel.from_pretrained` loads).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from transformers import CLIPModel

from .modeling import (
    VideoTextRetrievalOutput,
    check_text_inputs,
    check_video_inputs,
    mean_pooled_video_features,
    stock_text_features,
    video_text_output,
)


class MeanPoolingCLIP(nn.Module):
    """A CLIPModel that embeds a video as the mean of its frames' CLIP embeddings (CLIP4Clip's meanP).

    Args:
        clip: the CLIPModel (kept as `self.clip`).
        num_frames: most frames per video accepted (as an adapter's `num_frames`).
        trainable: train every CLIP weight (full fine-tuning) instead of freezing them all (zero-shot).
        train_logit_scale: also train CLIP's temperature when `trainable` (CLIP4Clip does; default frozen so that
            the baseline and the adapters share the same logit scale).
        normalize_frames: L2-normalise each frame embedding before the mean, as CLIP4Clip's meanP does (default);
            False averages the unnormalised embeddings.

    Same calls as a peft_video adapter model: `model(input_ids, attention_mask, pixel_values, video_mask,
    return_loss=True)` → `VideoTextRetrievalOutput`, `get_video_features`, `get_text_features`, `save_pretrained`.
    """

    def __init__(
        self,
        clip: CLIPModel,
        num_frames: int,
        trainable: bool = False,
        train_logit_scale: bool = False,
        normalize_frames: bool = True,
    ):
        super().__init__()
        if not isinstance(clip, CLIPModel):
            raise TypeError(f"MeanPoolingCLIP wraps a transformers CLIPModel, got {type(clip).__name__}.")
        self.clip = clip
        self.num_frames = num_frames
        self.normalize_frames = normalize_frames
        for parameter in clip.parameters():
            parameter.requires_grad_(trainable)
        clip.logit_scale.requires_grad_(trainable and train_logit_scale)

    @property
    def image_size(self) -> int:
        return self.clip.config.vision_config.image_size

    def get_video_features(self, pixel_values: torch.Tensor, video_mask: torch.Tensor | None = None):
        """`pooler_output` [B, P]: masked mean of the (by default L2-normalised) per-frame CLIP embeddings of
        pixel_values [B, T, 3, H, W]."""
        pixel_values, video_mask = check_video_inputs(
            pixel_values, video_mask, image_size=self.image_size, max_frames=self.num_frames
        )
        return mean_pooled_video_features(self.clip, pixel_values, video_mask, normalize_frames=self.normalize_frames)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """`pooler_output` [B, P]: CLIP's own caption embedding."""
        check_text_inputs(input_ids, attention_mask)
        return stock_text_features(self.clip, input_ids, attention_mask)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        video_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
    ) -> VideoTextRetrievalOutput:
        if pixel_values is None:
            raise ValueError("A video-text forward needs both input_ids and pixel_values.")
        return video_text_output(
            self.get_video_features(pixel_values, video_mask),
            self.get_text_features(input_ids, attention_mask),
            self.clip.logit_scale.exp(),
            return_loss=return_loss,
        )

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Write the (fine-tuned) CLIPModel as a standard Hugging Face folder."""
        self.clip.save_pretrained(save_directory, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Upload the (fine-tuned) CLIPModel with transformers' own `push_to_hub`."""
        return self.clip.push_to_hub(repo_id, **kwargs)
