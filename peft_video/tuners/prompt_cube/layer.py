"""Prompt Cube's trainable tensors and its video encoding: the cube and its switch in every vision layer, the prompt
readout, and the training-only caption decoder."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel

from ... import clip_ops
from ...modeling import VideoAdapterLayer, VideoAdapterModule, VideoModelOutput
from .config import CLIP_FREQUENT_TOKEN_IDS, CLIP_VOCAB_SIZE, PromptCubeConfig

logger = logging.getLogger(__name__)


def switch_prompt_blocks(normed: torch.Tensor, num_prompts: int) -> torch.Tensor:
    """The switch: in each chunk of `num_prompts` consecutive frames, transpose the frames × slots block of prompts.

    normed [N·np, tokens + np, D] (frames chunk-major, the np prompts last) → same shape, where frame f's prompt slot s
    now holds what was frame s's slot f. Only ever applied to the LayerNorm-1 output, never to the residual stream.
    """
    tokens, prompts = normed[:, :-num_prompts], normed[:, -num_prompts:]
    prompts = prompts.unflatten(0, (-1, num_prompts)).transpose(1, 2).flatten(0, 1)
    return torch.cat([tokens, prompts], dim=1)


def prompt_switch_layer(
    layer: nn.Module, hidden: torch.Tensor, num_prompts: int, attn_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """One frozen pre-LN CLIP vision layer with the switch between LayerNorm-1 and self-attention."""
    normed = switch_prompt_blocks(layer.layer_norm1(hidden), num_prompts)
    hidden = hidden + clip_ops.frozen_attention(layer.self_attn, normed, attn_mask=attn_mask)
    return hidden + layer.mlp(layer.layer_norm2(hidden))


def _default_frequent_token_ids(clip: CLIPModel) -> list[int]:
    text = clip.config.text_config
    if text.vocab_size == CLIP_VOCAB_SIZE:
        return list(CLIP_FREQUENT_TOKEN_IDS)
    bos, eos = clip_ops.special_token_ids(clip)
    logger.warning(
        "PromptCubeConfig.frequent_token_ids is unset and the base model's vocabulary (%d tokens) is not CLIP's BPE "
        "vocabulary: only SOT (%d) and EOT (%d) get frequent_word_weight in the caption loss. Pass "
        "frequent_token_ids=frequent_word_token_ids(tokenizer) to down-weight the frequent words too.",
        text.vocab_size,
        bos,
        eos,
    )
    return [bos, eos]


class CaptionDecoder(nn.Module):
    """Teacher-forced caption decoder over the projected frame features, with its frequency-weighted loss.

    LayerNorm on CLIP's (frozen, no-grad) token + position embeddings of the caption, a post-LN `TransformerDecoder`
    (causal self-attention, cross-attention to the frame features) with a final LayerNorm, and a vocabulary head.
    """

    def __init__(self, config: PromptCubeConfig, clip: CLIPModel) -> None:
        super().__init__()
        text = clip.config.text_config
        width, vocab = text.hidden_size, text.vocab_size
        heads = config.caption_num_heads or text.num_attention_heads
        if width % heads:
            raise ValueError(f"caption_num_heads={heads} must divide the text width {width}.")
        self.input_norm = nn.LayerNorm(width)
        # The reference feeds the projected frame features (P wide) straight in as memory, which needs P == text width
        # (true for OpenAI CLIPs); other shapes get a projection.
        projection_dim = clip.config.projection_dim
        self.memory_proj = nn.Identity() if projection_dim == width else nn.Linear(projection_dim, width)
        decoder_layer = nn.TransformerDecoderLayer(
            width,
            heads,
            config.caption_ffn_dim or text.intermediate_size,
            dropout=config.caption_dropout,
            batch_first=True,
        )
        self.decoder = nn.TransformerDecoder(decoder_layer, config.caption_num_layers, norm=nn.LayerNorm(width))
        token_embedding = clip.text_model.embeddings.token_embedding.weight
        if config.caption_tie_head:
            self.head = None
            self.head_bias = nn.Parameter(torch.zeros(vocab))
        else:
            self.head = nn.Linear(width, vocab)
            with torch.no_grad():
                self.head.weight.copy_(token_embedding)
                self.head.bias.zero_()

        ids = config.frequent_token_ids if config.frequent_token_ids is not None else None
        ids = _default_frequent_token_ids(clip) if ids is None else ids
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise ValueError(
                f"PromptCubeConfig.frequent_token_ids {bad} are outside the base model's vocabulary (0..{vocab - 1})."
            )
        weights = torch.ones(vocab)
        weights[torch.tensor(ids, dtype=torch.long)] = config.frequent_word_weight
        self.register_buffer("class_weights", weights, persistent=False)
        self.eos_token_id = clip_ops.special_token_ids(clip)[1]

    def forward(
        self, clip: CLIPModel, tokens: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor | None
    ) -> torch.Tensor:
        """tokens [B, L] (teacher-forcing inputs), memory [B, T, P] → vocabulary logits [B, L, V]."""
        embeddings = clip_ops.text_tower(clip).embeddings
        dtype = self.input_norm.weight.dtype  # the decoder's own (float32 under autocast_adapter_dtype)
        with torch.no_grad():
            inputs = embeddings(input_ids=tokens).to(dtype)
        length = tokens.shape[1]
        causal = torch.full((length, length), float("-inf"), device=tokens.device).triu(1).to(dtype)
        hidden = self.decoder(
            self.input_norm(inputs),
            self.memory_proj(memory.to(dtype)),
            tgt_mask=causal,
            tgt_is_causal=True,
            memory_key_padding_mask=memory_padding,
        )
        if self.head is not None:
            return self.head(hidden)
        return F.linear(hidden, embeddings.token_embedding.weight.to(hidden.dtype), self.head_bias.to(hidden.dtype))

    def loss(
        self,
        clip: CLIPModel,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        memory: torch.Tensor,
        memory_padding: torch.Tensor | None,
    ) -> torch.Tensor:
        """Weighted-mean cross-entropy of predicting `input_ids[:, 1:]`, over positions whose input token is neither
        EOT/pad nor masked out (frequent words weigh `frequent_word_weight`)."""
        tokens, targets = input_ids[:, :-1], input_ids[:, 1:]
        logits = self(clip, tokens, memory, memory_padding)
        keep = tokens != self.eos_token_id
        if attention_mask is not None:
            keep = keep & attention_mask[:, :-1].bool()
        if not keep.any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits[keep].float(), targets[keep], weight=self.class_weights.float())


class PromptCubeModule(VideoAdapterModule):
    """One Prompt Cube adapter: `cube` [np, np, D], `readout` (multi-head attention, output projection zero at init)
    and, while training, `captioner`.

    Per frame, `[CLS, patches]` after `pre_layrnorm` get that frame's np cube rows appended (no position embedding, no
    `pre_layrnorm`); every vision layer switches the prompt blocks of its LayerNorm-1 output inside each chunk; the
    frame feature is `visual_projection(post_layernorm(c + MHA(c, P̂, P̂)))` with c the last-layer CLS and P̂ the
    last-layer prompts of the frame's chunk; the video embedding is the mean of the L2-normalised frame features.
    With padded frames (`video_mask`), real frames ignore everything that comes from padded ones.
    """

    def __init__(self, config: PromptCubeConfig, clip: CLIPModel) -> None:
        super().__init__(config, clip)
        vision = clip.config.vision_config
        width, num_prompts = vision.hidden_size, config.num_prompts
        self.num_prompts = num_prompts
        std = config.cube_init_std if config.cube_init_std is not None else vision.initializer_range * width**-0.5
        self.cube = nn.Parameter(torch.empty(num_prompts, num_prompts, width))
        nn.init.normal_(self.cube, mean=0.0, std=std)
        heads = config.readout_num_heads or vision.num_attention_heads
        if width % heads:
            raise ValueError(f"readout_num_heads={heads} must divide the vision width {width}.")
        # in-projection: torch's xavier-uniform with zero bias; zero output projection → at init each frame feature
        # is exactly CLIP's image embedding of that frame
        self.readout = nn.MultiheadAttention(width, heads, batch_first=True)
        nn.init.zeros_(self.readout.out_proj.weight)
        nn.init.zeros_(self.readout.out_proj.bias)
        self.captioner = None
        if config.caption_loss_weight > 0 and not config.inference_mode:
            self.captioner = CaptionDecoder(config, clip)

    def check_inputs(self, num_frames: int) -> None:
        if num_frames % self.num_prompts:
            raise ValueError(
                f"Prompt Cube processes frames in chunks of num_prompts={self.num_prompts}: got {num_frames} frames, "
                f"expected a multiple of {self.num_prompts} (pad with video_mask=False frames)."
            )

    def _masks(self, video_mask: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """With padded frames: (per-frame self-attention mask [B·T, 1, 1, tokens + np] that hides the switched-in
        prompts of padded frames from real ones, readout key padding mask [B·K, np·np] that hides prompts touched by a
        padded frame). None, None when every frame is real (the reference's case)."""
        if video_mask.all():
            return None, None
        n = self.num_prompts
        real = video_mask.reshape(-1, n)  # [B·K, np] frames of each chunk
        # frame f sees, in slot s, frame s's prompt: allowed when frame s is real (padded frames see everything)
        slot_ok = real[:, None, :] | ~real[:, :, None]  # [B·K, f, s]
        # readout key (frame a, slot b) carries frame a's and (through the switch) frame b's content
        key_ok = (real[:, :, None] & real[:, None, :]).flatten(1)
        key_ok = key_ok | ~real.any(dim=1, keepdim=True)  # an all-padding chunk keeps its keys (no NaN)
        return slot_ok.flatten(0, 1), ~key_ok

    def frame_features(
        self, clip: CLIPModel, pixel_values: torch.Tensor, video_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Projected per-frame features [B, T, P] (not normalised); `video_mask` None means every frame is real."""
        batch, frames = pixel_values.shape[:2]
        n = self.num_prompts
        vision = clip_ops.vision_tower(clip)
        hidden = clip_ops.embed_frames(clip, pixel_values.flatten(0, 1))  # [B·T, 1 + patches, D]
        num_tokens = hidden.shape[1]
        prompts = self.cube.to(hidden.dtype).expand(batch * frames // n, -1, -1, -1).flatten(0, 1)
        hidden = torch.cat([hidden, prompts], dim=1)
        slot_ok, key_padding = (None, None) if video_mask is None else self._masks(video_mask)
        attn_mask = None
        if slot_ok is not None:
            attn_mask = torch.cat([slot_ok.new_ones(slot_ok.shape[0], num_tokens), slot_ok], dim=1)[:, None, None]
        for layer in vision.encoder.layers:
            hidden = clip_ops.maybe_checkpoint(vision, prompt_switch_layer, layer, hidden, n, attn_mask)
        cls = hidden[:, 0].unflatten(0, (-1, n))  # [B·K, np, D]
        chunk_prompts = hidden[:, -n:].unflatten(0, (-1, n)).flatten(1, 2)  # [B·K, np·np, D]
        # the readout computes in its own dtype (float32 under autocast_adapter_dtype), its output in the base's
        weight_dtype = self.readout.out_proj.weight.dtype
        queries, keys = cls.to(weight_dtype), chunk_prompts.to(weight_dtype)
        read, _ = self.readout(queries, keys, keys, key_padding_mask=key_padding, need_weights=False)
        pooled = vision.post_layernorm(cls + read.to(cls.dtype))
        return clip.visual_projection(pooled).reshape(batch, frames, -1)

    def encode_video(self, clip: CLIPModel, pixel_values: torch.Tensor, video_mask: torch.Tensor) -> VideoModelOutput:
        frame_embeds = self.frame_features(clip, pixel_values, video_mask)
        # normalised and averaged in float32 (a half-precision norm of a P-wide vector loses digits), returned in the
        # base model's dtype like every method's video embedding
        video = clip_ops.masked_mean(F.normalize(frame_embeds.float(), dim=-1), video_mask).to(frame_embeds.dtype)
        return VideoModelOutput(pooler_output=video, frame_embeds=frame_embeds, video_mask=video_mask)

    def auxiliary_loss(
        self,
        clip: CLIPModel,
        *,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        video_output: VideoModelOutput,
    ) -> torch.Tensor | None:
        """`caption_loss_weight` × the captioning loss of caption i given video i's frame features."""
        if self.captioner is None:
            return None
        memory = video_output.frame_embeds
        if input_ids.shape[0] != memory.shape[0]:
            raise ValueError(
                f"The caption loss pairs caption i with video i: got {input_ids.shape[0]} captions and "
                f"{memory.shape[0]} videos."
            )
        mask = video_output.video_mask
        padding = None if mask is None or mask.all() else ~mask
        loss = self.captioner.loss(clip, input_ids, attention_mask, memory, padding)
        return self.config.caption_loss_weight * loss


class PromptCubeLayer(VideoAdapterLayer):
    """The Prompt Cube tuner layer attached to the CLIPModel; holds one `PromptCubeModule` per adapter name."""

    adapter_layer_names = ("prompt_cube_modules",)
    module_cls = PromptCubeModule
