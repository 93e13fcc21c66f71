"""DGL's trainable tensors, its prompt generator, and the prompted text and vision encoders (global-local)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ... import clip_ops
from ...modeling import VideoAdapterLayer, VideoAdapterModule, VideoModelOutput
from .config import DGLConfig


class PromptGeneratorBlock(nn.Module):
    """The shared latent space of the `"transformer"` variant: one pre-LN transformer block (multi-head attention
    without mask, then a 4x QuickGELU MLP) applied to every layer's latent tokens, layers in the batch dimension."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)
        self.act = ACT2FN["quick_gelu"]

    def _attention(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # `self.attn` holds the weights (and PyTorch's init for them); the computation is spelled out so that it takes
        # the same kernels whether or not the weights require grad (nn.MultiheadAttention switches to a fused path
        # for frozen weights, which differs in the last bit and would break bit-exact reloads).
        attn = self.attn
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
        q, k, v = (
            F.linear(x, w, b).unflatten(-1, (attn.num_heads, attn.head_dim)).transpose(-3, -2)
            for x, w, b in ((queries, w_q, b_q), (context, w_k, b_k), (context, w_v, b_v))
        )
        return attn.out_proj(F.scaled_dot_product_attention(q, k, v).transpose(-3, -2).flatten(-2))

    def forward(self, latents: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """latents [layers, N, width] → the block's outputs for latents[:, rows]. Every latent is a key and value;
        only the requested rows are queried and go through the MLP (the text side needs 4 of 56 rows)."""
        normed = self.norm1(latents)
        out = latents[:, rows] + self._attention(normed[:, rows], normed)
        return out + self.fc2(self.act(self.fc1(self.norm2(out))))


class DGLModule(VideoAdapterModule):
    """One DGL adapter.

    Text: `[SOT, P_1..P_n, w_1..w_L]` (word tokens keep their positions, prompts get none) through the frozen causal
    text transformer, the n prompt slots overwritten with layer l's prompts before every layer l >= 1; the embedding is
    `text_projection(final_layer_norm(state at EOT + n))`.

    Vision: each frame is `[CLS, local prompts, patches]` (local slots overwritten before every layer l >= 1), each
    video adds global prompts G. Every frozen vision layer runs as two attention calls with its own weights:
    frame t attends to `[LN(G); LN(F_t)]`, G attends to `[LN(G); LN(F_1) .. LN(F_T)]` over real frames only; then the
    frozen MLP on every token. This is one masked self-attention over `[G; F_1..F_T]` without building its
    O((T*N)^2) mask.

    The generator's input is constant, so prompts do not depend on the sample: they are computed once per encoder call
    and broadcast over the batch.
    """

    def __init__(self, config: DGLConfig, clip: CLIPModel) -> None:
        super().__init__(config, clip)
        vision, text = clip.config.vision_config, clip.config.text_config
        if vision.num_hidden_layers != text.num_hidden_layers:
            raise ValueError(
                "DGL generates text and vision prompts of the same layer together, so both towers need the same "
                f"depth; got {vision.num_hidden_layers} vision and {text.num_hidden_layers} text layers."
            )
        self.text_positions = text.max_position_embeddings
        needed = config.num_text_prompts + config.max_text_length
        if needed > self.text_positions:
            raise ValueError(
                f"DGL text sequences hold {config.num_text_prompts} prompts + "
                f"max_text_length={config.max_text_length} tokens = {needed}, more than the text encoder's "
                f"{self.text_positions} positions: use "
                f"max_text_length <= {self.text_positions - config.num_text_prompts}."
            )
        num_layers, width = vision.num_hidden_layers, vision.hidden_size
        # VPT's uniform init, as the reference uses for its prompt parameters
        bound = math.sqrt(6.0 / (3 * vision.patch_size**2 + width))
        self.global_prompts = nn.Parameter(torch.empty(config.num_global_prompts, width).uniform_(-bound, bound))
        if config.temporal_embedding:  # opt-in, not in the reference: zero, so training starts from it
            self.temporal_embedding = nn.Parameter(torch.zeros(config.num_frames, width))
        if config.latent_space == "transformer":
            num_latents = config.num_text_latents + config.num_local_prompts * config.num_frames
            # an embedding table in the reference, hence N(0, 1). Layouts put layers first so that the parameters
            # themselves, not views of them, enter modules: a no-grad view of a parameter requires grad without a
            # grad_fn, which module hooks (FlopCounterMode's) reject.
            self.latent_tokens = nn.Parameter(torch.randn(num_layers, num_latents, width))
            self.generator = PromptGeneratorBlock(width, vision.num_attention_heads)
            self.text_head = nn.Sequential(
                nn.Linear(width, 2 * width), ACT2FN["quick_gelu"], nn.Linear(2 * width, text.hidden_size)
            )
        else:
            self.frame_prompts = nn.Parameter(
                torch.empty(num_layers, config.num_local_prompts, width).uniform_(-bound, bound)
            )
            self.text_prompt_proj = nn.Linear(width, text.hidden_size)

    # -- the prompt generator ----------------------------------------------------------------------------------------
    def text_prompts(self) -> torch.Tensor:
        """Text prompts of every layer, [layers, num_text_prompts, text width]."""
        if self.config.latent_space == "transformer":
            return self.text_head(self.generator(self.latent_tokens, slice(0, self.config.num_text_prompts)))
        return self.text_prompt_proj(self.frame_prompts)

    def local_prompts(self, num_frames: int) -> torch.Tensor:
        """Local prompts of every layer for frames 0..num_frames-1, [layers, num_frames or 1 (shared), n, width]."""
        config = self.config
        if config.latent_space == "transformer":
            first = config.num_text_latents
            rows = slice(first, first + num_frames * config.num_local_prompts)
            frame_latents = self.generator(self.latent_tokens, rows)
            return frame_latents.unflatten(1, (num_frames, config.num_local_prompts))
        return self.frame_prompts.unsqueeze(1)

    # -- text --------------------------------------------------------------------------------------------------------
    def encode_text(
        self, clip: CLIPModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> BaseModelOutputWithPooling:
        num_prompts = self.config.num_text_prompts
        batch, length = input_ids.shape
        if num_prompts + length > self.text_positions:
            raise ValueError(
                f"DGL inserts {num_prompts} text prompts, so captions may have at most "
                f"{self.text_positions - num_prompts} tokens (text positions {self.text_positions}); input_ids has "
                f"{length}. Tokenize with max_length={self.text_positions - num_prompts}."
            )
        text = clip_ops.text_tower(clip)
        words = text.embeddings(input_ids=input_ids)
        prompts = self.text_prompts().to(words.dtype)
        hidden = words
        # Only the causal mask: padding sits after EOT, which the pooled state cannot see anyway.
        for index, layer in enumerate(text.encoder.layers):
            rest = hidden[:, 1:] if index == 0 else hidden[:, 1 + num_prompts :]
            hidden = torch.cat([hidden[:, :1], prompts[index].expand(batch, -1, -1), rest], dim=1)
            hidden = clip_ops.maybe_checkpoint(text, clip_ops.encoder_layer, layer, hidden, is_causal=True)
        eot = clip_ops.eot_positions(clip, input_ids) + num_prompts
        pooled = text.final_layer_norm(hidden[torch.arange(batch, device=hidden.device), eot])
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=clip.text_projection(pooled))

    # -- vision ------------------------------------------------------------------------------------------------------
    def check_inputs(self, num_frames: int) -> None:
        if num_frames > self.config.num_frames:  # the tuner checks this too; the per-frame prompts depend on it
            raise ValueError(f"DGL has local prompts for {self.config.num_frames} frames, got {num_frames} frames.")

    @staticmethod
    def _global_local_layer(
        layer: nn.Module,
        global_states: torch.Tensor,
        frame_states: torch.Tensor,
        global_key_mask: torch.Tensor | None,
        update_frames: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One frozen vision layer: global [B, G, D], frames [B, T, N, D] → both updated (frames untouched when
        `update_frames` is False: the last layer's frame states are not read by a global readout)."""
        attn = layer.self_attn
        batch, frames = frame_states.shape[:2]
        q_g, k_g, v_g = clip_ops.attention_heads(attn, layer.layer_norm1(global_states))  # [B, H, G, hd]
        # frames are keys for G; they are queries only when their own update is needed
        frame_heads = clip_ops.attention_heads(attn, layer.layer_norm1(frame_states), "qkv" if update_frames else "kv")
        k_f, v_f = frame_heads[-2:]  # [B, T, H, N, hd]
        # global: G reads every token of every (real) frame
        keys = torch.cat([k_g, k_f.transpose(1, 2).flatten(2, 3)], dim=2)
        values = torch.cat([v_g, v_f.transpose(1, 2).flatten(2, 3)], dim=2)
        global_states = global_states + clip_ops.attend_heads(attn, q_g, keys, values, attn_mask=global_key_mask)
        global_states = global_states + layer.mlp(layer.layer_norm2(global_states))
        if not update_frames:
            return global_states, frame_states
        # local: frame t reads G and itself; G's keys are broadcast over frames, not copied in a loop. Frames go to
        # the batch dimension (rank-4 inputs take SDPA's fused CPU kernel).
        keys = torch.cat([k_g.unsqueeze(1).expand(-1, frames, -1, -1, -1), k_f], dim=3).flatten(0, 1)
        values = torch.cat([v_g.unsqueeze(1).expand(-1, frames, -1, -1, -1), v_f], dim=3).flatten(0, 1)
        local = clip_ops.attend_heads(attn, frame_heads[0].flatten(0, 1), keys, values).unflatten(0, (batch, frames))
        frame_states = frame_states + local
        frame_states = frame_states + layer.mlp(layer.layer_norm2(frame_states))
        return global_states, frame_states

    def encode_video(self, clip: CLIPModel, pixel_values: torch.Tensor, video_mask: torch.Tensor) -> VideoModelOutput:
        config = self.config
        batch, frames = pixel_values.shape[:2]
        vision = clip_ops.vision_tower(clip)
        embedded = clip_ops.embed_frames(clip, pixel_values.flatten(0, 1)).unflatten(0, (batch, frames))
        dtype, num_local = embedded.dtype, config.num_local_prompts
        if config.temporal_embedding:
            embedded = embedded + self.temporal_embedding[:frames, None, :].to(dtype)
        local_prompts = self.local_prompts(frames).to(dtype)
        global_states = self.global_prompts.to(dtype).repeat(batch, 1, 1)  # a copy: layers' LN gets no param view
        global_key_mask = None
        if not bool(video_mask.all()):  # padded frames must not reach G, hence no real frame either
            tokens = embedded.shape[2] + num_local
            frame_keys = video_mask.repeat_interleave(tokens, dim=1)
            global_key_mask = torch.cat([video_mask.new_ones(batch, config.num_global_prompts), frame_keys], dim=1)
            global_key_mask = global_key_mask[:, None, None, :]
        reads_frames = config.visual_output in ("mean_frame_cls", "mean_global_prompts_and_frame_cls")
        layers = vision.encoder.layers
        frame_states = embedded
        for index, layer in enumerate(layers):
            prompts = local_prompts[index].expand(batch, frames, -1, -1)
            rest = frame_states[:, :, 1:] if index == 0 else frame_states[:, :, 1 + num_local :]
            frame_states = torch.cat([frame_states[:, :, :1], prompts, rest], dim=2)
            update_frames = reads_frames or index < len(layers) - 1
            global_states, frame_states = clip_ops.maybe_checkpoint(
                vision, self._global_local_layer, layer, global_states, frame_states, global_key_mask, update_frames
            )
        post_layernorm, projection = vision.post_layernorm, clip.visual_projection
        frame_embeds = projection(post_layernorm(frame_states[:, :, 0])) if reads_frames else None
        if config.visual_output == "global_prompt0":
            video = projection(post_layernorm(global_states[:, 0]))
        elif config.visual_output == "mean_global_prompts":
            video = projection(post_layernorm(global_states)).mean(1)
        elif config.visual_output == "mean_frame_cls":
            video = clip_ops.masked_mean(frame_embeds, video_mask)
        else:
            global_embeds = projection(post_layernorm(global_states))
            weights = video_mask.to(frame_embeds.dtype).unsqueeze(-1)
            total = global_embeds.sum(1) + (frame_embeds * weights).sum(1)
            video = total / (global_embeds.shape[1] + weights.sum(1))
        return VideoModelOutput(
            pooler_output=video, frame_embeds=frame_embeds, video_mask=video_mask, last_hidden_state=global_states
        )


class DGLLayer(VideoAdapterLayer):
    """The DGL tuner layer attached to the CLIPModel; holds one `DGLModule` per adapter name."""

    adapter_layer_names = ("dgl_modules",)
    module_cls = DGLModule
