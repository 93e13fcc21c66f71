"""The video->text protocol an evaluation reports: the one papers use on the public benchmark the data comes from
(`PUBLIC_DATASETS[name].video_to_text_protocol`, found through the manifest's `benchmark` column or the dataset's
name), or the one asked for; evaluate.py and train.py write which into their output."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from train_fixtures import load_script, write_tiny_clip, write_tiny_world

from peft_video.data import PUBLIC_DATASETS, rows_to_dataset
from peft_video.loading import DataSourceArguments, video_to_text_protocol


def rows(*benchmarks):
    return rows_to_dataset(
        [{"video": f"v{i}.mp4", "caption": "c", "video_id": f"v{i}", "benchmark": b} for i, b in enumerate(benchmarks)]
    )


def test_auto_takes_the_benchmark_of_the_rows_or_the_dataset_name():
    assert {spec.video_to_text_protocol for spec in PUBLIC_DATASETS.values()} == {"clip4clip"}
    assert video_to_text_protocol("auto", None, rows("msvd", "msvd")) == "clip4clip"
    assert video_to_text_protocol("auto", "msrvtt") == "clip4clip"  # e.g. a streamed source named by dataset_name
    assert video_to_text_protocol("auto", "my_videos") == "collaborative_experts"
    assert video_to_text_protocol("collaborative_experts", None, rows("msvd")) == "collaborative_experts"
    with pytest.raises(ValueError, match=r"mixes benchmarks \['msrvtt', 'msvd'\].*set video_to_text_protocol"):
        video_to_text_protocol("auto", None, rows("msvd", "msrvtt"))
    with pytest.raises(ValueError, match="video_to_text_protocol must be one of"):
        DataSourceArguments(video_to_text_protocol="x_pool")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from peft import get_peft_model
    from transformers import CLIPModel

    from peft_video import TFVLConfig

    root = tmp_path_factory.mktemp("protocol")
    clip_dir = write_tiny_clip(root / "clip")
    world = root / "world"
    write_tiny_world(world)
    torch.manual_seed(0)
    model = get_peft_model(CLIPModel.from_pretrained(clip_dir), TFVLConfig(num_frames=4, max_text_length=16))
    model.save_pretrained(root / "adapter")
    # the test split as an MSVD-like benchmark: three captions per video
    lines = []
    for line in (world / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["split"] == "test":
            row = {**row, "video": str((world / row["video"]).resolve()), "benchmark": "msvd"}
            lines += [json.dumps({**row, "caption": row["caption"] + suffix}) for suffix in ("", " now", " here")]
    manifest = root / "msvd_like.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return SimpleNamespace(root=root, adapter=root / "adapter", manifest=manifest)


def test_evaluate_reports_the_benchmark_protocol_and_takes_another_one_on_request(assets):
    evaluate = load_script("evaluate")
    argv = ["--adapter_name_or_path", str(assets.adapter), "--dataset", "manifest", "--manifest", str(assets.manifest)]
    argv += ["--decode_timeout", "0", "--disable_tqdm", "true", "--output_file", str(assets.root / "out.json")]
    auto = evaluate.main(argv)
    assert auto["video_to_text_protocol"] == auto["metrics"]["video_to_text_protocol"] == "clip4clip"
    assert "caption set" in auto["protocol"]
    other = evaluate.main(argv + ["--video_to_text_protocol", "collaborative_experts"])
    assert other["metrics"]["video_to_text_protocol"] == "collaborative_experts"
    assert other["metrics"]["text_to_video"] == auto["metrics"]["text_to_video"]
    # a video's caption set ranked among 8 videos is never ranked worse than its best caption among 24 captions
    assert auto["metrics"]["video_to_text"]["MnR"] <= other["metrics"]["video_to_text"]["MnR"]
    assert auto["metrics"]["video_to_text"]["MnR"] <= 8  # ranks among the 8 videos, not the 24 captions
