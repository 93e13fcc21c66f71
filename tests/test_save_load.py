"""save_pretrained writes only the adapter; it reloads bit-exactly in a fresh process, from a folder or a Hub cache."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file

from peft_video import TFVLConfig
from peft_video.testing import make_clip, random_videos, tiny_clip_config

FRAMES = 3


def trained_adapter(clip):
    """A TFVL adapter whose tensors are all moved away from their initial values (as after training)."""
    model = get_peft_model(clip, TFVLConfig(num_frames=FRAMES, frame_sampling="fps", sampling_fps=2.0))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    clip_config = tiny_clip_config()
    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    make_clip(clip_config).save_pretrained(base_dir)
    model = trained_adapter(make_clip(clip_config))
    model.save_pretrained(adapter_dir)
    videos = random_videos(clip_config, 2, FRAMES)
    with torch.no_grad():
        expected = model.get_video_features(pixel_values=videos).pooler_output
    torch.save({"videos": videos, "expected": expected}, tmp_path / "io.pt")
    return tmp_path, model


def test_only_the_adapter_is_written(saved):
    tmp_path, model = saved
    adapter_dir = tmp_path / "adapter"
    assert {p.name for p in adapter_dir.iterdir()} == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    tensors = load_file(adapter_dir / "adapter_model.safetensors")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(tensors) == len(trainable)
    assert all(key.startswith("base_model.model.video_adapter.tfvl_modules.") for key in tensors)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == "TFVL" and config["task_type"] == "VIDEO_TEXT_RETRIEVAL"
    assert (config["num_frames"], config["frame_sampling"], config["sampling_fps"]) == (FRAMES, "fps", 2.0)
    assert config["image_size"] == 32 and config["base_model_dims"]["patch_size"] == 8


RELOAD = textwrap.dedent(
    """
    import sys, torch
    import peft_video  # registers the methods
    from peft import PeftConfig, PeftModel
    from transformers import CLIPModel
    base_dir, adapter, io_path = sys.argv[1:]
    config = PeftConfig.from_pretrained(adapter)
    assert type(config).__name__ == "TFVLConfig", type(config)
    model = PeftModel.from_pretrained(CLIPModel.from_pretrained(base_dir), adapter).eval()
    io = torch.load(io_path)
    with torch.no_grad():
        got = model.get_video_features(pixel_values=io["videos"]).pooler_output
    assert torch.equal(got, io["expected"]), (got - io["expected"]).abs().max()
    print("BIT-EXACT", type(model).__name__)
    """
)


def run_fresh(*args, env=None):
    result = subprocess.run(
        [sys.executable, "-c", RELOAD, *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_fresh_process_reloads_bit_exactly_from_a_folder(saved):
    tmp_path, _ = saved
    out = run_fresh(tmp_path / "base", tmp_path / "adapter", tmp_path / "io.pt")
    assert "BIT-EXACT PeftModelForVideoTextRetrieval" in out


def test_fresh_process_loads_by_repo_id_from_an_offline_hub_cache(saved):
    """The layout huggingface_hub writes (models--user--name/refs/main + snapshots/<commit>/) resolves offline."""
    tmp_path, _ = saved
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--user--clip-tfvl-tiny" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in (tmp_path / "adapter").iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (cache / "models--user--clip-tfvl-tiny" / "refs").mkdir()
    (cache / "models--user--clip-tfvl-tiny" / "refs" / "main").write_text(commit)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "hf_home")}
    out = run_fresh(tmp_path / "base", "user/clip-tfvl-tiny", tmp_path / "io.pt", env=env)
    assert "BIT-EXACT" in out


@pytest.mark.parametrize(
    "vision, expected",
    [
        ({"hidden_size": 48}, "vision_hidden_size: adapter 32 vs model 48"),
        ({"patch_size": 16}, "patch_size: adapter 8 vs model 16"),
    ],
)
def test_loading_onto_an_incompatible_base_names_both_shapes(saved, vision, expected):
    tmp_path, _ = saved
    other = make_clip(tiny_clip_config(vision=vision))
    with pytest.raises(ValueError, match=f"different base model.*{expected}"):
        PeftModel.from_pretrained(other, tmp_path / "adapter")


def test_save_load_round_trip_in_process_keeps_every_tensor(saved):
    tmp_path, model = saved
    loaded = PeftModel.from_pretrained(make_clip(tiny_clip_config()), tmp_path / "adapter")
    expected = {n: p for n, p in model.named_parameters() if "video_adapter" in n}
    got = {n: p for n, p in loaded.named_parameters() if "video_adapter" in n}
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[n], got[n]) for n in expected)
    assert not any(p.requires_grad for p in loaded.parameters()), "from_pretrained loads for inference by default"


def test_adapter_loads_under_another_adapter_name(saved):
    """Saved keys carry no adapter name, so a file trained as "default" loads as any name, with nothing missing."""
    tmp_path, model = saved
    keys = load_file(tmp_path / "adapter" / "adapter_model.safetensors").keys()
    assert not any(".default." in key for key in keys)
    loaded = PeftModel.from_pretrained(make_clip(tiny_clip_config()), tmp_path / "adapter", adapter_name="other")
    expected = {n.replace(".default.", "."): p for n, p in model.named_parameters() if "video_adapter" in n}
    got = {n.replace(".other.", "."): p for n, p in loaded.named_parameters() if "video_adapter" in n}
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[n], got[n]) for n in expected)
