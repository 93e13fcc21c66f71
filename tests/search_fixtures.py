"""Shared set-up of the index, search, gallery and app tests: a tiny offline world, a tiny random CLIP folder and
TFVL adapters on it (made once per test session, in a temporary folder)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from train_fixtures import write_tiny_clip, write_tiny_world

FAST = {"decode_timeout": None, "progress": False}


def make_assets(root: Path) -> SimpleNamespace:
    import torch
    from peft import get_peft_model
    from transformers import CLIPModel

    from peft_video import TFVLConfig

    clip_dir = write_tiny_clip(root / "clip")
    manifest = write_tiny_world(root / "world")
    torch.manual_seed(0)
    config = TFVLConfig(num_frames=4, max_text_length=16, text_temp_gate_init=0.5)
    get_peft_model(CLIPModel.from_pretrained(clip_dir), config).save_pretrained(root / "adapter")
    torch.manual_seed(1)
    get_peft_model(CLIPModel.from_pretrained(clip_dir), config).save_pretrained(root / "other_adapter")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    return SimpleNamespace(
        root=root,
        clip=clip_dir,
        manifest=manifest,
        adapter=root / "adapter",
        other_adapter=root / "other_adapter",
        rows=rows,
        test_ids=[r["video_id"] for r in rows if r["split"] == "test"],
    )
