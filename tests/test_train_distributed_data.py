"""Two processes (`accelerate launch --multi_gpu --num_processes 2`, ACCELERATE_USE_CPU=1), two DataLoader workers
each, on the tiny offline world written as shards with `peft-video shard`, plus an unreadable and a partly decodable
training video: each sample reaches exactly one process once per epoch, also across a stop and a resume from the
per-process stream states; the end-of-run report and metrics.json name the bad videos whichever process read them
(issue 11.15); evaluate.py on a streamed split counts each video once, with the numbers of one process on the
manifest, twin accuracy per kind and the order subset included (the videos' metadata crosses gather_object)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from train_fixtures import WORLD, assert_same_metrics, base_argv, load_script, write_tiny_clip, write_tiny_world
from train_fixtures import launch_two_processes as launch
from video_fixtures import write_partly_decodable, write_random_bytes

from peft_video.cli import main as cli_main

TRAIN_IDS = [f"train_{i:05d}" for i in range(WORLD["world_num_train"])]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The world's manifest with two more training videos (one unreadable, one partly decodable), written as shards of
    3 videos: 6 training shards (3 per process, 2 and 1 per worker), 3 for validation and for test (not a multiple of
    the process count: every process reads every shard and keeps every second sample)."""
    root = tmp_path_factory.mktemp("distributed_data")
    clip_dir = write_tiny_clip(root / "clip")
    world = root / "world"
    write_tiny_world(world)
    rows = [json.loads(line) for line in (world / "manifest.jsonl").read_text().splitlines()]
    rows = [{**row, "video": str((world / row["video"]).resolve())} for row in rows]
    broken = write_random_bytes(root / "broken.mp4")
    partial = write_partly_decodable(root / "partial.mp4", num_frames=24, width=32, height=32)
    extra = [(broken, "broken", "a red circle moves left"), (partial, "partial", "a blue square moves right")]
    rows += [{**rows[0], "video": str(v), "video_id": i, "caption": c, "split": "train"} for v, i, c in extra]
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    command = ["shard", str(manifest), "--out", str(root / "shards"), "--max-shard-samples", "3"]
    assert cli_main(command + ["--shuffle-seed", "0", "--no-progress"]) == 0
    return root, clip_dir, manifest


def test_two_processes_two_workers_each_sample_once_across_a_resume_and_every_bad_video_reported(assets):
    root, clip_dir, _ = assets
    out = root / "run"
    argv = base_argv(clip_dir, root / "world", out) + ["--dataset", "shards", "--shards", str(root / "shards")]
    argv += ["--per_device_train_batch_size", "2", "--dataloader_num_workers", "2", "--log_samples", "true"]
    argv += ["--max_steps", "6", "--save_steps", "2", "--eval_steps", "6"]
    launch("train.py", argv + ["--stop_after_steps", "3"])
    assert sorted(p.name for p in (out / "checkpoints" / "checkpoint_2").glob("stream_rank*.pt")) == [
        "stream_rank0.pt",
        "stream_rank1.pt",
    ]
    result = launch("train.py", argv + ["--resume_from_checkpoint", "last"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["steps"] == 6

    ranks = [
        [json.loads(line) for line in (out / "samples" / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)
    ]
    first_epoch = [[v for batch in rank if batch["epoch"] == 0 for v in batch["video_id"]] for rank in ranks]
    assert first_epoch[0] and first_epoch[1]
    assert Counter(first_epoch[0] + first_epoch[1]) == Counter(TRAIN_IDS + ["partial"])  # once, on one process
    steps = [[batch["step"] for batch in rank] for rank in ranks]
    assert steps[0] == steps[1] == [1, 2, 3, 4, 5, 6]  # every process trains every step

    errors = metrics["data_errors"]
    (unreadable,) = errors["unreadable_videos"]
    (partly,) = errors["partly_decodable_videos"]
    assert unreadable.endswith("#broken") and partly.endswith("#partial")
    assert errors["partly_decodable_videos"][partly]["announced_frames"] == 24
    assert f"{unreadable}: " in result.stdout and f"{partly}: partly decodable" in result.stdout


def test_two_process_streamed_evaluation_counts_each_video_once(assets):
    root, clip_dir, manifest = assets
    adapter = root / "adapter"
    from peft import get_peft_model
    from transformers import CLIPModel

    from peft_video import TFVLConfig

    get_peft_model(CLIPModel.from_pretrained(clip_dir), TFVLConfig(num_frames=4, max_text_length=16)).save_pretrained(
        adapter
    )
    common = ["--adapter_name_or_path", str(adapter), "--decode_timeout", "0", "--disable_tqdm", "true"]
    common += ["--per_device_eval_batch_size", "2", "--dataloader_num_workers", "2"]
    streamed = ["--dataset", "shards", "--shards", str(root / "shards"), "--output_file", str(root / "two.json")]
    launch("evaluate.py", common + streamed)
    two = json.loads((root / "two.json").read_text())
    one = load_script("evaluate").main(
        common + ["--dataset", "manifest", "--manifest", str(manifest), "--output_file", str(root / "one.json")]
    )
    assert two["num_processes"] == 2 and one["num_processes"] == 1
    assert two["metrics"]["num_videos"] == two["metrics"]["num_captions"] == WORLD["world_num_test"]
    # the videos' metadata survives gather_object: twin accuracy per kind and the order subset as on the manifest
    assert one["metrics"]["twin_accuracy"]["num_queries"] > 0 and one["metrics"]["twin_accuracy"]["per_kind"]
    for name in ("text_to_video", "video_to_text", "twin_accuracy", "subsets"):
        assert_same_metrics(two["metrics"][name], one["metrics"][name], (name,))
