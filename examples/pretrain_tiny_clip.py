"""Pretrains the offline world's tiny CLIP on still frames with static captions only, and reports its zero-shot
text-to-image recall on held-out stills.

    python examples/pretrain_tiny_clip.py                   # trains, saves to peft_video/synthetic/tiny-clip/,
                                                            # writes benchmarks/results/tiny_clip_pretraining.md
    python examples/pretrain_tiny_clip.py --evaluate_only   # only re-measures the committed model

The model never sees a video or a temporal word ("appears", "then", "moves", ...): it learns colours, shapes, sizes,
positions and counts from single frames, so time is the one thing an adapter has to add. Runs on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPImageProcessor, CLIPModel

from peft_video.synthetic import generate_stills
from peft_video.synthetic.tiny_clip import (
    IMAGE_MEAN,
    IMAGE_STD,
    TINY_CLIP_PATH,
    frames_to_pixel_values,
    load_tiny_clip,
    still_frame_recall,
    world_clip_config,
)
from peft_video.synthetic.tokenizer import build_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
# Training batches are drawn from seeds >= TRAIN_SEED_OFFSET; evaluation stills from EVAL_SEED: never the same images.
TRAIN_SEED_OFFSET = 1_000_000
EVAL_SEED = 7


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=TINY_CLIP_PATH)
    parser.add_argument("--results_file", type=Path, default=REPO_ROOT / "benchmarks/results/tiny_clip_pretraining.md")
    parser.add_argument("--max_steps", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--weight_decay", type=float, default=0.05)
    parser.add_argument("--warmup_steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval_size", type=int, default=500, help="held-out stills (unique captions) for recall")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)"
    )
    parser.add_argument("--log_every", type=int, default=50)
    parser.add_argument("--evaluate_only", action="store_true", help="measure the model in --output_dir, no training")
    return parser.parse_args(argv)


def contrastive_loss(text: torch.Tensor, image: torch.Tensor, logit_scale: torch.Tensor, captions: list[str]):
    """CLIP's symmetric InfoNCE, with every image of an identical caption counted as a positive (a small world
    repeats captions inside a batch; treating those as negatives would teach the model to tell identical things apart).
    """
    logits = logit_scale.exp().clamp(max=100) * F.normalize(text, dim=-1) @ F.normalize(image, dim=-1).T
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    label = torch.tensor([ids[c] for c in captions])
    positives = (label[:, None] == label[None, :]).float()
    targets = positives / positives.sum(1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train(args: argparse.Namespace) -> tuple[CLIPModel, float]:
    torch.manual_seed(args.seed)
    tokenizer = build_tokenizer()
    model = CLIPModel(world_clip_config())
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.learning_rate,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, args.warmup_steps, args.max_steps)
    )
    model.train()
    start = time.time()
    for step in range(args.max_steps):
        images, captions = generate_stills(args.batch_size, seed=TRAIN_SEED_OFFSET + args.seed * 100_000 + step)
        tokens = tokenizer(captions, padding=True, return_tensors="pt")
        image_embeds = model.get_image_features(pixel_values=frames_to_pixel_values(images)).pooler_output
        text_embeds = model.get_text_features(**tokens).pooler_output
        loss = contrastive_loss(text_embeds, image_embeds, model.logit_scale, captions)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step % args.log_every == 0 or step == args.max_steps - 1:
            elapsed = time.time() - start
            print(
                f"step {step:5d}/{args.max_steps}  loss {loss.item():.4f}  "
                f"scale {model.logit_scale.exp().item():6.2f}  lr {scheduler.get_last_lr()[0]:.2e}  {elapsed:6.0f}s",
                flush=True,
            )
    return model.eval(), time.time() - start


def save(model: CLIPModel, output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    build_tokenizer().save_pretrained(output_dir)
    size = model.config.vision_config.image_size
    CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD),
    ).save_pretrained(output_dir)


def evaluate(model, tokenizer, eval_size: int) -> dict[str, dict[str, float]]:
    images, captions = generate_stills(eval_size, seed=EVAL_SEED, unique_captions=True)
    result = {"all": still_frame_recall(model, tokenizer, images, captions)}
    # Recall inside one concept: the gallery holds only stills of that caption type, so the model must get the
    # concept right (e.g. "two" vs "three"), not just tell a count caption from a single-object one.
    kinds = {
        "single object (colour, shape, size, position)": lambda c: " and " not in c and c.split()[0] == "a",
        "count": lambda c: c.split()[0] in ("two", "three"),
        "two objects at two positions": lambda c: " and " in c,
    }
    for name, belongs in kinds.items():
        keep = [i for i, c in enumerate(captions) if belongs(c)]
        result[name] = still_frame_recall(model, tokenizer, images[keep], [captions[i] for i in keep])
    return result


def write_results(path: Path, command: str, recall: dict, info: dict) -> None:
    rows = "\n".join(f"| {name} | {r['n']} | {r['R@1']:.1f} | {r['R@5']:.1f} |" for name, r in recall.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""# Tiny CLIP pretraining (offline world)

Written by `examples/pretrain_tiny_clip.py`; do not edit by hand.

Command: `{command}`

Still frames with static captions only (colour, shape, size, position, count; no temporal word), CLIP's symmetric
contrastive loss, from random initialisation. Weights: `peft_video/synthetic/tiny-clip/`.

| setting | value |
| --- | --- |
{chr(10).join(f"| {k} | {v} |" for k, v in info.items())}

Zero-shot text-to-image recall (%) on held-out stills (seed {EVAL_SEED}, every caption different, ties counted
against the model). "all" ranks each caption against every held-out still; the other rows rank it only against stills
of the same caption type, so they measure that concept alone.

| gallery | stills | R@1 | R@5 |
| --- | --- | --- | --- |
{rows}
"""
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    if args.evaluate_only:
        model, tokenizer = load_tiny_clip(args.output_dir)
        print(json.dumps(evaluate(model, tokenizer, args.eval_size), indent=2))
        return
    model, seconds = train(args)
    save(model, args.output_dir)
    model, tokenizer = load_tiny_clip(args.output_dir)  # measure what was saved, through the public loading path
    recall = evaluate(model, tokenizer, args.eval_size)
    print(json.dumps(recall, indent=2))
    info = {
        "parameters": f"{sum(p.numel() for p in model.parameters()):,}",
        "steps x batch": f"{args.max_steps} x {args.batch_size}",
        "learning rate / warmup / weight decay": f"{args.learning_rate} / {args.warmup_steps} / {args.weight_decay}",
        "seed": args.seed,
        "training time": f"{seconds / 60:.1f} min on {args.threads} CPU threads ({platform.processor() or 'cpu'}, "
        f"shared machine), torch {torch.__version__}",
        "weights size": f"{sum(f.stat().st_size for f in args.output_dir.iterdir()) / 1e6:.1f} MB",
    }
    write_results(args.results_file, command, recall, info)
    print(f"saved to {args.output_dir}; results in {args.results_file}")


if __name__ == "__main__":
    main()
