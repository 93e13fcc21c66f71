"""The video contract every method honours (DESIGN.md "Public contract"), run on each method of METHOD_CASES."""

import copy

import pytest
import torch
import torch.nn.functional as F
from method_cases import METHOD_CASES, NUM_FRAMES
from peft import get_peft_model
from transformers import CLIPModel

from peft_video import PeftModelForVideoTextRetrieval, VideoModelOutput
from peft_video.modeling import mean_pooled_video_features
from peft_video.testing import make_clip, random_captions, random_videos, tiny_clip_config

METHODS = sorted(METHOD_CASES)


def build(method, seed=0):
    clip_config = tiny_clip_config()
    base = make_clip(clip_config, seed=seed)
    return clip_config, base, get_peft_model(copy.deepcopy(base), METHOD_CASES[method]())


@pytest.mark.parametrize("method", METHODS)
def test_forward_returns_loss_and_both_logits(method):
    clip_config, _, model = build(method)
    assert isinstance(model, PeftModelForVideoTextRetrieval)
    captions = random_captions(clip_config, 3)
    out = model(**captions, pixel_values=random_videos(clip_config, 3, NUM_FRAMES), return_loss=True)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.logits_per_text.shape == (3, 3)
    torch.testing.assert_close(out.logits_per_video, out.logits_per_text.t())
    torch.testing.assert_close(out.text_embeds.norm(dim=-1), torch.ones(3))


@pytest.mark.parametrize("method", METHODS)
def test_logits_are_texts_by_videos_for_unequal_counts(method):
    clip_config, _, model = build(method)
    out = model(**random_captions(clip_config, 5), pixel_values=random_videos(clip_config, 2, NUM_FRAMES))
    assert out.logits_per_text.shape == (5, 2) and out.loss is None


@pytest.mark.parametrize("method", METHODS)
def test_features_match_forward_and_look_like_transformers_outputs(method):
    clip_config, _, model = build(method)
    model.eval()
    captions, videos = random_captions(clip_config, 2), random_videos(clip_config, 2, NUM_FRAMES)
    video = model.get_video_features(pixel_values=videos)
    text = model.get_text_features(**captions)
    assert isinstance(video, VideoModelOutput)
    assert video.pooler_output.shape == (2, clip_config.projection_dim)
    assert text.pooler_output.shape == (2, clip_config.projection_dim)
    out = model(**captions, pixel_values=videos)
    expected = (
        model.base_model.model.logit_scale.exp()
        * torch.nn.functional.normalize(text.pooler_output, dim=-1)
        @ torch.nn.functional.normalize(video.pooler_output, dim=-1).t()
    )
    torch.testing.assert_close(out.logits_per_text, expected)


@pytest.mark.parametrize("method", METHODS)
def test_video_embedding_does_not_depend_on_the_batch_texts(method):
    clip_config, _, model = build(method)
    model.eval()
    videos = random_videos(clip_config, 2, NUM_FRAMES)
    a = model(**random_captions(clip_config, 2, seed=1), pixel_values=videos).video_embeds
    b = model(**random_captions(clip_config, 2, seed=2), pixel_values=videos).video_embeds
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("method", METHODS)
def test_disable_adapter_is_clip_with_mean_pooling(method):
    clip_config, base, model = build(method)
    model.eval()
    captions, videos = random_captions(clip_config, 2), random_videos(clip_config, 2, NUM_FRAMES)
    with torch.no_grad():
        with model.disable_adapter():
            video = model.get_video_features(pixel_values=videos).pooler_output
            text = model.get_text_features(**captions).pooler_output
        frames = base.get_image_features(pixel_values=videos.flatten(0, 1)).pooler_output
        # CLIP4Clip's meanP: each frame embedding L2-normalised, then the mean
        torch.testing.assert_close(video, F.normalize(frames, dim=-1).view(2, NUM_FRAMES, -1).mean(1))
        torch.testing.assert_close(text, base.get_text_features(**captions).pooler_output)
        adapted = model.get_video_features(pixel_values=videos).pooler_output
    assert not torch.allclose(adapted, video), "the adapter must be back on after the context"


@pytest.mark.parametrize("method", METHODS)
def test_unload_returns_the_untouched_clip(method):
    _, base, model = build(method)
    clip = model.unload()
    assert type(clip) is CLIPModel
    assert not hasattr(clip, "video_adapter")
    assert clip.state_dict().keys() == base.state_dict().keys()
    for key, value in base.state_dict().items():
        assert torch.equal(clip.state_dict()[key], value), key


@pytest.mark.parametrize("method", METHODS)
def test_merge_and_unload_explains_there_is_nothing_to_merge(method):
    _, _, model = build(method)
    with pytest.raises(ValueError, match="nothing|no weight deltas"):
        model.merge_and_unload()


@pytest.mark.parametrize("method", METHODS)
def test_only_adapter_parameters_train_and_clip_stays_frozen(method):
    clip_config, base, model = build(method)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".video_adapter." in n for n in trainable)
    model.train()
    out = model(
        **random_captions(clip_config, 2), pixel_values=random_videos(clip_config, 2, NUM_FRAMES), return_loss=True
    )
    out.loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


@pytest.mark.parametrize("method", METHODS)
def test_masked_frames_do_not_leak_into_real_ones(method):
    """Padding a video with garbage frames marked False in video_mask changes nothing of the real frames' embedding."""
    clip_config, _, model = build(method)
    model.eval()
    videos = random_videos(clip_config, 2, NUM_FRAMES)
    mask = torch.tensor([[True] * NUM_FRAMES, [True] * (NUM_FRAMES - 1) + [False]])
    noisy = videos.clone()
    noisy[1, -1] = torch.randn_like(noisy[1, -1]) * 10
    with torch.no_grad():
        a = model.get_video_features(pixel_values=videos, video_mask=mask).pooler_output
        b = model.get_video_features(pixel_values=noisy, video_mask=mask).pooler_output
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("method", METHODS)
def test_config_carries_frames_sampling_and_resolution(method):
    clip_config, _, model = build(method)
    config = model.peft_config["default"]
    assert config.num_frames == NUM_FRAMES
    assert config.image_size == clip_config.vision_config.image_size
    assert config.frame_sampling in ("segments", "chunked_segments", "fps")
    assert config.base_model_dims["vision_hidden_size"] == clip_config.vision_config.hidden_size


def test_mean_pooling_helper_respects_the_mask(clip, clip_config):
    videos = random_videos(clip_config, 1, 3)
    mask = torch.tensor([[True, True, False]])
    pooled = mean_pooled_video_features(clip, videos, mask).pooler_output
    frames = clip.get_image_features(pixel_values=videos[0, :2]).pooler_output
    torch.testing.assert_close(pooled[0], F.normalize(frames, dim=-1).mean(0))
    plain = mean_pooled_video_features(clip, videos, mask, normalize_frames=False).pooler_output
    torch.testing.assert_close(plain[0], frames.mean(0))


@pytest.mark.parametrize("method", METHODS)
def test_bf16_autocast_trains_with_finite_loss_and_fp32_adapter(method):
    """Mixed precision (accelerate's bf16 is torch.autocast): prompts and heads mix with bf16 activations."""
    clip_config, _, model = build(method)
    model.train()
    captions, videos = random_captions(clip_config, 3), random_videos(clip_config, 3, NUM_FRAMES)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**captions, pixel_values=videos, return_loss=True)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in trainable)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in trainable)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
