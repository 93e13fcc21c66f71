"""How often search puts a caption's own video first: every test caption of a training config's data, searched in an
index of the test videos built with the trained adapter, and the same with the zero-shot baseline of its base model.

    python benchmarks/search_top1.py --config examples/configs/demo_tfvl.yaml --out benchmarks/results/search_top1.md

Paths come from the config (`output_dir`: the adapter; `data_dir` or `manifest`: the data; `test_split`, default
"test"). The adapter's index is `<output_dir>/test_index` (the README's `peft-video index` step writes it; built here
when missing, and only videos it lacks are encoded); the zero-shot index is `<output_dir>/test_index_zero_shot`, with
the adapter's frame count and sampling. Each caption is a query through `VideoSearchIndex.search` (FAISS), as
`peft-video search` runs it. "Own video first": the first hit is the video the caption belongs to and scores strictly
above the second (a tie counts against it, as peft_video's retrieval metrics count ties).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

INDEX_NAME, ZERO_SHOT_INDEX_NAME = "test_index", "test_index_zero_shot"


def read_paths(config_file: Path) -> dict[str, Any]:
    """The manifest, test split and adapter folder a training config names (the offline world written if missing)."""
    from peft_video.loading import DataSourceArguments

    config = yaml.safe_load(config_file.read_text()) or {}
    fields = {f.name for f in dataclasses.fields(DataSourceArguments)}
    manifest, dataset_name = DataSourceArguments(**{k: v for k, v in config.items() if k in fields}).prepare()
    if "output_dir" not in config:
        raise ValueError(f"{config_file} has no output_dir: where is the trained adapter?")
    return {
        "manifest": manifest,
        "dataset": dataset_name,
        "split": config.get("test_split", "test"),
        "adapter": Path(config["output_dir"]),
    }


def own_video_first(index, k: int = 5, chunk: int = 256) -> dict[str, Any]:
    """Search every caption stored in `index`; the fraction whose own video comes first (strictly) and within k."""
    metadata = index.metadata
    queries = [
        (c, video_id) for video_id, captions in zip(metadata["video_id"], metadata["captions"]) for c in captions
    ]
    if not queries:
        raise ValueError(f"index {index.directory} holds no captions to search with")
    first = within = 0
    for start in range(0, len(queries), chunk):
        part = queries[start : start + chunk]
        for (_, own), hits in zip(part, index.search([caption for caption, _ in part], k=k)):
            ids = [hit.video_id for hit in hits]
            first += ids[0] == own and (len(hits) == 1 or hits[0].score > hits[1].score)
            within += own in ids
    return {
        "captions": len(queries),
        "videos": len(index),
        "first": first / len(queries),
        "within": within / len(queries),
    }


def indexes(paths: dict[str, Any], progress: bool = False) -> dict[str, Path]:
    """Build (or complete) the adapter's and the zero-shot baseline's indexes of the test videos."""
    from peft_video.search import VideoSearchIndex, VideoTextEncoder, build_index

    adapter_index = paths["adapter"] / INDEX_NAME
    options = {"split": paths["split"], "decode_timeout": None, "progress": progress}
    build_index(paths["manifest"], adapter_index, adapter=paths["adapter"], **options)
    identity = VideoSearchIndex.open(adapter_index).identity
    sampling = {k: v for k, v in identity["sampling"].items() if k not in ("image_size", "num_frames")}
    zero_shot = VideoTextEncoder.load(
        None, identity["base_model"], num_frames=identity["sampling"]["num_frames"], **sampling
    )
    zero_shot_index = paths["adapter"] / ZERO_SHOT_INDEX_NAME
    build_index(paths["manifest"], zero_shot_index, encoder=zero_shot, **options)
    return {identity["method"]: adapter_index, "zero_shot": zero_shot_index}


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="the training config (examples/configs/*.yaml)")
    parser.add_argument("--out", type=Path, default=None, help="markdown table to write")
    parser.add_argument("-k", type=int, default=5, help="also report 'within the top k' (default 5)")
    args = parser.parse_args(argv)
    command = "python benchmarks/search_top1.py " + " ".join(argv if argv is not None else sys.argv[1:])
    from peft_video.search import VideoSearchIndex

    paths = read_paths(args.config)
    results = {name: own_video_first(VideoSearchIndex.open(path), k=args.k) for name, path in indexes(paths).items()}
    lines = [
        "# Search: how often a caption's own video comes first",
        "",
        f"Command: `{command}` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC).",
        "",
        f"Every caption of split `{paths['split']}` of {paths['dataset']} (`{paths['manifest']}`) searched in an "
        "index of that split's videos (`peft_video.search`, FAISS, as `peft-video search` runs it), with the adapter "
        f"in `{paths['adapter']}` and with the zero-shot baseline of its base model (mean pooling over the same "
        "frames). A tie at the top counts against the caption.",
        "",
        f"| model | videos | captions | own video first | own video in the top {args.k} |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, result in results.items():
        lines.append(
            f"| {name} | {result['videos']} | {result['captions']} | {100 * result['first']:.1f} % | "
            f"{100 * result['within']:.1f} % |"
        )
    lines += ["", f"Machine: {platform.platform()}, {os.cpu_count()} CPUs; Python {platform.python_version()}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return results


if __name__ == "__main__":
    main()
