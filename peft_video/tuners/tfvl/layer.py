"""TFVL's trainable tensors and its video encoding: ImageTemp in the backbone, TextTemp in the head."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel

from ... import clip_ops
from ...modeling import VideoAdapterLayer, VideoAdapterModule, VideoModelOutput
from .config import TFVLConfig


class TFVLModule(VideoAdapterModule):
    """One TFVL adapter.

    ImageTemp: for each joint layer, `[video prompts; frame_1 tokens; prompts of index 1; …; frame_T tokens; prompts of
    index T]` passes through the frozen layer as one sequence (frozen attention across all frames' tokens, frozen MLP
    per token); prompts are replaced at every joint layer and frame tokens are split back per frame. Other layers run
    per frame, stock.

    TextTemp: `g = text_projection(LN(text_transformer([SOT; prompts; W f_1 … W f_n; EOT] + positions))[EOT])`, with
    EOT placed right after the last real frame, so a padded video embeds exactly like the same video without padding.
    """

    def __init__(self, config: TFVLConfig, clip: CLIPModel) -> None:
        super().__init__(config, clip)
        vision, text = clip.config.vision_config, clip.config.text_config
        num_layers = vision.num_hidden_layers
        self.sot_id, self.eot_id = clip_ops.special_token_ids(clip)
        self.text_positions = text.max_position_embeddings

        self.joint_layers: list[int] = []
        if config.image_temp:
            resolved = sorted(i % num_layers for i in config.image_temp_layers if -num_layers <= i < num_layers)
            if len(resolved) != len(config.image_temp_layers) or len(set(resolved)) != len(resolved):
                raise ValueError(
                    f"image_temp_layers={config.image_temp_layers} must name distinct layers of the "
                    f"{num_layers}-layer vision encoder (indices -{num_layers}..{num_layers - 1})."
                )
            self.joint_layers = resolved
            # VPT's uniform init, as DGL uses for its frame prompts: keeps prompts on the scale of patch embeddings
            bound = math.sqrt(6.0 / (3 * vision.patch_size**2 + vision.hidden_size))
            self.frame_prompts = nn.Parameter(
                torch.empty(len(resolved), config.num_frames, config.image_temp_frame_prompts, vision.hidden_size)
            )
            self.video_prompts = nn.Parameter(
                torch.empty(len(resolved), config.image_temp_video_prompts, vision.hidden_size)
            )
            nn.init.uniform_(self.frame_prompts, -bound, bound)
            nn.init.uniform_(self.video_prompts, -bound, bound)
            if config.image_temp_frame_embedding:
                self.frame_embedding = nn.Parameter(torch.zeros(config.num_frames, vision.hidden_size))

        if config.text_temp:
            needed = config.text_temp_prompt_tokens + config.num_frames + 2
            if needed > self.text_positions:
                raise ValueError(
                    f"TextTemp reads [SOT; {config.text_temp_prompt_tokens} prompts; {config.num_frames} frames; "
                    f"EOT] = {needed} tokens, but the text encoder has {self.text_positions} positions: use at most "
                    f"{self.text_positions - config.text_temp_prompt_tokens - 2} frames or fewer prompts."
                )
            self.frame_to_text = nn.Linear(clip.config.projection_dim, text.hidden_size)
            if config.text_temp_prompt_tokens:
                self.text_prompts = nn.Parameter(torch.randn(config.text_temp_prompt_tokens, text.hidden_size) * 0.02)
            if config.text_temp_frame_positions == "learned":
                self.frame_positions = nn.Parameter(torch.zeros(config.num_frames, text.hidden_size))
            if config.text_temp_fusion == "residual":
                self.gate = nn.Parameter(torch.tensor(float(config.text_temp_gate_init)))

    def check_inputs(self, num_frames: int) -> None:
        if self.config.text_temp:
            needed = self.config.text_temp_prompt_tokens + num_frames + 2
            if needed > self.text_positions:
                raise ValueError(
                    f"TextTemp needs {needed} text positions for {num_frames} frames, the text encoder has "
                    f"{self.text_positions}."
                )

    # -- ImageTemp ---------------------------------------------------------------------------------------------------
    def _frame_embeddings(self, clip: CLIPModel, pixel_values: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        batch, frames = pixel_values.shape[:2]
        flat = pixel_values.flatten(0, 1)
        if not self.joint_layers:
            return clip_ops.encode_frames(clip, flat).unflatten(0, (batch, frames))
        vision = clip_ops.vision_tower(clip)
        hidden = clip_ops.embed_frames(clip, flat)  # [B*T, N, D]
        tokens, width = hidden.shape[1:]
        if self.config.image_temp_frame_embedding:
            index = self.frame_embedding[:frames].to(hidden.dtype)
            hidden = (hidden.view(batch, frames, tokens, width) + index[:, None]).view(batch * frames, tokens, width)
        joint = dict(zip(self.joint_layers, range(len(self.joint_layers))))
        attn_mask = self._joint_attention_mask(video_mask, tokens)
        for index, layer in enumerate(vision.encoder.layers):
            if index not in joint:
                hidden = clip_ops.maybe_checkpoint(vision, clip_ops.encoder_layer, layer, hidden)
                continue
            hidden = clip_ops.maybe_checkpoint(
                vision, self._joint_layer, layer, hidden, joint[index], batch, frames, attn_mask
            )
        hidden = hidden.view(batch * frames, tokens, width)
        return clip_ops.project_cls(clip, hidden).unflatten(0, (batch, frames))

    def _joint_attention_mask(self, video_mask: torch.Tensor, tokens: int) -> torch.Tensor | None:
        """Who may attend to whom in a joint layer's sequence `[video prompts; (frame t tokens; frame t prompts)…]`.

        Every token sees the video prompts and all frames' tokens, but frame t's index prompts only from frame t:
        attention has no notion of position, so prompts visible to all frames would be one unordered set of keys and
        the joint layer would be blind to frame order. Padded frames are hidden from everyone.
        """
        batch, frames = video_mask.shape
        num_frame_prompts, num_video_prompts = self.frame_prompts.shape[2], self.video_prompts.shape[1]
        padded = not bool(video_mask.all())
        if num_frame_prompts == 0 and not padded:
            return None
        device = video_mask.device
        frame_of = torch.arange(frames, device=device).repeat_interleave(tokens + num_frame_prompts)
        frame_of = torch.cat([frame_of.new_full((num_video_prompts,), -1), frame_of])
        is_prompt = (torch.arange(tokens + num_frame_prompts, device=device) >= tokens).repeat(frames)
        is_prompt = torch.cat([is_prompt.new_zeros(num_video_prompts), is_prompt])
        allowed = ~is_prompt[None, :] | (frame_of[:, None] == frame_of[None, :])
        if not padded:
            return allowed
        frame_keys = video_mask.repeat_interleave(tokens + num_frame_prompts, dim=1)
        key_is_real = torch.cat([video_mask.new_ones(batch, num_video_prompts), frame_keys], dim=1)
        return (allowed[None] & key_is_real[:, None, :])[:, None]

    def _joint_layer(
        self,
        layer: nn.Module,
        hidden: torch.Tensor,
        slot: int,
        batch: int,
        frames: int,
        attn_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        tokens, width = hidden.shape[1:]
        frame_prompts = self.frame_prompts[slot, :frames].to(hidden.dtype).expand(batch, -1, -1, -1)
        per_frame = torch.cat([hidden.view(batch, frames, tokens, width), frame_prompts], dim=2)
        video_prompts = self.video_prompts[slot].to(hidden.dtype).expand(batch, -1, -1)
        sequence = torch.cat([video_prompts, per_frame.flatten(1, 2)], dim=1)
        sequence = clip_ops.encoder_layer(layer, sequence, attn_mask=attn_mask)
        per_frame = sequence[:, video_prompts.shape[1] :].view(batch, frames, per_frame.shape[2], width)
        return per_frame[:, :, :tokens].reshape(batch * frames, tokens, width)

    # -- TextTemp ----------------------------------------------------------------------------------------------------
    def _text_temp(self, clip: CLIPModel, frame_embeds: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        batch, frames = frame_embeds.shape[:2]
        embeddings = clip_ops.text_tower(clip).embeddings
        dtype = frame_embeds.dtype
        special = embeddings.token_embedding.weight[[self.sot_id, self.eot_id]].to(dtype)
        sot, eot = special[0].expand(batch, 1, -1), special[1].expand(batch, 1, -1)
        num_prompts = self.config.text_temp_prompt_tokens
        prompts = [self.text_prompts.to(dtype).expand(batch, -1, -1)] if num_prompts else []
        if self.config.text_temp_center_frames:
            frame_embeds = frame_embeds - clip_ops.masked_mean(frame_embeds, video_mask)[:, None]
        # the adapter's own layers compute in their dtype (float32 under autocast_adapter_dtype), as peft's LoRA does
        words = self.frame_to_text(frame_embeds.to(self.frame_to_text.weight.dtype)).to(dtype)
        if self.config.text_temp_word_scale == "token":  # frame words as large as the words the encoder knows
            scale = embeddings.token_embedding.weight.detach().norm(dim=-1).mean().to(dtype)
            words = F.normalize(words, dim=-1) * scale
        if self.config.text_temp_frame_positions == "learned":
            words = words + self.frame_positions[:frames].to(dtype)
        sequence = torch.cat([sot, *prompts, words, eot], dim=1)
        length = sequence.shape[1]
        # EOT goes right after the last real frame; what follows it is invisible to EOT under the causal mask
        eot_position = 1 + num_prompts + video_mask.sum(1)
        positions = torch.arange(length, device=sequence.device)
        sequence = torch.where((positions[None, :] == eot_position[:, None])[..., None], eot, sequence)
        sequence = sequence + embeddings.position_embedding.weight[:length].to(dtype)
        hidden = clip_ops.run_text_transformer(clip, sequence)
        pooled = hidden[torch.arange(batch, device=hidden.device), eot_position]
        return clip.text_projection(pooled)

    def encode_video(self, clip: CLIPModel, pixel_values: torch.Tensor, video_mask: torch.Tensor) -> VideoModelOutput:
        frame_embeds = self._frame_embeddings(clip, pixel_values, video_mask)
        mean = clip_ops.masked_mean(frame_embeds, video_mask)
        if not self.config.text_temp:
            video = mean
        elif self.config.text_temp_fusion == "replace":
            video = self._text_temp(clip, frame_embeds, video_mask)
        else:
            video = mean + self.gate.to(mean.dtype) * self._text_temp(clip, frame_embeds, video_mask)
        return VideoModelOutput(pooler_output=video, frame_embeds=frame_embeds, video_mask=video_mask)


class TFVLLayer(VideoAdapterLayer):
    """The TFVL tuner layer attached to the CLIPModel; holds one `TFVLModule` per adapter name."""

    adapter_layer_names = ("tfvl_modules",)
    module_cls = TFVLModule
