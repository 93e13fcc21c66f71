"""The default offline world: how long it takes to generate, what its splits hold, how many captions each kind has.

    python benchmarks/bench_world.py --out benchmarks/results/offline_world_generation.md

Times `generate_world` (frames in memory) and `write_world` (the same plus H.264 mp4 files and the manifest) for the
default split sizes, on one thread; counts the twin pairs of every temporal kind per split and checks that no test
caption occurs in train or val; and counts the distinct captions of every kind from the grammar's tables.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from peft_video.synthetic import DEFAULT_SPLIT_SIZES, TEMPORAL_KINDS, WorldConfig, generate_world, write_world
from peft_video.synthetic.grammar import COLOURS, COUNT_WORDS, POSITIONS, SHAPES, SIZE_WORDS
from peft_video.synthetic.world import MOTION_PATHS


def caption_space() -> dict[str, int]:
    """Distinct captions of each kind, from the grammar's tables (what each sampler can draw)."""
    objects = len(COLOURS) * len(SHAPES)
    sizes = 1 + len(SIZE_WORDS)  # none, small, big
    positions = len(POSITIONS)
    counts = len([c for c in COUNT_WORDS if c > 1])
    return {
        "order": objects * (objects - 1) * positions * (positions - 1),
        "motion": objects * sizes * len(MOTION_PATHS),
        "colour": len(SHAPES) * sizes * positions * len(COLOURS) * (len(COLOURS) - 1),
        "size": objects * positions * 2,
        "single": objects * sizes * (positions + 1),
        "count": objects * counts * 2,  # no size word, or "small"
        "pair": objects * (objects - 1) * positions * (positions - 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = DEFAULT_SPLIT_SIZES
    config = WorldConfig()
    start = time.perf_counter()
    world = generate_world(sizes["train"], sizes["val"], sizes["test"], config)
    in_memory = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_world(folder, config=config)
        on_disk = time.perf_counter() - start
        megabytes = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6
    seen = {s.caption for s in world["train"] + world["val"]}
    novel = all(s.caption not in seen for s in world["test"])
    rows = []
    for split, samples in world.items():
        pairs = Counter(s.kind for s in samples if s.order_pair_id is not None)
        cells = " | ".join(str(pairs[k] // 2) for k in TEMPORAL_KINDS)
        rows.append(f"| {split} | {len(samples)} | {cells} | {len(samples) - sum(pairs.values())} |")
    space = caption_space()
    lines = [
        "# The default offline world",
        "",
        "Written by `python benchmarks/bench_world.py`; do not edit by hand.",
        "",
        f"`WorldConfig()` (12 frames of {config.image_size} px, seed {config.seed}), split sizes "
        f"{sizes['train']} / {sizes['val']} / {sizes['test']}; one torch thread, {platform.processor() or 'cpu'}, "
        "shared machine.",
        "",
        "| step | seconds |",
        "| --- | ---: |",
        f"| `generate_world` (frames in memory) | {in_memory:.1f} |",
        f"| `write_world` (generation + H.264 mp4 + manifest; {megabytes:.1f} MB) | {on_disk:.1f} |",
        "",
        "Twin pairs per temporal kind, and videos without a twin, per split (test captions novel: "
        f"{'yes' if novel else 'NO'}):",
        "",
        "| split | videos | " + " | ".join(f"{k} pairs" for k in TEMPORAL_KINDS) + " | without twin |",
        "| --- | ---: | " + " | ".join("---:" for _ in TEMPORAL_KINDS) + " | ---: |",
        *rows,
        "",
        "Distinct captions each kind can have (from the grammar's tables):",
        "",
        "| kind | captions |",
        "| --- | ---: |",
        *(f"| {kind} | {count:,} |" for kind, count in space.items()),
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
