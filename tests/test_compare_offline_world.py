"""The offline-world comparison: every trained row gets the same budget and recipe, the order-head reference row trains
on a tiny world and reports what train.py reports, and the table is built from finished runs only (no run here)."""

from __future__ import annotations

import argparse
import importlib.util
import json

import pytest
import torch
from train_fixtures import REPO, WORLD, write_tiny_world


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compare():
    return load_benchmark("compare_offline_world")


def arguments(compare, tmp_path) -> argparse.Namespace:
    return argparse.Namespace(
        max_steps=7, eval_steps=3, frames=12, world=[64, 16, 32], data_dir=tmp_path / "world", threads=1,
        parallel=2, seeds=[0, 1, 2], runs_dir=tmp_path / "runs", method_config={},
    )  # fmt: skip


def flag(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def test_every_trained_row_gets_the_same_budget_recipe_and_world(compare, tmp_path):
    args = arguments(compare, tmp_path)
    commands = {row: compare.train_command(row, 1, tmp_path / row, args) for row in compare.ROWS}
    for row, command in commands.items():
        assert flag(command, "--seed") == "1" and flag(command, "--num_frames") == "12"
        if row == "zero_shot":
            assert "--max_steps" not in command and "--group_by_column" not in command
            continue
        assert flag(command, "--max_steps") == "7", row
        assert flag(command, "--metric_for_best_model") == compare.SELECTION, row
        if row != compare.ORDER_HEAD:
            assert flag(command, "--group_by_column") == "order_pair_id", row
            assert [flag(command, f"--world_num_{s}") for s in ("train", "val", "test")] == ["64", "16", "32"]
            assert flag(command, "--eval_steps") == "3", row
    old = json.loads(flag(commands["tfvl_old_defaults"], "--method_config"))
    assert old.items() >= compare.TFVL_OLD_DEFAULTS.items() and "--method_config" not in commands["tfvl"]


def fake_metrics(twin: float) -> dict:
    kinds = {k: {"accuracy": twin, "num_queries": 10} for k in ("order", "motion", "colour", "size")}
    t2v = {"R@1": 40.0, "R@5": 80.0, "MnR": 3.0}
    return {
        "test": {
            "text_to_video": t2v,
            "subsets": {"is_order_sensitive": {"text_to_video": {**t2v, "R@1": 30.0}}},
            "twin_accuracy": {"accuracy": twin, "num_queries": 40, "per_kind": kinds},
        },
        "parameters": {"trainable": 1234},
        "train_time_s": 10.0,
    }


def test_table_averages_the_finished_seeds_and_says_which(compare, tmp_path):
    args = arguments(compare, tmp_path)
    for seed, twin in ((0, 80.0), (2, 90.0)):
        run = compare.run_dir("tfvl", seed, args)
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps(fake_metrics(twin)))
    table = compare.table(["tfvl", "dgl"], args)
    tfvl = next(line for line in table.splitlines() if line.startswith("| tfvl:"))
    assert "85.0 ± 7.1" in tfvl and tfvl.endswith("| 1,234 | 10 | 0 2 |")
    assert "twin order (n=10)" in table and "twin acc. (n=40)" in table
    dgl = next(line for line in table.splitlines() if line.startswith("| dgl:"))
    assert "not run" in dgl and dgl.endswith("| none |")


def test_runs_of_another_budget_or_other_fields_are_not_tabulated(compare, tmp_path):
    args = arguments(compare, tmp_path)
    run = compare.run_dir("tfvl", 0, args)
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(fake_metrics(80.0)))
    assert "80.0 ± 0.0" in compare.table(["tfvl"], args)
    longer = argparse.Namespace(**{**vars(args), "max_steps": 14})
    with pytest.raises(SystemExit, match="no finished run"):
        compare.table(["tfvl"], longer)
    other_fields = argparse.Namespace(**{**vars(args), "method_config": {"tfvl": {"text_temp": False}}})
    assert compare.run_dir("tfvl", 0, other_fields) != run
    with pytest.raises(SystemExit, match="no finished run"):
        compare.table(["tfvl"], other_fields)


def test_order_head_sees_order_and_trains_with_the_recipe_on_a_tiny_world(tmp_path):
    reference = load_benchmark("order_head_reference")
    head = reference.OrderHead(num_frames=4, dim=8, hidden=16)
    clip_frames = torch.randn(2, 4, 8)
    torch.testing.assert_close(clip_frames.mean(1), clip_frames.flip(1).mean(1))
    assert not torch.allclose(head(clip_frames), head(clip_frames.flip(1)))

    write_tiny_world(tmp_path / "world")
    out = tmp_path / "run"
    frames = WORLD["world_num_frames"]
    argv = ["--data_dir", str(tmp_path / "world"), "--output_dir", str(out), "--num_frames", str(frames)]
    reference.main([*argv, "--max_steps", "4", "--eval_steps", "2", "--per_device_train_batch_size", "4"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["selection"]["best_step"] in (2, 4)
    assert metrics["parameters"]["trainable"] == (frames * 128 * 512 + 512) + (512 * 128 + 128)  # tiny CLIP: P 128
    twins = metrics["test"]["twin_accuracy"]
    assert twins["num_queries"] > 0 and set(twins["per_kind"]) <= {"order", "motion", "colour", "size"}
