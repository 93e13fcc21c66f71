"""Bad input gets a ValueError naming expected vs got, before any method code runs."""

import pytest
import torch
from peft import get_peft_model

from peft_video import TFVLConfig
from peft_video.testing import random_captions, random_videos


@pytest.fixture
def model(clip):
    return get_peft_model(clip, TFVLConfig(num_frames=4)).eval()


def test_rank_four_pixel_values(model, clip_config):
    frames = random_videos(clip_config, 2, 1)[:, 0]
    with pytest.raises(ValueError, match=r"rank 5.*got rank 4.*\(2, 3, 32, 32\)"):
        model.get_video_features(pixel_values=frames)


def test_wrong_channel_axis(model, clip_config):
    videos = random_videos(clip_config, 2, 4).permute(0, 2, 1, 3, 4)
    with pytest.raises(ValueError, match="expected 3 channels at dim 2, got 4"):
        model.get_video_features(pixel_values=videos)


def test_wrong_resolution(model):
    with pytest.raises(ValueError, match="must be 32x32.*got 64x64"):
        model.get_video_features(pixel_values=torch.zeros(1, 2, 3, 64, 64))


def test_more_frames_than_the_adapter_was_built_for(model, clip_config):
    with pytest.raises(ValueError, match="6 frames but the adapter was built for num_frames=4"):
        model.get_video_features(pixel_values=random_videos(clip_config, 1, 6))


def test_more_frames_than_text_temp_positions_allow(clip):
    with pytest.raises(
        ValueError, match=r"TextTemp reads \[SOT; 16 prompts; 70 frames; EOT\] = 88 tokens.*77 positions"
    ):
        get_peft_model(clip, TFVLConfig(num_frames=70, text_temp_prompt_tokens=16))
    with pytest.raises(ValueError, match=r"TextTemp reads \[SOT; 0 prompts; 76 frames; EOT\] = 78 tokens"):
        get_peft_model(clip, TFVLConfig(num_frames=76))


def test_text_and_video_batch_mismatch_with_loss(model, clip_config):
    with pytest.raises(ValueError, match="got 3 captions and 2 videos"):
        model(**random_captions(clip_config, 3), pixel_values=random_videos(clip_config, 2, 4), return_loss=True)


@pytest.mark.parametrize(
    "mask, message",
    [
        (torch.ones(2, 3, dtype=torch.bool), r"video_mask must have shape \[batch, frames\] = \(2, 4\), got \(2, 3\)"),
        (torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]), r"no real frame for video\(s\) at batch index \[1\]"),
        (torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1]]), "real frames first"),
    ],
)
def test_bad_video_mask(model, clip_config, mask, message):
    with pytest.raises(ValueError, match=message):
        model.get_video_features(pixel_values=random_videos(clip_config, 2, 4), video_mask=mask)


def test_bad_input_ids(model):
    with pytest.raises(ValueError, match=r"input_ids must be a tensor \[batch, tokens\], got \(5,\)"):
        model.get_text_features(input_ids=torch.ones(5, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_frames": 0}, "num_frames must be a positive integer"),
        ({"frame_sampling": "random"}, "frame_sampling must be one of"),
        ({"frame_sampling": "fps"}, "needs a positive sampling_fps"),
        ({"frame_sampling": "chunked_segments", "frame_chunk_size": 5}, "frame_chunk_size that divides num_frames"),
        ({"text_temp": False, "image_temp": False}, "needs text_temp or image_temp"),
        ({"text_temp_fusion": "concat"}, "text_temp_fusion must be one of"),
        ({"image_temp_layers": [-1, -1]}, "duplicates"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TFVLConfig(**kwargs)


def test_image_temp_layer_out_of_range(clip):
    with pytest.raises(ValueError, match=r"image_temp_layers=\[5\] must name distinct layers of the 2-layer"):
        get_peft_model(clip, TFVLConfig(num_frames=2, image_temp_layers=[5]))


def test_non_clip_base_model():
    with pytest.raises(TypeError, match="adapts a transformers CLIPModel, got Linear"):
        get_peft_model(torch.nn.Linear(2, 2), TFVLConfig())
