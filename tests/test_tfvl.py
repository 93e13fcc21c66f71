"""TFVL: TextTemp and ImageTemp, their switches, their starting point and what they can tell apart."""

import pytest
import torch
from peft import get_peft_model

from peft_video import TFVLConfig
from peft_video.modeling import mean_pooled_video_features
from peft_video.testing import random_videos


def video_embeds(model, videos, mask=None):
    with torch.no_grad():
        return model.get_video_features(pixel_values=videos, video_mask=mask).pooler_output


def baseline_embeds(model, videos):
    """The plain mean of stock CLIP's frame embeddings: TFVL's starting point. (The zero-shot baseline under
    `disable_adapter()` is CLIP4Clip's meanP, which L2-normalises each frame embedding before the mean.)"""
    mask = torch.ones(videos.shape[:2], dtype=torch.bool)
    with torch.no_grad(), model.disable_adapter():
        return mean_pooled_video_features(model.get_base_model(), videos, mask, normalize_frames=False).pooler_output


def test_text_temp_alone_with_gate_zero_starts_exactly_at_the_mean_pooling_baseline(clip, clip_config):
    model = get_peft_model(clip, TFVLConfig(num_frames=4, image_temp=False, text_temp_gate_init=0.0)).eval()
    videos = random_videos(clip_config, 2, 4)
    torch.testing.assert_close(video_embeds(model, videos), baseline_embeds(model, videos), rtol=0, atol=0)


def test_joint_layer_with_one_frame_and_no_prompts_is_the_stock_layer(clip, clip_config):
    config = TFVLConfig(num_frames=1, text_temp=False, image_temp_frame_prompts=0, image_temp_video_prompts=0)
    model = get_peft_model(clip, config).eval()
    videos = random_videos(clip_config, 3, 1)
    torch.testing.assert_close(video_embeds(model, videos), baseline_embeds(model, videos), rtol=1e-5, atol=1e-6)


def test_joint_attention_mixes_frames(clip, clip_config):
    """With ImageTemp, changing frame 2 changes frame 1's embedding; per-frame CLIP cannot."""
    model = get_peft_model(clip, TFVLConfig(num_frames=3, text_temp=False)).eval()
    videos = random_videos(clip_config, 1, 3)
    edited = videos.clone()
    edited[0, 1] += 1.0
    with torch.no_grad():
        a = model.get_video_features(pixel_values=videos).frame_embeds[0, 0]
        b = model.get_video_features(pixel_values=edited).frame_embeds[0, 0]
    assert not torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("parts", [{"image_temp": False}, {"text_temp": False}, {}])
def test_reversing_frames_changes_the_embedding_unlike_mean_pooling(clip, clip_config, parts):
    """With the defaults (TextTemp's gate at 1), order counts from the first step."""
    model = get_peft_model(clip, TFVLConfig(num_frames=4, **parts)).eval()
    videos = random_videos(clip_config, 2, 4)
    reversed_videos = videos.flip(1)
    torch.testing.assert_close(baseline_embeds(model, videos), baseline_embeds(model, reversed_videos))
    assert not torch.allclose(video_embeds(model, videos), video_embeds(model, reversed_videos), atol=1e-4)


def test_padded_video_embeds_like_the_shorter_video(clip, clip_config):
    """EOT sits after the last real frame and padded tokens are masked: padding is invisible, not just small."""
    model = get_peft_model(clip, TFVLConfig(num_frames=4, text_temp_gate_init=1.0)).eval()
    short = random_videos(clip_config, 1, 2)
    padded = torch.cat([short, torch.zeros_like(short)], dim=1)
    mask = torch.tensor([[True, True, False, False]])
    torch.testing.assert_close(video_embeds(model, padded, mask), video_embeds(model, short), rtol=1e-5, atol=1e-6)


TEXT_TEMP_TENSORS = ("frame_positions", "frame_to_text.weight", "frame_to_text.bias")


@pytest.mark.parametrize(
    "parts, expected_names",
    [
        ({}, {"frame_prompts", "video_prompts", *TEXT_TEMP_TENSORS, "gate"}),
        ({"image_temp": False}, {*TEXT_TEMP_TENSORS, "gate"}),
        ({"text_temp": False}, {"frame_prompts", "video_prompts"}),
        ({"text_temp_fusion": "replace"}, {"frame_prompts", "video_prompts", *TEXT_TEMP_TENSORS}),
        ({"text_temp_frame_positions": "text", "image_temp": False}, {*TEXT_TEMP_TENSORS[1:], "gate"}),
        ({"text_temp_prompt_tokens": 4, "image_temp": False}, {*TEXT_TEMP_TENSORS, "text_prompts", "gate"}),
    ],
)
def test_switches_allocate_only_their_parts(clip, parts, expected_names):
    model = get_peft_model(clip, TFVLConfig(num_frames=4, **parts))
    names = {n.split(".default.")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert names == expected_names


@pytest.mark.parametrize("text_prompts", [0, 5])
def test_exact_parameter_count(clip, clip_config, text_prompts):
    config = TFVLConfig(
        num_frames=4,
        image_temp_layers=[-1],
        image_temp_frame_prompts=3,
        image_temp_video_prompts=2,
        text_temp_prompt_tokens=text_prompts,
    )
    model = get_peft_model(clip, config)
    vision, text, proj = clip_config.vision_config.hidden_size, clip_config.text_config.hidden_size, 16
    # frame prompts, video prompts, text prompts, frame_to_text, learned frame positions (4 x text), gate
    expected = 1 * 4 * 3 * vision + 1 * 2 * vision + text_prompts * text + (proj * text + text) + 4 * text + 1
    assert model.get_nb_trainable_parameters()[0] == expected


def test_frame_embedding_is_zero_at_init_and_orders_frames_when_trained(clip_config):
    from peft_video.testing import make_clip

    videos = random_videos(clip_config, 2, 4)
    fields = {"num_frames": 4, "text_temp": False}
    torch.manual_seed(0)
    plain = get_peft_model(make_clip(clip_config, seed=0), TFVLConfig(**fields)).eval()
    torch.manual_seed(0)
    indexed = get_peft_model(make_clip(clip_config, seed=0), TFVLConfig(image_temp_frame_embedding=True, **fields))
    indexed.eval()
    torch.testing.assert_close(video_embeds(indexed, videos), video_embeds(plain, videos), rtol=0, atol=0)
    embedding = indexed.base_model.model.video_adapter.tfvl_modules["default"].frame_embedding
    with torch.no_grad():
        embedding.normal_()
    assert not torch.allclose(video_embeds(indexed, videos), video_embeds(plain, videos), atol=1e-4)
    with pytest.raises(ValueError, match="needs image_temp=True"):
        TFVLConfig(image_temp=False, image_temp_frame_embedding=True)
