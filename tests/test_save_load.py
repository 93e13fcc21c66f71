"""save_pretrained writes only the adapter; it reloads bit-exactly in a fresh process, from a folder or a Hub cache;
`AutoPeftModelForVideoTextRetrieval` loads base and adapter of every method from a Hub cache. (In-process round trips
of every method case: tests/test_method_common.py.)"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from hub_cache import add_to_hub_cache
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
    add_to_hub_cache(cache, "user/clip-tfvl-tiny", tmp_path / "adapter")
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


# -- AutoPeftModelForVideoTextRetrieval -------------------------------------------------------------------------------
@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An offline Hub cache holding a base CLIP ("org/tiny-clip") and, per registered method, an adapter of its first
    test variant created on that base as loaded from the cache ("user/tiny-<method>"), perturbed as if trained."""
    import huggingface_hub.constants
    from transformers import CLIPModel

    import peft_video

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    make_clip(tiny_clip_config()).save_pretrained(tmp_path / "base")
    add_to_hub_cache(cache, "org/tiny-clip", tmp_path / "base")
    videos = random_videos(tiny_clip_config(), 2, 4)
    adapters = {}
    for name, method in peft_video.video_methods().items():
        config = next(iter(method.test_variants.values()))(4)
        model = get_peft_model(CLIPModel.from_pretrained("org/tiny-clip"), config)
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.add_(torch.randn_like(parameter) * 0.1)
        model.eval().save_pretrained(tmp_path / name)
        add_to_hub_cache(cache, f"user/tiny-{name}", tmp_path / name)
        with torch.no_grad():
            adapters[name] = model.get_video_features(pixel_values=videos).pooler_output
    return tmp_path, videos, adapters


def test_auto_class_loads_base_and_adapter_of_every_method_by_hub_id(hub):
    from peft_video import AutoPeftModelForVideoTextRetrieval, PeftModelForVideoTextRetrieval, get_video_method

    tmp_path, videos, expected = hub
    assert set(expected) >= {"tfvl", "dgl", "prompt_cube"}
    for name, embeds in expected.items():
        assert json.loads((tmp_path / name / "adapter_config.json").read_text())["base_model_name_or_path"] == (
            "org/tiny-clip"
        )
        for source in (f"user/tiny-{name}", tmp_path / name):
            model = AutoPeftModelForVideoTextRetrieval.from_pretrained(source)
            assert isinstance(model, PeftModelForVideoTextRetrieval)
            assert model.peft_config["default"].peft_type == get_video_method(name).peft_type
            with torch.no_grad():
                got = model.get_video_features(pixel_values=videos).pooler_output
            assert torch.equal(got, embeds), (name, source)


def test_auto_class_passes_dtype_to_the_base_and_peft_options_to_the_adapter(hub):
    from peft_video import AutoPeftModelForVideoTextRetrieval

    model = AutoPeftModelForVideoTextRetrieval.from_pretrained(
        "user/tiny-tfvl", dtype=torch.bfloat16, is_trainable=True, low_cpu_mem_usage=True
    )
    base = {p.dtype for n, p in model.named_parameters() if "video_adapter." not in n}
    adapter = {p.dtype for n, p in model.named_parameters() if "video_adapter." in n}
    assert base == {torch.bfloat16} and adapter == {torch.float32}
    assert not any(p.is_meta for p in model.parameters())
    assert model.get_nb_trainable_parameters()[0] > 0


def test_auto_class_and_autopeftmodel_explain_what_they_cannot_load(hub, tmp_path):
    from peft import AutoPeftModel, LoraConfig

    from peft_video import AutoPeftModelForVideoTextRetrieval

    folder = hub[0] / "tfvl"
    with pytest.raises(ValueError, match="is a peft_video adapter.*AutoPeftModelForVideoTextRetrieval"):
        AutoPeftModel.from_pretrained(folder)
    nameless = tmp_path / "nameless"
    get_peft_model(make_clip(tiny_clip_config()), TFVLConfig(num_frames=2)).save_pretrained(nameless)
    with pytest.raises(ValueError, match="names no base model.*PeftModel.from_pretrained"):
        AutoPeftModelForVideoTextRetrieval.from_pretrained(nameless)
    LoraConfig(task_type="CAUSAL_LM", target_modules=["q_proj"]).save_pretrained(tmp_path / "lora")
    with pytest.raises(ValueError, match="not a peft_video adapter"):
        AutoPeftModelForVideoTextRetrieval.from_pretrained(tmp_path / "lora")
    with pytest.raises(ValueError, match=r"^Cannot use `AutoPeftModel` with a task type"):  # peft's own message
        AutoPeftModel.from_pretrained(tmp_path / "lora")
