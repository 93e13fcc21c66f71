"""The comparison on the offline world: every method and baseline, equal budgets, several seeds, mean ± std.

    python benchmarks/compare_offline_world.py --out benchmarks/results/offline_world_comparison.md

Each (row, seed) is one run of `examples/train.py` (the same script users run) on the same generated world, with the
same frames, epochs, batch size and seed; rows differ only in method, method fields and learning rate (each method's
own config in `examples/configs/`). Model selection is on the validation split; the numbers are the test split's, for
all captions and for the order-sensitive subset (videos whose exact reverse, with the reversed caption, is in the
gallery), and the twin accuracy: how often a caption scores its own video above the same frames reversed (ties count
one half; frame-mean pooling is at 50 % by construction, so this column is the one that measures time). Every saved
model is scored by `examples/evaluate.py` on the test split. Ties count against the ground truth in R@K.
Runs are kept under --runs_dir; finished runs and evaluations are not redone, so the script can be resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"

# row -> (description, config file, method_config overrides)
ROWS: dict[str, tuple[str, str, dict]] = {
    "zero_shot": ("zero-shot CLIP, mean pooling", "offline_world_zero_shot.yaml", {}),
    "full_finetune": ("full fine-tuning, mean pooling", "offline_world_full_finetune.yaml", {}),
    "tfvl": ("TFVL (TextTemp + ImageTemp)", "demo_tfvl.yaml", {}),
    "tfvl_text_temp": ("TFVL, TextTemp only", "demo_tfvl.yaml", {"image_temp": False}),
    "tfvl_image_temp": ("TFVL, ImageTemp only", "demo_tfvl.yaml", {"text_temp": False}),
    "dgl": ("DGL, transformer generator", "offline_world_dgl.yaml", {"latent_space": "transformer"}),
    "dgl_linear": ("DGL-Linear", "offline_world_dgl.yaml", {"latent_space": "linear"}),
    "prompt_cube": ("Prompt Cube", "offline_world_prompt_cube.yaml", {}),
}


def run_one(row: str, seed: int, args) -> dict:
    out_dir = args.runs_dir / row / f"seed{seed}"
    metrics_path = out_dir / "metrics.json"
    if not metrics_path.exists():
        _, config, method_fields = ROWS[row]
        command = [sys.executable, str(ROOT / "examples" / "train.py"), "--config", str(CONFIGS / config)]
        command += ["--seed", str(seed), "--output_dir", str(out_dir), "--data_dir", str(args.data_dir)]
        command += ["--report_to", "none", "--disable_tqdm", "true", "--eval_before_training", "false"]
        command += ["--overwrite_output_dir", "true", "--num_train_epochs", str(args.epochs)]
        command += ["--world_num_frames", str(args.frames), "--num_frames", str(args.frames)]
        if method_fields or args.method_config:
            command += ["--method_config", json.dumps({**method_fields, **args.method_config.get(row, {})})]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(out_dir.parent / f"seed{seed}.log", "w") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"{row} seed {seed} failed; see {out_dir.parent / f'seed{seed}.log'}")
        print(f"{row} seed {seed}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return json.loads(metrics_path.read_text())


def evaluate_one(row: str, seed: int, args) -> dict:
    """Score the run's saved model (zero-shot: the base model) on the test split with examples/evaluate.py."""
    out_dir = args.runs_dir / row / f"seed{seed}"
    result_path = out_dir / "test_evaluation.json"
    if not result_path.exists():
        command = [sys.executable, str(ROOT / "examples" / "evaluate.py"), "--data_dir", str(args.data_dir)]
        command += ["--world_num_frames", str(args.frames), "--split", "test", "--decode_timeout", "0"]
        command += ["--disable_tqdm", "true", "--output_file", str(result_path)]
        if row == "zero_shot":
            from peft_video.synthetic.tiny_clip import TINY_CLIP_PATH

            command += ["--base_model", str(TINY_CLIP_PATH)]
        else:
            command += ["--adapter_name_or_path", str(out_dir)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        with open(out_dir.parent / f"seed{seed}.eval.log", "w") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"evaluating {row} seed {seed} failed; see {out_dir.parent / f'seed{seed}.eval.log'}")
    return json.loads(result_path.read_text())["metrics"]


def summarise(metrics: dict, evaluation: dict) -> dict[str, float]:
    order = evaluation["subsets"]["is_order_sensitive"]["text_to_video"]
    overall = evaluation["text_to_video"]
    return {
        "R@1": overall["R@1"],
        "R@5": overall["R@5"],
        "MnR": overall["MnR"],
        "order R@1": order["R@1"],
        "order R@5": order["R@5"],
        "order MnR": order["MnR"],
        "twin acc.": evaluation["twin_accuracy"]["accuracy"],
        "trainable": metrics.get("parameters", {}).get("trainable", 0),
        "train s": metrics.get("train_time_s", 0.0),
    }


def cell(values: list[float], digits: int = 1) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ",".join(ROWS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=6)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--parallel", type=int, default=2, help="runs at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--data_dir", type=Path, default=ROOT / "data" / "offline_world_comparison")
    parser.add_argument("--runs_dir", type=Path, default=ROOT / "outputs" / "offline_world_comparison")
    parser.add_argument("--method_config", type=json.loads, default={}, help='per-row extra fields: {"tfvl": {...}}')
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {sorted(ROWS)}")

    # one world for every run, written before any run starts (runs in parallel must not race to create it)
    from peft_video.synthetic import WorldConfig, write_world

    write_world(args.data_dir, config=WorldConfig(num_frames=args.frames, seed=0))
    jobs = [(row, seed) for row in rows for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        trained = dict(zip(jobs, pool.map(lambda job: run_one(*job, args), jobs)))
        evaluated = dict(zip(jobs, pool.map(lambda job: evaluate_one(*job, args), jobs)))
    results = {job: summarise(trained[job], evaluated[job]) for job in jobs}

    columns = ["R@1", "R@5", "MnR", "order R@1", "order R@5", "order MnR", "twin acc."]
    seeds = " ".join(map(str, args.seeds))
    lines = [
        "# Offline world: methods against mean pooling (text→video, test split)",
        "",
        f"Command: `python benchmarks/compare_offline_world.py --rows {args.rows} --seeds {seeds} "
        f"--epochs {args.epochs:g} --frames {args.frames}`",
        "",
        f"Tiny CLIP (`peft_video/synthetic/tiny-clip`, pretrained on still frames only), {args.frames} frames, "
        f"{args.epochs:g} epochs of the same world for every row, seeds {seeds}; mean ± std over seeds. "
        '"order" columns: the order-sensitive subset (each video\'s exact reverse, with the reversed caption, is in '
        'the gallery). "twin acc.": how often a caption scores its own video above the same frames reversed (ties '
        "one half; frame-mean pooling is at 50 % up to video-compression noise). Ties count against the ground truth "
        "in R@K. Model selection on validation. Scores by `examples/evaluate.py` on the saved models. Train time is "
        f"wall clock with {args.threads} thread(s) per run and {args.parallel} runs at once on a shared machine.",
        "",
        "| row | " + " | ".join(columns) + " | trainable | train s |",
        "|---|" + "---:|" * (len(columns) + 2),
    ]
    for row in rows:
        per_seed = [results[(row, seed)] for seed in args.seeds]
        cells = [cell([r[c] for r in per_seed], 2 if "MnR" in c else 1) for c in columns]
        trainable = per_seed[0]["trainable"]
        lines.append(
            f"| {row}: {ROWS[row][0]} | " + " | ".join(cells) + f" | {trainable:,} | "
            f"{statistics.fmean(r['train s'] for r in per_seed):.0f} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)


if __name__ == "__main__":
    main()
