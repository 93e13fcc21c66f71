"""The video forward contract shared by every method: input checks, outputs, and the peft tuner/layer bases.

A method package only provides a `VideoAdapterModule` (its parameters and how they encode videos and texts); the tuner
here does the rest: it attaches the adapter to the CLIPModel, validates inputs, pools the zero-shot baseline when the
adapter is disabled, and turns embeddings into logits and the (distributed) contrastive loss.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils.integrations import init_empty_weights
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
    if pixel_values.is_floating_point():
        # One pass over the batch. NaN or inf in any frame, padded ones included, would reach every score through
        # attention (0 * NaN is NaN) and make the loss NaN without saying why.
        finite = torch.isfinite(pixel_values).flatten(1).all(dim=1)
        if not bool(finite.all()):
            rows = (~finite).nonzero().flatten().tolist()
            raise ValueError(
                f"pixel_values holds NaN or inf in batch row(s) {rows} (padded frames included; fill padding with "
                "zeros). Check the decoding and normalisation of those videos."
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
    contrastive loss over all processes plus `auxiliary_loss()` when given (a method's extra training objective).

    This head runs in float32 whatever the base model's dtype, and outside any `torch.autocast` region: a cosine of
    two bf16 embeddings carries 2-3 significant digits, times a logit scale of up to 100, which ties close scores in
    a ranking and coarsens the softmax of the loss. It costs one [N, P] cast and one [N, N] matmul."""
    device_type = video_output.pooler_output.device.type
    full_precision = (
        torch.autocast(device_type, enabled=False) if torch.is_autocast_enabled(device_type) else nullcontext()
    )
    with full_precision:
        video_embeds = F.normalize(video_output.pooler_output.float(), dim=-1)
        text_embeds = F.normalize(text_output.pooler_output.float(), dim=-1)
        logit_scale = logit_scale.float()
        logits_per_text = logit_scale * text_embeds @ video_embeds.t()
        loss = contrastive = auxiliary = None
        if return_loss:
            if text_embeds.shape[0] != video_embeds.shape[0]:
                raise ValueError(
                    f"return_loss=True pairs caption i with video i: got {text_embeds.shape[0]} captions and "
                    f"{video_embeds.shape[0]} videos."
                )
            loss = contrastive = contrastive_loss(text_embeds, video_embeds, logit_scale)
    if return_loss:
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


def base_reference(clip: CLIPModel) -> torch.Tensor:
    """The frozen tensor whose device and dtype a video adapter follows, as peft's layers follow their base layer's
    weight: `logit_scale`, a plain parameter of every CLIPModel (never wrapped by `modules_to_save`)."""
    return clip.logit_scale


def adapter_carrier(model: nn.Module) -> nn.Module:
    """The CLIPModel inside `model` (a PeftModel, a tuner or the CLIPModel itself) that carries the video adapter."""
    for module in model.modules():
        if isinstance(getattr(module, ADAPTER_ATTRIBUTE, None), VideoAdapterLayer):
            return module
    raise ValueError(
        f"This {type(model).__name__} carries no peft_video adapter: create one with get_peft_model(clip, config) "
        "or peft.inject_adapter_in_model(config, clip)."
    )


def place_like_model(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Loaded adapter tensors whose model counterparts are still on the meta device (peft's `low_cpu_mem_usage`),
    moved to the base model's device and cast to the dtype of the placeholder they replace; other entries unchanged.

    `load_state_dict(assign=True)` keeps the loaded tensor, not the placeholder. The placeholder already has the
    dtype that `autocast_adapter_dtype` chose, so casting here loads fp32 adapter weights onto an fp16 base exactly
    (peft's own layers round them through the base dtype and back); the file's tensors sit on the device peft
    inferred, not necessarily the base model's.
    """
    placeholders = {k: v for k, v in model.state_dict(keep_vars=True).items() if v.is_meta}
    if not placeholders:
        return state_dict
    device = base_reference(adapter_carrier(model)).device
    placed = dict(state_dict)
    for key, value in state_dict.items():
        target = placeholders.get(key)
        if target is not None and value.is_floating_point():
            placed[key] = value.to(device=device, dtype=target.dtype)
    return placed


class VideoAdapterLayer(nn.Module, BaseTunerLayer):
    """The single peft tuner layer a video adapter adds to the CLIPModel (as `clip.video_adapter`).

    Subclasses set `adapter_layer_names = ("<prefix>modules",)` and `module_cls`. The ModuleDict maps adapter names to
    `module_cls` instances, so peft's own adapter bookkeeping (set/delete/disable, state dicts) applies unchanged.

    The layer wraps no base layer: `get_base_layer()` is the layer itself, it has no `weight` or `bias` (reading them
    raises AttributeError, so `getattr(layer, "weight", None)` is None), and the adapter follows the device and dtype
    of the whole CLIPModel (`base_reference`) instead of a base layer's weight.
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

    # BaseTunerLayer's `weight` and `bias` read `get_base_layer().weight`, which is this layer again: without these
    # overrides they recurse forever (peft reads them, e.g. to find a layer's device and dtype).
    @property
    def weight(self) -> torch.Tensor:
        raise AttributeError(f"{type(self).__name__} wraps no base layer, so it has no weight.")

    @property
    def bias(self) -> torch.Tensor:
        raise AttributeError(f"{type(self).__name__} wraps no base layer, so it has no bias.")

    def __getattr__(self, name: str) -> Any:
        # reached when the properties above raise: keep their message instead of nn.Module's generic one
        if name in ("weight", "bias"):
            raise AttributeError(f"{type(self).__name__} wraps no base layer, so it has no {name}.")
        return super().__getattr__(name)

    @property
    def adapter_modules(self) -> nn.ModuleDict:
        return getattr(self, self.adapter_layer_names[0])

    def update_layer(
        self, adapter_name: str, config: VideoAdapterConfig, clip: CLIPModel, low_cpu_mem_usage: bool = False
    ) -> None:
        """Create the adapter `adapter_name` with the base model's device and dtype (peft then upcasts it to float32
        when `autocast_adapter_dtype=True`). With `low_cpu_mem_usage` its parameters are placeholders on the meta
        device, which loading an adapter file replaces."""
        with init_empty_weights() if low_cpu_mem_usage else nullcontext():
            module = self.module_cls(config, clip)
        reference = base_reference(clip)
        if any(p.is_meta for p in module.parameters()):
            # meta placeholders change dtype only; buffers (never put on meta) go to the base model's device
            module.to(dtype=reference.dtype)
            for owner in module.modules():
                for name, buffer in owner.named_buffers(recurse=False):
                    owner._buffers[name] = buffer.to(reference.device)
        else:
            module.to(device=reference.device, dtype=reference.dtype)
        self.adapter_modules[adapter_name] = module

    def _move_adapter_to_device_of_base_layer(self, adapter_name: str, device: torch.device | None = None) -> None:
        """Move adapter `adapter_name` to `device` when one is given. peft calls this after loading an adapter with
        `low_cpu_mem_usage`; the loaded tensors are already placed then (`place_like_model`), and there is no base
        layer to follow otherwise."""
        if device is None or adapter_name not in self.adapter_modules:
            return
        module = self.adapter_modules[adapter_name]
        if not any(p.is_meta for p in module.parameters()):
            module.to(device)

    def active_module(self) -> VideoAdapterModule:
        """The module of the one active adapter (also while adapters are disabled: its config still sets the input
        limits). A video forward runs exactly one adapter; anything else raises a ValueError that says what to do."""
        names = list(self.active_adapters)
        if len(names) == 1 and names[0] in self.adapter_modules:
            return self.adapter_modules[names[0]]
        available = list(self.adapter_modules)
        if not available:
            advice = (
                "This model has no adapter left (the last one was deleted): add one with add_adapter(name, config) "
                "or load_adapter(path, adapter_name=name), then set_adapter(name)."
            )
        else:
            advice = "Select one with set_adapter(name)."
        raise ValueError(
            f"A video forward runs exactly one adapter, but the active adapters are {names} (available: {available}). "
            + advice
        )

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError(
            f"{type(self).__name__} adds tokens and heads around a frozen CLIP; there are no weight deltas to merge. "
            "Keep the PeftModel, or call unload() to get the untouched CLIPModel back."
        )

    def unmerge(self) -> None:
        """Nothing is ever merged."""


# -- the video contract of a CLIPModel that carries a video adapter ---------------------------------------------------
# Functions of the CLIPModel, so that they serve both a PeftModel (whose tuner calls them on its model) and a CLIPModel
# that `peft.inject_adapter_in_model` adapted in place.
def video_adapter_layer(clip: nn.Module) -> VideoAdapterLayer:
    """The video adapter layer of `clip`, or a ValueError saying how to add one."""
    layer = getattr(clip, ADAPTER_ATTRIBUTE, None)
    if not isinstance(layer, VideoAdapterLayer):
        raise ValueError(
            f"This {type(clip).__name__} carries no peft_video adapter: create one with get_peft_model(clip, config) "
            "or peft.inject_adapter_in_model(config, clip)."
        )
    return layer


def video_features(
    clip: CLIPModel, pixel_values: torch.Tensor, video_mask: torch.Tensor | None = None
) -> VideoModelOutput:
    """Embed videos [B, T, 3, H, W] with the active adapter of `clip` (the mean-pooling baseline while adapters are
    disabled), independently of any text. `video_mask` [B, T] marks real frames (first)."""
    layer = video_adapter_layer(clip)
    module = layer.active_module()
    config = module.config
    pixel_values, video_mask = check_video_inputs(
        pixel_values, video_mask, image_size=config.image_size, max_frames=config.num_frames
    )
    if layer.disable_adapters:
        return mean_pooled_video_features(clip, pixel_values, video_mask)
    module.check_inputs(pixel_values.shape[1])
    return module.encode_video(clip, pixel_values, video_mask)


def text_features(
    clip: CLIPModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> BaseModelOutputWithPooling:
    """Embed captions with the active adapter of `clip`; `pooler_output` is the projected text embedding [B, P]."""
    check_text_inputs(input_ids, attention_mask)
    layer = video_adapter_layer(clip)
    module = layer.active_module()
    if layer.disable_adapters:
        return stock_text_features(clip, input_ids, attention_mask)
    return module.encode_text(clip, input_ids, attention_mask)


def video_text_forward(
    clip: CLIPModel,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    pixel_values: torch.Tensor | None = None,
    video_mask: torch.Tensor | None = None,
    return_loss: bool | None = None,
) -> VideoTextRetrievalOutput:
    """Captions × videos → `VideoTextRetrievalOutput`; in training mode the loss includes the method's auxiliary
    loss."""
    if input_ids is None or pixel_values is None:
        raise ValueError("A video-text forward needs both input_ids and pixel_values.")
    video_output = video_features(clip, pixel_values, video_mask)
    text_output = text_features(clip, input_ids, attention_mask)
    layer = video_adapter_layer(clip)
    auxiliary_loss = None
    if clip.training and not layer.disable_adapters:
        module = layer.active_module()

        def auxiliary_loss():
            return module.auxiliary_loss(
                clip, input_ids=input_ids, attention_mask=attention_mask, video_output=video_output
            )

    return video_text_output(
        video_output, text_output, clip.logit_scale.exp(), return_loss=return_loss, auxiliary_loss=auxiliary_loss
    )


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
            existing_requires_grad = []  # the first adapter freezes the base model
        elif not isinstance(layer, self.tuner_layer_cls):
            raise ValueError(
                f"This CLIPModel already carries a {type(layer).__name__} adapter; one peft_video method per model "
                f"(cannot add a {type(config).__name__} adapter next to it)."
            )
        else:
            # as peft's BaseTuner.inject_adapter: adding an adapter leaves the trainability of everything else alone
            existing_requires_grad = [(p, p.requires_grad) for p in model.parameters()]
        layer.update_layer(adapter_name, config, model, low_cpu_mem_usage=low_cpu_mem_usage)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)
        self._mark_only_adapters_as_trainable(model)
        set_additional_trainable_modules(
            model=model,
            peft_config=config,
            model_config=BaseTuner.get_model_config(self),
            adapter_name=adapter_name,
            activate_adapter=adapter_name in self.active_adapters,
        )
        for parameter, requires_grad in existing_requires_grad:
            parameter.requires_grad = requires_grad

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

    @classmethod
    def _remap_adapter_state_dict_for_load(
        cls,
        model: nn.Module,
        config: VideoAdapterConfig,
        adapter_name: str,
        state_dict: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        remapped = super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)
        return place_like_model(model, remapped)

    @property
    def video_layer(self) -> VideoAdapterLayer:
        return video_adapter_layer(self.model)

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
        return video_features(self.model, pixel_values, video_mask)

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> BaseModelOutputWithPooling:
        """Embed captions; `pooler_output` is the projected text embedding [B, P]."""
        return text_features(self.model, input_ids, attention_mask)

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
        return video_text_forward(self.model, input_ids, attention_mask, pixel_values, video_mask, return_loss)
