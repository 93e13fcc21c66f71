"""The Prompt Cube tuner: what peft instantiates for a `PromptCubeConfig`, and which tensors its adapter file holds."""

from __future__ import annotations

import torch
from torch import nn

from ...modeling import VideoTuner, adapter_carrier, place_like_model
from .config import PromptCubeConfig
from .layer import CaptionDecoder, PromptCubeLayer

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
            if any(v.is_meta for v in model_captioner.values()):
                # low_cpu_mem_usage made the captioner a meta placeholder and the file has none: draw its init now
                model_captioner = _fresh_captioner_state(model, config, adapter_name, model_captioner)
            remapped.update({k: v.detach().clone() for k, v in model_captioner.items()})
        return remapped


def _fresh_captioner_state(
    model: nn.Module, config: PromptCubeConfig, adapter_name: str, placeholders: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A freshly initialised captioner's tensors under the keys of its meta placeholders, placed like the model."""
    marker = f".{adapter_name}.{CAPTIONER_ATTRIBUTE}."
    prefix = next(iter(placeholders)).split(marker)[0] + marker
    fresh = CaptionDecoder(config, adapter_carrier(model)).state_dict()
    return place_like_model(model, {prefix + key: value for key, value in fresh.items()})
