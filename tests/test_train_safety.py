"""examples/train.py, issue 11 items 14-16 on one process: a contrastive batch of one pair is refused (arguments) or
skipped (a batch left with one pair), unreadable and partly decodable training videos are named in the end-of-run
report and metrics.json, and a damaged or incomplete checkpoint is detected, named, and `--resume_from_checkpoint
last` falls back to the previous intact one. (Two processes: tests/test_train_distributed_data.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from train_fixtures import base_argv, load_script, write_tiny_assets
from video_fixtures import write_partly_decodable, write_random_bytes

# 4 steps of 4 pairs; checkpoints at every step, the two newest kept.
RUN = ["--max_steps", "4", "--save_steps", "1", "--eval_steps", "4", "--seed", "5", "--save_total_limit", "2"]


@pytest.fixture(scope="module")
def train():
    return load_script("train")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_tiny_assets(tmp_path_factory.mktemp("train_safety"))


def argv_for(assets, output_dir: Path, method: str = "tfvl") -> list[str]:
    return base_argv(assets.clip, assets.world, output_dir, method=method)


def losses(output_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (output_dir / "train_log.jsonl").read_text().splitlines()]


def manifest_with(assets, tmp_path: Path, extra_train: list[dict], keep_train: int) -> Path:
    """The tiny world's manifest with absolute paths, its first `keep_train` training rows plus `extra_train`."""
    rows = [json.loads(line) for line in (assets.world / "manifest.jsonl").read_text().splitlines()]
    rows = [{**row, "video": str((assets.world / row["video"]).resolve())} for row in rows]
    train_rows = [row for row in rows if row["split"] == "train"][:keep_train]
    template = {key: value for key, value in train_rows[0].items() if key not in ("video", "video_id", "caption")}
    extra = [{**template, **row, "split": "train"} for row in extra_train]
    manifest = tmp_path / "manifest.jsonl"
    kept = [row for row in rows if row["split"] != "train"] + train_rows + extra
    manifest.write_text("".join(json.dumps(row) + "\n" for row in kept))
    return manifest


# -- 14: a contrastive batch of one pair -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["tfvl", "prompt_cube"])
def test_a_global_batch_of_one_pair_is_refused_before_anything_is_deleted(train, assets, tmp_path, method):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "train_log.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    (earlier / "best_adapter").mkdir()
    argv = argv_for(assets, earlier, method) + ["--per_device_train_batch_size", "1", "--max_steps", "2"]
    argv += ["--overwrite_output_dir", "true", "--gradient_accumulation_steps", "4"]  # accumulation adds no negatives
    if method == "prompt_cube":  # an auxiliary captioning loss does not make the contrastive part train
        argv += ["--method_config", '{"num_prompts": 2}']
    with pytest.raises(ValueError, match=r"contrastive batch of one pair has a constant loss.*per_device_train_batch"):
        train.main(argv)
    assert sorted(p.name for p in earlier.iterdir()) == ["best_adapter", "train_log.jsonl"]


def test_a_batch_left_with_one_pair_is_skipped_and_every_bad_video_is_reported(train, assets, tmp_path, capsys):
    """5 readable pairs + 1 unreadable file, batches of 2: every epoch one batch keeps a single pair (loss exactly 0,
    no gradient): skipped and counted, never trained on. A partly decodable file is trained on as a shorter video and
    named with its frame counts."""
    broken = write_random_bytes(tmp_path / "broken.mp4")
    partial = write_partly_decodable(tmp_path / "broken_tail.mp4", num_frames=24, width=32, height=32)
    extra = [
        {"video": str(broken), "video_id": "broken", "caption": "a red circle moves left"},
        {"video": str(partial), "video_id": "partial", "caption": "a blue square moves right"},
    ]
    manifest = manifest_with(assets, tmp_path, extra, keep_train=4)
    out = tmp_path / "out"
    argv = argv_for(assets, out) + ["--dataset", "manifest", "--manifest", str(manifest), "--decode_timeout", "20"]
    argv += ["--per_device_train_batch_size", "2", "--max_steps", "4", "--eval_steps", "4", "--log_samples", "true"]
    metrics = train.main(argv)
    assert metrics["skipped_batches"] == {"single_pair": 2}  # one per epoch, 2 epochs of 2 trained steps
    assert all(loss > 0 for loss in losses(out))
    trained = [json.loads(line) for line in (out / "samples" / "rank0.jsonl").read_text().splitlines()]
    assert [len(batch["video_id"]) for batch in trained] == [2, 2, 2, 2]
    errors = json.loads((out / "metrics.json").read_text())["data_errors"]
    assert list(errors["unreadable_videos"]) == [str(broken)] and errors["failed_samples"] == 2
    (decoded, announced) = errors["partly_decodable_videos"][str(partial)].values()
    assert announced == 24 and 0 < decoded < 24
    report = capsys.readouterr().out
    assert f"{broken}: " in report and f"{partial}: partly decodable: {decoded} of the 24 frames" in report
    assert "batches skipped (not trained on): {'single_pair': 2}" in report


def test_the_incomplete_last_batch_of_an_epoch_is_dropped(train, assets, tmp_path):
    """13 training rows in batches of 4: 3 full batches per epoch; the 13th row never forms a smaller batch."""
    out = tmp_path / "out"
    argv = argv_for(assets, out) + ["--max_train_samples", "13", "--num_train_epochs", "2", "--log_samples", "true"]
    metrics = train.main(argv + ["--eval_strategy", "epoch"])
    trained = [json.loads(line) for line in (out / "samples" / "rank0.jsonl").read_text().splitlines()]
    assert metrics["steps"] == 6 and [len(batch["video_id"]) for batch in trained] == [4] * 6
    assert metrics["skipped_batches"] == {}


# -- 16: damaged checkpoints -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(train, assets):
    out = assets.root / "uninterrupted"
    train.main(argv_for(assets, out) + RUN)
    return out


@pytest.fixture(scope="module")
def stopped_run(train, assets):
    """A run stopped after step 3 of 4 (checkpoints 2 and 3 kept): a killed run, ready to resume."""
    out = assets.root / "stopped"
    assert train.main(argv_for(assets, out) + RUN + ["--stop_after_steps", "3"]) == {"stopped_at": 3}
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["checkpoint_2", "checkpoint_3"]
    return out


@pytest.fixture
def stopped(stopped_run, tmp_path):
    """A copy of the stopped run's output folder, for one test to damage."""
    return Path(shutil.copytree(stopped_run, tmp_path / "stopped"))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def zero(path: Path) -> None:
    path.write_bytes(bytes(path.stat().st_size))


@pytest.mark.parametrize(("damage", "file", "named"), [(truncate, "model.safetensors", "bytes"),
                                                       (zero, "optimizer.bin", "SHA-256 mismatch")])  # fmt: skip
def test_a_damaged_newest_checkpoint_is_named_and_last_falls_back_to_the_previous_one(
    train, assets, uninterrupted, stopped, damage, file, named
):
    damage(stopped / "checkpoints" / "checkpoint_3" / file)
    with pytest.warns(UserWarning, match=rf"checkpoint_3 is not usable \({file} .*{named}.*Falling back to .*_2"):
        metrics = train.main(argv_for(assets, stopped) + RUN + ["--resume_from_checkpoint", "last"])
    assert metrics["steps"] == 4
    # steps 3 and 4 redone from checkpoint 2: the uninterrupted run's losses, and the damaged folder is gone
    torch.testing.assert_close(torch.tensor(losses(stopped)), torch.tensor(losses(uninterrupted)), rtol=0, atol=1e-6)
    assert [p.name for p in sorted((stopped / "checkpoints").iterdir())] == ["checkpoint_3", "checkpoint_4"]


def test_a_damaged_checkpoint_named_explicitly_is_refused(train, assets, stopped):
    truncate(stopped / "checkpoints" / "checkpoint_3" / "model.safetensors")
    checkpoint = stopped / "checkpoints" / "checkpoint_3"
    argv = argv_for(assets, stopped) + RUN + ["--resume_from_checkpoint", str(checkpoint)]
    with pytest.raises(ValueError, match=r"cannot resume from .*checkpoint_3: model.safetensors has \d+ bytes"):
        train.main(argv)


def test_a_checkpoint_interrupted_while_saving_is_passed_over_and_rotation_waits_for_a_complete_one(
    train, assets, tmp_path
):
    out = tmp_path / "limit1"
    argv = argv_for(assets, out) + RUN + ["--save_total_limit", "1"]
    train.main(argv + ["--stop_after_steps", "2"])
    checkpoints = out / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["checkpoint_2"]  # rotated, after checkpoint_2 was complete
    # killed while writing checkpoint_3: a folder without its seal; the older one is still there
    shutil.copytree(checkpoints / "checkpoint_2", checkpoints / "checkpoint_3")
    (checkpoints / "checkpoint_3" / "checkpoint_files.json").unlink()
    with pytest.warns(UserWarning, match=r"checkpoint_3 is not usable \(incomplete.*Falling back to .*checkpoint_2"):
        metrics = train.main(argv + ["--resume_from_checkpoint", "last"])
    assert metrics["steps"] == 4 and [p.name for p in checkpoints.iterdir()] == ["checkpoint_4"]


def test_no_intact_checkpoint_left_names_each(train, assets, stopped):
    for step in (2, 3):
        zero(stopped / "checkpoints" / f"checkpoint_{step}" / "model.safetensors")
    with pytest.raises(FileNotFoundError, match=r"no complete, intact checkpoint: .*checkpoint_3 .*checkpoint_2 "):
        train.main(argv_for(assets, stopped) + RUN + ["--resume_from_checkpoint", "last"])
