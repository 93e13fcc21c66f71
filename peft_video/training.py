"""Pieces a training script reuses (the loop itself lives in `examples/train.py`): method names, optimizer
groups, parameter counts, and per-sample seeding of training data. Evaluation helpers are in `peft_video.evaluation`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .registry import video_methods

BASELINES: dict[str, str] = {
    "zero_shot": "frozen CLIP, mean of the frame embeddings (evaluation only)",
    "full_finetune": "every CLIP weight trained, mean of the frame embeddings (CLIP4Clip-meanP)",
}
ADAPTER_ATTRIBUTE_PREFIX = "video_adapter."


def known_method_names() -> list[str]:
    """Every name `method` may take: the registered adapter methods, then the baselines."""
    return [*video_methods(), *BASELINES]


def check_method_name(method: str) -> None:
    """Raise a ValueError naming the known methods when `method` is none of them."""
    if method in BASELINES or method in video_methods():
        return
    known = known_method_names()
    hint = difflib.get_close_matches(str(method), known, n=1)
    raise ValueError(
        f"unknown method {method!r}; known methods: {known}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    )


def build_method_config(method: str, fields: Mapping[str, Any] | None = None):
    """The adapter config of `method` (`"tfvl"`, `"dgl"`, `"prompt_cube"`) built from `fields`.

    A field the config class does not have raises a ValueError listing the valid ones; the config's own
    `__post_init__` validates the values.
    """
    check_method_name(method)
    if method in BASELINES:
        raise ValueError(f"{method!r} is a baseline, not an adapter method: it has no adapter config")
    config_class = video_methods()[method].config_cls
    fields = dict(fields or {})
    valid = {f.name for f in dataclasses.fields(config_class) if f.init}
    unknown = sorted(set(fields) - valid)
    if unknown:
        hints = {name: difflib.get_close_matches(name, sorted(valid), n=1) for name in unknown}
        hint_text = ", ".join(f"{name!r} -> {h[0]!r}?" for name, h in hints.items() if h)
        raise ValueError(
            f"{config_class.__name__} has no field(s) {unknown}"
            + (f" ({hint_text})" if hint_text else "")
            + f"; valid fields: {sorted(valid)}"
        )
    return config_class(**fields)


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
    out = []
    for (kind, decay), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "lr": learning_rate if kind == "adapter" else other_learning_rate,
                "weight_decay": weight_decay if decay else 0.0,
                "name": f"{kind}{'' if decay else '_no_decay'}",
            }
        )
    if not out:
        raise ValueError("the model has no trainable parameter: nothing to optimise")
    return out


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}


class EpochSeededDataset(torch.utils.data.Dataset):
    """Makes every random draw of `dataset[i]` (e.g. training frame positions) a function of (seed, epoch, i) only.

    Without it, the draws depend on torch's global RNG at the moment the item is loaded, which changes with
    prefetching, worker count and where a run was resumed; with it, a resumed run sees exactly the frames the
    uninterrupted run saw. Call `set_epoch` before iterating an epoch (DataLoader workers get a copy at iteration).
    """

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item_seed = (self.seed * 1_000_003 + self.epoch) * 10_000_019 + int(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed % (2**63 - 1))
            return self.dataset[index]
