"""Optimizer parameter groups and parameter counts of a peft_video model (or a baseline)."""

from __future__ import annotations

from typing import Any

from torch import nn

ADAPTER_ATTRIBUTE_PREFIX = "video_adapter."


def parameter_groups(
    model: nn.Module,
    *,
    learning_rate: float,
    other_learning_rate: float,
    weight_decay: float,
) -> list[dict[str, Any]]:
    """Optimizer groups: adapter tensors at `learning_rate`, every other trainable tensor (peft's `modules_to_save`
    copies, or the whole CLIP when fine-tuning it) at `other_learning_rate`. Within each, tensors of rank < 2 (biases,
    norm weights, scalar gates) get no weight decay. Empty groups are left out; every group has a `name`."""
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        kind = "adapter" if ADAPTER_ATTRIBUTE_PREFIX in name else "other"
        groups.setdefault((kind, parameter.ndim >= 2), []).append(parameter)
    out = [
        {
            "params": params,
            "lr": learning_rate if kind == "adapter" else other_learning_rate,
            "weight_decay": weight_decay if decay else 0.0,
            "name": f"{kind}{'' if decay else '_no_decay'}",
        }
        for (kind, decay), params in sorted(groups.items())
    ]
    if not out:
        raise ValueError("the model has no trainable parameter: nothing to optimise")
    return out


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}
