"""Reference row of the comparison: an order-aware head on frozen frame embeddings (the ceiling of what the frozen tiny
CLIP's per-frame features allow in the same budget).

    python benchmarks/order_head_reference.py --data_dir data/offline_world_comparison --output_dir RUN --seed 0

Video embedding = mean_t f_t + MLP(concat_t normalise(f_t)), with f_t the frozen CLIP's frame embeddings; captions are
the frozen CLIP's own text embeddings. Only the MLP is trained. The recipe is `examples/train.py`'s: the same manifest
splits and frame sampling, the same contrastive loss (`peft_video.modeling.video_text_output`, CLIP's frozen
temperature), twins in one batch (`GroupedBatchSampler` on `order_pair_id`), AdamW with no decay on rank < 2 tensors,
warmup then cosine, gradient clipping, evaluation every `--eval_steps` on validation, selection by
`ModelSelection`, the selected head scored on test by `peft_video.evaluation.split_metrics`. Since CLIP is frozen and
the world's 12-frame videos are sampled whole (one frame per segment), frame and caption embeddings are computed once
and every step trains the head on them: the same numbers as running the frozen encoders every step, far faster.

Writes `metrics.json` (keys `test`, `validation`, `selection`, `parameters`, `train_time_s`, as train.py does).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

GROUP_COLUMN, TWIN_COLUMN, SUBSET_COLUMNS = "order_pair_id", "order_pair_id", ("is_order_sensitive",)


class OrderHead(nn.Module):
    """mean_t f_t + MLP(concat_t f_t / |f_t|): a frame-order-aware video head on frozen frame embeddings [B, T, P]."""

    def __init__(self, num_frames: int, dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(num_frames * dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.mean(1) + self.mlp(F.normalize(frames, dim=-1).flatten(1))


@torch.no_grad()
def encode(clip, tokenizer, transform, sampling, rows, max_text_length: int, batch_size: int = 64) -> dict:
    """Frozen frame embeddings [V, T, P] of the distinct videos of `rows`, text embeddings [N, P] of its captions."""
    from peft_video import clip_ops
    from peft_video.data import VideoTextDataset, first_caption_per_video, unique_videos
    from peft_video.modeling import stock_text_features

    index = unique_videos(rows)
    videos = VideoTextDataset(first_caption_per_video(rows), sampling, transform, train=False, on_error="raise")
    frames = []
    for start in range(0, len(videos), batch_size):
        pixels = torch.stack([videos[i]["pixel_values"] for i in range(start, min(start + batch_size, len(videos)))])
        frames.append(clip_ops.encode_frames(clip, pixels.flatten(0, 1)).unflatten(0, pixels.shape[:2]))
    captions = list(rows["caption"])
    texts = []
    for start in range(0, len(captions), batch_size):
        tokens = tokenizer(
            captions[start : start + batch_size], padding=True, truncation=True, max_length=max_text_length,
            return_tensors="pt",
        )  # fmt: skip
        texts.append(stock_text_features(clip, tokens["input_ids"], tokens["attention_mask"]).pooler_output)
    return {
        "frames": torch.cat(frames),
        "texts": torch.cat(texts),
        "caption_to_video": torch.tensor(index.caption_to_video, dtype=torch.long),
    }


@torch.no_grad()
def evaluate(head: OrderHead, encoded: dict, rows) -> dict:
    """`split_metrics` of the head's video embeddings against the frozen caption embeddings."""
    from peft_video.evaluation import split_metrics

    was_training = head.training
    head.eval()
    embeds = {
        "video_embeds": F.normalize(head(encoded["frames"]), dim=-1),
        "text_embeds": F.normalize(encoded["texts"], dim=-1),
        "caption_to_video": encoded["caption_to_video"],
        "video_valid": torch.ones(len(encoded["frames"]), dtype=torch.bool),
    }
    head.train(was_training)
    return split_metrics(embeds, rows, subset_columns=SUBSET_COLUMNS, twin_column=TWIN_COLUMN)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, required=True, help="an offline world written by write_world")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_frames", type=int, default=12)
    parser.add_argument("--max_text_length", type=int, default=32)
    parser.add_argument("--max_steps", type=int, default=160)
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--weight_decay", type=float, default=0.0)
    parser.add_argument("--warmup_steps", type=float, default=0.1, help="steps, or a ratio of max_steps if < 1")
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--eval_steps", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--metric_for_best_model", default="0.5*twin_accuracy + 0.5*text_to_video/R@1")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    from transformers import get_scheduler

    from peft_video.data import FrameSampling, GroupedBatchSampler
    from peft_video.loading import load_frame_transform, load_split
    from peft_video.modeling import VideoModelOutput, video_text_output
    from peft_video.optimization import count_parameters, parameter_groups
    from peft_video.selection import ModelSelection
    from peft_video.synthetic import TINY_CLIP_PATH, load_tiny_clip

    selection = ModelSelection.parse(args.metric_for_best_model)
    selection.check(subset_columns=SUBSET_COLUMNS, twin_column=TWIN_COLUMN)
    clip, tokenizer = load_tiny_clip(TINY_CLIP_PATH)
    clip.requires_grad_(False).eval()
    transform = load_frame_transform(str(TINY_CLIP_PATH), clip.config.vision_config.image_size)
    sampling = FrameSampling(num_frames=args.num_frames)
    manifest = args.data_dir / "manifest.jsonl"
    rows = {split: load_split(manifest, split, split) for split in ("train", "val", "test")}
    started = time.time()
    encoded = {
        name: encode(clip, tokenizer, transform, sampling, data, args.max_text_length) for name, data in rows.items()
    }
    train = encoded["train"]
    if not torch.equal(train["caption_to_video"], torch.arange(len(train["frames"]))):
        raise ValueError(f"{manifest}: the training split must hold one caption per video")

    head = OrderHead(args.num_frames, train["frames"].shape[-1], args.hidden)
    groups = parameter_groups(
        head, learning_rate=args.learning_rate, other_learning_rate=args.learning_rate, weight_decay=args.weight_decay
    )
    optimizer = torch.optim.AdamW(groups)  # train.py's betas and epsilon: AdamW's defaults
    warmup = int(args.warmup_steps * args.max_steps) if args.warmup_steps < 1 else int(args.warmup_steps)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=warmup, num_training_steps=args.max_steps)
    sampler = GroupedBatchSampler(list(rows["train"][GROUP_COLUMN]), args.per_device_train_batch_size, seed=args.seed)
    logit_scale = clip.logit_scale.exp()

    step, epoch, best = 0, 0, None
    while step < args.max_steps:
        sampler.set_epoch(epoch)
        for batch in sampler:
            batch = torch.as_tensor(batch)
            video = VideoModelOutput(pooler_output=head(train["frames"][batch]))
            text = VideoModelOutput(pooler_output=train["texts"][batch])
            loss = video_text_output(video, text, logit_scale, return_loss=True).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            if step % args.eval_steps == 0 or step == args.max_steps:
                validation = evaluate(head, encoded["val"], rows["val"])
                value = selection.value(validation)
                if best is None or selection.is_better(value, best["value"]):
                    state = {k: v.clone() for k, v in head.state_dict().items()}
                    best = {"value": value, "step": step, "validation": validation, "state": state}
            if step >= args.max_steps:
                break
        epoch += 1
    head.load_state_dict(best["state"])
    test = evaluate(head, encoded["test"], rows["test"])
    metrics = {
        "method": "order_head",
        "parameters": count_parameters(head),
        "train_time_s": round(time.time() - started, 1),
        "steps": step,
        "selection": {
            "metric": args.metric_for_best_model,
            "split": "val",
            "best_step": best["step"],
            "best_value": best["value"],
        },  # fmt: skip
        "validation": best["validation"],
        "test": test,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    print(f"order head, test (step {best['step']}): twin accuracy {test['twin_accuracy']['accuracy']:.1f} %, "
          f"text→video R@1 {test['text_to_video']['R@1']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
