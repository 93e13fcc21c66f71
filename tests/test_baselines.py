"""The zero-shot and full fine-tuning baselines are CLIP4Clip's meanP: each frame embedding L2-normalised, then the
masked mean (CLIP4Clip `modules/modeling.py`, `_loose_similarity`), in `MeanPoolingCLIP` and under
`disable_adapter()` alike."""

import torch
import torch.nn.functional as F
from peft import get_peft_model

from peft_video import TFVLConfig
from peft_video.baselines import MeanPoolingCLIP
from peft_video.testing import random_videos


def clip4clip_meanp(frame_embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Naive CLIP4Clip meanP: normalise each frame, masked mean, normalise the video."""
    frames = frame_embeds / frame_embeds.norm(dim=-1, keepdim=True)
    weights = mask.float().unsqueeze(-1)
    video = (frames * weights).sum(1) / weights.sum(1)
    return video / video.norm(dim=-1, keepdim=True)


def test_mean_pooling_baselines_are_clip4clip_meanp(clip, clip_config):
    videos = random_videos(clip_config, 3, 4)
    videos[:, 1] *= 4.0  # frames unlike each other: their embedding norms differ, so the two poolings differ
    mask = torch.tensor([[True] * 4, [True, True, True, False], [True, False, False, False]])
    with torch.no_grad():
        frames = clip.get_image_features(pixel_values=videos.flatten(0, 1)).pooler_output.unflatten(0, (3, 4))
        expected = clip4clip_meanp(frames, mask)
        plain = F.normalize((frames * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True), dim=-1)
        assert not torch.allclose(expected, plain, atol=1e-4)  # the test can tell the two apart

        zero_shot = MeanPoolingCLIP(clip, num_frames=4)
        ours = F.normalize(zero_shot.get_video_features(videos, mask).pooler_output, dim=-1)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)

        model = get_peft_model(clip, TFVLConfig(num_frames=4)).eval()
        with model.disable_adapter():
            disabled = model.get_video_features(pixel_values=videos, video_mask=mask).pooler_output
        torch.testing.assert_close(F.normalize(disabled, dim=-1), expected, rtol=1e-5, atol=1e-6)

        unnormalised = MeanPoolingCLIP(model.get_base_model(), num_frames=4, normalize_frames=False)
        torch.testing.assert_close(
            F.normalize(unnormalised.get_video_features(videos, mask).pooler_output, dim=-1),
            plain,
            rtol=1e-5,
            atol=1e-6,
        )
