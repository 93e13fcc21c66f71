"""The `peft-video` command line: `validate`, `cache`, `preprocess` and `benchmark` for video datasets.

    peft-video validate data/train.csv --strict
    peft-video cache data/test.csv --adapter-config out/adapter_config.json
    peft-video preprocess data/train.csv --out data/small --fps 6 --short-side 256
    peft-video benchmark msrvtt --split test_1k --annotations msrvtt/anns --videos msrvtt/videos --out test.csv

The only module of the library that parses arguments; everything it does is available as functions in
`peft_video.data`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any


def _sampling_arguments(parser: argparse.ArgumentParser, num_frames: int) -> None:
    group = parser.add_argument_group("frame sampling (or take it from --adapter-config)")
    group.add_argument("--adapter-config", type=Path, help="adapter_config.json whose sampling fields to use")
    group.add_argument(
        "--num-frames", type=int, default=None, help=f"frames per video (default {num_frames}, the library's default)"
    )
    group.add_argument("--frame-sampling", choices=("segments", "chunked_segments", "fps"), default=None)
    group.add_argument("--sampling-fps", type=float, default=None)
    group.add_argument("--frame-chunk-size", type=int, default=None)
    group.add_argument("--short-video-policy", choices=("pad", "repeat"), default=None)


def _sampling(args: argparse.Namespace):
    from peft_video.data import FrameSampling

    values: dict[str, Any] = {}
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
        _sampling(args),
        jobs=args.jobs,
        timeout=args.timeout,
        backend=args.backend,
        progress=not args.no_progress,
        strict=args.strict,
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
    sampling = _sampling(args)
    # The summary below names every partly decodable file; the library's per-file log warnings would repeat it.
    logging.getLogger("peft_video.data.cache").setLevel(logging.ERROR)
    cache = build_frame_cache(
        data["video"],
        out,
        sampling,
        short_side=args.short_side,
        jobs=args.jobs,
        timeout=args.timeout,
        backend=args.backend,
        progress=not args.no_progress,
        partial="raise" if args.strict else "keep",
    )
    size = os.path.getsize(Path(out) / "frames.u8")
    summary = cache.summary()
    print(
        f"frame cache at {out}: {summary['ok']} videos cached, {summary['failed']} failed, "
        f"{summary['partial']} partly decodable (kept as shorter videos), {size / 2**20:.1f} MiB, "
        f"sampling {sampling.to_dict()}, "
        f"short side {args.short_side}"
    )
    for warning in cache.partial_videos().values():
        print(f"PARTIAL {warning}")
    for video, entry in cache.entries.items():
        if entry.status != "ok":
            print(f"FAILED {video}: {entry.reason}")
    return 1 if args.strict and summary["failed"] else 0


def _preprocess(args: argparse.Namespace) -> int:
    from peft_video.data import load_manifest
    from peft_video.data.preprocess import RECORD_FILE, preprocess_dataset

    data = load_manifest(args.manifest, split=args.split)
    out_dir: Path = args.out.resolve()
    report = preprocess_dataset(
        data,
        args.manifest,
        out_dir,
        fps=args.fps,
        short_side=args.short_side,
        codec=args.codec,
        crf=args.crf,
        strict=args.strict,
        jobs=args.jobs,
        timeout=args.timeout,
        backend=args.backend,
        progress=not args.no_progress,
    )
    manifest_out = out_dir / args.manifest.name
    print(
        f"re-encoded {len(report.videos)} videos ({len(report.partial)} partly decodable, kept as shorter videos) "
        f"into {out_dir} ({report.parameters}); manifest {manifest_out if report.rows else '(none: no video done)'}; "
        f"record in {out_dir / RECORD_FILE}"
    )
    for warning in report.partial.values():
        print(f"PARTIAL {warning}")
    for video, reason in report.failed.items():
        print(f"FAILED {video}: {reason}")
    return 1 if args.strict and report.failed else 0


def _benchmark(args: argparse.Namespace) -> int:
    from peft_video.data import build_public_dataset, write_manifest

    data, report = build_public_dataset(
        args.name, args.annotations, args.videos, args.split, missing="raise" if args.strict else "drop"
    )
    print(report)
    write_manifest(data, args.out)
    print(f"manifest with {len(data)} rows written to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(prog="peft-video", description="Video data tools for peft_video.")
    commands = parser.add_subparsers(dest="command", required=True)

    from peft_video.data.sampling import DEFAULT_NUM_FRAMES

    validate = commands.add_parser("validate", help="decode every video with a timeout and name unreadable files")
    _common_arguments(validate, timeout=30.0)
    _sampling_arguments(validate, num_frames=DEFAULT_NUM_FRAMES)
    validate.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a video is unreadable or partly decodable, a caption empty, or a video_id names several "
        "files",
    )
    validate.add_argument("--report", type=Path, default=None, help="also write a JSON report here")
    validate.set_defaults(run=_validate)

    cache = commands.add_parser("cache", help="decode once into a memory-mapped uint8 frame store")
    _common_arguments(cache, timeout=60.0)
    _sampling_arguments(cache, num_frames=DEFAULT_NUM_FRAMES)
    cache.add_argument("--out", type=Path, default=None, help="cache directory (default: <manifest>.frames)")
    cache.add_argument("--short-side", type=int, default=224, help="stored square frame side (default 224)")
    cache.add_argument(
        "--strict", action="store_true", help="a partly decodable video is a failure; exit 1 when a video failed"
    )
    cache.set_defaults(run=_cache)

    preprocess = commands.add_parser("preprocess", help="re-encode videos to a frame rate and short side")
    _common_arguments(preprocess, timeout=600.0)
    preprocess.add_argument(
        "--out", type=Path, required=True, help="output folder (mirrors the manifest's layout; one file per source)"
    )
    preprocess.add_argument("--fps", type=float, default=None, help="output frame rate (default: keep)")
    preprocess.add_argument("--short-side", type=int, default=None, help="output short side (default: keep)")
    preprocess.add_argument("--codec", default="libx264")
    preprocess.add_argument("--crf", type=int, default=23, help="x264 quality (lower is better, larger)")
    preprocess.add_argument(
        "--strict",
        action="store_true",
        help="a partly decodable video is a failure; exit 1 when a video could not be re-encoded",
    )
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
