"""examples/train.py with `group_by_column` (hard negatives in one global batch) and a combined
`metric_for_best_model`, on the tiny offline world (16 training rows: 6 twin pairs, a video and its time-reversed
twin sharing `order_pair_id`, and 4 rows without a twin): every pair in an epoch trains in one batch (read back from
`--log_samples`), also across a stop and a resume and across two processes (within one global batch); a column the
split lacks and a streamed source are refused before training; the weighted selection spec picks the step it should
and metrics.json records it."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from train_fixtures import base_argv, launch_two_processes, load_script, write_tiny_assets

# 16 rows in batches of 4: 4 steps an epoch; 6 steps cross an epoch boundary, a checkpoint at step 3 sits mid-epoch.
GROUPED = ["--group_by_column", "order_pair_id", "--log_samples", "true", "--seed", "3"]
RUN = ["--max_steps", "6", "--save_steps", "3", "--eval_steps", "2"]
SELECTION = "0.5*twin_accuracy + 0.5*text_to_video/R@1"


@pytest.fixture(scope="module")
def train():
    return load_script("train")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The tiny CLIP and world, and each training video's twin pair (None: no twin)."""
    assets = write_tiny_assets(tmp_path_factory.mktemp("train_grouping"))
    assets.pair_of = {row["video_id"]: row["order_pair_id"] for row in assets.rows if row["split"] == "train"}
    return assets


def argv_for(assets, output_dir: Path) -> list[str]:
    return base_argv(assets.clip, assets.world, output_dir) + GROUPED + RUN


def samples(output_dir: Path, rank: int = 0) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "samples" / f"rank{rank}.jsonl").read_text().splitlines()]


def split_pairs(batches: list[list[str]], pair_of: dict[str, str | None]) -> list[str]:
    """The pairs whose two twins are not in the same batch, among the pairs these batches (one epoch) hold."""
    where = defaultdict(set)
    for index, batch in enumerate(batches):
        for video in batch:
            if pair_of[video] is not None:
                where[pair_of[video]].add(index)
    return sorted(pair for pair, places in where.items() if len(places) > 1)


@pytest.fixture(scope="module")
def grouped(train, assets):
    """One uninterrupted grouped run, selected on the weighted spec, every evaluation's metrics recorded in order."""
    out = assets.root / "grouped"
    evaluations = []
    summary_line = train.summary_line

    def recording(metrics):
        evaluations.append(metrics)
        return summary_line(metrics)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "summary_line", recording)
        metrics = train.main(argv_for(assets, out) + ["--metric_for_best_model", SELECTION])
    return SimpleNamespace(out=out, metrics=metrics, evaluations=evaluations)


def test_the_world_has_twins_to_group(assets):
    pairs = [p for p in assets.pair_of.values() if p is not None]
    assert len(pairs) >= 8 and all(pairs.count(p) == 2 for p in pairs)


def test_every_pair_in_an_epoch_trains_in_one_batch(grouped, assets):
    logged = samples(grouped.out)
    assert [b["step"] for b in logged] == [1, 2, 3, 4, 5, 6]
    for epoch in (0, 1):
        batches = [b["video_id"] for b in logged if b["epoch"] == epoch]
        assert batches and all(len(b) == 4 for b in batches)
        assert split_pairs(batches, assets.pair_of) == []
    epochs = [[b["video_id"] for b in logged if b["epoch"] == epoch] for epoch in (0, 1)]
    assert epochs[1] != epochs[0][: len(epochs[1])]  # each epoch its own batches (the sampler gets the epoch)
    first_epoch = [v for b in logged if b["epoch"] == 0 for v in b["video_id"]]
    assert sorted(first_epoch) == sorted(assets.pair_of)  # a full epoch: every row once, so every pair was there


def test_without_grouping_the_same_run_splits_pairs(train, assets, tmp_path):
    """The check above can fail: a plain shuffle of the same rows separates twins."""
    argv = [a for a in argv_for(assets, tmp_path / "plain") if a not in ("--group_by_column", "order_pair_id")]
    train.main(argv + ["--max_steps", "4", "--eval_strategy", "no", "--load_best_model_at_end", "false"])
    batches = [b["video_id"] for b in samples(tmp_path / "plain") if b["epoch"] == 0]
    assert split_pairs(batches, assets.pair_of)


def test_a_stopped_and_resumed_grouped_run_sees_the_uninterrupted_batches(train, assets, grouped):
    out = assets.root / "grouped_resumed"
    argv = argv_for(assets, out) + ["--metric_for_best_model", SELECTION]
    assert train.main(argv + ["--stop_after_steps", "5"]) == {"stopped_at": 5}  # the last checkpoint is step 3
    train.main(argv + ["--resume_from_checkpoint", "last"])
    assert samples(out) == samples(grouped.out)
    losses = [
        [json.loads(line)["loss"] for line in (o / "train_log.jsonl").read_text().splitlines()]
        for o in (out, grouped.out)
    ]
    torch.testing.assert_close(torch.tensor(losses[0]), torch.tensor(losses[1]), rtol=0, atol=1e-6)


def test_a_weighted_selection_spec_selects_its_best_validation_step(grouped):
    metrics = json.loads((grouped.out / "metrics.json").read_text())
    validations = grouped.evaluations[:3]  # steps 2, 4, 6 (no zero-shot evaluation); then test
    assert len(grouped.evaluations) == 4 and grouped.evaluations[3] is not None
    values = [0.5 * m["twin_accuracy"]["accuracy"] + 0.5 * m["text_to_video"]["R@1"] for m in validations]
    best = values.index(max(values))
    selection = metrics["selection"]
    assert selection["metric"] == SELECTION and selection["split"] == "val"
    assert selection["best_step"] == 2 * (best + 1)
    assert selection["best_value"] == pytest.approx(values[best])
    assert metrics["validation"]["text_to_video"] == validations[best]["text_to_video"]


def test_an_unknown_group_column_fails_before_training_and_deletes_nothing(train, assets, grouped, tmp_path):
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "train_log.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    argv = base_argv(assets.clip, assets.world, out) + RUN + ["--group_by_column", "scene_id"]
    with pytest.raises(ValueError, match=r"group_by_column 'scene_id' is not a column of the training split.*video"):
        train.main(argv + ["--overwrite_output_dir", "true"])
    assert sorted(p.name for p in out.iterdir()) == ["train_log.jsonl"]


def test_a_streamed_source_refuses_group_by_column(train, assets, tmp_path):
    argv = base_argv(assets.clip, assets.world, tmp_path / "run") + ["--dataset", "shards", "--shards", "nowhere"]
    argv += ["--max_steps", "2", "--eval_steps", "2", "--group_by_column", "order_pair_id"]
    with pytest.raises(ValueError, match="group_by_column needs the whole training split"):
        train.main(argv)
    assert not (tmp_path / "run").exists()


def test_two_processes_keep_each_pair_in_one_global_batch(assets):
    """2 pairs per process: a global batch of 4 holds a pair on one process or split over both; the union of the two
    processes' batch k holds both twins of every pair in it, in each epoch, and the second epoch is drawn anew."""
    out = assets.root / "two_processes"
    argv = base_argv(assets.clip, assets.world, out) + GROUPED
    argv += ["--per_device_train_batch_size", "2", "--max_steps", "6", "--eval_steps", "6"]
    launch_two_processes("train.py", argv)
    ranks = [samples(out, rank) for rank in (0, 1)]
    assert [b["step"] for b in ranks[0]] == [b["step"] for b in ranks[1]] == [1, 2, 3, 4, 5, 6]
    global_batches = [(a["epoch"], a["video_id"] + b["video_id"]) for a, b in zip(*ranks, strict=True)]
    epochs = [[batch for epoch, batch in global_batches if epoch == e] for e in (0, 1)]
    assert [len(e) for e in epochs] == [4, 2] and all(len(set(b)) == 4 for e in epochs for b in e)
    assert sorted(v for batch in epochs[0] for v in batch) == sorted(assets.pair_of)  # one epoch: each row once
    assert split_pairs(epochs[0], assets.pair_of) == split_pairs(epochs[1], assets.pair_of) == []
    assert epochs[1] != epochs[0][:2]  # every process's sampler got the epoch (Accelerate's wrapper does not pass it)
