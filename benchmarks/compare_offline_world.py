"""The comparison on the offline world: every method and baseline, equal budgets, several seeds, mean ± std.

    python benchmarks/compare_offline_world.py --out benchmarks/results/offline_world_comparison.md

Each (row, seed) is one run of `examples/train.py` (the same script users run) on the same generated world (the
library's default split sizes), with the same frames, optimizer steps, batch size, seed and recipe: twins in one batch
(`--group_by_column order_pair_id`) and model selection on validation by `0.5*twin_accuracy + 0.5*text_to_video/R@1`.
Rows differ only in method, method fields and learning rate (each method's own config in `examples/configs/`). The
reference row, an order-aware head on frozen frame embeddings, runs `benchmarks/order_head_reference.py` with the same
loss, batches, budget and selection. Figures are the test split's, of the selected model, as the run's metrics.json
reports them: all captions, the order-sensitive subset (videos whose exact reverse, with the reversed caption, is in
the gallery), and the twin accuracy (how often a caption scores its own video above the same frames reversed; ties
count one half, so frame-mean pooling is at 50 % by construction) overall and per kind of twin, with its number of
captions n. Ties count against the ground truth in R@K.

Runs are kept under --runs_dir, in a folder per budget (steps, evaluation cadence, frames, world); finished runs
are not redone, so the script can be resumed or run a few rows at a time (main rows first, ablations later).
`--table_only` writes the table from the runs that finished, each row over the seeds it has (the "seeds" column says
which).
"""

from __future__ import annotations

import argparse
import hashlib
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
SELECTION = "0.5*twin_accuracy + 0.5*text_to_video/R@1"
GROUP_COLUMN = "order_pair_id"
ORDER_HEAD = "order_head"
# TextTemp's prompt tokens before the default became 0; the ablation rows that ran then keep them
SIXTEEN_TEXT_PROMPTS = {"text_temp_prompt_tokens": 16}

# TFVL's TextTemp fields before issue 13 (docs/methods/tfvl.md): the ablation of the default change
TFVL_OLD_DEFAULTS = {
    "text_temp_word_scale": "free",
    "text_temp_center_frames": False,
    "text_temp_frame_positions": "text",
    "text_temp_gate_init": 0.0,
    **SIXTEEN_TEXT_PROMPTS,
}

# TextTemp reading the frames minus their mean, chosen in issue 13 and dropped when it was found to hide colour changes
CENTRED = {"text_temp_center_frames": True}

# the library's default joint layers (sized for ViT-B/32); the main job's config uses one on the 4-layer tiny CLIP
TWO_JOINT_LAYERS = {"image_temp_layers": [-2, -1]}

# row -> (description, config file (None: the order-head reference script), method_config overrides)
ROWS: dict[str, tuple[str, str | None, dict]] = {
    "zero_shot": ("zero-shot CLIP, mean pooling", "offline_world_zero_shot.yaml", {}),
    "full_finetune": ("full fine-tuning, mean pooling", "offline_world_full_finetune.yaml", {}),
    "tfvl": ("TFVL (TextTemp + ImageTemp), the main job's config (one joint layer)", "demo_tfvl.yaml", {}),
    "dgl": (
        "DGL, transformer generator (frame-CLS readout)",
        "offline_world_dgl.yaml",
        {"latent_space": "transformer"},
    ),
    "dgl_linear": ("DGL-Linear (frame-CLS readout)", "offline_world_dgl.yaml", {"latent_space": "linear"}),
    "prompt_cube": ("Prompt Cube", "offline_world_prompt_cube.yaml", {}),
    ORDER_HEAD: ("reference: order-aware head on frozen frame embeddings", None, {}),
    "tfvl_frame_embedding": (
        "TFVL, one joint layer, 16 TextTemp prompts, plus a frame-index embedding on every token",
        "demo_tfvl.yaml",
        {"image_temp_frame_embedding": True, **SIXTEEN_TEXT_PROMPTS},
    ),
    "tfvl_sixteen_text_prompts": (
        "TFVL, one joint layer, 16 TextTemp prompt tokens (the default before; frame words at text positions 17-28)",
        "demo_tfvl.yaml",
        SIXTEEN_TEXT_PROMPTS,
    ),
    "tfvl_four_text_prompts": (
        "TFVL, one joint layer, 4 TextTemp prompt tokens (frame words at text positions 5-16)",
        "demo_tfvl.yaml",
        {"text_temp_prompt_tokens": 4},
    ),
    "tfvl_two_joint_layers": (
        "TFVL, two joint layers (the library default), 16 TextTemp prompts",
        "demo_tfvl.yaml",
        {**TWO_JOINT_LAYERS, **SIXTEEN_TEXT_PROMPTS},
    ),
    "tfvl_centred": (
        "TFVL, two joint layers, 16 TextTemp prompts, centred frame words (the defaults for a while in issue 13)",
        "demo_tfvl.yaml",
        {**TWO_JOINT_LAYERS, **CENTRED, **SIXTEEN_TEXT_PROMPTS},
    ),
    "tfvl_centred_one_joint_layer": (
        "TFVL, one joint layer, 16 TextTemp prompts, centred frame words",
        "demo_tfvl.yaml",
        {**CENTRED, **SIXTEEN_TEXT_PROMPTS},
    ),
    "tfvl_old_defaults": (
        "TFVL, two joint layers, TextTemp fields before issue 13",
        "demo_tfvl.yaml",
        {**TWO_JOINT_LAYERS, **TFVL_OLD_DEFAULTS},
    ),
    "tfvl_text_temp": ("TFVL, TextTemp only", "demo_tfvl.yaml", {"image_temp": False}),
    "tfvl_text_temp_sixteen_prompts": (
        "TFVL, TextTemp only, 16 TextTemp prompts",
        "demo_tfvl.yaml",
        {"image_temp": False, **SIXTEEN_TEXT_PROMPTS},
    ),
    "tfvl_text_temp_centred": (
        "TFVL, TextTemp only, 16 TextTemp prompts, centred frame words",
        "demo_tfvl.yaml",
        {"image_temp": False, **CENTRED, **SIXTEEN_TEXT_PROMPTS},
    ),
    "tfvl_image_temp": (
        "TFVL, ImageTemp only, two joint layers",
        "demo_tfvl.yaml",
        {"text_temp": False, **TWO_JOINT_LAYERS},
    ),
    "tfvl_text_temp_old_defaults": (
        "TFVL, TextTemp only, fields before issue 13",
        "demo_tfvl.yaml",
        {"image_temp": False, **TFVL_OLD_DEFAULTS},
    ),
    "dgl_temporal": ("DGL + temporal_embedding (opt-in)", "offline_world_dgl.yaml", {"temporal_embedding": True}),
    "dgl_global_prompt0": (
        "DGL, the reference's default readout (global_prompt0)",
        "offline_world_dgl.yaml",
        {"visual_output": "global_prompt0"},
    ),
}
TWIN_KINDS = ("order", "motion", "colour", "size")


def train_command(row: str, seed: int, out_dir: Path, args) -> list[str]:
    _, config, method_fields = ROWS[row]
    recipe = ["--max_steps", str(args.max_steps), "--metric_for_best_model", SELECTION]
    common = ["--seed", str(seed), "--output_dir", str(out_dir), "--num_frames", str(args.frames)]
    if config is None:
        script = ROOT / "benchmarks" / "order_head_reference.py"
        return [sys.executable, str(script), "--data_dir", str(args.data_dir), *common, *recipe]
    command = [sys.executable, str(ROOT / "examples" / "train.py"), "--config", str(CONFIGS / config), *common]
    command += ["--data_dir", str(args.data_dir), "--world_num_frames", str(args.frames)]
    command += ["--world_num_train", str(args.world[0]), "--world_num_val", str(args.world[1])]
    command += ["--world_num_test", str(args.world[2]), "--report_to", "none", "--disable_tqdm", "true"]
    command += ["--overwrite_output_dir", "true"]
    if row != "zero_shot":
        command += [*recipe, "--group_by_column", GROUP_COLUMN, "--eval_before_training", "false"]
        command += ["--eval_steps", str(args.eval_steps), "--save_steps", str(args.eval_steps)]
    if method_fields or args.method_config.get(row):
        command += ["--method_config", json.dumps({**method_fields, **args.method_config.get(row, {})})]
    return command


def run_dir(row: str, seed: int, args) -> Path:
    """Where (row, seed) is kept: under a folder named by the budget (steps, evaluation cadence, frames, world) and,
    for a row given extra fields, by a digest of them, so that runs of different settings never stand in for each
    other when the script resumes or tabulates."""
    budget = f"steps{args.max_steps}_eval{args.eval_steps}_frames{args.frames}_world{'-'.join(map(str, args.world))}"
    extra = args.method_config.get(row)
    name = f"{row}+{hashlib.sha1(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:8]}" if extra else row
    return args.runs_dir / budget / name / f"seed{seed}"


def run_one(row: str, seed: int, args) -> None:
    """Train (row, seed) unless it has finished or another invocation of this script is running it (its lock file
    exists: delete a lock left by a killed invocation before resuming)."""
    out_dir = run_dir(row, seed, args)
    if (out_dir / "metrics.json").exists():
        return
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = out_dir.parent / f"seed{seed}.lock"
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        print(f"{row} seed {seed}: running elsewhere ({lock})", file=sys.stderr, flush=True)
        return
    try:
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        started = time.perf_counter()
        with open(out_dir.parent / f"seed{seed}.log", "w") as log:
            command = train_command(row, seed, out_dir, args)
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"{row} seed {seed} failed; see {out_dir.parent / f'seed{seed}.log'}")
        print(f"{row} seed {seed}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    finally:
        lock.unlink()


def summarise(metrics: dict) -> dict[str, float]:
    """The table's figures of one run: its test metrics (of the model selected on validation)."""
    test = metrics["test"]
    overall, order = test["text_to_video"], test["subsets"]["is_order_sensitive"]["text_to_video"]
    twins = test["twin_accuracy"]
    figures = {
        "R@1": overall["R@1"],
        "R@5": overall["R@5"],
        "MnR": overall["MnR"],
        "order R@1": order["R@1"],
        "twin acc.": twins["accuracy"],
        "twin n": twins["num_queries"],
        "trainable": metrics.get("parameters", {}).get("trainable", 0),
        "train s": metrics.get("train_time_s", 0.0),
    }
    for kind in TWIN_KINDS:
        figures[f"twin {kind}"] = twins["per_kind"][kind]["accuracy"]
        figures[f"twin {kind} n"] = twins["per_kind"][kind]["num_queries"]
    return figures


def cell(values: list[float], digits: int = 1) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def finished(row: str, seeds: list[int], args) -> dict[int, dict]:
    return {
        seed: summarise(json.loads(path.read_text()))
        for seed in seeds
        if (path := run_dir(row, seed, args) / "metrics.json").exists()
    }


def table(rows: list[str], args) -> str:
    results = {row: finished(row, args.seeds, args) for row in rows}
    any_run = next((runs[seed] for runs in results.values() for seed in runs), None)
    if any_run is None:
        raise SystemExit("no finished run to tabulate")
    kinds = [f"twin {k} (n={any_run[f'twin {k} n']})" for k in TWIN_KINDS]
    columns = ["R@1", "R@5", "MnR", "order R@1", f"twin acc. (n={any_run['twin n']})", *kinds]
    keys = ["R@1", "R@5", "MnR", "order R@1", "twin acc.", *(f"twin {k}" for k in TWIN_KINDS)]
    seeds = " ".join(map(str, args.seeds))
    lines = [
        "# Offline world: methods against mean pooling (text→video, test split)",
        "",
        f"Command: `python benchmarks/compare_offline_world.py --rows {','.join(rows)} --seeds {seeds} "
        f"--max_steps {args.max_steps} --frames {args.frames}`",
        "",
        f"Tiny CLIP (`peft_video/synthetic/tiny-clip`, pretrained on still frames only); the offline world with "
        f"{args.world[0]}/{args.world[1]}/{args.world[2]} train/val/test videos of {args.frames} frames (twins in "
        f"train); every row {args.max_steps} optimizer steps of batch 32 with twins in one batch (`--group_by_column "
        f"{GROUP_COLUMN}`), model selection on validation every {args.eval_steps} steps by `{SELECTION}`; mean ± std "
        'over the seeds of the "seeds" column (zero-shot trains nothing: one evaluation). "order R@1": the '
        'order-sensitive subset (each video\'s exact reverse, with the reversed caption, is in the gallery). "twin": '
        "how often a caption scores its own video above the same frames reversed, over all twins and per kind (ties "
        "one half; frame-mean pooling is at 50 % by construction); n: captions scored. Ties count against the ground "
        "truth in R@K. Figures from each run's metrics.json (test split, the selected model). Train time: each run's "
        "own wall clock as its metrics.json records it, with other runs sharing the machine, not always as many "
        "(a rough guide only).",
        "",
        "| row | " + " | ".join(columns) + " | trainable | train s | seeds |",
        "|---|" + "---:|" * (len(columns) + 3),
    ]
    for row in rows:
        runs = results[row]
        if not runs:
            lines.append(f"| {row}: {ROWS[row][0]} | " + " | ".join("not run" for _ in columns) + " | | | none |")
            continue
        per_seed = list(runs.values())
        cells = [cell([r[k] for r in per_seed], 2 if k == "MnR" else 1) for k in keys]
        lines.append(
            f"| {row}: {ROWS[row][0]} | " + " | ".join(cells) + f" | {per_seed[0]['trainable']:,} | "
            f"{statistics.fmean(r['train s'] for r in per_seed):.0f} | {' '.join(map(str, runs))} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ",".join(ROWS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max_steps", type=int, default=160)
    parser.add_argument("--eval_steps", type=int, default=32)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--world", type=int, nargs=3, default=None, help="train/val/test videos (default: library's)")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--data_dir", type=Path, default=ROOT / "data" / "offline_world_comparison")
    parser.add_argument("--runs_dir", type=Path, default=ROOT / "outputs" / "offline_world_comparison")
    parser.add_argument("--method_config", type=json.loads, default={}, help='per-row extra fields: {"tfvl": {...}}')
    parser.add_argument("--table_only", action="store_true", help="start no run; tabulate the finished ones")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {sorted(ROWS)}")
    from peft_video.synthetic import DEFAULT_SPLIT_SIZES, WorldConfig, write_world

    args.world = args.world or [DEFAULT_SPLIT_SIZES[s] for s in ("train", "val", "test")]

    if not args.table_only:
        # one world for every run, written before any run starts (runs in parallel must not race to create it)
        write_world(args.data_dir, *args.world, config=WorldConfig(num_frames=args.frames, seed=0))
        # seed-major: every row's first seed before any row's second; zero-shot trains nothing, so one seed
        jobs = [(row, seed) for seed in args.seeds for row in rows if row != "zero_shot" or seed == args.seeds[0]]
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            list(pool.map(lambda job: run_one(*job, args), jobs))
    text = table(rows, args)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
