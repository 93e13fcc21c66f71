"""Why DGL's reference readout starts so badly on the tiny CLIP: untrained models at step 0, one per readout.

    python benchmarks/dgl_readout_probe.py --out benchmarks/results/dgl_readout_probe.md

Three untrained models on the committed tiny CLIP, built as `examples/train.py` builds them (`set_seed(seed)`, then
`load_base_model`, `build_method_config` and `build_model`, i.e. `get_peft_model` for an adapter):

- DGL with `visual_output="global_prompt0"` (the reference's default readout: the first global prompt);
- DGL with `visual_output="mean_frame_cls"` (the mean of the frames' CLS tokens, the readout of
  `examples/configs/offline_world_dgl.yaml`);
- stock mean pooling (`zero_shot`: the frozen CLIP, frame embeddings averaged).

DGL takes the fields of `examples/configs/offline_world_dgl.yaml` (transformer latent space, 12 frames, 32 text
tokens, every other field at its default), only `visual_output` differs. For each model:

- the mean cosine between the video embeddings of every two different videos of one training batch: the first batch
  that `GroupedBatchSampler` deals with the training recipe's grouping (`group_by_column: order_pair_id`, so twins
  are in the same batch), its seed the run's data seed (= `--seed`);
- the contrastive loss of that batch at step 0 (`peft_video.modeling.video_text_output`): text→video cross-entropy,
  video→text cross-entropy and their mean (the loss `train.py`'s training log reports); chance is ln(batch size);
- text→video R@1 (%) of the first `--num_val` validation videos, each against the others, at initialisation (ties
  counted against the ground truth, as the evaluation does).

The world is generated in memory (the library's default sizes and seed 0; frames as drawn, before any video codec,
so they are not exactly the decoded mp4 frames a training run reads).
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# (row label, method, DGL fields beyond offline_world_dgl.yaml's num_frames and max_text_length)
READOUTS = (
    ("DGL, `global_prompt0` (reference default)", "dgl", {"visual_output": "global_prompt0"}),
    ("DGL, `mean_frame_cls`", "dgl", {"visual_output": "mean_frame_cls"}),
    ("stock mean pooling (zero-shot CLIP)", "zero_shot", None),
)
NUM_FRAMES, MAX_TEXT_LENGTH = 12, 32  # offline_world_dgl.yaml


def mean_pairwise_cosine(embeddings: torch.Tensor) -> float:
    """Mean cosine over every pair of two different rows of `embeddings` [N, P] (N >= 2)."""
    unit = F.normalize(embeddings.float(), dim=-1)
    cosines = unit @ unit.t()
    n = unit.shape[0]
    return ((cosines.sum() - cosines.diagonal().sum()) / (n * (n - 1))).item()


def directional_losses(logits_per_text: torch.Tensor) -> dict[str, float]:
    """Cross-entropy of the captions over the videos (`text→video`), of the videos over the captions
    (`video→text`), and their mean (peft_video's symmetric contrastive loss) for a square [N, N] logit matrix whose
    diagonal holds the pairs."""
    targets = torch.arange(logits_per_text.shape[0])
    t2v = F.cross_entropy(logits_per_text, targets).item()
    v2t = F.cross_entropy(logits_per_text.t(), targets).item()
    return {"text→video": t2v, "video→text": v2t, "mean": (t2v + v2t) / 2}


def model_inputs(samples, collator) -> dict[str, torch.Tensor]:
    """A batch of in-memory world samples as the training collator's model inputs (all frames real)."""
    import numpy as np

    from peft_video.synthetic.tiny_clip import frames_to_pixel_values

    pixels = frames_to_pixel_values(np.stack([s.frames for s in samples]))
    video_mask = torch.ones(pixels.shape[:2], dtype=torch.bool)
    return {**collator.tokenize([s.caption for s in samples]), "pixel_values": pixels, "video_mask": video_mask}


def build(method: str, fields: dict | None, seed: int):
    """An untrained model as `examples/train.py` builds it: seed, base model, method config, model."""
    from accelerate.utils import set_seed

    from peft_video.loading import build_method_config, build_model, load_base_model

    set_seed(seed)
    clip, _ = load_base_model(None)
    config = None
    if fields is not None:
        config = build_method_config(method, {**fields, "num_frames": NUM_FRAMES, "max_text_length": MAX_TEXT_LENGTH})
    return build_model(method, clip, config, num_frames=NUM_FRAMES)


@torch.no_grad()
def probe(model, batch: dict, val_batches: list[dict]) -> dict[str, float]:
    """Pairwise cosine and step-0 losses on the training `batch`, text→video R@1 on the validation batches."""
    from peft_video.metrics import compute_retrieval_metrics

    model.train()  # the mode of train.py's first step (the tiny CLIP has no dropout)
    output = model(**batch, return_loss=True)
    losses = directional_losses(output.logits_per_text)
    if not math.isclose(losses["mean"], output.loss.item(), rel_tol=1e-4):
        raise RuntimeError(f"the mean of both directions {losses['mean']} is not the model's loss {output.loss}")
    model.eval()
    texts, videos = [], []
    for inputs in val_batches:
        out = model(**inputs)
        texts.append(out.text_embeds)
        videos.append(out.video_embeds)
    r1 = compute_retrieval_metrics(torch.cat(texts) @ torch.cat(videos).t(), ks=(1,))["text_to_video"]["R@1"]
    return {"cosine": mean_pairwise_cosine(output.video_embeds), **losses, "R@1": r1}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="adapter init (set_seed) and data order seed")
    parser.add_argument("--batch_size", type=int, default=32, help="videos of the training batch")
    parser.add_argument("--num_val", type=int, default=128, help="first validation videos ranked for R@1")
    parser.add_argument("--world", type=int, nargs=2, default=None, help="train/val videos (default: library's)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from peft_video.data import GroupedBatchSampler, VideoTextCollator
    from peft_video.synthetic import DEFAULT_SPLIT_SIZES, TINY_CLIP_PATH, WorldConfig, generate_world
    from peft_video.synthetic.tiny_clip import load_tiny_clip

    sizes = args.world or [DEFAULT_SPLIT_SIZES[s] for s in ("train", "val")]
    started = time.perf_counter()
    world = generate_world(sizes[0], sizes[1], 0, WorldConfig(seed=0))
    if args.num_val > len(world["val"]):
        raise ValueError(f"--num_val {args.num_val} > {len(world['val'])} validation videos")
    _, tokenizer = load_tiny_clip(TINY_CLIP_PATH)
    collator = VideoTextCollator(tokenizer, max_text_length=MAX_TEXT_LENGTH)
    sampler = GroupedBatchSampler([s.order_pair_id for s in world["train"]], args.batch_size, seed=args.seed)
    rows = next(iter(sampler))
    batch = model_inputs([world["train"][i] for i in rows], collator)
    twins = len(rows) - len({world["train"][i].order_pair_id or i for i in rows})
    val = world["val"][: args.num_val]
    val_batches = [model_inputs(val[i : i + 64], collator) for i in range(0, len(val), 64)]
    chance = math.log(args.batch_size)
    lines = [
        "# DGL readouts at initialisation on the tiny CLIP",
        "",
        f"Command: `python benchmarks/dgl_readout_probe.py --seed {args.seed} --batch_size {args.batch_size} "
        f"--num_val {args.num_val}" + (f" --world {sizes[0]} {sizes[1]}" if args.world else "") + "`",
        "",
        f"Untrained models (seed {args.seed}, built as `examples/train.py` builds them; DGL with the fields of "
        "`examples/configs/offline_world_dgl.yaml`) on the committed tiny CLIP and the offline world in memory "
        f"({sizes[0]}/{sizes[1]} train/val videos, seed 0, frames before any codec). Training batch: the first batch "
        f"of {args.batch_size} videos that `GroupedBatchSampler` (`order_pair_id`, seed {args.seed}) deals "
        f"({twins} twin pairs together). Cosine: mean over every two different videos of that batch. Loss: its "
        f"step-0 contrastive loss per direction and their mean (what the training log reports); chance is "
        f"ln {args.batch_size} = {chance:.2f}. R@1: text→video on the first {args.num_val} validation videos (%). "
        "See the script's docstring.",
        "",
        "| readout | pairwise cosine | loss text→video | loss video→text | loss (mean, logged) | text→video R@1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, method, fields in READOUTS:
        result = probe(build(method, fields, args.seed), batch, val_batches)
        lines.append(
            f"| {label} | {result['cosine']:.3f} | {result['text→video']:.2f} | {result['video→text']:.2f} | "
            f"{result['mean']:.2f} | {result['R@1']:.1f} |"
        )
    lines += [
        "",
        f"{time.perf_counter() - started:.0f} s on {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
        f"{platform.machine()}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
