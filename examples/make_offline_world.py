"""Writes the offline world (H.264 mp4 videos + manifest.jsonl) to a folder.

    python examples/make_offline_world.py --out data/offline_world --num_train 2048 --num_val 256 --num_test 512

The manifest is a bring-your-own manifest (`video`, `caption`, `video_id`, `split`, plus `kind`, `order_pair_id`,
`is_order_sensitive`, `num_frames`), so the training and evaluation scripts read it like any real dataset.
An existing world with the same parameters is reused; one with other parameters is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from peft_video.data.defaults import DEFAULT_NUM_FRAMES
from peft_video.synthetic import DEFAULT_SPLIT_SIZES, WorldConfig, read_manifest, write_world


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num_train", type=int, default=DEFAULT_SPLIT_SIZES["train"])
    parser.add_argument("--num_val", type=int, default=DEFAULT_SPLIT_SIZES["val"])
    parser.add_argument("--num_test", type=int, default=DEFAULT_SPLIT_SIZES["test"])
    parser.add_argument("--num_frames", type=int, default=DEFAULT_NUM_FRAMES)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no_pairs_in_train", action="store_true", help="draw train without time-reversed twins (val/test keep them)"
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    config = WorldConfig(
        num_frames=args.num_frames,
        image_size=args.image_size,
        seed=args.seed,
        pairs_in_train=not args.no_pairs_in_train,
    )
    start = time.time()
    manifest = write_world(
        args.out, args.num_train, args.num_val, args.num_test, config=config, fps=args.fps, overwrite=args.overwrite
    )
    rows = read_manifest(manifest)
    counts = Counter((row["split"], row["is_order_sensitive"]) for row in rows)
    for split in ("train", "val", "test"):
        print(
            f"{split:5s}: {counts[(split, True)] + counts[(split, False)]:5d} videos "
            f"({counts[(split, True)]} order-sensitive)"
        )
    print(f"manifest: {manifest} ({time.time() - start:.1f} s)")


if __name__ == "__main__":
    main()
