"""The `peft-video` command line: `validate`, `cache`, `preprocess` and `benchmark` for video datasets.

    peft-video validate data/train.csv --strict
    peft-video cache data/test.csv --adapter-config out/adapter_config.json
    peft-video preprocess data/train.csv --out data/small --fps 6 --short-side 256
    peft-video benchmark msrvtt --split test_1k --annotations msrvtt/anns --videos msrvtt/videos --out test.csv
    peft-video shard data/train.csv --split train --out data/shards/train --format webdataset --max-shard-size 512MB

The only module of the library that parses arguments; everything it does is available as functions in
`peft_video.data`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any


def _sampling_arguments(parser: argparse.ArgumentParser, num_frames: int) -> None:
    group = parser.add_argument_group("frame sampling (or take it from --adapter-config)")
    group.add_argument("--adapter-config", type=Path, help="adapter_config.json whose sampling fields to use")
    group.add_argument("--num-frames", type=int, default=None, help=f"frames per video (default {num_frames})")
    group.add_argument("--frame-sampling", choices=("segments", "chunked_segments", "fps"), default=None)
    group.add_argument("--sampling-fps", type=float, default=None)
    group.add_argument("--frame-chunk-size", type=int, default=None)
    group.add_argument("--short-video-policy", choices=("pad", "repeat"), default=None)


def _sampling(args: argparse.Namespace, num_frames: int):
    from peft_video.data import FrameSampling

    values: dict[str, Any] = {"num_frames": num_frames}
    if args.adapter_config is not None:
        config = json.loads(args.adapter_config.read_text())
        values = {
            k: config[k]
            for k in (
                "num_frames",
                "frame_sampling",
                "sampling_fps",
                "frame_chunk_size",
                "image_size",
                "short_video_policy",
            )
            if config.get(k) is not None
        }
    for key in ("num_frames", "frame_sampling", "sampling_fps", "frame_chunk_size", "short_video_policy"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    return FrameSampling(**values)


def _common_arguments(parser: argparse.ArgumentParser, timeout: float) -> None:
    parser.add_argument("manifest", type=Path, help="CSV/TSV/JSONL manifest (columns video, caption, ...)")
    parser.add_argument("--split", default=None, help="only rows of this split")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="parallel decoder processes")
    parser.add_argument("--timeout", type=float, default=timeout, help="seconds per video before it counts as hung")
    parser.add_argument("--backend", default="auto", choices=("auto", "decord", "pyav", "torchcodec"))
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _validate(args: argparse.Namespace) -> int:
    from peft_video.data import load_manifest
    from peft_video.data.validate import validate_dataset

    data = load_manifest(args.manifest, split=args.split)
    report = validate_dataset(
        data,
        _sampling(args, 8),
        jobs=args.jobs,
        timeout=args.timeout,
        backend=args.backend,
        progress=not args.no_progress,
    )
    print(report.summary())
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report.to_dict(), indent=1))
        print(f"report written to {args.report}")
    if args.strict and not report.ok:
        return 1
    return 0


def _cache(args: argparse.Namespace) -> int:
    from peft_video.data import build_frame_cache, default_cache_dir, load_manifest

    data = load_manifest(args.manifest, split=args.split)
    out = args.out or default_cache_dir(args.manifest)
    sampling = _sampling(args, 12)
    cache = build_frame_cache(
        data["video"],
        out,
        sampling,
        short_side=args.short_side,
        jobs=args.jobs,
        timeout=args.timeout,
        backend=args.backend,
        progress=not args.no_progress,
    )
    size = os.path.getsize(Path(out) / "frames.u8")
    summary = cache.summary()
    print(
        f"frame cache at {out}: {summary['ok']} videos cached, {summary['failed']} failed, "
        f"{size / 2**20:.1f} MiB, sampling {sampling.to_dict()}, short side {args.short_side}"
    )
    for video, entry in cache.entries.items():
        if entry.status != "ok":
            print(f"FAILED {video}: {entry.reason}")
    return 1 if args.strict and summary["failed"] else 0


def _preprocess(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from peft_video.data import load_manifest, write_manifest
    from peft_video.data.errors import VideoDecodeError
    from peft_video.data.isolation import IsolatedCall, run_many
    from peft_video.data.preprocess import reencode_video

    data = load_manifest(args.manifest, split=args.split)
    base = args.manifest.parent.resolve()
    out_dir: Path = args.out.resolve()
    videos = list(dict.fromkeys(data["video"]))

    def destination(video: str) -> str:
        try:
            relative = Path(video).resolve().relative_to(base)
        except ValueError:  # outside the manifest's folder: keep the name, prefixed to stay unique
            digest = hashlib.sha1(video.encode()).hexdigest()[:8]
            relative = Path("external") / f"{digest}_{Path(video).name}"
        return str((out_dir / relative).with_suffix(".mp4"))

    parameters = {"fps": args.fps, "short_side": args.short_side, "codec": args.codec, "crf": args.crf}
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}

    def work(decoder, video):
        call = IsolatedCall(
            video, reencode_video, (video, destination(video), args.fps, args.short_side, args.codec, args.crf)
        )
        return decoder.call(call)

    with tqdm(total=len(videos), desc="re-encoding", unit="video", disable=args.no_progress) as bar:
        for index, result in run_many(videos, work, jobs=args.jobs, timeout=args.timeout, backend=args.backend):
            if isinstance(result, VideoDecodeError):
                failures[videos[index]] = result.reason
            else:
                results[videos[index]] = result
            bar.update(1)
    rows = []
    for row in data:
        if row["video"] in results:
            rows.append({**row, "video": results[row["video"]]["output"]})
    manifest_out = out_dir / args.manifest.name
    if rows:
        write_manifest(rows, manifest_out)
    record = {
        "source_manifest": str(args.manifest.resolve()),
        "manifest": str(manifest_out),
        "parameters": parameters,
        "videos": list(results.values()),
        "failed": failures,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "preprocess.json").write_text(json.dumps(record, indent=1))
    print(
        f"re-encoded {len(results)} videos into {out_dir} ({parameters}); manifest {manifest_out}; "
        f"parameters recorded in {out_dir / 'preprocess.json'}"
    )
    for video, reason in failures.items():
        print(f"FAILED {video}: {reason}")
    return 1 if args.strict and failures else 0


def _benchmark(args: argparse.Namespace) -> int:
    from peft_video.data import build_public_dataset, write_manifest

    data, report = build_public_dataset(
        args.name, args.annotations, args.videos, args.split, missing="raise" if args.strict else "drop"
    )
    print(report)
    write_manifest(data, args.out)
    print(f"manifest with {len(data)} rows written to {args.out}")
    return 0


def _shard(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from peft_video.data import load_manifest
    from peft_video.data.shard_writer import write_shards

    data = load_manifest(args.manifest, split=args.split)
    preprocess = None
    if args.fps is not None or args.short_side is not None:
        preprocess = {"fps": args.fps, "short_side": args.short_side, "codec": args.codec, "crf": args.crf}
    splits = [args.split] if args.split is not None else sorted(set(data["split"]))
    failed = 0
    for split in splits:
        rows = data
        if args.split is None:  # one folder per split
            rows = data.select([i for i, value in enumerate(data["split"]) if value == split])
        out = args.out if args.split is not None else args.out / split
        total = len(set(rows["video_id"]))
        with tqdm(total=total, desc=f"sharding {split}", unit="video", disable=args.no_progress) as bar:
            report = write_shards(
                rows,
                out,
                format=args.format,
                max_shard_size=args.max_shard_size,
                max_shard_samples=args.max_shard_samples,
                shuffle_seed=args.shuffle_seed,
                preprocess=preprocess,
                jobs=args.jobs,
                timeout=args.timeout,
                source=str(args.manifest.resolve()),
                progress=lambda done, bar=bar: bar.update(done - bar.n),
            )
        print(report.summary())
        failed += len(report.failed)
    return 1 if args.strict and failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(prog="peft-video", description="Video data tools for peft_video.")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="decode every video with a timeout and name unreadable files")
    _common_arguments(validate, timeout=30.0)
    _sampling_arguments(validate, num_frames=8)
    validate.add_argument("--strict", action="store_true", help="exit 1 when a video is unreadable or a caption empty")
    validate.add_argument("--report", type=Path, default=None, help="also write a JSON report here")
    validate.set_defaults(run=_validate)

    cache = commands.add_parser("cache", help="decode once into a memory-mapped uint8 frame store")
    _common_arguments(cache, timeout=60.0)
    _sampling_arguments(cache, num_frames=12)
    cache.add_argument("--out", type=Path, default=None, help="cache directory (default: <manifest>.frames)")
    cache.add_argument("--short-side", type=int, default=224, help="stored square frame side (default 224)")
    cache.add_argument("--strict", action="store_true", help="exit 1 when a video could not be cached")
    cache.set_defaults(run=_cache)

    preprocess = commands.add_parser("preprocess", help="re-encode videos to a frame rate and short side")
    _common_arguments(preprocess, timeout=600.0)
    preprocess.add_argument("--out", type=Path, required=True, help="output folder (mirrors the manifest's layout)")
    preprocess.add_argument("--fps", type=float, default=None, help="output frame rate (default: keep)")
    preprocess.add_argument("--short-side", type=int, default=None, help="output short side (default: keep)")
    preprocess.add_argument("--codec", default="libx264")
    preprocess.add_argument("--crf", type=int, default=23, help="x264 quality (lower is better, larger)")
    preprocess.add_argument("--strict", action="store_true", help="exit 1 when a video could not be re-encoded")
    preprocess.set_defaults(run=_preprocess)

    from peft_video.data.public_datasets import PUBLIC_DATASETS

    benchmark = commands.add_parser(
        "benchmark",
        help="write a manifest for a standard benchmark from its official annotation files and a local video folder",
    )
    benchmark.add_argument("name", choices=sorted(PUBLIC_DATASETS))
    benchmark.add_argument("--split", required=True, help="e.g. msrvtt: train_9k, test_1k; didemo: test")
    benchmark.add_argument("--annotations", type=Path, required=True, help="folder with the official annotation files")
    benchmark.add_argument("--videos", type=Path, required=True, help="folder with the videos (searched recursively)")
    benchmark.add_argument("--out", type=Path, required=True, help="manifest to write (.csv or .jsonl)")
    benchmark.add_argument("--strict", action="store_true", help="fail when an annotated video is missing")
    benchmark.set_defaults(run=_benchmark)

    shard = commands.add_parser(
        "shard",
        help="write a manifest's videos as WebDataset or Parquet shards (one sample per video, all its captions)",
    )
    _common_arguments(shard, timeout=600.0)
    shard.add_argument(
        "--out", type=Path, required=True, help="output folder (with --split: the shards; else one folder per split)"
    )
    shard.add_argument("--format", choices=("webdataset", "parquet"), default="webdataset")
    shard.add_argument("--max-shard-size", default="512MB", help="bytes per shard, e.g. 512MB, 1GiB (default: 512MB)")
    shard.add_argument("--max-shard-samples", type=int, default=None, help="videos per shard at most")
    shard.add_argument(
        "--shuffle-seed", type=int, default=None, help="permute the videos before writing (recommended for training)"
    )
    shard.add_argument("--fps", type=float, default=None, help="re-encode to this frame rate (as `preprocess`)")
    shard.add_argument("--short-side", type=int, default=None, help="re-encode to this short side (as `preprocess`)")
    shard.add_argument("--codec", default="libx264", help="codec when re-encoding")
    shard.add_argument("--crf", type=int, default=23, help="x264 quality when re-encoding")
    shard.add_argument("--strict", action="store_true", help="exit 1 when a video could not be written")
    shard.set_defaults(run=_shard)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `peft-video` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError) as err:  # ManifestError is a ValueError
        print(f"peft-video {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
