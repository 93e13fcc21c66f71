"""Is the direction of time in the frozen features? Caption-conditioned probes of the offline world's twins.

    python benchmarks/twin_probes.py --out benchmarks/results/twin_probes.md

For every twin pair (a video, its time-reversed twin, and their two captions) a probe scores a caption c against a
video v as `e_c · K x_v`, with `e_c` the frozen tiny CLIP's caption embedding and `x_v` a function of the frozen
frame embeddings `f_1 … f_T` (unit norm). It is trained on the training split's twins only (each caption must score
its own video above the twin), full batch with AdamW, and scored on the test split's twins per kind:

- `last − first`: `x_v = f_T − f_1`, K is P × P: a decision linear in the frames, from the two ends only;
- `centred sequence`: `x_v = concat_t (f_t − mean_t f_t)`, K is P × TP: linear in the frames, every frame;
- `MLP`: `x_v = MLP(concat_t f_t)` (one hidden layer of 512), K the identity: not linear in the frames.

The world is generated in memory (the library's default sizes and seed; frames as drawn, before any video codec).
What a probe decides here, a video model with the same frozen encoders can learn to decide: these are not ceilings
of training with the contrastive loss (the comparison's order-aware head row is that), they say where the
information is.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

PROBES = ("last − first", "centred sequence", "MLP")


@torch.no_grad()
def frozen_embeddings(samples, clip, tokenizer, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Unit-norm frozen frame embeddings [N, T, P] and caption embeddings [N, P] of a split."""
    import numpy as np

    from peft_video import clip_ops
    from peft_video.modeling import stock_text_features
    from peft_video.synthetic.tiny_clip import frames_to_pixel_values

    frames, texts = [], []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        pixels = frames_to_pixel_values(np.stack([s.frames for s in chunk]))
        frames.append(clip_ops.encode_frames(clip, pixels.flatten(0, 1)).unflatten(0, pixels.shape[:2]))
        tokens = tokenizer([s.caption for s in chunk], padding=True, return_tensors="pt")
        texts.append(stock_text_features(clip, tokens["input_ids"], tokens["attention_mask"]).pooler_output)
    return {"frames": F.normalize(torch.cat(frames), dim=-1), "texts": F.normalize(torch.cat(texts), dim=-1)}


def twin_pairs(samples) -> tuple[torch.Tensor, list[str]]:
    """[pairs, 2] indices of the two videos of every twin pair, and each pair's kind."""
    by_pair: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        if sample.order_pair_id is not None:
            by_pair.setdefault(sample.order_pair_id, []).append(i)
    pairs = [members for members in by_pair.values() if len(members) == 2]
    return torch.tensor(pairs), [samples[a].kind for a, _ in pairs]


class Probe(torch.nn.Module):
    def __init__(self, probe: str, num_frames: int, dim: int) -> None:
        super().__init__()
        self.probe = probe
        if probe == "MLP":
            self.mlp = torch.nn.Sequential(
                torch.nn.Linear(num_frames * dim, 512), torch.nn.GELU(), torch.nn.Linear(512, dim)
            )
        else:
            width = dim if probe == "last − first" else num_frames * dim
            self.K = torch.nn.Parameter(torch.zeros(dim, width))

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        if self.probe == "last − first":
            return frames[:, -1] - frames[:, 0]
        if self.probe == "centred sequence":
            return (frames - frames.mean(1, keepdim=True)).flatten(1)
        return self.mlp(frames.flatten(1))

    def margins(self, embeddings: dict[str, torch.Tensor], pairs: torch.Tensor) -> torch.Tensor:
        """[pairs, 2]: how much each caption of a pair scores its own video above the twin."""
        x = self.features(embeddings["frames"])
        texts = embeddings["texts"]
        if self.probe != "MLP":
            texts = texts @ self.K
        difference = x[pairs[:, 0]] - x[pairs[:, 1]]
        own_first = (texts[pairs[:, 0]] * difference).sum(-1)
        own_second = -(texts[pairs[:, 1]] * difference).sum(-1)
        return torch.stack([own_first, own_second], 1)


def train_probe(probe: str, train: dict, pairs: torch.Tensor, steps: int, seed: int) -> Probe:
    torch.manual_seed(seed)
    model = Probe(probe, train["frames"].shape[1], train["frames"].shape[2])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    for _ in range(steps):
        loss = F.softplus(-10.0 * model.margins(train, pairs)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400, help="full-batch optimizer steps per probe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world", type=int, nargs=3, default=None, help="train/val/test videos (default: library's)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from peft_video.synthetic import DEFAULT_SPLIT_SIZES, WorldConfig, generate_world, load_tiny_clip

    sizes = args.world or [DEFAULT_SPLIT_SIZES[s] for s in ("train", "val", "test")]
    started = time.perf_counter()
    world = generate_world(*sizes, WorldConfig(seed=0))
    clip, tokenizer = load_tiny_clip()
    clip.eval()
    embeddings = {split: frozen_embeddings(world[split], clip, tokenizer) for split in ("train", "test")}
    train_pairs, _ = twin_pairs(world["train"])
    test_pairs, test_kinds = twin_pairs(world["test"])
    kinds = sorted(set(test_kinds))
    counts = {kind: 2 * test_kinds.count(kind) for kind in kinds}
    lines = [
        "# Twin probes: where the direction of time is in the frozen features",
        "",
        f"Command: `python benchmarks/twin_probes.py --steps {args.steps} --seed {args.seed}`",
        "",
        f"The offline world in memory ({sizes[0]}/{sizes[1]}/{sizes[2]} videos, seed 0), the frozen tiny CLIP; each "
        "probe trained on the training twins only and scored on the test twins: how often a caption scores its own "
        "video above its time-reversed twin (%), per kind, n = captions scored. See the script's docstring.",
        "",
        "| probe | " + " | ".join(f"{kind} (n={counts[kind]})" for kind in kinds) + " | train twins |",
        "|---|" + "---:|" * (len(kinds) + 1),
    ]
    for probe in PROBES:
        model = train_probe(probe, embeddings["train"], train_pairs, args.steps, args.seed)
        with torch.no_grad():
            correct = (model.margins(embeddings["test"], test_pairs) > 0).float().mean(1)
            train_correct = (model.margins(embeddings["train"], train_pairs) > 0).float().mean()
        cells = [f"{100 * correct[torch.tensor([k == kind for k in test_kinds])].mean().item():.1f}" for kind in kinds]
        lines.append(f"| {probe} | " + " | ".join(cells) + f" | {100 * train_correct.item():.1f} |")
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
