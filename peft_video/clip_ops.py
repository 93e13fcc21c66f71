"""Functional pieces of a frozen HF `CLIPModel`, reused by every method.

Methods need CLIP's layers in ways its `forward` does not offer: transformers 5's `CLIPTextModel` takes no
`inputs_embeds`, and global-local or joint attention needs the frozen q/k/v/out weights with other keys or masks.
Everything here calls the model's own modules (so weights stay frozen and shared) and uses SDPA for attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import CLIPModel
from transformers.models.clip.modeling_clip import CLIPAttention, CLIPEncoderLayer


def active_module(module: nn.Module) -> nn.Module:
    """The module that computes for `module`: itself, or the active trainable copy when peft's `modules_to_save`
    wrapped it (the wrapper's attribute access would otherwise reach the frozen original)."""
    copies = getattr(module, "modules_to_save", None)
    if isinstance(copies, nn.ModuleDict) and not getattr(module, "disable_adapters", False):
        active = getattr(module, "active_adapters", None) or [getattr(module, "active_adapter", None)]
        for name in active:
            if name in copies:
                return copies[name]
    return getattr(module, "original_module", module)


def vision_tower(clip: CLIPModel) -> nn.Module:
    """`clip.vision_model`, or its trainable copy under `modules_to_save`."""
    return active_module(clip.vision_model)


def text_tower(clip: CLIPModel) -> nn.Module:
    """`clip.text_model`, or its trainable copy under `modules_to_save`."""
    return active_module(clip.text_model)


def frozen_attention(
    attn: CLIPAttention,
    query_states: torch.Tensor,
    key_value_states: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
) -> torch.Tensor:
    """CLIP multi-head attention with its own projections, queries and keys/values from different token sets.

    query_states [..., Nq, D], key_value_states [..., Nk, D] (default: the queries), attn_mask broadcastable to
    [..., heads, Nq, Nk] (bool: True = may attend; or additive float).
    """
    kv = query_states if key_value_states is None else key_value_states
    heads, head_dim = attn.num_heads, attn.head_dim
    q = attn.q_proj(query_states).unflatten(-1, (heads, head_dim)).transpose(-3, -2)
    k = attn.k_proj(kv).unflatten(-1, (heads, head_dim)).transpose(-3, -2)
    v = attn.v_proj(kv).unflatten(-1, (heads, head_dim)).transpose(-3, -2)
    dropout = attn.dropout if attn.training else 0.0
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=is_causal, scale=attn.scale
    )
    return attn.out_proj(out.transpose(-3, -2).flatten(-2))


def attention_heads(attn: CLIPAttention, states: torch.Tensor, projections: str = "qkv") -> tuple[torch.Tensor, ...]:
    """CLIP's frozen projections of states [..., N, D] named in `projections` (default q, k, v, in that order), split
    into heads [..., heads, N, head_dim].

    For tokens that serve several attention calls with different key sets (DGL's local and global calls): project them
    once and combine the heads with `attend_heads`, instead of re-projecting them in each `frozen_attention` call.
    Tokens that are only keys and values need `projections="kv"`.
    """
    heads, head_dim = attn.num_heads, attn.head_dim
    layers = {"q": attn.q_proj, "k": attn.k_proj, "v": attn.v_proj}
    return tuple(layers[name](states).unflatten(-1, (heads, head_dim)).transpose(-3, -2) for name in projections)


def attend_heads(
    attn: CLIPAttention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
) -> torch.Tensor:
    """SDPA over head-split q [..., heads, Nq, hd], k/v [..., heads, Nk, hd] (from `attention_heads`) with CLIP's scale
    and attention dropout, heads merged and passed through the frozen `out_proj` → [..., Nq, D]."""
    dropout = attn.dropout if attn.training else 0.0
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=is_causal, scale=attn.scale
    )
    return attn.out_proj(out.transpose(-3, -2).flatten(-2))


def encoder_layer(
    layer: CLIPEncoderLayer,
    hidden_states: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
) -> torch.Tensor:
    """One pre-LN CLIP encoder layer (self-attention + MLP) with an arbitrary mask."""
    hidden_states = hidden_states + frozen_attention(
        layer.self_attn, layer.layer_norm1(hidden_states), attn_mask=attn_mask, is_causal=is_causal
    )
    return hidden_states + layer.mlp(layer.layer_norm2(hidden_states))


def maybe_checkpoint(tower: nn.Module, function, *args, **kwargs):
    """Run `function(*args, **kwargs)`, under activation checkpointing when the tower has it enabled and grads flow."""
    encoder = getattr(tower, "encoder", None)
    if getattr(encoder, "gradient_checkpointing", False) and torch.is_grad_enabled():
        return checkpoint(function, *args, use_reentrant=False, **kwargs)
    return function(*args, **kwargs)


def embed_frames(clip: CLIPModel, frames: torch.Tensor) -> torch.Tensor:
    """Frames [N, 3, H, W] → token states [N, 1 + patches, D] after patch/position embedding and `pre_layrnorm`."""
    vision = vision_tower(clip)
    return vision.pre_layrnorm(vision.embeddings(frames))


def project_cls(clip: CLIPModel, hidden_states: torch.Tensor) -> torch.Tensor:
    """Last-layer vision states [..., N, D] → CLIP image embedding of the CLS token [..., P] (`post_layernorm`,
    `visual_projection`)."""
    return clip.visual_projection(vision_tower(clip).post_layernorm(hidden_states[..., 0, :]))


def encode_frames(clip: CLIPModel, frames: torch.Tensor) -> torch.Tensor:
    """Stock per-frame CLIP image embeddings: frames [N, 3, H, W] → [N, P] (not normalised)."""
    return clip.visual_projection(vision_tower(clip)(pixel_values=frames).pooler_output)


def run_text_transformer(clip: CLIPModel, inputs_embeds: torch.Tensor) -> torch.Tensor:
    """CLIP's text transformer on ready embeddings (positions included) with its causal mask → states after
    `final_layer_norm` [B, L, D]. Read the pooled state at the EOT position yourself."""
    text = text_tower(clip)
    hidden = inputs_embeds
    for layer in text.encoder.layers:
        hidden = maybe_checkpoint(text, encoder_layer, layer, hidden, is_causal=True)
    return text.final_layer_norm(hidden)


def special_token_ids(clip: CLIPModel) -> tuple[int, int]:
    """(SOT, EOT) ids of the base tokenizer as CLIP's text config knows them (EOT is also CLIP's pad id). Legacy
    configs (eos_token_id == 2) put SOT and EOT at the end of the vocabulary."""
    text = clip.config.text_config
    if text.eos_token_id == 2:
        return text.vocab_size - 2, text.vocab_size - 1
    return text.bos_token_id, text.eos_token_id


def eot_positions(clip: CLIPModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Index of the token CLIP pools for each caption, exactly as transformers' `CLIPTextModel` chooses it."""
    eos_token_id = text_tower(clip).config.eos_token_id
    if eos_token_id == 2:  # legacy configs: the EOT token has the largest id
        return input_ids.to(torch.int).argmax(dim=-1)
    return (input_ids == eos_token_id).int().argmax(dim=-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of values [B, T, ...] counting only positions where mask [B, T] is True."""
    weights = mask.to(values.dtype).reshape(*mask.shape, *([1] * (values.ndim - 2)))
    return (values * weights).sum(1) / weights.sum(1).clamp_min(1)
