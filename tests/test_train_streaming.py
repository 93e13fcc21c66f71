"""examples/train.py and examples/evaluate.py on a streamed source (issue 15, phase 2): the tiny offline world written
as shards with `peft-video shard` (WebDataset and Parquet) and as a `datasets` folder read with load_dataset(...,
streaming=True). Training goes by max_steps, each sample once per epoch; evaluation counts each video once and gives
the numbers of the manifest path; a run SIGKILLed mid-training resumes without repeating or skipping a sample.
(Two processes × two DataLoader workers: tests/test_train_distributed_data.py.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import (
    EXAMPLES,
    REPO,
    WORLD,
    assert_same_metrics,
    base_argv,
    load_script,
    write_tiny_clip,
    write_tiny_world,
)  # fmt: skip

from peft_video.cli import main as cli_main

TRAIN_IDS = [f"train_{i:05d}" for i in range(WORLD["world_num_train"])]


@pytest.fixture(scope="module")
def train():
    return load_script("train")


@pytest.fixture(scope="module")
def evaluate():
    return load_script("evaluate")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The tiny world, its shards (WebDataset: 2 videos per shard; Parquet) and a folder `load_dataset` reads."""
    root = tmp_path_factory.mktemp("train_streaming")
    clip_dir = write_tiny_clip(root / "clip")
    manifest = write_tiny_world(root / "world")
    for kind in ("webdataset", "parquet"):
        command = ["shard", str(manifest), "--out", str(root / kind), "--format", kind, "--max-shard-samples", "2"]
        assert cli_main(command + ["--shuffle-seed", "0", "--no-progress"]) == 0
    hub = root / "hub"  # a Hub-style dataset folder: one folder of Parquet files per split, as datasets names them
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        shutil.copytree(root / "parquet" / split, hub / name, ignore=shutil.ignore_patterns("*.json"))
    return SimpleNamespace(root=root, clip=clip_dir, world=root / "world", manifest=manifest, hub=hub)


def streamed_argv(assets, out: Path, *extra: str) -> list[str]:
    argv = base_argv(assets.clip, assets.world, out) + ["--dataset", "shards", "--log_samples", "true"]
    return argv + ["--shards", str(assets.root / "webdataset"), *extra]


def trained_samples(out: Path, rank: int = 0) -> list[dict]:
    return [json.loads(line) for line in (out / "samples" / f"rank{rank}.jsonl").read_text().splitlines()]


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def streamed_run(train, assets):
    out = assets.root / "streamed"
    metrics = train.main(streamed_argv(assets, out, "--max_steps", "6", "--eval_steps", "6"))
    return SimpleNamespace(out=out, metrics=metrics)


def test_streamed_training_reads_each_sample_once_per_epoch(streamed_run):
    metrics, batches = streamed_run.metrics, trained_samples(streamed_run.out)
    assert metrics["steps"] == 6 and metrics["epochs"] is None and metrics["splits"]["train"]["rows"] is None
    epochs = [[v for b in batches if b["epoch"] == epoch for v in b["video_id"]] for epoch in (0, 1)]
    assert Counter(epochs[0]) == Counter(TRAIN_IDS)  # 4 batches of 4: the whole split, each video once
    assert len(epochs[1]) == 8 and len(set(epochs[1])) == 8 and epochs[1] != epochs[0][:8]  # reshuffled
    assert metrics["test"]["num_videos"] == WORLD["world_num_test"]
    assert metrics["test"]["text_to_video"]["num_queries"] == WORLD["world_num_test"]
    assert metrics["video_to_text_protocol"] == metrics["test"]["video_to_text_protocol"] == "collaborative_experts"
    assert (streamed_run.out / "checkpoints" / "checkpoint_6" / "stream_rank0.pt").is_file()
    # the card's picture of the worst test captions, their videos drawn from the shards' bytes
    assert metrics["test"]["num_videos"] and (streamed_run.out / "worst_queries.png").stat().st_size > 1000
    assert "worst_queries.png" in (streamed_run.out / "README.md").read_text()


def eval_argv(streamed_run) -> list[str]:
    return ["--adapter_name_or_path", str(streamed_run.out), "--decode_timeout", "0", "--disable_tqdm", "true"]


@pytest.fixture(scope="module")
def manifest_numbers(evaluate, assets, streamed_run):
    manifest = ["--dataset", "manifest", "--manifest", str(assets.manifest)]
    return evaluate.main(eval_argv(streamed_run) + manifest + ["--output_file", str(assets.root / "m.json")])


@pytest.mark.parametrize("source", ["webdataset", "parquet", "hub"])
def test_streamed_evaluation_counts_each_video_once_with_the_manifest_numbers(
    evaluate, assets, streamed_run, manifest_numbers, source
):
    data = ["--dataset", "shards", "--shards", str(assets.root / source)]
    if source == "hub":
        data = ["--dataset", "hub", "--hub_dataset", str(assets.hub), "--key_column", "key"]
        data += ["--caption_field", "captions"]
    output = ["--output_file", str(assets.root / f"{source}.json")]
    streamed, expected = evaluate.main(eval_argv(streamed_run) + data + output), manifest_numbers
    assert streamed["metrics"]["num_videos"] == streamed["metrics"]["num_captions"] == WORLD["world_num_test"]
    # twin accuracy (per kind, with n) and the order subset come from the metadata the shards carry
    twins = expected["metrics"]["twin_accuracy"]
    assert twins["num_queries"] > 0 and twins["per_kind"] and "is_order_sensitive" in expected["metrics"]["subsets"]
    for name in ("text_to_video", "video_to_text", "twin_accuracy", "subsets"):
        assert_same_metrics(streamed["metrics"][name], expected["metrics"][name], (source, name))
    assert streamed["video_to_text_protocol"] == "collaborative_experts"
    assert Path(streamed["gallery"]).stat().st_size > 1000  # the worst captions' picture, from a stream too


def test_the_streamed_demo_config_runs_a_few_steps(train, assets, tmp_path):
    out = tmp_path / "demo"
    argv = ["--config", str(REPO / "examples" / "configs" / "demo_tfvl_shards.yaml"), "--output_dir", str(out)]
    argv += ["--shards", str(assets.root / "webdataset"), "--max_steps", "2", "--eval_steps", "2", "--num_frames", "4"]
    argv += ["--per_device_train_batch_size", "4", "--report_to", "none", "--disable_tqdm", "true"]
    metrics = train.main(argv + ["--dataloader_num_workers", "0", "--eval_before_training", "false"])
    assert (
        metrics["steps"] == 2 and metrics["dataset"] == "webdataset" and (out / "adapter_model.safetensors").is_file()
    )


def test_a_streamed_run_selects_on_twin_accuracy_from_the_shards_metadata(train, assets, tmp_path):
    # demo_tfvl.yaml's criterion: before the shards carried their metadata, a stream refused it (no order_pair_id)
    metric = "0.5*twin_accuracy + 0.5*text_to_video/R@1"
    argv = streamed_argv(assets, tmp_path / "out", "--max_steps", "2", "--eval_steps", "2")
    metrics = train.main(argv + ["--metric_for_best_model", metric])
    validation, selection = metrics["validation"], metrics["selection"]
    assert validation["twin_accuracy"]["num_queries"] > 0 and metrics["test"]["twin_accuracy"]["per_kind"]
    expected = 0.5 * validation["twin_accuracy"]["accuracy"] + 0.5 * validation["text_to_video"]["R@1"]
    assert selection["metric"] == metric and selection["best_value"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--eval_steps", "2"], r"streamed and has no known length: set max_steps"),
        (["--max_steps", "2"], r"streamed: an epoch has no fixed number of steps; set eval_steps"),
        (["--max_steps", "2", "--eval_steps", "2", "--max_train_samples", "4"], r"needs random access"),
        (["--max_steps", "2", "--eval_steps", "2", "--frame_cache", "x"], r"frame_cache reads decoded frames"),
    ],
)
def test_a_streamed_source_needs_a_step_schedule(train, assets, tmp_path, extra, match):
    argv = base_argv(assets.clip, assets.world, tmp_path / "out") + ["--dataset", "shards", "--shards", "nowhere"]
    if "max_train_samples" in extra:
        argv[argv.index("nowhere")] = str(assets.root / "webdataset")
    with pytest.raises(ValueError, match=match):
        train.main(argv + extra)
    assert not (tmp_path / "out").exists()


def test_a_missing_split_of_a_streamed_source_is_named(train, assets, tmp_path):
    argv = base_argv(assets.clip, assets.world, tmp_path / "out") + ["--max_steps", "2", "--eval_steps", "2"]
    argv += ["--dataset", "shards", "--shards", str(assets.root / "webdataset"), "--validation_split", "dev"]
    with pytest.raises(FileNotFoundError, match=r"validation split 'dev': no shards at .*/dev: no shards\.json in"):
        train.main(argv)


def test_a_killed_streamed_run_resumes_without_repeating_or_skipping_a_sample(train, assets, tmp_path):
    """SIGKILL (no cleanup, no final save) once checkpoint 4 is complete, while 2 DataLoader workers per process read
    ahead; the resumed run trains on exactly the batches, losses and weights of an uninterrupted run."""
    run = ["--max_steps", "12", "--save_steps", "4", "--eval_steps", "12", "--dataloader_num_workers", "2"]
    reference = tmp_path / "reference"
    train.main(streamed_argv(assets, reference, *run))

    out = tmp_path / "killed"
    threads = str(torch.get_num_threads())  # the same float reductions as this process
    env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONPATH": str(EXAMPLES)}
    command = [sys.executable, str(EXAMPLES / "train.py"), *streamed_argv(assets, out, *run)]
    log = (tmp_path / "killed_stderr.txt").open("w")  # a file, not a pipe: a full pipe would stall the script
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log)
    sealed = out / "checkpoints" / "checkpoint_4" / "checkpoint_files.json"
    deadline = time.monotonic() + 300
    while not sealed.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    running = process.poll() is None
    if running:
        os.killpg(process.pid, signal.SIGKILL)  # the script and its DataLoader workers
    killed = process.wait() == -signal.SIGKILL
    log.close()
    assert running and killed and sealed.exists(), (tmp_path / "killed_stderr.txt").read_text()[-3000:]
    assert not (out / "metrics.json").exists() and len(losses(out)) < 12

    train.main(streamed_argv(assets, out, *run, "--resume_from_checkpoint", "last"))
    assert trained_samples(out) == trained_samples(reference)
    torch.testing.assert_close(torch.tensor(losses(out)), torch.tensor(losses(reference)), rtol=0, atol=1e-6)
    final, expected = load_file(out / "adapter_model.safetensors"), load_file(reference / "adapter_model.safetensors")
    for key in expected:
        torch.testing.assert_close(final[key], expected[key], rtol=0, atol=1e-6)
