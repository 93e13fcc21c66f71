"""Outcomes of peft's own behaviour, as JSON: enums and mappings, config round trips, a LoRA model's forward, save
and reload, and AutoPeftModel's refusal of a task type. `tests/test_registration.py` compares a fresh interpreter
that never imports peft_video with the test session, where peft_video is imported.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin0 = torch.nn.Linear(8, 16)
        self.lin1 = torch.nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin1(torch.relu(self.lin0(x)))


def _mlp() -> MLP:
    torch.manual_seed(0)
    return MLP()


def _plain(value):
    # sets (LoraConfig.target_modules) in a stable order: their iteration order depends on the process's hash seed
    return sorted(value) if isinstance(value, (set, frozenset)) else str(value)


def _name(member) -> str:
    return str(getattr(member, "value", member))


def fingerprint() -> dict:
    from peft import AutoPeftModel, IA3Config, LoraConfig, PeftConfig, PeftModel, PromptTuningConfig, get_peft_model
    from peft.auto import MODEL_TYPE_TO_PEFT_MODEL_MAPPING
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import PeftType, TaskType, get_peft_model_state_dict

    out: dict = {
        "peft_types": [m.value for m in PeftType],
        "task_types": [m.value for m in TaskType],
        "task_classes": {k: v.__name__ for k, v in MODEL_TYPE_TO_PEFT_MODEL_MAPPING.items()},
        "config_classes": {_name(k): v.__name__ for k, v in PEFT_TYPE_TO_CONFIG_MAPPING.items()},
        "tuner_classes": {_name(k): v.__name__ for k, v in PEFT_TYPE_TO_TUNER_MAPPING.items()},
        "prefixes": {_name(k): v for k, v in PEFT_TYPE_TO_PREFIX_MAPPING.items()},
    }
    configs = {
        "lora": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        "ia3": IA3Config(target_modules=["k"], feedforward_modules=[], task_type="SEQ_2_SEQ_LM"),
        "prompt_tuning": PromptTuningConfig(num_virtual_tokens=5, task_type="SEQ_CLS"),
    }
    with tempfile.TemporaryDirectory() as folder:
        for name, config in configs.items():
            config.save_pretrained(Path(folder) / name)
            loaded = PeftConfig.from_pretrained(Path(folder) / name)
            out[f"{name}_config"] = [type(loaded).__name__, json.loads(json.dumps(loaded.to_dict(), default=_plain))]
        x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
        model = get_peft_model(_mlp(), LoraConfig(target_modules=["lin0"], init_lora_weights=False))
        out["lora_keys"] = sorted(get_peft_model_state_dict(model))
        out["lora_trainable"] = model.get_nb_trainable_parameters()
        out["lora_output"] = model(x).tolist()
        with model.disable_adapter():
            out["lora_disabled"] = model(x).tolist()
        model.save_pretrained(Path(folder) / "lora_model")
        reloaded = PeftModel.from_pretrained(_mlp(), Path(folder) / "lora_model")
        out["lora_reloaded"] = reloaded(x).tolist()
        out["lora_saved_config"] = json.loads((Path(folder) / "lora_model" / "adapter_config.json").read_text())
        try:
            AutoPeftModel.from_pretrained(Path(folder) / "lora")
        except ValueError as error:
            out["auto_peft_model_error"] = str(error).replace(folder, "<tmp>")
    return out
