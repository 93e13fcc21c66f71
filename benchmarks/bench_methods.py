"""Cost of each method on the real ViT-B/32 shape (random weights): parameters, forward, train step, peak memory.

    python benchmarks/bench_methods.py --out benchmarks/results/methods_cpu.md            # CPU, all rows
    python benchmarks/bench_methods.py --device cuda --batch 32 --out benchmarks/results/methods_cuda.md
    python benchmarks/bench_methods.py --count-only --out benchmarks/results/parameters.md   # exact counts, seconds

Every (row, mode) runs in a fresh subprocess, so peak memory is that run's alone: on CPU the peak resident set size
(weights, gradients, optimizer state and activations, plus the interpreter), on CUDA `max_memory_allocated`. Ratios are
taken within one invocation of this script. Targets (issues 2-4): forward ≤ 1.15× (TFVL) / 1.10× (DGL, Prompt Cube) the
frozen mean-pooling baseline; train step ≤ 0.8× and peak training memory ≤ 0.6× full fine-tuning.
To add a method, add rows to ROWS.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

FRAMES = 12


def _tfvl(**kwargs):
    from peft_video import TFVLConfig

    return TFVLConfig(num_frames=FRAMES, **kwargs)


def _dgl(**kwargs):
    from peft_video import DGLConfig

    return DGLConfig(num_frames=FRAMES, **kwargs)


def _prompt_cube(**kwargs):
    from peft_video import PromptCubeConfig

    return PromptCubeConfig(num_frames=FRAMES, **kwargs)


# name -> (description, adapter config factory; None for the two baselines)
ROWS: dict[str, tuple[str, Callable | None]] = {
    "baseline": ("frozen CLIP, mean pooling (zero-shot)", None),
    "full_ft": ("full fine-tuning, mean pooling (CLIP4Clip-meanP)", None),
    "tfvl": ("TFVL (TextTemp + ImageTemp), defaults", _tfvl),
    "tfvl_text_temp": ("TFVL TextTemp only", lambda: _tfvl(image_temp=False)),
    "tfvl_image_temp": ("TFVL ImageTemp only", lambda: _tfvl(text_temp=False)),
    "dgl": ("DGL, defaults (transformer generator, global_prompt0 readout)", _dgl),
    "dgl_linear": ("DGL-Linear (latent_space=linear)", lambda: _dgl(latent_space="linear")),
    "prompt_cube": ("Prompt Cube, defaults (np=6, captioner trained, not in the adapter file)", _prompt_cube),
    "prompt_cube_retrieval": (
        "Prompt Cube without captioner (caption_loss_weight=0)",
        lambda: _prompt_cube(caption_loss_weight=0.0),
    ),
    "prompt_cube_tied_head": ("Prompt Cube, tied caption head", lambda: _prompt_cube(caption_tie_head=True)),
}


def _build(name: str, device: str):
    from peft import get_peft_model

    import peft_video  # noqa: F401
    from peft_video.testing import make_clip, vit_b32_config

    clip_config = vit_b32_config()
    clip = make_clip(clip_config, seed=0).to(device)
    factory = ROWS[name][1]
    if factory is None:
        if name == "full_ft":
            clip.requires_grad_(True)
        else:
            clip.requires_grad_(False)
        return clip_config, clip
    return clip_config, get_peft_model(clip, factory()).to(device)


def _video_embeds(name: str, model, videos):
    if ROWS[name][1] is not None:
        return model.get_video_features(pixel_values=videos).pooler_output
    frames = model.get_image_features(pixel_values=videos.flatten(0, 1)).pooler_output
    return frames.unflatten(0, videos.shape[:2]).mean(1)


def _loss(name: str, model, captions, videos):
    """One training objective: the adapter's own forward (with any auxiliary loss), or CLIP with mean pooling."""
    if ROWS[name][1] is not None:
        return model(**captions, pixel_values=videos, return_loss=True).loss
    from peft_video.losses import symmetric_infonce

    text = torch.nn.functional.normalize(model.get_text_features(**captions).pooler_output, dim=-1)
    video = torch.nn.functional.normalize(_video_embeds(name, model, videos), dim=-1)
    return symmetric_infonce(model.logit_scale.exp() * text @ video.t())


def _forward_gflops(name: str, model, one_video) -> float:
    """Counted FLOPs of one video's forward: independent of machine load, unlike the wall clock. SDPA runs its math
    backend here so that attention is counted (the fused CPU kernels are invisible to the counter)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _video_embeds(name, model, one_video)
    return counter.get_total_flops() / 1e9


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def worker(name: str, mode: str, device: str, batch: int, repeats: int) -> dict:
    from peft_video.testing import random_captions, random_videos

    torch.manual_seed(0)
    clip_config, model = _build(name, device)
    videos = random_videos(clip_config, batch, FRAMES).to(device)
    captions = {k: v.to(device) for k, v in random_captions(clip_config, batch, length=32).items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    result = {
        "trainable": sum(p.numel() for p in trainable),
        "clip_params": sum(p.numel() for n, p in model.named_parameters() if "video_adapter" not in n),
    }
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if mode == "forward":
        model.eval()

        def step():
            with torch.no_grad():
                _video_embeds(name, model, videos)

    else:
        model.train()
        optimizer = torch.optim.AdamW(trainable, lr=1e-5) if trainable else None

        def step():
            loss = _loss(name, model, captions, videos)
            if optimizer is not None:
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

    if mode == "forward":
        result["gflops"] = _forward_gflops(name, model, videos[:1])

    def timed(function) -> float:
        start = time.perf_counter()
        function()
        _sync(device)
        return time.perf_counter() - start

    step()  # warm-up (allocations, lazy init)
    _sync(device)
    is_adapter = ROWS[name][1] is not None
    if mode == "forward" and is_adapter:
        # the frozen mean-pooling baseline is this very model with the adapter disabled: alternating the two in one
        # process cancels the drift of a shared machine, which separate processes (minutes apart) do not
        def baseline_step():
            with model.disable_adapter():
                step()

        baseline_step()
        times, baseline_times = [], []
        for _ in range(repeats):
            times.append(timed(step))
            baseline_times.append(timed(baseline_step))
        result["baseline_seconds"] = statistics.median(baseline_times)
    else:
        times = [timed(step) for _ in range(repeats)]
    result["seconds"] = statistics.median(times)
    if device == "cuda":
        result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if ROWS[name][1] is not None:
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            result["adapter_mb"] = (Path(folder) / "adapter_model.safetensors").stat().st_size / 2**20
    return result


def run_worker(name: str, mode: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--mode", mode, "--device", args.device]
    command += ["--batch", str(args.batch), "--repeats", str(args.repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name}/{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=4, help="videos (and captions) per step")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ",".join(ROWS))
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--count-only", action="store_true", help="only exact trainable counts (no timing)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["forward", "train"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.mode, args.device, args.batch, args.repeats)))
        return

    rows = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {sorted(ROWS)}")
    if args.count_only:
        write(args.out, count_table(rows))
        return
    for needed in ("baseline", "full_ft"):
        if needed not in rows:
            rows.insert(0, needed)
    measured = {}
    for name in rows:
        measured[name] = {mode: run_worker(name, mode, args) for mode in ("forward", "train")}
        print(name, json.dumps(measured[name]), file=sys.stderr, flush=True)

    base, full = measured["baseline"], measured["full_ft"]
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    lines = [
        f"# Method costs: CLIP ViT-B/32 shape (random weights), {FRAMES} frames, 224 px, batch {args.batch}",
        "",
        f"Device: {args.device} ({device_name}), torch {torch.__version__}, {torch.get_num_threads()} threads. "
        f"Median of {args.repeats} timed runs after one warm-up; each row's cells from its own processes. Forward "
        "× baseline is paired: each adapter's forward alternates with the same model under `disable_adapter()` (the "
        "frozen mean-pooling baseline) in one process; GFLOP/video is counted, independent of machine load.",
        f"Command: `python benchmarks/bench_methods.py --device {args.device} --batch {args.batch} "
        f"--repeats {args.repeats}{'' if args.rows == ','.join(ROWS) else ' --rows ' + args.rows}`",
        "",
        "| row | trainable | share of CLIP | adapter MB | forward GFLOP/video | × baseline | forward s | × baseline "
        "| train step s | × full FT | peak train MB | × full FT |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in rows:
        forward, train = measured[name]["forward"], measured[name]["train"]
        share = 100 * train["trainable"] / train["clip_params"]
        adapter_mb = f"{forward['adapter_mb']:.2f}" if "adapter_mb" in forward else "—"
        lines.append(
            f"| {name}: {ROWS[name][0]} | {train['trainable']:,} | {share:.3f} % | {adapter_mb} "
            f"| {forward['gflops']:.1f} | {forward['gflops'] / base['forward']['gflops']:.3f} "
            f"| {forward['seconds']:.3f} "
            f"| {forward['seconds'] / forward.get('baseline_seconds', base['forward']['seconds']):.2f} "
            f"| {train['seconds']:.3f} | {train['seconds'] / full['train']['seconds']:.2f} "
            f"| {train['peak_mb']:.0f} | {train['peak_mb'] / full['train']['peak_mb']:.2f} |"
        )
    write(args.out, "\n".join(lines) + "\n")


def count_table(rows: list[str]) -> str:
    """Exact trainable parameters of each adapter row on the ViT-B/32 shape, and their share of CLIP's parameters."""
    lines = [
        f"# Trainable parameters: CLIP ViT-B/32 shape (random weights), {FRAMES} frames",
        "",
        "Command: `python benchmarks/bench_methods.py --count-only`",
        "",
        "| row | trainable | CLIP parameters | share of CLIP |",
        "|---|---:|---:|---:|",
    ]
    for name in rows:
        if ROWS[name][1] is None:
            continue
        _, model = _build(name, "cpu")
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        clip_params = sum(p.numel() for n, p in model.named_parameters() if "video_adapter" not in n)
        lines.append(
            f"| {name}: {ROWS[name][0]} | {trainable:,} | {clip_params:,} | {100 * trainable / clip_params:.4f} % |"
        )
    return "\n".join(lines) + "\n"


def write(path: Path | None, table: str) -> None:
    print(table)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(table)


if __name__ == "__main__":
    main()
