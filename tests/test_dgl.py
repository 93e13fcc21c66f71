"""DGL: parity with the reference implementation (frozen outputs), shapes, order (in)variance, prompts, masks, I/O."""

import importlib.util
from pathlib import Path

import pytest
import torch
from peft import get_peft_model

from peft_video import DGLConfig
from peft_video.testing import make_clip, random_captions, random_videos

DATA = Path(__file__).resolve().parent / "data"
_spec = importlib.util.spec_from_file_location("dgl_parity_reference", DATA / "dgl_parity_reference.py")
parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity)

LATENTS = ("transformer", "linear")


def dgl_module(model):
    return model.base_model.model.video_adapter.dgl_modules["default"]


def video_embeds(model, videos, mask=None):
    with torch.no_grad():
        return model.get_video_features(pixel_values=videos, video_mask=mask).pooler_output


def text_embeds(model, captions):
    with torch.no_grad():
        return model.get_text_features(**captions).pooler_output


# -- parity with knightyxp/DGL ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("latent", LATENTS)
def test_outputs_match_the_reference_implementation(latent):
    """Expected tensors come from the reference code run on the same seeded weights (tests/data/dgl_parity_reference.py
    --write-fixtures); the model is rebuilt here from the seed alone."""
    fixture = torch.load(DATA / f"dgl_parity_{latent}.pt", weights_only=True)
    assert fixture["seed"] == parity.SEED and set(fixture["readouts"]) == set(parity.READOUTS)
    ids, mask, videos = parity.parity_inputs("tiny")
    for readout, expected in fixture["readouts"].items():
        ours = parity.our_outputs(parity.build_seeded_model("tiny", latent, readout), ids, mask, videos)
        for key in ("text", "video", "logits"):
            error = parity.relative_error(ours[key], expected[key])
            assert error < 1e-5, f"{latent}/{readout}/{key}: relative error {error:.2e}"


# -- shapes and structure ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("latent", LATENTS)
@pytest.mark.parametrize("readout", list(parity.READOUTS))
def test_output_shapes(clip, clip_config, latent, readout):
    model = get_peft_model(clip, DGLConfig(num_frames=4, latent_space=latent, visual_output=readout)).eval()
    with torch.no_grad():
        out = model(**random_captions(clip_config, 5), pixel_values=random_videos(clip_config, 3, 4))
        video = model.get_video_features(pixel_values=random_videos(clip_config, 3, 4))
    assert out.logits_per_text.shape == (5, 3) and out.logits_per_video.shape == (3, 5)
    assert out.text_embeds.shape == (5, 16) and out.video_embeds.shape == (3, 16)
    assert video.pooler_output.shape == (3, 16)
    assert video.last_hidden_state.shape == (3, 4, clip_config.vision_config.hidden_size)  # the global prompts
    if "frame_cls" in readout:
        assert video.frame_embeds.shape == (3, 4, 16)
    else:
        assert video.frame_embeds is None  # the last layer's frame states are not computed for a global readout


@pytest.mark.parametrize(
    "latent, expected_names",
    [
        (
            "transformer",
            {"global_prompts", "latent_tokens"}
            | {
                f"generator.{m}.{k}"
                for m in ("norm1", "norm2", "fc1", "fc2", "attn.out_proj")
                for k in ("weight", "bias")
            }
            | {"generator.attn.in_proj_weight", "generator.attn.in_proj_bias"}
            | {f"text_head.{i}.{k}" for i in (0, 2) for k in ("weight", "bias")},
        ),
        ("linear", {"global_prompts", "frame_prompts", "text_prompt_proj.weight", "text_prompt_proj.bias"}),
    ],
)
def test_trainable_tensors_and_no_postfix_prompts(clip, latent, expected_names):
    model = get_peft_model(clip, DGLConfig(num_frames=4, latent_space=latent))
    names = {n.split(".default.")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert names == expected_names
    assert all(not p.requires_grad for n, p in model.named_parameters() if ".dgl_modules." not in n)


def test_exact_parameter_counts(clip, clip_config):
    vision, text = clip_config.vision_config, clip_config.text_config
    layers, dv, dt, frames = vision.num_hidden_layers, vision.hidden_size, text.hidden_size, 4
    generator_block = (
        (3 * dv * dv + 3 * dv) + (dv * dv + dv) + 2 * 2 * dv + (dv * 4 * dv + 4 * dv) + (4 * dv * dv + dv)
    )
    text_head = (dv * 2 * dv + 2 * dv) + (2 * dv * dt + dt)
    expected = {
        "transformer": 4 * dv + (8 + 4 * frames) * layers * dv + generator_block + text_head,
        "linear": 4 * dv + 4 * layers * dv + (dv * dt + dt),
    }
    for latent, count in expected.items():
        model = get_peft_model(make_clip(clip_config), DGLConfig(num_frames=frames, latent_space=latent))
        assert model.get_nb_trainable_parameters()[0] == count, latent


@pytest.mark.parametrize(
    "latent, parts",
    [
        (
            "transformer",
            {"global_prompts": 3_072, "latent_tokens": 516_096, "generator": 7_087_872, "text_head": 1_968_128},
        ),
        ("linear", {"global_prompts": 3_072, "frame_prompts": 36_864, "text_prompt_proj": 393_728}),
    ],
)
def test_vit_b32_parameter_counts(latent, parts):
    """Totals 9,575,168 (the reference's) and 433,664 (the reference's 827,392 less its dead postfix projection of
    393,728), 12 frames; the reference's figures are printed by tests/data/dgl_parity_reference.py --vit-b32."""
    from transformers import CLIPModel

    from peft_video.testing import vit_b32_config

    with torch.device("meta"):
        clip = CLIPModel(vit_b32_config())
        model = get_peft_model(clip, DGLConfig(num_frames=12, latent_space=latent))
    counted: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            part = name.split(".default.")[1].split(".")[0]
            counted[part] = counted.get(part, 0) + parameter.numel()
    assert counted == parts
    assert model.get_nb_trainable_parameters()[0] == {"transformer": 9_575_168, "linear": 433_664}[latent]


def test_generator_runs_once_per_encoder_call_whatever_the_batch(clip, clip_config):
    model = get_peft_model(clip, DGLConfig(num_frames=4)).eval()
    calls = []
    dgl_module(model).generator.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        model.get_video_features(pixel_values=random_videos(clip_config, 5, 4))
        assert len(calls) == 1
        model.get_text_features(**random_captions(clip_config, 7))
        assert len(calls) == 2


@pytest.mark.parametrize("latent", LATENTS)
def test_flop_counter_can_trace_both_encoders(clip, clip_config, latent):
    """The benchmark counts FLOPs under FlopCounterMode, whose module hooks reject no-grad views of parameters."""
    from torch.utils.flop_counter import FlopCounterMode

    model = get_peft_model(clip, DGLConfig(num_frames=2, latent_space=latent)).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.get_video_features(pixel_values=random_videos(clip_config, 1, 2))
        model.get_text_features(**random_captions(clip_config, 1))
    assert counter.get_total_flops() > 0


# -- frame order ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("readout", list(parity.READOUTS))
def test_linear_variant_is_invariant_to_frame_order(clip, clip_config, readout):
    model = get_peft_model(clip, DGLConfig(num_frames=4, latent_space="linear", visual_output=readout)).eval()
    videos = random_videos(clip_config, 2, 4)
    shuffled = videos[:, [2, 0, 3, 1]]
    torch.testing.assert_close(video_embeds(model, shuffled), video_embeds(model, videos), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("readout", list(parity.READOUTS))
def test_transformer_variant_sees_frame_order(clip, clip_config, readout):
    """Frame t has its own generated local prompts: reordering frames changes the embedding."""
    model = get_peft_model(clip, DGLConfig(num_frames=4, visual_output=readout)).eval()
    videos = random_videos(clip_config, 2, 4)
    a, b = video_embeds(model, videos), video_embeds(model, videos.flip(1))
    assert (a - b).norm() / a.norm() > 1e-3


# -- what each part does ----------------------------------------------------------------------------------------------
def perturb(parameter):
    with torch.no_grad():
        parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(7)))


def test_text_prompts_change_text_features_only(clip, clip_config):
    """Linear variant: text prompts are `text_prompt_proj` of the frame prompts; moving the projection moves text
    features and leaves video features alone."""
    model = get_peft_model(clip, DGLConfig(num_frames=3, latent_space="linear")).eval()
    videos, captions = random_videos(clip_config, 2, 3), random_captions(clip_config, 3)
    video, text = video_embeds(model, videos), text_embeds(model, captions)
    perturb(dgl_module(model).text_prompt_proj.weight)
    assert not torch.allclose(text_embeds(model, captions), text, atol=1e-4)
    torch.testing.assert_close(video_embeds(model, videos), video, rtol=0, atol=0)


@pytest.mark.parametrize(
    "latent, name",
    [
        ("linear", "frame_prompts"),
        ("linear", "global_prompts"),
        ("transformer", "latent_tokens"),
        ("transformer", "global_prompts"),
    ],
)
def test_frame_and_global_prompts_change_video_features(clip, clip_config, latent, name):
    model = get_peft_model(clip, DGLConfig(num_frames=3, latent_space=latent)).eval()
    videos, captions = random_videos(clip_config, 2, 3), random_captions(clip_config, 3)
    video, text = video_embeds(model, videos), text_embeds(model, captions)
    module = dgl_module(model)
    if name == "latent_tokens":  # only the frame latents, past the text latents
        with torch.no_grad():
            frame_latents = module.latent_tokens[:, module.config.num_text_latents :]
            frame_latents += torch.randn(frame_latents.shape, generator=torch.Generator().manual_seed(7))
    else:
        perturb(getattr(module, name))
    assert not torch.allclose(video_embeds(model, videos), video, atol=1e-4)
    if name == "global_prompts":  # the global prompts live in the vision tower only
        torch.testing.assert_close(text_embeds(model, captions), text, rtol=0, atol=0)


@pytest.mark.parametrize("latent", LATENTS)
@pytest.mark.parametrize("readout", list(parity.READOUTS))
def test_padded_frames_do_not_influence_real_ones(clip, clip_config, latent, readout):
    """Padded frames are hidden from the global prompts, the only path between frames: a padded video embeds like the
    same video without padding, whatever the padding holds."""
    model = get_peft_model(clip, DGLConfig(num_frames=4, latent_space=latent, visual_output=readout)).eval()
    short = random_videos(clip_config, 2, 2)
    mask = torch.tensor([[True, True, False, False]] * 2)
    zeros = torch.cat([short, torch.zeros_like(short)], dim=1)
    noise = torch.cat([short, random_videos(clip_config, 2, 2, seed=5)], dim=1)
    expected = video_embeds(model, short)
    torch.testing.assert_close(video_embeds(model, zeros, mask), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(video_embeds(model, noise, mask), expected, rtol=1e-5, atol=1e-6)


# -- training ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("latent", LATENTS)
@pytest.mark.parametrize("readout", ["global_prompt0", "mean_frame_cls"])
def test_every_trainable_tensor_receives_gradient(clip, clip_config, latent, readout):
    model = get_peft_model(clip, DGLConfig(num_frames=4, latent_space=latent, visual_output=readout)).train()
    out = model(**random_captions(clip_config, 3), pixel_values=random_videos(clip_config, 3, 4), return_loss=True)
    out.loss.backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    if latent == "transformer":  # the text latents beyond num_text_prompts are live through the generator
        grad = dgl_module(model).latent_tokens.grad
        assert grad[:, 4:8].abs().sum() > 0


# -- errors -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields, message",
    [
        ({"latent_space": "mlp"}, "latent_space"),
        ({"visual_output": "cls"}, "visual_output"),
        ({"num_global_prompts": 0}, "num_global_prompts"),
        ({"latent_space": "linear", "num_text_prompts": 3}, "num_text_prompts must equal"),
        ({"num_text_prompts": 9}, "num_text_latents"),
    ],
)
def test_config_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        DGLConfig(**fields)


def test_captions_longer_than_the_text_positions_allow_fail_clearly(clip_config):
    clip = make_clip(clip_config)
    positions = clip_config.text_config.max_position_embeddings
    with pytest.raises(ValueError, match=f"max_text_length <= {positions - 4}"):
        get_peft_model(clip, DGLConfig(num_frames=2, max_text_length=positions))
    model = get_peft_model(make_clip(clip_config), DGLConfig(num_frames=2)).eval()
    with pytest.raises(ValueError, match=f"at most {positions - 4} tokens.*has {positions - 3}"):
        model.get_text_features(**random_captions(clip_config, 2, length=positions - 3))
    text_embeds(model, random_captions(clip_config, 2, length=positions - 4))  # the longest that fits


def test_towers_of_different_depth_are_refused():
    from peft_video.testing import tiny_clip_config

    clip = make_clip(tiny_clip_config(text={"num_hidden_layers": 3}))
    with pytest.raises(ValueError, match="2 vision and 3 text layers"):
        get_peft_model(clip, DGLConfig(num_frames=2))
