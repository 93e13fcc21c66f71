"""What peft expects of every tuner, and the video contract, run on every method case (`METHOD_CASES`: each registered
method's test variants), the way peft's `PeftCommonTester` runs over its `TEST_CASES`.

Method-specific behaviour (and parity with the reference implementations) lives in tests/test_<method>.py; nothing here
names a method, so a new method's variants get this whole class for free.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from method_cases import METHOD_CASES, NUM_FRAMES
from peft import PeftModel, get_peft_model, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import CLIPModel

from peft_video import PeftModelForVideoTextRetrieval, VideoModelOutput
from peft_video.modeling import mean_pooled_video_features, video_features, video_text_forward
from peft_video.registry import video_methods
from peft_video.testing import make_clip, random_captions, random_videos, tiny_clip_config

CASES = sorted(METHOD_CASES)
CLIP_CONFIG = tiny_clip_config()
README = Path(__file__).resolve().parents[1] / "README.md"

UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
HALF_PRECISION_TOLERANCE = 16
"""Largest distance between a half-precision model's unit-norm embeddings and the float32 model's, in units of the
dtype's unit roundoff u (fp16 2^-11 ≈ 4.9e-4, bf16 2^-8 ≈ 3.9e-3). A forward pass in a dtype with unit roundoff u
perturbs each layer's output by a few u relative to its size; through the two layers per tower of the tiny CLIP
`benchmarks/bench_half_precision.py` measures at most 4.5 u over every variant, dtype and autocast setting (stock CLIP
alone: 3.0 u), and at the 12-layer ViT-B/32 shape (random weights) at most 3.4 u (stock CLIP: 2.7 u): pre-LayerNorm
residual towers keep the relative error from growing with depth (benchmarks/results/half_precision_cpu.md). 16 u
leaves a 3.5x margin over the worst case measured. What a tolerance cannot see is checked exactly beside it: the loaded
adapter tensors equal the file's values or exactly their rounding to the base dtype, and the head is float32."""


@pytest.fixture(autouse=True, scope="module")
def one_intra_op_thread():
    """A tiny CLIP gains nothing from intra-op threads; on a shared, loaded machine every small op of a 2-thread pool
    waits on an OpenMP barrier (measured: 15 ms per layer_norm, this file 4-7 min instead of under 1 min)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def base_clip(dtype: torch.dtype = torch.float32, seed: int = 0) -> CLIPModel:
    return make_clip(CLIP_CONFIG, seed=seed).to(dtype)


def build(case: str, *, dtype: torch.dtype = torch.float32, **kwargs) -> PeftModelForVideoTextRetrieval:
    return get_peft_model(base_clip(dtype), METHOD_CASES[case](), **kwargs)


def perturb(model: torch.nn.Module, seed: int = 0, adapter_name: str | None = None) -> None:
    """Move adapter tensors away from their init, as training would (zero-initialised parts included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "video_adapter." in name and (adapter_name is None or f".{adapter_name}." in name):
                noise = torch.randn(parameter.shape, generator=generator)
                parameter.add_((0.1 * noise).to(parameter.dtype))


def adapter_tensors(model: torch.nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if "video_adapter." in n and f".{adapter_name}." in n}


def inputs(batch: int = 3, frames: int = NUM_FRAMES, seed: int = 0) -> dict[str, torch.Tensor]:
    videos = random_videos(CLIP_CONFIG, batch, frames)
    return {**random_captions(CLIP_CONFIG, batch, seed=seed), "pixel_values": videos}


def outputs(model: torch.nn.Module, **kwargs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(video_embeds, text_embeds, logits_per_text) of the inference forward."""
    model.eval()
    with torch.no_grad():
        out = model(**(kwargs or inputs()))
    return out.video_embeds, out.text_embeds, out.logits_per_text


def assert_outputs_equal(model_a, model_b) -> None:
    for a, b in zip(outputs(model_a), outputs(model_b)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def assert_no_missing_adapter_keys(caught) -> None:
    assert not [w for w in caught if "missing adapter keys" in str(w.message)], [str(w.message) for w in caught]


_REFERENCES: dict[str, tuple] = {}


def trained_reference(case: str, tmp_path_factory) -> tuple[Path, tuple, dict[str, torch.Tensor]]:
    """A float32 model of `case` with perturbed adapter tensors, saved once per session: (folder, its outputs, its
    adapter state dict)."""
    if case not in _REFERENCES:
        model = build(case)
        perturb(model)
        folder = tmp_path_factory.mktemp(f"reference_{case}")
        model.save_pretrained(folder)
        _REFERENCES[case] = (folder, outputs(model), get_peft_model_state_dict(model))
    return _REFERENCES[case]


def expected_adapter_dtype(base_dtype: torch.dtype, autocast_adapter_dtype: bool) -> torch.dtype:
    return torch.float32 if autocast_adapter_dtype else base_dtype


def adapter_dtypes(model, adapter_name: str = "default") -> set[torch.dtype]:
    return {p.dtype for p in adapter_tensors(model, adapter_name).values()}


@pytest.mark.parametrize("case", CASES)
class TestMethodCommon:
    # -- the video contract ---------------------------------------------------------------------------------------
    def test_forward_returns_loss_and_both_logits(self, case):
        model = build(case)
        assert isinstance(model, PeftModelForVideoTextRetrieval)
        out = model(**inputs(), return_loss=True)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        assert out.logits_per_text.shape == (3, 3)
        torch.testing.assert_close(out.logits_per_video, out.logits_per_text.t())
        torch.testing.assert_close(out.text_embeds.norm(dim=-1), torch.ones(3))

    def test_logits_are_texts_by_videos_for_unequal_counts(self, case):
        model = build(case)
        out = model(**random_captions(CLIP_CONFIG, 5), pixel_values=random_videos(CLIP_CONFIG, 2, NUM_FRAMES))
        assert out.logits_per_text.shape == (5, 2) and out.loss is None

    def test_features_match_forward_and_look_like_transformers_outputs(self, case):
        model = build(case).eval()
        batch = inputs(2)
        video = model.get_video_features(pixel_values=batch["pixel_values"])
        text = model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        assert isinstance(video, VideoModelOutput)
        assert video.pooler_output.shape == text.pooler_output.shape == (2, CLIP_CONFIG.projection_dim)
        out = model(**batch)
        expected = (
            model.base_model.model.logit_scale.exp()
            * torch.nn.functional.normalize(text.pooler_output, dim=-1)
            @ torch.nn.functional.normalize(video.pooler_output, dim=-1).t()
        )
        torch.testing.assert_close(out.logits_per_text, expected)

    def test_video_embedding_does_not_depend_on_the_batch_texts(self, case):
        model = build(case).eval()
        videos = random_videos(CLIP_CONFIG, 2, NUM_FRAMES)
        a = model(**random_captions(CLIP_CONFIG, 2, seed=1), pixel_values=videos).video_embeds
        b = model(**random_captions(CLIP_CONFIG, 2, seed=2), pixel_values=videos).video_embeds
        torch.testing.assert_close(a, b)

    def test_masked_frames_do_not_leak_into_real_ones(self, case):
        """Padding a video with garbage frames marked False in video_mask changes nothing of the real frames'
        embedding."""
        model = build(case).eval()
        videos = random_videos(CLIP_CONFIG, 2, NUM_FRAMES)
        mask = torch.tensor([[True] * NUM_FRAMES, [True] * (NUM_FRAMES - 1) + [False]])
        noisy = videos.clone()
        noisy[1, -1] = torch.randn_like(noisy[1, -1]) * 10
        with torch.no_grad():
            a = model.get_video_features(pixel_values=videos, video_mask=mask).pooler_output
            b = model.get_video_features(pixel_values=noisy, video_mask=mask).pooler_output
        torch.testing.assert_close(a, b)

    def test_config_carries_frames_sampling_and_resolution(self, case):
        config = build(case).peft_config["default"]
        assert config.num_frames == NUM_FRAMES
        assert config.image_size == CLIP_CONFIG.vision_config.image_size
        assert config.frame_sampling in ("segments", "chunked_segments", "fps")
        assert config.base_model_dims["vision_hidden_size"] == CLIP_CONFIG.vision_config.hidden_size

    def test_non_finite_pixel_values_are_refused_before_any_method_code(self, case, monkeypatch):
        model = build(case)
        module = model.base_model.video_layer.active_module()
        monkeypatch.setattr(module, "encode_video", lambda *a, **k: pytest.fail("method code ran on bad input"))
        batch = inputs(3)
        batch["pixel_values"][1, 0, 0, 0, 0] = float("nan")
        batch["pixel_values"][2, -1, 2, 5, 5] = float("-inf")
        with pytest.raises(ValueError, match=re.escape("pixel_values holds NaN or inf in batch row(s) [1, 2]")):
            model(**batch, return_loss=True)

    # -- disabling, unloading, merging ----------------------------------------------------------------------------
    def test_disable_adapter_is_clip_with_mean_pooling_and_is_reentrant(self, case):
        base = base_clip()
        model = get_peft_model(copy.deepcopy(base), METHOD_CASES[case]()).eval()
        perturb(model)
        batch = inputs(2)
        captions = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        videos = batch["pixel_values"]
        layer = model.base_model.video_layer
        with torch.no_grad():
            adapted = model.get_video_features(pixel_values=videos).pooler_output
            with model.disable_adapter():
                video = model.get_video_features(pixel_values=videos).pooler_output
                text = model.get_text_features(**captions).pooler_output
                with model.disable_adapter():
                    assert layer.disable_adapters
                assert layer.disable_adapters, "leaving a nested disable_adapter() must not re-enable the adapter"
            frames = base.get_image_features(pixel_values=videos.flatten(0, 1)).pooler_output
            # CLIP4Clip's meanP: each frame embedding L2-normalised, then the mean
            torch.testing.assert_close(video, F.normalize(frames, dim=-1).view(2, NUM_FRAMES, -1).mean(1))
            torch.testing.assert_close(text, base.get_text_features(**captions).pooler_output)
            torch.testing.assert_close(model.get_video_features(pixel_values=videos).pooler_output, adapted)
        assert not torch.allclose(adapted, video, atol=1e-4), "the adapter must change the video embedding"

    def test_unload_returns_the_untouched_clip(self, case):
        base = base_clip()
        clip = get_peft_model(copy.deepcopy(base), METHOD_CASES[case]()).unload()
        assert type(clip) is CLIPModel
        assert not hasattr(clip, "video_adapter")
        assert not any(isinstance(m, BaseTunerLayer) for m in clip.modules())
        assert clip.state_dict().keys() == base.state_dict().keys()
        for key, value in base.state_dict().items():
            assert torch.equal(clip.state_dict()[key], value), key

    def test_merge_and_unload_explains_there_is_nothing_to_merge(self, case):
        with pytest.raises(ValueError, match="no weight deltas to merge"):
            build(case).merge_and_unload()

    def test_layer_attributes_that_peft_reads_do_not_recurse(self, case):
        layer = build(case).base_model.video_layer
        assert layer.get_base_layer() is layer
        for name in ("weight", "bias"):
            assert getattr(layer, name, None) is None
            with pytest.raises(AttributeError, match=f"wraps no base layer, so it has no {name}"):
                getattr(layer, name)
        assert layer._get_base_layer_device_and_dtype(layer.get_base_layer()) == (None, None)

    # -- training -------------------------------------------------------------------------------------------------
    def test_a_training_step_changes_every_adapter_tensor_and_nothing_else(self, case):
        model = build(case)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == set(adapter_tensors(model))
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)  # every parameter, as peft's own test does
        model.train()
        for _ in range(2):
            optimizer.zero_grad()
            model(**inputs(), return_loss=True).loss.backward()
            optimizer.step()
        changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        assert changed == trainable

    def test_gradient_checkpointing_gives_the_same_gradients_and_is_on(self, case):
        model = build(case).train()
        perturb(model)
        batch = inputs(2)
        calls = {"backward": 0}
        in_backward = {"now": False}

        def count(*_):
            calls["backward"] += in_backward["now"]

        hooks = [m.register_forward_hook(count) for m in model.base_model.model.vision_model.modules()]
        hooks += [m.register_forward_hook(count) for m in model.base_model.model.text_model.modules()]

        def gradients():
            model.zero_grad()
            loss = model(**batch, return_loss=True).loss
            in_backward["now"] = True
            loss.backward()
            in_backward["now"] = False
            return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

        plain = gradients()
        assert calls["backward"] == 0
        model.gradient_checkpointing_enable()  # through the PeftModel, as peft's own test enables it
        checkpointed = gradients()
        assert calls["backward"] > 0, "gradient checkpointing recomputes frozen layers in backward; none ran"
        for hook in hooks:
            hook.remove()
        assert plain.keys() == checkpointed.keys()
        for name, grad in plain.items():
            assert grad.abs().sum() > 0, name
            torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-7, msg=name)

    # -- saving and loading ---------------------------------------------------------------------------------------
    @pytest.mark.parametrize("safe_serialization", [True, False], ids=["safetensors", "pickle"])
    def test_save_and_load_round_trip_bit_exactly(self, case, tmp_path, safe_serialization):
        model = build(case)
        perturb(model)
        model.save_pretrained(tmp_path, safe_serialization=safe_serialization)
        weights = "adapter_model.safetensors" if safe_serialization else "adapter_model.bin"
        assert {p.name for p in tmp_path.iterdir()} == {"adapter_config.json", weights, "README.md"}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = PeftModel.from_pretrained(base_clip(), tmp_path)
        assert_no_missing_adapter_keys(caught)
        assert isinstance(loaded, PeftModelForVideoTextRetrieval)
        saved = get_peft_model_state_dict(model)
        reloaded = get_peft_model_state_dict(loaded)
        assert saved.keys() == reloaded.keys() and saved
        assert all(torch.equal(saved[k], reloaded[k]) for k in saved)
        assert all(k.startswith("base_model.model.video_adapter.") for k in saved)
        assert not any(p.requires_grad for p in loaded.parameters()), "from_pretrained loads for inference"
        original, reread = model.peft_config["default"].to_dict(), loaded.peft_config["default"].to_dict()
        assert {**original, "inference_mode": True} == reread
        assert_outputs_equal(model, loaded)

    def test_adapter_files_carry_no_adapter_name_and_load_under_any(self, case, tmp_path):
        model = get_peft_model(base_clip(), METHOD_CASES[case](), adapter_name="test-adapter")
        assert any(".test-adapter." in n for n, _ in model.named_parameters())
        perturb(model)
        model.save_pretrained(tmp_path)
        keys = load_file(tmp_path / "test-adapter" / "adapter_model.safetensors").keys()
        assert keys and not any("test-adapter" in key for key in keys)
        loaded = PeftModel.from_pretrained(base_clip(), tmp_path / "test-adapter", adapter_name="other")
        assert_outputs_equal(model, loaded)

    def test_from_pretrained_uses_a_given_config(self, case, tmp_path):
        model = build(case)
        model.save_pretrained(tmp_path)
        config = METHOD_CASES[case]()
        loaded = PeftModel.from_pretrained(base_clip(), tmp_path, config=config)
        assert loaded.peft_config["default"] is config and config.inference_mode

    # -- several adapters -----------------------------------------------------------------------------------------
    def test_two_adapters_switch_save_selected_and_load(self, case, tmp_path):
        model = build(case)
        model.add_adapter("other", METHOD_CASES[case]())
        perturb(model, seed=1, adapter_name="default")
        perturb(model, seed=2, adapter_name="other")
        assert model.active_adapters == ["default"]
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == set(adapter_tensors(model, "default")), "adding an adapter leaves it frozen"
        default_outputs = outputs(model)
        model.set_adapter("other")
        assert model.active_adapters == ["other"]
        assert {n for n, p in model.named_parameters() if p.requires_grad} == set(adapter_tensors(model, "other"))
        other_outputs = outputs(model)
        assert not torch.allclose(default_outputs[0], other_outputs[0], atol=1e-4)

        model.save_pretrained(tmp_path / "all")
        assert (tmp_path / "all" / "other" / "adapter_config.json").exists()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = PeftModel.from_pretrained(base_clip(), tmp_path / "all")
            result = loaded.load_adapter(tmp_path / "all" / "other", adapter_name="other")
        assert_no_missing_adapter_keys(caught)
        assert result.missing_keys == [] and result.unexpected_keys == []
        for a, b in zip(outputs(loaded), default_outputs):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        loaded.set_adapter("other")
        for a, b in zip(outputs(loaded), other_outputs):
            torch.testing.assert_close(a, b, rtol=0, atol=0)

        model.save_pretrained(tmp_path / "selected", selected_adapters=["other"])
        assert not (tmp_path / "selected" / "adapter_config.json").exists()
        only = PeftModel.from_pretrained(base_clip(), tmp_path / "selected" / "other", adapter_name="other")
        assert list(only.peft_config) == ["other"]
        for a, b in zip(outputs(only), other_outputs):
            torch.testing.assert_close(a, b, rtol=0, atol=0)

    def test_selected_adapter_file_holds_that_adapter_only(self, case, tmp_path):
        """peft's name-substring case: saving "default" must not pick up "default2" or "foodefault_bar"."""
        model = build(case)
        expected = len(get_peft_model_state_dict(model))
        for name in ("default2", "other_default", "foodefault_bar", "efaul"):
            model.add_adapter(name, METHOD_CASES[case]())
        model.save_pretrained(tmp_path, selected_adapters=["default"])
        assert len(load_file(tmp_path / "adapter_model.safetensors")) == expected

    def test_a_video_forward_runs_exactly_one_adapter(self, case):
        model = build(case)
        model.add_adapter("other", METHOD_CASES[case]())
        model.base_model.set_adapter(["default", "other"])
        with pytest.raises(ValueError) as error:
            model(**inputs())
        message = str(error.value)
        assert message == (
            "A video forward runs exactly one adapter, but the active adapters are ['default', 'other'] (available: "
            "['default', 'other']). Select one with set_adapter(name)."
        )
        assert message in README.read_text(), "README.md quotes this error verbatim"

    def test_delete_adapters_down_to_none_then_a_clear_error(self, case):
        model = build(case)
        model.add_adapter("delete_me", METHOD_CASES[case]())
        model.set_adapter("delete_me")
        model.delete_adapter("delete_me")
        assert "delete_me" not in model.peft_config and model.active_adapters == ["default"]
        assert "delete_me" not in model.base_model.video_layer.adapter_modules
        assert not any("delete_me" in n for n, _ in model.named_parameters())
        outputs(model)  # the remaining adapter runs
        model.add_adapter("inactive", METHOD_CASES[case]())
        model.delete_adapter("inactive")
        assert model.active_adapters == ["default"]
        with pytest.raises(ValueError, match="Adapter unknown-adapter does not exist"):
            model.delete_adapter("unknown-adapter")

        model.delete_adapter("default")
        assert not model.peft_config and model.active_adapters == []
        assert not any(".video_adapter." in n for n, _ in model.named_parameters())
        with pytest.raises(ValueError) as error:
            model(**inputs())
        message = str(error.value)
        assert message == (
            "A video forward runs exactly one adapter, but the active adapters are [] (available: []). This model "
            "has no adapter left (the last one was deleted): add one with add_adapter(name, config) or "
            "load_adapter(path, adapter_name=name), then set_adapter(name)."
        )
        assert message in README.read_text(), "README.md quotes this error verbatim"
        with pytest.raises(ValueError, match="exactly one adapter"):
            model.get_video_features(pixel_values=inputs()["pixel_values"])

    # -- dtypes ---------------------------------------------------------------------------------------------------
    @pytest.mark.parametrize("autocast_adapter_dtype", [True, False], ids=["autocast", "no_autocast"])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
    def test_base_dtype_matrix(self, case, tmp_path_factory, dtype, autocast_adapter_dtype):
        """A base model in fp32/fp16/bf16 with the adapter in fp32 (`autocast_adapter_dtype=True`, peft's default)
        or in the base dtype (False): the adapter's dtype through get_peft_model, add_adapter, from_pretrained and
        load_adapter (with and without low_cpu_mem_usage); the loaded model agrees with the float32 model within
        HALF_PRECISION_TOLERANCE; a training step runs with finite loss and gradients and keeps the dtypes."""
        expected = expected_adapter_dtype(dtype, autocast_adapter_dtype)
        created = build(case, dtype=dtype, autocast_adapter_dtype=autocast_adapter_dtype)
        created.add_adapter("added", METHOD_CASES[case](), autocast_adapter_dtype=autocast_adapter_dtype)
        assert adapter_dtypes(created) == adapter_dtypes(created, "added") == {expected}

        folder, (video, text, logits), saved = trained_reference(case, tmp_path_factory)
        loads = []
        for low_cpu_mem_usage in (False, True):
            options = {"autocast_adapter_dtype": autocast_adapter_dtype, "low_cpu_mem_usage": low_cpu_mem_usage}
            loaded = PeftModel.from_pretrained(base_clip(dtype), folder, **options)
            loaded.load_adapter(folder, adapter_name="loaded", **options)
            assert not any(p.is_meta for p in loaded.parameters())
            assert adapter_dtypes(loaded) == adapter_dtypes(loaded, "loaded") == {expected}
            assert {p.dtype for n, p in loaded.named_parameters() if "video_adapter." not in n} == {dtype}
            loads.append(get_peft_model_state_dict(loaded))
        # the file's float32 values, exactly, or exactly their rounding to the base dtype
        assert loads[0].keys() == loads[1].keys() == saved.keys()
        assert all(torch.equal(v, saved[k].to(expected)) for load in loads for k, v in load.items())
        got_video, got_text, got_logits = outputs(loaded)
        assert torch.isfinite(got_logits).all()
        tolerance = HALF_PRECISION_TOLERANCE * UNIT_ROUNDOFF.get(dtype, 0.0)
        assert (got_video - video).norm(dim=-1).max() <= tolerance
        assert (got_text - text).norm(dim=-1).max() <= tolerance
        # |s t·v - s t'·v'| <= s (|t - t'| + |v - v'|) for unit vectors, s = exp(logit_scale)
        assert (got_logits - logits).abs().max() <= 2 * math.exp(CLIP_CONFIG.logit_scale_init_value) * tolerance

        batch = inputs(2)
        with torch.no_grad():
            video_dtype = created.get_video_features(pixel_values=batch["pixel_values"]).pooler_output.dtype
            text_dtype = created.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output.dtype
        assert video_dtype == text_dtype == dtype, "features come in the base model's dtype"

        created.train()
        before = {n: p.detach().clone() for n, p in adapter_tensors(created).items()}
        optimizer = torch.optim.SGD([p for p in created.parameters() if p.requires_grad], lr=0.1)
        out = created(**batch, return_loss=True)
        assert out.loss.dtype == out.logits_per_text.dtype == torch.float32, "the shared head runs in float32"
        assert torch.isfinite(out.loss)
        out.loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in adapter_tensors(created).values())
        optimizer.step()
        after = adapter_tensors(created)
        assert adapter_dtypes(created) == {expected}
        assert any(not torch.equal(after[n], before[n]) for n in before)

    def test_bf16_autocast_trains_with_finite_loss_and_fp32_adapter(self, case):
        """Mixed precision (accelerate's bf16 is torch.autocast) on a float32 model."""
        model = build(case).train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(**inputs(), return_loss=True)
        assert torch.isfinite(out.loss) and out.logits_per_text.dtype == torch.float32
        out.loss.backward()
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert all(p.dtype == torch.float32 for p in trainable)
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)

    # -- low_cpu_mem_usage and inject_adapter_in_model ------------------------------------------------------------
    def test_low_cpu_mem_usage_loads_real_tensors_exactly(self, case, tmp_path):
        model = build(case)
        perturb(model)
        model.save_pretrained(tmp_path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = PeftModel.from_pretrained(base_clip(), tmp_path, low_cpu_mem_usage=True)
        assert_no_missing_adapter_keys(caught)
        assert {p.device.type for p in loaded.parameters()} == {"cpu"}
        assert_outputs_equal(model, loaded)
        loaded.load_adapter(tmp_path, adapter_name="other", low_cpu_mem_usage=True)
        assert {p.device.type for p in loaded.parameters()} == {"cpu"}
        loaded.set_adapter("other")
        assert_outputs_equal(model, loaded)

    def test_inject_adapter_in_model_round_trips_through_the_state_dict(self, case):
        """peft's direct injection, as transformers' and diffusers' integrations use it: the adapted CLIPModel
        serves the video contract through `peft_video.modeling`."""
        clip = inject_adapter_in_model(METHOD_CASES[case](), base_clip())
        assert isinstance(clip, CLIPModel)
        perturb(clip)
        state_dict = get_peft_model_state_dict(clip)
        expected = video_text_forward(clip.eval(), **inputs())

        empty = inject_adapter_in_model(METHOD_CASES[case](), base_clip(), low_cpu_mem_usage=True)
        assert "meta" in {p.device.type for p in empty.parameters()}
        result = set_peft_model_state_dict(empty, state_dict, low_cpu_mem_usage=True)
        assert not result.unexpected_keys
        assert {p.device.type for p in empty.parameters()} == {"cpu"}
        got = video_text_forward(empty.eval(), **inputs())
        torch.testing.assert_close(got.logits_per_text, expected.logits_per_text, rtol=0, atol=0)
        batch = inputs()
        torch.testing.assert_close(
            video_features(empty, batch["pixel_values"]).pooler_output,
            video_features(clip, batch["pixel_values"]).pooler_output,
            rtol=0,
            atol=0,
        )

    # -- copies ---------------------------------------------------------------------------------------------------
    def test_deepcopy_and_pickle_give_independent_equal_models(self, case):
        model = build(case)
        perturb(model)
        for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert type(clone) is type(model)
            assert_outputs_equal(model, clone)
            perturb(clone, seed=5)
            assert not torch.allclose(outputs(model)[0], outputs(clone)[0], atol=1e-4), "the copy shares tensors"


COMPILE_CASES = [next(iter(m.test_variants)) for m in video_methods().values() if m.test_variants]


@pytest.mark.parametrize("case", COMPILE_CASES)
def test_torch_compile_forward(case):
    """A compile smoke test, on the first variant of each method: dynamo traces the forward (graph breaks allowed)
    and AOTAutograd runs it. Tracing costs 5-10 s per case on two shared cores, so not every variant; the aot_eager
    backend skips inductor's code generation (about 100 s for one case here)."""
    model = build(case).eval()
    perturb(model)
    expected = outputs(model)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager")
    with torch.no_grad():
        out = compiled(**inputs())
    torch.testing.assert_close(out.logits_per_text, expected[2])


def test_mean_pooling_helper_respects_the_mask(clip, clip_config):
    videos = random_videos(clip_config, 1, 3)
    mask = torch.tensor([[True, True, False]])
    pooled = mean_pooled_video_features(clip, videos, mask).pooler_output
    frames = clip.get_image_features(pixel_values=videos[0, :2]).pooler_output
    torch.testing.assert_close(pooled[0], F.normalize(frames, dim=-1).mean(0))
    plain = mean_pooled_video_features(clip, videos, mask, normalize_frames=False).pooler_output
    torch.testing.assert_close(plain[0], frames.mean(0))


def test_every_registered_variant_is_a_case():
    from peft_video.registry import build_test_variants

    assert set(CASES) == set(build_test_variants(NUM_FRAMES)) and len(CASES) >= 3
    assert json.dumps(CASES)  # case names are plain strings (pytest ids)
