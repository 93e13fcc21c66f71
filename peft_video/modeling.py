"""The video forward contract shared by every method: input checks, outputs, and the peft tuner/layer bases.

A method package only provides a `VideoAdapterModule` (its parameters and how they encode videos and texts); the tuner
here does the rest: it attaches the adapter to the CLIPModel, validates inputs, pools the zero-shot baseline when the
adapter is disabled, and turns embeddings into logits and the (distributed) contrastive loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils.other import set_additional_trainable_modules
from torch import nn
from transformers import CLIPModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from . import clip_ops
from .config import VideoAdapterConfig
from .losses import contrastive_loss

ADAPTER_ATTRIBUTE = "video_adapter"
"""Name of the one child module that a peft_video adapter adds to the CLIPModel."""


@dataclass
class VideoModelOutput(BaseModelOutputWithPooling):
    """What `get_video_features` returns, shaped like transformers 5's `get_image_features` output.

    Args:
        pooler_output: the projected video embedding [B, P] (not normalised).
        frame_embeds: projected per-frame embeddings [B, T, P] when the method has them (not normalised).
        video_mask: [B, T] bool, True for real frames.
        last_hidden_state: method-specific token states, or None.
    """

    frame_embeds: torch.FloatTensor | None = None
    video_mask: torch.BoolTensor | None = None


@dataclass
class VideoTextRetrievalOutput(ModelOutput):
    """Output of the video-text forward.

    Args:
        loss: contrastive loss plus any auxiliary loss (training mode only), when `return_loss=True`.
        contrastive_loss: the symmetric InfoNCE over all processes' pairs.
        auxiliary_loss: the method's extra objective already weighted (e.g. Prompt Cube's captioner), or None.
        logits_per_text: [n_texts, n_videos] scaled cosine similarities.
        logits_per_video: its transpose.
        text_embeds, video_embeds: L2-normalised embeddings.
    """

    loss: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    auxiliary_loss: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    video_model_output: VideoModelOutput | None = None


def base_model_dims(clip: CLIPModel) -> dict[str, int]:
    """The shapes of a CLIPModel that an adapter depends on."""
    vision, text = clip.config.vision_config, clip.config.text_config
    return {
        "vision_hidden_size": vision.hidden_size,
        "vision_num_layers": vision.num_hidden_layers,
        "vision_num_heads": vision.num_attention_heads,
        "patch_size": vision.patch_size,
        "image_size": vision.image_size,
        "text_hidden_size": text.hidden_size,
        "text_num_layers": text.num_hidden_layers,
        "text_max_positions": text.max_position_embeddings,
        "projection_dim": clip.config.projection_dim,
    }


def check_video_inputs(
    pixel_values: Any, video_mask: Any, *, image_size: int, max_frames: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a video batch and return it with a bool mask [B, T] (all True when none was given)."""
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(
            f"pixel_values must be a torch.Tensor [batch, frames, 3, height, width], got {type(pixel_values)}."
        )
    if pixel_values.ndim != 5:
        raise ValueError(
            f"pixel_values must have rank 5 [batch, frames, 3, height, width], got rank {pixel_values.ndim} with "
            f"shape {tuple(pixel_values.shape)}. For one image per sample add a frames axis: pixel_values[:, None]."
        )
    batch, frames, channels, height, width = pixel_values.shape
    if channels != 3:
        raise ValueError(
            f"pixel_values must be [batch, frames, 3, height, width]: expected 3 channels at dim 2, got {channels} "
            f"(shape {tuple(pixel_values.shape)})."
        )
    if (height, width) != (image_size, image_size):
        raise ValueError(
            f"pixel_values frames must be {image_size}x{image_size} (the base model's image_size), "
            f"got {height}x{width}."
        )
    if frames > max_frames:
        raise ValueError(
            f"pixel_values has {frames} frames but the adapter was built for num_frames={max_frames}; sample at most "
            f"{max_frames} frames (or create the adapter with a larger num_frames)."
        )
    if video_mask is None:
        return pixel_values, torch.ones(batch, frames, dtype=torch.bool, device=pixel_values.device)
    if not isinstance(video_mask, torch.Tensor) or tuple(video_mask.shape) != (batch, frames):
        got = tuple(video_mask.shape) if isinstance(video_mask, torch.Tensor) else type(video_mask)
        raise ValueError(f"video_mask must have shape [batch, frames] = {(batch, frames)}, got {got}.")
    video_mask = video_mask.to(device=pixel_values.device, dtype=torch.bool)
    if not video_mask.any(dim=1).all():
        empty = (~video_mask.any(dim=1)).nonzero().flatten().tolist()
        raise ValueError(f"video_mask marks no real frame for video(s) at batch index {empty}.")
    if (video_mask[:, 1:] & ~video_mask[:, :-1]).any():
        raise ValueError("video_mask must put real frames first (True...True False...False) in every row.")
    return pixel_values, video_mask


def check_text_inputs(input_ids: Any, attention_mask: Any) -> None:
    """Validate a caption batch: input_ids [B, L] integer, attention_mask of the same shape when given."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
        got = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids)
        raise ValueError(f"input_ids must be a tensor [batch, tokens], got {got}.")
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(
            f"attention_mask must match input_ids {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}."
        )


def mean_pooled_video_features(
    clip: CLIPModel, pixel_values: torch.Tensor, video_mask: torch.Tensor, *, normalize_frames: bool = True
) -> VideoModelOutput:
    """The zero-shot baseline, CLIP4Clip's meanP: stock CLIP on every frame, each frame embedding L2-normalised, the
    mean over the real frames (normalised again where similarities are taken). CLIP4Clip's `_loose_similarity`
    normalises before `_mean_pooling_for_similarity_visual`, so frames with larger embedding norms do not weigh more.

    `normalize_frames=False` gives the plain mean of the unnormalised frame embeddings instead (what a method that
    starts from mean pooling, e.g. TFVL's residual mean, computes at initialisation). `frame_embeds` are returned
    unnormalised either way."""
    batch, frames = pixel_values.shape[:2]
    frame_embeds = clip_ops.encode_frames(clip, pixel_values.flatten(0, 1)).unflatten(0, (batch, frames))
    pooled = F.normalize(frame_embeds, dim=-1) if normalize_frames else frame_embeds
    return VideoModelOutput(
        pooler_output=clip_ops.masked_mean(pooled, video_mask), frame_embeds=frame_embeds, video_mask=video_mask
    )


def stock_text_features(clip: CLIPModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
    """CLIP's own text embedding (EOT state → `text_projection`)."""
    text_outputs = clip_ops.text_tower(clip)(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
    text_outputs.pooler_output = clip.text_projection(text_outputs.pooler_output)
    return text_outputs


def video_text_output(
    video_output: VideoModelOutput,
    text_output: BaseModelOutputWithPooling,
    logit_scale: torch.Tensor,
    *,
    return_loss: bool | None,
    auxiliary_loss: Callable[[], torch.Tensor | None] | None = None,
) -> VideoTextRetrievalOutput:
    """Embeddings → normalised embeddings, scaled cosine logits [n_texts, n_videos] and, with `return_loss`, the
    contrastive loss over all processes plus `auxiliary_loss()` when given (a method's extra training objective)."""
    video_embeds = F.normalize(video_output.pooler_output, dim=-1)
    text_embeds = F.normalize(text_output.pooler_output, dim=-1)
    logits_per_text = logit_scale * text_embeds @ video_embeds.t()
    loss = contrastive = auxiliary = None
    if return_loss:
        if text_embeds.shape[0] != video_embeds.shape[0]:
            raise ValueError(
                f"return_loss=True pairs caption i with video i: got {text_embeds.shape[0]} captions and "
                f"{video_embeds.shape[0]} videos."
            )
        loss = contrastive = contrastive_loss(text_embeds, video_embeds, logit_scale)
        auxiliary = auxiliary_loss() if auxiliary_loss is not None else None
        if auxiliary is not None:
            loss = contrastive + auxiliary
    return VideoTextRetrievalOutput(
        loss=loss,
        contrastive_loss=contrastive,
        auxiliary_loss=auxiliary,
        logits_per_text=logits_per_text,
        logits_per_video=logits_per_text.t(),
        text_embeds=text_embeds,
        video_embeds=video_embeds,
        text_model_output=text_output,
        video_model_output=video_output,
    )


class VideoAdapterModule(nn.Module):
    """All trainable tensors of one adapter of one method, and how they encode videos and texts.

    Subclasses build their parameters in `__init__(config, clip)` from the frozen model's shapes (they must not keep
    a reference to `clip`: it is passed to every call) and implement `encode_video`; `encode_text` defaults to stock
    CLIP.
    """

    def __init__(self, config: VideoAdapterConfig, clip: CLIPModel) -> None:
        super().__init__()
        self.config = config

    def check_inputs(self, num_frames: int) -> None:
        """Method-specific limits on a video batch of `num_frames` frames; raise ValueError naming expected vs got."""

    def encode_video(self, clip: CLIPModel, pixel_values: torch.Tensor, video_mask: torch.Tensor) -> VideoModelOutput:
        """pixel_values [B, T, 3, H, W] (validated), video_mask [B, T] bool (real frames first) → VideoModelOutput
        whose `pooler_output` is the projected video embedding [B, P]."""
        raise NotImplementedError

    def encode_text(
        self, clip: CLIPModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> BaseModelOutputWithPooling:
        """Captions → output whose `pooler_output` is the projected text embedding [B, P]. Default: stock CLIP."""
        return stock_text_features(clip, input_ids, attention_mask)

    def auxiliary_loss(
        self,
        clip: CLIPModel,
        *,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        video_output: VideoModelOutput,
    ) -> torch.Tensor | None:
        """An extra, already weighted training objective (called in training mode only). Default: none."""
        return None


class VideoAdapterLayer(nn.Module, BaseTunerLayer):
    """The single peft tuner layer a video adapter adds to the CLIPModel (as `clip.video_adapter`).

    Subclasses set `adapter_layer_names = ("<prefix>modules",)` and `module_cls`. The ModuleDict maps adapter names to
    `module_cls` instances, so peft's own adapter bookkeeping (set/delete/disable, state dicts) applies unchanged.
    """

    adapter_layer_names: tuple[str, ...] = ()
    module_cls: type[VideoAdapterModule]

    def __init__(self) -> None:
        nn.Module.__init__(self)
        if len(self.adapter_layer_names) != 1:
            raise TypeError(f"{type(self).__name__}.adapter_layer_names must name exactly one ModuleDict.")
        setattr(self, self.adapter_layer_names[0], nn.ModuleDict())
        self._active_adapter = "default"
        self._disable_adapters = False
        self.merged_adapters = []

    @property
    def adapter_modules(self) -> nn.ModuleDict:
        return getattr(self, self.adapter_layer_names[0])

    def update_layer(self, adapter_name: str, config: VideoAdapterConfig, clip: CLIPModel) -> None:
        reference = next(clip.parameters())
        self.adapter_modules[adapter_name] = self.module_cls(config, clip).to(device=reference.device)

    def active_module(self) -> VideoAdapterModule | None:
        """The module of the active adapter, or None when adapters are disabled (the zero-shot baseline)."""
        if self.disable_adapters:
            return None
        names = [name for name in self.active_adapters if name in self.adapter_modules]
        if len(names) != 1:
            raise ValueError(
                f"Exactly one active adapter is needed for a video forward, got {self.active_adapters} "
                f"(available: {list(self.adapter_modules)}). Use set_adapter(name)."
            )
        return self.adapter_modules[names[0]]

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError(
            f"{type(self).__name__} adds tokens and heads around a frozen CLIP; there are no weight deltas to merge. "
            "Keep the PeftModel, or call unload() to get the untouched CLIPModel back."
        )

    def unmerge(self) -> None:
        """Nothing is ever merged."""


class VideoTuner(BaseTuner):
    """peft tuner for video adapters on a CLIPModel. Method tuners set `prefix` and `tuner_layer_cls`."""

    prefix: str
    tuner_layer_cls: type[VideoAdapterLayer]
    target_module_mapping: dict[str, list[str]] = {}

    # -- injection -------------------------------------------------------------------------------------------------
    def _prepare_adapter_config(self, peft_config, model_config):
        return peft_config

    @staticmethod
    def _check_target_module_exists(peft_config, key):
        return False

    def _create_and_replace(self, *args, **kwargs):
        raise NotImplementedError("Video adapters are attached whole by inject_adapter, not per target module.")

    def inject_adapter(
        self,
        model: nn.Module,
        adapter_name: str,
        autocast_adapter_dtype: bool = True,
        low_cpu_mem_usage: bool = False,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        config: VideoAdapterConfig = self.peft_config[adapter_name]
        if not isinstance(model, CLIPModel):
            raise TypeError(f"{type(config).__name__} adapts a transformers CLIPModel, got {type(model).__name__}.")
        self._record_or_check_base_dims(config, model)
        layer = getattr(model, ADAPTER_ATTRIBUTE, None)
        if layer is None:
            layer = self.tuner_layer_cls()
            model.add_module(ADAPTER_ATTRIBUTE, layer)
        elif not isinstance(layer, self.tuner_layer_cls):
            raise ValueError(
                f"This CLIPModel already carries a {type(layer).__name__} adapter; one peft_video method per model "
                f"(cannot add a {type(config).__name__} adapter next to it)."
            )
        layer.update_layer(adapter_name, config, model)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)
        self._mark_only_adapters_as_trainable(model)
        set_additional_trainable_modules(
            model=model,
            peft_config=config,
            model_config=BaseTuner.get_model_config(self),
            adapter_name=adapter_name,
            activate_adapter=adapter_name in self.active_adapters,
        )

    @staticmethod
    def _record_or_check_base_dims(config: VideoAdapterConfig, model: CLIPModel) -> None:
        dims = base_model_dims(model)
        if config.base_model_dims is not None:
            recorded = config.base_model_dims
            diffs = [f"{k}: adapter {recorded.get(k)} vs model {v}" for k, v in dims.items() if recorded.get(k) != v]
            if diffs:
                raise ValueError(
                    f"This {type(config).__name__} adapter was created on a different base model "
                    f"({config.base_model_name_or_path or 'unnamed'}) than the one it is being loaded onto: "
                    + "; ".join(diffs)
                    + "."
                )
        if config.image_size is not None and config.image_size != dims["image_size"]:
            raise ValueError(
                f"{type(config).__name__}.image_size={config.image_size} but the base model's image_size is "
                f"{dims['image_size']}."
            )
        config.base_model_dims = dims
        config.image_size = dims["image_size"]

    # -- adapter state ---------------------------------------------------------------------------------------------
    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        # peft strips the adapter name only right before a key's last component (`lora_A.default.weight`); ours sit
        # after the ModuleDict (`tfvl_modules.default.frame_to_text.weight`). Stripping it there makes the adapter
        # file independent of the name it was trained under, so it loads under any adapter_name.
        modules = cls.tuner_layer_cls.adapter_layer_names[0]
        marker = f"{ADAPTER_ATTRIBUTE}.{modules}.{adapter_name}."
        if marker in key:
            return key.replace(marker, f"{ADAPTER_ATTRIBUTE}.{modules}.", 1)
        return super()._remove_adapter_name_from_key(key, adapter_name)

    @property
    def video_layer(self) -> VideoAdapterLayer:
        return getattr(self.model, ADAPTER_ATTRIBUTE)

    def _adapter_config(self) -> VideoAdapterConfig:
        return self.peft_config[self.active_adapters[0]]

    def merge_adapter(self, adapter_names: list[str] | None = None, safe_merge: bool = False) -> None:
        self.video_layer.merge()

    def merge_and_unload(self, *args, **kwargs) -> nn.Module:
        self.video_layer.merge()

    def unload(self) -> nn.Module:
        """Remove the adapter (and any `modules_to_save` copies) and return the untouched CLIPModel."""
        delattr(self.model, ADAPTER_ATTRIBUTE)
        return self._unload_and_optionally_merge(merge=False)

    # -- the video contract ----------------------------------------------------------------------------------------
    def get_video_features(
        self, pixel_values: torch.Tensor, video_mask: torch.Tensor | None = None
    ) -> VideoModelOutput:
        """Embed videos [B, T, 3, H, W] independently of any text. `video_mask` [B, T] marks real frames (first)."""
        config = self._adapter_config()
        pixel_values, video_mask = check_video_inputs(
            pixel_values, video_mask, image_size=config.image_size, max_frames=config.num_frames
        )
        module = self.video_layer.active_module()
        if module is None:
            return mean_pooled_video_features(self.model, pixel_values, video_mask)
        module.check_inputs(pixel_values.shape[1])
        return module.encode_video(self.model, pixel_values, video_mask)

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> BaseModelOutputWithPooling:
        """Embed captions; `pooler_output` is the projected text embedding [B, P]."""
        check_text_inputs(input_ids, attention_mask)
        module = self.video_layer.active_module()
        if module is None:
            return stock_text_features(self.model, input_ids, attention_mask)
        return module.encode_text(self.model, input_ids, attention_mask)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        video_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
        **kwargs: Any,
    ) -> VideoTextRetrievalOutput:
        if kwargs:
            raise TypeError(f"Unexpected arguments for a video-text forward: {sorted(kwargs)}.")
        if input_ids is None or pixel_values is None:
            raise ValueError("A video-text forward needs both input_ids and pixel_values.")
        video_output = self.get_video_features(pixel_values, video_mask)
        text_output = self.get_text_features(input_ids, attention_mask)
        module = self.video_layer.active_module()
        auxiliary_loss = None
        if self.training and module is not None:

            def auxiliary_loss():
                return module.auxiliary_loss(
                    self.model, input_ids=input_ids, attention_mask=attention_mask, video_output=video_output
                )

        return video_text_output(
            video_output,
            text_output,
            self.model.logit_scale.exp(),
            return_loss=return_loss,
            auxiliary_loss=auxiliary_loss,
        )
