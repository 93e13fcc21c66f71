"""`metrics.json` subsets: a subset's `failed_videos` counts the undecodable videos of that subset only."""

import datasets
import torch
import torch.nn.functional as F

from peft_video.evaluation import split_metrics


def test_subset_counts_only_its_own_failed_videos():
    videos = F.normalize(torch.eye(4), dim=-1)
    encoded = {
        "text_embeds": videos.clone(),
        "video_embeds": videos,
        "caption_to_video": torch.arange(4),
        "video_valid": torch.tensor([True, False, True, False]),  # videos 1 and 3 could not be decoded
    }
    # the subset holds videos 0, 1 and 2: one of its videos failed (1); video 3 failed too, but is not in it
    data = datasets.Dataset.from_dict({"caption": list("abcd"), "in_subset": [True, True, True, False]})
    result = split_metrics(encoded, data, subset_columns=("in_subset",))
    assert result["failed_videos"] == 2 and result["num_videos"] == 2
    subset = result["subsets"]["in_subset"]
    assert subset["failed_videos"] == 1
    assert subset["num_videos"] == 2 and subset["num_captions"] == 2
    assert subset["text_to_video"]["num_queries"] == 2
