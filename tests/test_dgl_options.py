"""DGL's opt-in options (not in the reference; off by default, so tests/test_dgl.py's parity is untouched)."""

import pytest
import torch
from peft import PeftModel, get_peft_model

from peft_video import DGLConfig
from peft_video.testing import make_clip, random_videos


def video_embeds(model, videos):
    with torch.no_grad():
        return model.get_video_features(pixel_values=videos).pooler_output


def module(model):
    return model.base_model.model.video_adapter.dgl_modules["default"]


@pytest.mark.parametrize("latent", ["transformer", "linear"])
def test_temporal_embedding_starts_at_the_reference_and_makes_dgl_linear_see_order(clip_config, latent):
    videos = random_videos(clip_config, 2, 4)
    torch.manual_seed(0)
    plain = get_peft_model(make_clip(clip_config, seed=0), DGLConfig(num_frames=4, latent_space=latent)).eval()
    torch.manual_seed(0)
    config = DGLConfig(num_frames=4, latent_space=latent, temporal_embedding=True)
    timed = get_peft_model(make_clip(clip_config, seed=0), config).eval()
    # zero at init: exactly the reference's computation (same seed, same other parameters)
    torch.testing.assert_close(video_embeds(timed, videos), video_embeds(plain, videos), rtol=0, atol=0)
    assert module(timed).temporal_embedding.shape == (4, clip_config.vision_config.hidden_size)
    assert "temporal_embedding" not in dict(module(plain).named_parameters())
    with torch.no_grad():
        module(timed).temporal_embedding.normal_()
    a, b = video_embeds(timed, videos), video_embeds(timed, videos.flip(1))
    assert (a - b).norm() / a.norm() > 1e-3  # DGL-Linear alone is exactly order-invariant


def test_temporal_embedding_trains_and_round_trips(clip_config, tmp_path):
    model = get_peft_model(make_clip(clip_config, seed=0), DGLConfig(num_frames=3, temporal_embedding=True))
    videos = random_videos(clip_config, 2, 3)
    model.get_video_features(pixel_values=videos).pooler_output.pow(2).sum().backward()
    assert module(model).temporal_embedding.grad.abs().sum() > 0
    with torch.no_grad():
        module(model).temporal_embedding.normal_()
    model.eval()
    expected = video_embeds(model, videos)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(make_clip(clip_config, seed=0), tmp_path).eval()
    torch.testing.assert_close(video_embeds(loaded, videos), expected, rtol=0, atol=0)
