"""Data-loading throughput: videos per second for decode + sample + CLIP transform, per backend and worker count.

    python benchmarks/bench_data.py --out benchmarks/results/data_throughput.md

Generates 10-second 320x240 30-fps H.264 clips (textured, moving: a realistic decoding load), then for each backend
(decord, PyAV, the frame cache) and each DataLoader worker count times full passes over the clips through
`VideoTextDataset` (12 frames, segment sampling, evaluation positions, 224-pixel CLIP preprocessing) and
`VideoTextCollator`. Workers are persistent; the first pass warms them up and is not timed. "decord, isolated" is the
library default (decoding in a helper process with a timeout), the others decode in the worker itself. The
"in-process, 1 thread" column (workers=0) is the pipeline's own CPU cost, without the DataLoader's inter-process
transfer of float batches, which caps the cache's rate once decoding is gone. "cache, uint8 batches" uses
`normalize=False` (uint8 through the DataLoader, a quarter of the bytes) and normalises each batch in the main loop
(timed), as a training script would do on the GPU.
Targets (issue 5): decord >= PyAV; cache >= 10x decord.

Shard rows (issue 15): the same clips written by `write_shards` as 4 WebDataset tar shards and as 4 Parquet files with
the bytes embedded, read by `StreamingVideoTextDataset` (evaluation order, no shuffling) with decord in the isolated
helper, the bytes reaching it through the pipe: the same workload as "decord, isolated (default)" read from files.
Also measured: reading the shards without decoding (samples/s), and the round trip of bytes to the isolated helper
through its pipe and through a temporary file (what `PIPE_BYTES_LIMIT` in `peft_video/data/isolation.py` chooses by).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from peft_video.data import FrameSampling, VideoTextCollator, VideoTextDataset, build_frame_cache, rows_to_dataset
from peft_video.testing import write_video


def make_clips(directory: Path, count: int, seconds: int, fps: int, width: int, height: int) -> list[str]:
    paths = []
    for i in range(count):
        path = directory / f"clip{i:03d}.mp4"
        if not path.exists():
            write_video(path, num_frames=seconds * fps, width=width, height=height, fps=fps, pattern="moving")
        paths.append(str(path))
    return paths


def time_loader(dataset, workers: int, batch_size: int, passes: int) -> float:
    """Videos per second over `passes` timed passes (after one untimed warm-up pass). `workers=0` runs in the main
    process with one torch thread: the CPU cost of the pipeline itself, without DataLoader transfer costs."""
    threads = torch.get_num_threads()
    if workers == 0:
        torch.set_num_threads(1)  # what DataLoader workers use; also avoids OpenMP spinning on a busy machine
    try:
        return _time_loader(dataset, workers, batch_size, passes)
    finally:
        torch.set_num_threads(threads)


def _time_loader(dataset, workers: int, batch_size: int, passes: int) -> float:
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        collate_fn=VideoTextCollator(),
    )
    for batch in loader:  # warm-up: worker start, file system cache, lazy imports
        assert batch["batch_size"] > 0
    start = time.perf_counter()
    seen = 0
    for _ in range(passes):
        for batch in loader:
            if batch["errors"]:
                raise RuntimeError(f"benchmark clip failed: {batch['errors']}")
            if batch["pixel_values"].dtype == torch.uint8:  # normalize=False: normalising is part of the cost
                dataset.transform.normalize_batch(batch["pixel_values"], batch["video_mask"])
            seen += batch["batch_size"]
    return seen / (time.perf_counter() - start)


FILES_ROW = "decord, isolated (default)"
SHARD_ROWS = (("WebDataset", "WebDataset shards (decord, isolated)"), ("Parquet", "Parquet bytes (decord, isolated)"))


def shard_datasets(data, directory: Path, sampling) -> list[tuple[str, object]]:
    """The clips as WebDataset and Parquet shards (4 of each), each wrapped in a `StreamingVideoTextDataset`."""
    from peft_video.data.shard_writer import write_shards
    from peft_video.data.shards import open_shards
    from peft_video.data.streaming import StreamingVideoTextDataset

    datasets = []
    for (_, name), format in zip(SHARD_ROWS, ("webdataset", "parquet")):
        out = directory / f"shards-{format}"
        write_shards(data, out, format=format, max_shard_samples=max(1, len(data) // 4))
        stream = StreamingVideoTextDataset(open_shards(out), sampling, backend="decord", decode_timeout=60.0)
        datasets.append((name, stream))
    return datasets


def raw_read_rates(directory: Path, passes: int) -> dict[str, float]:
    """Samples per second of reading each shard folder of `shard_datasets` without decoding (after one warm pass)."""
    from peft_video.data.shards import open_shards

    rates = {}
    for format in ("webdataset", "parquet"):
        samples = open_shards(directory / f"shards-{format}")
        sum(1 for _ in samples)
        start = time.perf_counter()
        count = sum(1 for _ in range(passes) for _ in samples)
        rates[format] = count / (time.perf_counter() - start)
    return rates


def _length(data) -> int:
    return len(data)


def _file_length(path: str) -> int:
    return os.path.getsize(path)


def transfer_costs(sizes_mib=(1, 10, 100), repeats: int = 3) -> list[tuple[int, float, float]]:
    """(MiB, pipe ms, temporary file ms): round trips of bytes to an isolated helper that only measures them."""
    from peft_video.data.isolation import IsolatedCall, IsolatedDecoder

    decoder = IsolatedDecoder(timeout=120)
    rows = []
    for mib in sizes_mib:
        data = os.urandom(mib * 2**20)
        decoder.call(IsolatedCall("bench", _length, (data,)))  # start the helper
        start = time.perf_counter()
        for _ in range(repeats):
            decoder.call(IsolatedCall("bench", _length, (data,)))
        pipe = (time.perf_counter() - start) / repeats * 1000
        start = time.perf_counter()
        for _ in range(repeats):
            with tempfile.NamedTemporaryFile(prefix="bench-") as handle:
                handle.write(data)
                handle.flush()
                decoder.call(IsolatedCall("bench", _file_length, (handle.name,)))
        rows.append((mib, pipe, (time.perf_counter() - start) / repeats * 1000))
    decoder.close()
    return rows


def _column(workers: int) -> str:
    if workers == 0:
        return "in-process, 1 thread (videos/s)"
    return f"{workers} worker{'s' if workers > 1 else ''} (videos/s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    parser.add_argument("--videos", type=int, default=16, help="number of clips")
    parser.add_argument("--passes", type=int, default=2, help="timed passes per configuration")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="DataLoader worker counts; 0 = in the main process with one torch thread",
    )
    parser.add_argument("--num-frames", type=int, default=12)
    parser.add_argument("--clip-dir", type=Path, default=None, help="reuse/generate clips here (default: temp dir)")
    parser.add_argument("--note", default="", help="free text about the machine's conditions, added to the output")
    args = parser.parse_args(argv)

    temp = tempfile.TemporaryDirectory(prefix="bench_data_")
    clip_dir = args.clip_dir or Path(temp.name)
    clip_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    clips = make_clips(clip_dir, args.videos, seconds=10, fps=30, width=320, height=240)
    print(f"{len(clips)} clips ready in {time.perf_counter() - t0:.1f} s", flush=True)
    data = rows_to_dataset([{"video": c, "caption": f"clip {i}", "video_id": str(i)} for i, c in enumerate(clips)])
    sampling = FrameSampling(num_frames=args.num_frames, frame_sampling="segments")

    t0 = time.perf_counter()
    cache_dir = clip_dir / "frames.cache"
    build_frame_cache(clips, cache_dir, sampling, short_side=224, jobs=2, progress=False)
    cache_build = time.perf_counter() - t0
    print(f"frame cache built in {cache_build:.1f} s", flush=True)

    configs = [
        ("decord", dict(backend="decord", decode_timeout=None)),
        ("decord, isolated (default)", dict(backend="decord", decode_timeout=60.0)),
        ("PyAV", dict(backend="pyav", decode_timeout=None)),
        ("cache", dict(backend="decord", decode_timeout=None, cache=cache_dir)),
        ("cache, uint8 batches", dict(backend="decord", decode_timeout=None, cache=cache_dir, normalize=False)),
    ]
    results: dict[tuple[str, int], float] = {}
    for name, kwargs in configs:
        dataset = VideoTextDataset(data, sampling, on_error="skip", **kwargs)
        for workers in args.workers:
            rate = time_loader(dataset, workers, batch_size=4, passes=args.passes)
            results[(name, workers)] = rate
            print(f"{name:28s} workers={workers}: {rate:8.2f} videos/s", flush=True)
    streams = shard_datasets(data, Path(temp.name), sampling)
    for name, dataset in streams:
        for workers in args.workers:
            rate = time_loader(dataset, workers, batch_size=4, passes=args.passes)
            results[(name, workers)] = rate
            print(f"{name:28s} workers={workers}: {rate:8.2f} videos/s", flush=True)
    raw = raw_read_rates(Path(temp.name), args.passes)
    transfers = transfer_costs()

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("n/a",)
    lines = [
        "# Data-loading throughput",
        "",
        f"Command: `python benchmarks/bench_data.py{' --out ' + str(args.out) if args.out else ''}`"
        f" ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC).",
        "",
        f"Workload: {len(clips)} generated 10-second 320x240 30-fps H.264 clips (textured, moving); "
        f"{args.num_frames} frames per clip (`segments`, evaluation positions); CLIP preprocessing to 224x224; "
        f"batch size 4; {args.passes} timed passes after a warm-up pass; persistent DataLoader workers.",
        "",
        "| backend | " + " | ".join(_column(w) for w in args.workers) + " |",
        "| --- | " + " | ".join("---:" for _ in args.workers) + " |",
    ]
    for name in [c[0] for c in configs] + [s[0] for s in streams]:
        lines.append(f"| {name} | " + " | ".join(f"{results[(name, w)]:.2f}" for w in args.workers) + " |")
    decord = {w: results[("decord", w)] for w in args.workers}
    lines += [
        "",
        "Ratios: "
        + "; ".join(
            f"{_column(w).split(' (')[0]}: decord/PyAV {decord[w] / results[('PyAV', w)]:.2f}x, "
            f"cache/decord {results[('cache', w)] / decord[w]:.1f}x"
            for w in args.workers
        )
        + ". Targets: decord >= PyAV, cache >= 10x decord.",
        "",
        "Shards against files (same clips, decord in the isolated helper): "
        + "; ".join(
            f"{_column(w).split(' (')[0]}: "
            + ", ".join(
                f"{label}/files {results[(row, w)] / results[(FILES_ROW, w)]:.2f}x" for label, row in SHARD_ROWS
            )
            for w in args.workers
        )
        + ".",
        "",
        f"Reading the shards without decoding (main process): WebDataset {raw['webdataset']:.0f} samples/s, Parquet "
        f"{raw['parquet']:.0f} samples/s.",
        "",
        "Bytes to the isolated decoder helper, round trip of a call that only measures them: "
        + "; ".join(f"{mib} MiB: pipe {pipe:.1f} ms, temporary file {file:.1f} ms" for mib, pipe, file in transfers)
        + ".",
        "",
        f"Building the cache (`build_frame_cache`, 2 decoder processes) took {cache_build:.1f} s "
        f"for {len(clips)} clips.",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in load)} "
        f"at the end of the run; Python {platform.python_version()}, torch {torch.__version__}.",
    ]
    if args.note:
        lines += ["", f"Conditions: {args.note}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    temp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
