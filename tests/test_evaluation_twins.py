"""Twin accuracy in split metrics: overall and per caption kind, each with its n, from a manifest-like split."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from peft_video.evaluation import split_metrics


def test_split_metrics_report_twin_accuracy_per_kind_with_n():
    # videos 0/1 (motion) and 2/3 (order) are twins, video 4 has none; captions are one per video
    data = Dataset.from_dict(
        {
            "video": [f"v{i}.mp4" for i in range(5)],
            "caption": [f"c{i}" for i in range(5)],
            "order_pair_id": ["p0", "p0", "p1", "p1", None],
            "kind": ["motion", "motion", "order", "order", "single"],
        }
    )
    videos = F.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    texts = videos.clone()
    texts[2] = videos[3]  # caption 2 prefers the twin of its video: order gets 1 of 2 right
    encoded = {
        "video_embeds": videos,
        "text_embeds": texts,
        "caption_to_video": torch.arange(5),
        "video_valid": torch.ones(5, dtype=torch.bool),
    }
    twins = split_metrics(encoded, data, twin_column="order_pair_id")["twin_accuracy"]
    assert twins["num_queries"] == 4 and twins["accuracy"] == pytest.approx(75.0)
    assert twins["per_kind"] == {
        "motion": {"accuracy": 100.0, "num_queries": 2},
        "order": {"accuracy": 50.0, "num_queries": 2},
    }
    assert (
        "per_kind"
        not in split_metrics(encoded, data, twin_column="order_pair_id", twin_kind_column=None)["twin_accuracy"]
    )
