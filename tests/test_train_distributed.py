"""`accelerate launch --multi_gpu --num_processes 2` with ACCELERATE_USE_CPU=1: train.py trains and evaluates, the
logged batch size is the global one, and evaluate.py counts every sample exactly once (7 test videos over 2
processes: `gather_for_metrics` must drop the padding duplicate) with the numbers of a single process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from train_fixtures import EXAMPLES, WORLD, base_argv, load_script, write_tiny_clip, write_tiny_world

ODD_EVAL_ROWS = "7"


def launch(script: str, args: list[str], port: int) -> subprocess.CompletedProcess:
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
        str(EXAMPLES / script), *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    clip_dir = write_tiny_clip(root / "clip")
    write_tiny_world(root / "world")
    out = root / "run"
    argv = base_argv(clip_dir, root / "world", out)
    argv += ["--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--max_steps", "2"]
    argv += ["--eval_steps", "2", "--max_eval_samples", ODD_EVAL_ROWS]
    result = launch("train.py", argv, port=29531)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return root, clip_dir, out, result


def test_two_processes_train_and_log_the_global_batch(trained):
    _, _, out, result = trained
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    assert metrics["global_batch_size"] == 2 * 2 * 2  # per device x processes x accumulation
    assert "global batch 8 (2 per device × 2 × 2 accumulation)" in result.stdout
    assert metrics["steps"] == 2 and len((out / "train_log.jsonl").read_text().splitlines()) == 2
    for split in ("validation", "test"):
        assert metrics[split]["text_to_video"]["num_queries"] == int(ODD_EVAL_ROWS)
        assert metrics[split]["video_to_text"]["num_queries"] == int(ODD_EVAL_ROWS)
    assert (out / "adapter_model.safetensors").is_file() and (out / "README.md").is_file()


def test_two_process_evaluation_counts_each_sample_once_and_matches_one_process(trained):
    root, _, out, _ = trained
    common = [
        "--adapter_name_or_path",
        str(out),
        "--data_dir",
        str(root / "world"),
        "--max_eval_samples",
        ODD_EVAL_ROWS,
        "--per_device_eval_batch_size",
        "2",
        "--decode_timeout",
        "0",
        "--disable_tqdm",
        "true",
    ]
    common += [f"--{key}={value}" for key, value in WORLD.items()]
    result = launch("evaluate.py", common + ["--output_file", str(root / "two.json")], port=29532)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    two = json.loads((root / "two.json").read_text())
    assert two["num_processes"] == 2
    one = load_script("evaluate").main(common + ["--output_file", str(root / "one.json")])
    assert one["num_processes"] == 1
    for direction in ("text_to_video", "video_to_text"):
        assert two["metrics"][direction]["num_queries"] == int(ODD_EVAL_ROWS)
        for key, value in one["metrics"][direction].items():
            assert two["metrics"][direction][key] == pytest.approx(value, abs=1e-6), (direction, key)
