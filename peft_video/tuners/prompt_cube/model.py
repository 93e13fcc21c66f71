"""The Prompt Cube tuner: what peft instantiates for a `PromptCubeConfig`, and which tensors its adapter file holds."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...modeling import VideoTuner
from .config import PromptCubeConfig
from .layer import PromptCubeLayer

CAPTIONER_ATTRIBUTE = "captioner"


def _is_captioner_key(key: str, adapter_name: str | None = None) -> bool:
    """Whether a state-dict key belongs to a captioner (of `adapter_name`, or of any adapter / an adapter-less key)."""
    marker = PromptCubeLayer.adapter_layer_names[0] + "."
    if marker not in key:
        return False
    rest = key.split(marker, 1)[1]
    if adapter_name is not None:
        return rest.startswith(f"{adapter_name}.{CAPTIONER_ATTRIBUTE}.")
    return rest.startswith(f"{CAPTIONER_ATTRIBUTE}.") or f".{CAPTIONER_ATTRIBUTE}." in rest


class PromptCubeModel(VideoTuner):
    """Attaches Prompt Switch's cube, switch and readout (and, while training, its captioner) to a frozen CLIPModel.

    The adapter that `save_pretrained` writes holds only the retrieval parts unless `config.save_captioner`; loading
    such an adapter for training keeps the freshly initialised captioner without reporting its keys as missing, and
    loading any adapter for inference (no captioner is built) ignores captioner keys.
    """

    prefix = "prompt_cube_"
    tuner_layer_cls = PromptCubeLayer

    @classmethod
    def _get_adapter_state_dict(
        cls,
        model: nn.Module,
        config: PromptCubeConfig,
        adapter_name: str,
        state_dict: dict[str, torch.Tensor],
        unwanted_adapter_names: list[str],
    ) -> dict[str, torch.Tensor]:
        selected = super()._get_adapter_state_dict(model, config, adapter_name, state_dict, unwanted_adapter_names)
        if getattr(config, "save_captioner", False):
            return selected
        return {k: v for k, v in selected.items() if not _is_captioner_key(k, adapter_name)}

    @classmethod
    def _remap_adapter_state_dict_for_load(
        cls,
        model: nn.Module,
        config: PromptCubeConfig,
        adapter_name: str,
        state_dict: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        remapped = super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)
        model_state = model.state_dict()
        # a checkpoint's captioner is useless to a model built without one (inference mode, caption_loss_weight=0)
        remapped = {k: v for k, v in remapped.items() if k in model_state or not _is_captioner_key(k)}
        model_captioner = {k: v for k, v in model_state.items() if _is_captioner_key(k, adapter_name)}
        if model_captioner and not any(k in model_captioner for k in remapped):
            # a retrieval-only adapter loaded for training: keep the captioner's fresh init, reported as loaded
            remapped.update({k: v.detach().clone() for k, v in model_captioner.items()})
        return remapped


def full_finetuning_parameter_groups(
    model: nn.Module,
    *,
    lr: float = 1e-5,
    backbone_lr: float = 1e-6,
    weight_decay: float = 0.2,
    backbone_weight_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups for the paper's setting: new parts (everything of the Prompt Cube adapter: cube,
    readout, captioner) at `lr`; every other trainable parameter (the copies of the base model that peft trains for
    `modules_to_save`, e.g. `["vision_model", "text_model", "visual_projection", "text_projection"]`) at
    `backbone_lr`. The reference uses 1e-5 / 1e-6 and weight decay 0.2 on both. Empty groups are left out.

    `torch.optim.AdamW(full_finetuning_parameter_groups(model))` then reproduces the reference's two learning rates
    (without its quirk of putting the readout attention in the backbone group).
    """
    new_parts, backbone = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (new_parts if PromptCubeModel.prefix in name else backbone).append(parameter)
    if backbone_weight_decay is None:
        backbone_weight_decay = weight_decay
    groups = [
        {"params": new_parts, "lr": lr, "weight_decay": weight_decay, "name": "prompt_cube"},
        {"params": backbone, "lr": backbone_lr, "weight_decay": backbone_weight_decay, "name": "backbone"},
    ]
    return [group for group in groups if group["params"]]
