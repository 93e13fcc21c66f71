"""The `peft-video` command line: `validate`, `cache`, `preprocess` and `benchmark` for video datasets; `index`,
`search` and `app` to search videos with an adapter.

    peft-video validate data/train.csv --strict
    peft-video cache data/test.csv --adapter-config out/adapter_config.json
    peft-video preprocess data/train.csv --out data/small --fps 6 --short-side 256
    peft-video benchmark msrvtt --split test_1k --annotations msrvtt/anns --videos msrvtt/videos --out test.csv
    peft-video index data/test.csv --adapter outputs/demo_tfvl --out indexes/test
    peft-video search indexes/test "a red circle moves from left to right" -k 10 [--json] [--gallery hits.png]
    peft-video shard data/train.csv --split train --out data/shards/train --format webdataset --max-shard-size 512MB

The only module of the library that parses arguments; everything it does is available as functions in
`peft_video.data`. Keep `build_parser` light (the library's modules are imported by the handlers): the console script,
`peft_video_launcher`, builds it without importing the library to answer `--help` and `--version` at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from peft_video.data.defaults import DEFAULT_NUM_FRAMES, FRAME_SAMPLING_STRATEGIES, SHORT_VIDEO_POLICIES


def _sampling_arguments(parser: argparse.ArgumentParser, num_frames: int) -> None:
    group = parser.add_argument_group("frame sampling (or take it from --adapter-config)")
    group.add_argument("--adapter-config", type=Path, help="adapter_config.json whose sampling fields to use")
    group.add_argument(
        "--num-frames", type=int, default=None, help=f"frames per video (default {num_frames}, the library's default)"
    )
    group.add_argument("--frame-sampling", choices=FRAME_SAMPLING_STRATEGIES, default=None)
    group.add_argument("--sampling-fps", type=float, default=None)
    group.add_argument("--frame-chunk-size", type=int, default=None)
    group.add_argument("--short-video-policy", choices=SHORT_VIDEO_POLICIES, default=None)


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


def _index(args: argparse.Namespace) -> int:
    from peft_video.search import build_index, rebuild_faiss

    if args.rebuild_faiss:
        info = rebuild_faiss(args.out, args.factory, args.search_params)
        print(f"rebuilt {args.out / info['faiss_file']}: FAISS {info['factory']} over {info['num_videos']} videos")
        return 0
    if args.source is None:
        raise ValueError("give the SOURCE to index (a manifest, a folder of videos, shards), or --rebuild-faiss")
    sampling = {
        k: getattr(args, k)
        for k in ("frame_sampling", "sampling_fps", "frame_chunk_size", "short_video_policy")
        if getattr(args, k) is not None
    }
    if sampling and args.adapter is not None:
        raise ValueError(f"{sorted(sampling)} apply to the zero-shot baseline; an adapter brings its own sampling")
    encoder = None
    if sampling:
        from peft_video.search import VideoTextEncoder
        from peft_video.search.index import process_state

        encoder = VideoTextEncoder.load(
            None, args.base_model, num_frames=args.num_frames or 12, dtype=args.dtype, device=process_state().device,
            **sampling,
        )  # fmt: skip
    cache = {"auto": "auto", "none": None}.get(args.cache, args.cache)
    report = build_index(
        args.source, args.out, encoder=encoder, adapter=args.adapter, base_model=args.base_model,
        num_frames=args.num_frames or 12, dtype=args.dtype, factory=args.factory, search_params=args.search_params,
        split=args.split, shard_size=args.shard_size, batch_size=args.batch_size, num_workers=args.num_workers,
        cache=cache, decode_timeout=args.timeout or None, backend=args.backend, progress=not args.no_progress,
        caption_field=args.caption_field, video_column=args.video_column, key_column=args.key_column,
    )  # fmt: skip
    from peft_video.search.index import process_state

    if process_state().is_main_process:
        print(report)
    return 1 if args.strict and report.failed else 0


def _search(args: argparse.Namespace) -> int:
    from peft_video.search import VideoSearchIndex

    index = VideoSearchIndex.open(args.index, search_params=args.search_params)
    if args.video is not None:
        if args.query is not None:
            raise ValueError("give a text QUERY or --video, not both")
        hits, query = index.search_video(args.video, k=args.k), f"video {args.video}"
    elif args.query is None:
        raise ValueError("give a text QUERY (or --video PATH_OR_ID)")
    else:
        hits, query = index.search(args.query, k=args.k), args.query
    truth = {h.video_id for h in hits if args.query and args.query.strip().lower() in [c.lower() for c in h.captions]}
    if args.gallery is not None:
        from peft_video.search.gallery import contact_sheet

        title = f"{args.index} · {index.identity['method']} · top {len(hits)}"
        contact_sheet(query, hits, args.gallery, ground_truth=truth, title=title)
    if args.json:
        print(json.dumps({"query": query, "index": str(args.index), "k": args.k, "hits": [
            {"rank": h.rank, "score": h.score, "video_id": h.video_id, "video": h.video, "duration": h.duration,
             "captions": list(h.captions), "ground_truth": h.video_id in truth} for h in hits
        ]}, indent=1))  # fmt: skip
    else:
        print(_hits_table(query, index, hits, truth))
    if args.gallery is not None:
        print(f"contact sheet written to {args.gallery}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _hits_table(query: str, index: Any, hits: list, truth: set[str]) -> str:
    """A table for people: rank, score, id, duration, a caption when known (* = the query is one of its captions)."""
    identity = index.identity
    model = identity["adapter"] or f"zero-shot {identity['base_model']}"
    lines = [
        f"query: {query}",
        f"index: {index.directory} ({len(index)} videos, {model}, FAISS {index.info['factory']})",
    ]
    id_width = max([len("video_id")] + [len(h.video_id) for h in hits])
    lines.append(f"{'rank':>4}  {'score':>6}  {'video_id':<{id_width}}  {'secs':>5}  caption / path")
    for hit in hits:
        mark = "*" if hit.video_id in truth else " "
        detail = hit.captions[0] if hit.captions else hit.video
        lines.append(
            f"{hit.rank:>4}{mark} {hit.score:>6.3f}  {hit.video_id:<{id_width}}  {hit.duration:>5.1f}  {detail}"
        )
    if truth:
        lines.append("* the query is one of this video's captions (ground truth)")
    return "\n".join(lines)


def _app(args: argparse.Namespace) -> int:
    from peft_video.search.app import launch_app

    launch_app(args.index, host=args.host, port=args.port, k=args.k)
    return 0


def _search_commands(commands) -> None:
    """`index`, `search` and `app` (peft_video.search)."""
    index = commands.add_parser(
        "index",
        help="encode videos with an adapter (or zero-shot) into a searchable index (resumable, incremental; "
        "works under `accelerate launch`)",
    )
    index.add_argument("source", nargs="?", help="manifest (.csv/.tsv/.jsonl), folder of videos, folder of shards "
                       "written by `peft-video shard` (or its URL), or WebDataset .tar / Parquet shards: files, a "
                       "quoted glob or brace range (shard-{00000..00099}.tar), local or fsspec URLs")  # fmt: skip
    index.add_argument("--out", type=Path, required=True, help="index folder (created, or extended when it exists)")
    index.add_argument("--adapter", default=None, help="adapter folder or Hub id (default: zero-shot --base-model)")
    index.add_argument("--base-model", default=None, help="base CLIPModel (default: the adapter config's)")
    index.add_argument("--num-frames", type=int, default=None, help="zero-shot: frames per video (default 12)")
    index.add_argument("--frame-sampling", choices=FRAME_SAMPLING_STRATEGIES, default=None)
    index.add_argument("--sampling-fps", type=float, default=None)
    index.add_argument("--frame-chunk-size", type=int, default=None)
    index.add_argument("--short-video-policy", choices=SHORT_VIDEO_POLICIES, default=None)
    index.add_argument("--split", default=None, help="only rows of this manifest split; for a shards folder with "
                       "one folder per split, that split's folder")  # fmt: skip
    index.add_argument("--caption-field", default=None, help="shards: the WebDataset caption field (auto, txt, "
                       "txt:lines, json:FIELD) or the Parquet caption column (default: shards.json's, else auto / "
                       "captions)")  # fmt: skip
    index.add_argument("--video-column", default=None, help="Parquet shards: the column holding the video bytes "
                       "(default video)")  # fmt: skip
    index.add_argument("--key-column", default=None, help="Parquet shards: the column naming each sample (default "
                       "key)")  # fmt: skip
    index.add_argument("--factory", default="auto", help="FAISS index: auto (exact, IVF above 50k), Flat, or a "
                       "faiss.index_factory string such as IVF4096,Flat or HNSW32,Flat")  # fmt: skip
    index.add_argument("--search-params", default=None, help="FAISS search settings, e.g. nprobe=64 or efSearch=128")
    index.add_argument("--shard-size", type=int, default=1024, help="files: videos per index shard (unit of "
                       "resumption); shards are indexed one index shard per input shard")  # fmt: skip
    index.add_argument("--batch-size", type=int, default=16)
    index.add_argument("--num-workers", type=int, default=0, help="DataLoader workers per process")
    index.add_argument("--cache", default="auto", help="frame cache folder, 'auto' (beside the manifest) or 'none'")
    index.add_argument("--timeout", type=float, default=60.0, help="seconds per video (0: decode in-process)")
    index.add_argument("--backend", default="auto", choices=("auto", "decord", "pyav", "torchcodec"))
    index.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    index.add_argument("--rebuild-faiss", action="store_true", help="rebuild the FAISS file of --out from its "
                       "stored embeddings (with --factory), re-encoding nothing")  # fmt: skip
    index.add_argument("--strict", action="store_true", help="exit 1 when a video was unreadable")
    index.add_argument("--no-progress", action="store_true", help="no progress bar")
    index.set_defaults(run=_index)

    search = commands.add_parser("search", help="search an index by text (or by video with --video)")
    search.add_argument("index", type=Path, help="index folder made by `peft-video index`")
    search.add_argument("query", nargs="?", default=None, help="what to look for, in words")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("--video", default=None, help="find videos like this one: a file or an indexed video_id")
    search.add_argument("--json", action="store_true", help="JSON output for programs")
    search.add_argument("--gallery", type=Path, default=None, help="also write a contact sheet PNG here")
    search.add_argument("--search-params", default=None, help="FAISS search settings for this query")
    search.set_defaults(run=_search)

    app = commands.add_parser("app", help="a web page over an index (Gradio; pip install 'peft-video[app]')")
    app.add_argument("index", type=Path, help="index folder made by `peft-video index`")
    app.add_argument("--host", default="127.0.0.1")
    app.add_argument("--port", type=int, default=7860)
    app.add_argument("-k", type=int, default=8, help="results shown (default 8)")
    app.set_defaults(run=_app)


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
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

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
    _search_commands(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("peft-video")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    """Runs a `peft-video` command line (the console script is `peft_video_launcher.main`); returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError) as err:  # ManifestError is a ValueError
        print(f"peft-video {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as err:  # search commands: a model that cannot be loaded, an unreadable video
        if args.command not in ("index", "search", "app"):
            raise
        print(f"peft-video {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
