from __future__ import annotations

import torch
from torch import nn

from peft_video import clip_ops
from peft_video.modeling import VideoAdapterLayer, VideoAdapterModule, VideoModelOutput


class ToyMeanModule(VideoAdapterModule):
    def __init__(self, config, clip) -> None:
        super().__init__(config, clip)
        width = clip.config.projection_dim
        self.residual = nn.Linear(width, width)
        nn.init.normal_(self.residual.weight, std=config.scale / width**0.5)
        nn.init.zeros_(self.residual.bias)

    def encode_video(self, clip, pixel_values: torch.Tensor, video_mask: torch.Tensor) -> VideoModelOutput:
        batch, frames = pixel_values.shape[:2]
        frame_embeds = clip_ops.encode_frames(clip, pixel_values.flatten(0, 1)).unflatten(0, (batch, frames))
        mean = clip_ops.masked_mean(frame_embeds, video_mask)
        # the adapter's layer computes in its own dtype (float32 on a half-precision base by default) and hands the
        # base's dtype back
        residual = self.residual(mean.to(self.residual.weight.dtype)).to(mean.dtype)
        return VideoModelOutput(pooler_output=mean + residual, frame_embeds=frame_embeds, video_mask=video_mask)


class ToyMeanLayer(VideoAdapterLayer):
    adapter_layer_names = ("toy_mean_modules",)
    module_cls = ToyMeanModule
