"""Writing a manifest of video files as shards (what `peft-video shard` runs): WebDataset tar files or Parquet files
with the video bytes embedded, one sample per video with all of its captions, plus `shards.json` describing them.

WebDataset layout (video2dataset's, so other tools read it too): per sample `{key}.{ext}` (the video file's bytes,
or the re-encoded MP4), `{key}.json` (`video_id`, `captions`, `caption` = the first, `split`, the manifest's other
columns, and the re-encoding result when re-encoded) and `{key}.txt` (the first caption). Keys are the video ids made
safe for tar member names (only letters, digits, `_` and `-`; `.` would end the key), made unique with a suffix.

Parquet layout: columns `key`, `video_id`, `video` (`datasets`' `Video(decode=False)` struct: `bytes` and the original
file name as `path`), `captions` (list of strings), `caption`, `split`, `meta` (the manifest's other columns and the
re-encoding result, JSON); the `datasets` features are stored in the schema, so `load_dataset("parquet", ...)` sees a
`Video` column. Row groups of `PARQUET_ROWS_PER_GROUP` samples keep a streaming reader's memory small.

Each shard is written under a temporary name and renamed when complete, and `shards.json` is written last, so an
interrupted run never leaves a shard that looks finished. Shards close when the next sample would take them past
`max_shard_size` bytes (a single larger video gets a shard of its own) or at `max_shard_samples`.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ManifestError, VideoDecodeError

INDEX_FILE = "shards.json"
INDEX_FORMAT = "peft_video.shards"
INDEX_VERSION = 1
FORMATS = ("webdataset", "parquet")
PARQUET_ROWS_PER_GROUP = 16
DEFAULT_MAX_SHARD_SIZE = "512MB"
SAMPLE_OVERHEAD = 4096
"""Bytes a sample adds besides its video (caption members, tar headers and padding), when deciding to start a shard."""
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 2**10, "m": 2**20, "g": 2**30})


def parse_size(text: str | int) -> int:
    """Bytes from `512MB`, `1.5GiB`, `100k` (k/m/g are binary, KB/MB/GB decimal) or a plain number."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read size {text!r}; use e.g. 512MB, 1GiB or a number of bytes")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass
class ShardSample:
    """One video with all of its captions, as written to a shard."""

    key: str
    video_id: str
    video: str
    captions: list[str]
    split: str
    extra: dict[str, Any] = field(default_factory=dict)


def group_videos(data: Any) -> list[ShardSample]:
    """One `ShardSample` per distinct `video_id` of a caption-per-row dataset (`load_manifest`), in first-appearance
    order, with unique tar-safe keys. Raises `ManifestError` when one `video_id` names two different files."""
    samples: dict[str, ShardSample] = {}
    used: set[str] = set()
    for number, row in enumerate(data, start=1):
        video_id = str(row["video_id"])
        caption = row.get("caption")
        sample = samples.get(video_id)
        if sample is None:
            key = _KEY_UNSAFE.sub("_", video_id).strip("_") or "sample"
            candidate, suffix = key, 1
            while candidate in used:
                suffix += 1
                candidate = f"{key}_{suffix}"
            used.add(candidate)
            extra = {k: v for k, v in row.items() if k not in ("video", "caption", "video_id", "split")}
            sample = ShardSample(candidate, video_id, row["video"], [], str(row.get("split") or "all"), extra)
            samples[video_id] = sample
        elif row["video"] != sample.video:
            raise ManifestError(
                f"row {number}: video_id {video_id!r} names {row['video']!r}, an earlier row {sample.video!r}"
            )
        if caption is not None and str(caption).strip():
            sample.captions.append(str(caption))
    return list(samples.values())


@dataclass
class ShardReport:
    """What `write_shards` wrote: the index (also in `shards.json`) and the videos that could not be written."""

    directory: Path
    index: dict[str, Any]
    failed: dict[str, str]

    def summary(self) -> str:
        index = self.index
        lines = [
            f"{index['num_samples']} videos ({index['num_captions']} captions) in {len(index['shards'])} "
            f"{index['format']} shards under {self.directory} ({sum(s['bytes'] for s in index['shards']) / 2**20:.1f}"
            f" MiB); index {self.directory / INDEX_FILE}"
        ]
        if index.get("preprocess"):
            lines.append(f"re-encoded with {index['preprocess']}")
        lines += [f"FAILED {video}: {reason}" for video, reason in sorted(self.failed.items())]
        return "\n".join(lines)


class _TarShard:
    def __init__(self, path: Path):
        self.path, self.partial = path, path.with_name(path.name + ".partial")
        self.tar = tarfile.open(self.partial, "w", format=tarfile.USTAR_FORMAT)

    @property
    def size(self) -> int:
        return self.tar.offset  # bytes written so far (headers and padding included)

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644  # mtime 0: the same input gives the same bytes
        self.tar.addfile(info, io.BytesIO(data))

    def add(self, sample: ShardSample, data: bytes, extension: str, meta: dict[str, Any]) -> None:
        record = {"video_id": sample.video_id, "captions": sample.captions, "caption": sample.captions[0]}
        record.update(split=sample.split, **meta)
        self._add(f"{sample.key}.{extension}", data)
        self._add(f"{sample.key}.json", json.dumps(record, ensure_ascii=False, default=str).encode())
        self._add(f"{sample.key}.txt", sample.captions[0].encode())

    def close(self) -> None:
        self.tar.close()
        os.replace(self.partial, self.path)


class _ParquetShard:
    def __init__(self, path: Path):
        import datasets
        import pyarrow.parquet as pq

        self.path, self.partial = path, path.with_name(path.name + ".partial")
        self.features = datasets.Features(
            {
                "key": datasets.Value("string"),
                "video_id": datasets.Value("string"),
                "video": datasets.Video(),  # the Hub's usual video column (bytes + file name)
                "captions": datasets.List(datasets.Value("string")),
                "caption": datasets.Value("string"),
                "split": datasets.Value("string"),
                "meta": datasets.Value("string"),
            }
        )
        self.writer = pq.ParquetWriter(self.partial, self.features.arrow_schema)
        self.rows: list[dict[str, Any]] = []
        self.size = 0  # the bytes of the videos (compressed already: Parquet adds little)

    def add(self, sample: ShardSample, data: bytes, extension: str, meta: dict[str, Any]) -> None:
        self.rows.append(
            {
                "key": sample.key,
                "video_id": sample.video_id,
                "video": {"bytes": data, "path": f"{sample.key}.{extension}"},
                "captions": sample.captions,
                "caption": sample.captions[0],
                "split": sample.split,
                "meta": json.dumps(meta, ensure_ascii=False, default=str),
            }
        )
        self.size += len(data) + SAMPLE_OVERHEAD
        if len(self.rows) >= PARQUET_ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.rows:
            table = pa.Table.from_pylist(self.rows, schema=self.features.arrow_schema)
            self.writer.write_table(table)
            self.rows = []

    def close(self) -> None:
        self._flush()
        self.writer.close()
        os.replace(self.partial, self.path)


def _reencoded(
    samples: list[ShardSample], work_dir: Path, preprocess: dict[str, Any], jobs: int, timeout: float
) -> Iterator[tuple[int, Any]]:
    """(position, re-encoding result or VideoDecodeError) in sample order, re-encoding `jobs` videos at a time in
    isolated helpers (a hung or crashing encoder costs one video)."""
    from .isolation import IsolatedCall, run_many
    from .preprocess import reencode_video

    def work(decoder, position: str):
        sample = samples[int(position)]
        destination = str(work_dir / f"{position}.mp4")
        arguments = (sample.video, destination, preprocess["fps"], preprocess["short_side"])
        arguments += (preprocess["codec"], preprocess["crf"])
        return decoder.call(IsolatedCall(sample.video, reencode_video, arguments))

    pending: dict[int, Any] = {}
    position = 0
    for index, result in run_many([str(i) for i in range(len(samples))], work, jobs=jobs, timeout=timeout):
        pending[index] = result
        while position in pending:  # keep the manifest's (or shuffled) order whatever finishes first
            yield position, pending.pop(position)
            position += 1


def write_shards(
    data: Any,
    out_dir: str | os.PathLike,
    *,
    format: str = "webdataset",
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    max_shard_samples: int | None = None,
    shuffle_seed: int | None = None,
    preprocess: dict[str, Any] | None = None,
    jobs: int = 2,
    timeout: float = 600.0,
    source: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ShardReport:
    """Write the videos of a caption-per-row dataset (`load_manifest`) as shards in `out_dir`.

    Args:
        data: Rows with `video` (path), `caption`, `video_id`, `split`; a video's captions are gathered by `video_id`.
        out_dir: Output folder (created); `shard-00000.tar` (or `.parquet`) ... and `shards.json`.
        format: "webdataset" or "parquet".
        max_shard_size: Bytes per shard (an int or e.g. "512MB").
        max_shard_samples: Videos per shard at most (None: no limit).
        shuffle_seed: Permute the videos before writing (recommended for training data: readers shuffle only within
            a window, so shards should not be sorted by class or source); None keeps the manifest's order.
        preprocess: Re-encode first with `peft-video preprocess`'s settings: a dict with `fps`, `short_side`, `codec`,
            `crf` (each video in an isolated helper with `timeout`, `jobs` at a time); recorded in `shards.json` and
            per sample. None copies the files' bytes as they are.
        source: The manifest's path, recorded in `shards.json`.
        progress: Called with the number of videos done after each one.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    limit = parse_size(max_shard_size)
    if limit <= 0 or (max_shard_samples is not None and max_shard_samples <= 0):
        raise ValueError("max_shard_size and max_shard_samples must be positive")
    samples = group_videos(data)
    failed: dict[str, str] = {s.video: "no non-empty caption" for s in samples if not s.captions}
    samples = [s for s in samples if s.captions]
    if shuffle_seed is not None:
        import numpy as np

        order = np.random.default_rng(shuffle_seed).permutation(len(samples))
        samples = [samples[i] for i in order]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "tar" if format == "webdataset" else "parquet"
    shard_type = _TarShard if format == "webdataset" else _ParquetShard
    shards: list[dict[str, Any]] = []
    current, current_samples = None, 0

    def close_current() -> None:
        nonlocal current
        if current is not None:
            current.close()
            shards.append(
                {"name": current.path.name, "samples": current_samples, "bytes": current.path.stat().st_size}
            )
            current = None

    work_dir = Path(tempfile.mkdtemp(prefix=".reencode-", dir=out)) if preprocess else None
    try:
        if preprocess:
            results = _reencoded(samples, work_dir, preprocess, jobs, timeout)
        else:
            results = ((position, None) for position in range(len(samples)))
        for done, (position, result) in enumerate(results, start=1):
            sample = samples[position]
            meta = dict(sample.extra)
            try:
                if isinstance(result, VideoDecodeError):
                    raise result
                if result is not None:
                    data_bytes, extension = Path(result["output"]).read_bytes(), "mp4"
                    Path(result["output"]).unlink()
                    meta["preprocess"] = {k: result[k] for k in ("width", "height", "fps", "frames_in", "frames_out")}
                else:
                    data_bytes = Path(sample.video).read_bytes()
                    extension = (Path(sample.video).suffix.lstrip(".") or "mp4").lower()
                if not data_bytes:
                    raise VideoDecodeError(sample.video, "file is empty (0 bytes)")
            except VideoDecodeError as err:
                failed[sample.video] = err.reason
            except OSError as err:
                failed[sample.video] = f"{type(err).__name__}: {err}"
            if sample.video in failed:
                if progress:
                    progress(done)
                continue
            full = max_shard_samples is not None and current_samples >= max_shard_samples
            if current is not None and (full or current.size + len(data_bytes) + SAMPLE_OVERHEAD > limit):
                close_current()
            if current is None:
                current = shard_type(out / f"shard-{len(shards):05d}.{suffix}")
                current_samples = 0
            current.add(sample, data_bytes, extension, meta)
            current_samples += 1
            if progress:
                progress(done)
        close_current()
    finally:
        if work_dir is not None:
            shutil.rmtree(work_dir, ignore_errors=True)
    written = [s for s in samples if s.video not in failed]
    index = {
        "format_name": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "format": format,
        "caption_field": "json:captions" if format == "webdataset" else "captions",
        "num_samples": len(written),
        "num_captions": sum(len(s.captions) for s in written),
        "splits": sorted({s.split for s in written}),
        "shards": shards,
        "source_manifest": source,
        "shuffle_seed": shuffle_seed,
        "max_shard_size": limit,
        "max_shard_samples": max_shard_samples,
        "preprocess": preprocess,
        "failed": failed,
    }
    (out / INDEX_FILE).write_text(json.dumps(index, indent=1))
    return ShardReport(out, index, failed)
