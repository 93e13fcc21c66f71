"""Bring-your-own data: CSV/JSONL manifests and Hub datasets as `datasets.Dataset`s of (video path, caption) rows.

A manifest has columns `video` (a path relative to the manifest's folder, or absolute), `caption`, and optionally
`video_id` (default: the video path relative to the manifest, without extension) and `split` (default "all"); every
other column is kept. Loading resolves `video` to an absolute path. One row per (video, caption) pair: a video with
several captions appears on several rows with the same `video_id`; `unique_videos` gives evaluation its
video -> captions map.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ManifestError

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("video", "caption")
DEFAULT_SPLIT = "all"


def _read_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ManifestError(f"{path}: line {number} is not valid JSON: {err.msg}") from err
                if not isinstance(row, dict):
                    raise ManifestError(f"{path}: line {number} is a {type(row).__name__}, expected a JSON object")
                rows.append(row)
        return rows
    if suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
            if reader.fieldnames is None:
                raise ManifestError(f"{path}: empty file (no header row)")
            return [dict(row) for row in reader]
    raise ManifestError(f"{path}: unknown manifest format {suffix!r}; use .csv, .tsv or .jsonl")


def load_manifest(path: str | os.PathLike, split: str | None = None, check_files: bool = False):
    """Load a CSV/TSV/JSONL manifest as a `datasets.Dataset` (columns `video` absolute, `caption`, `video_id`,
    `split`, plus the manifest's others). `split` keeps only those rows. `check_files` raises a `ManifestError`
    listing every missing video up front."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    rows = _read_rows(path)
    if not rows:
        raise ManifestError(f"{path}: no rows")
    columns = list(rows[0].keys())
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; found {columns}")
    return rows_to_dataset(rows, base_dir=path.parent, split=split, source=str(path), check_files=check_files)


def rows_to_dataset(
    rows: Sequence[dict[str, Any]],
    *,
    base_dir: str | os.PathLike | None = None,
    split: str | None = None,
    source: str = "rows",
    check_files: bool = False,
):
    """Normalise rows (resolve paths, fill `video_id`/`split`, stringify captions) into a `datasets.Dataset`."""
    import datasets

    base = Path(base_dir).resolve() if base_dir is not None else None
    out = []
    all_keys: dict[str, None] = {}
    for number, row in enumerate(rows, start=1):
        video = row.get("video")
        if isinstance(video, dict):  # a Hub `Video(decode=False)` value
            if not video.get("path") and video.get("bytes"):
                raise ManifestError(
                    f"{source}: row {number} holds the video as embedded bytes, not a path; stream it instead: "
                    "StreamingVideoTextDataset(dataset_samples(dataset, ...), sampling) (peft_video.data, "
                    "docs/shards.md), or write the bytes to files and point the `video` column at them"
                )
            video = video.get("path")
        if video is None or not str(video).strip():
            raise ManifestError(f"{source}: row {number} has an empty `video` field")
        video_path = Path(str(video).strip())
        if not video_path.is_absolute() and base is not None:
            video_path = base / video_path
        caption = row.get("caption")
        caption = "" if caption is None else str(caption)
        video_id = row.get("video_id")
        if video_id is None or str(video_id) == "":
            relative = Path(str(video).strip())
            video_id = str(relative.with_suffix("")) if not relative.is_absolute() else relative.stem
        record = dict(row)
        record.update(
            video=os.path.normpath(video_path),
            caption=caption,
            video_id=str(video_id),
            split=str(row.get("split") or DEFAULT_SPLIT),
        )
        out.append(record)
        all_keys.update(dict.fromkeys(record))
    for record in out:  # rows of a JSONL manifest may differ in their extra keys
        for key in all_keys:
            record.setdefault(key, None)
    if split is not None:
        out = [r for r in out if r["split"] == split]
        if not out:
            raise ManifestError(f"{source}: no rows with split={split!r}")
    if check_files:
        missing = sorted({r["video"] for r in out if not os.path.isfile(r["video"])})
        if missing:
            raise ManifestError(f"{source}: {len(missing)} video file(s) missing, e.g. {missing[:5]}")
    return datasets.Dataset.from_list(out)


def from_hub_dataset(
    dataset: Any,
    *,
    video_column: str = "video",
    caption_column: str = "caption",
    video_id_column: str | None = None,
    base_dir: str | os.PathLike | None = None,
    split: str = DEFAULT_SPLIT,
):
    """Adapt a Hub `datasets.Dataset` whose video column holds paths or `Video(decode=False)` values.

    A decoding `Video` feature is refused (datasets decodes it with torchcodec; cast it with
    `dataset.cast_column(name, Video(decode=False))` first)."""
    import datasets

    feature = dataset.features.get(video_column)
    if feature is None:
        raise ManifestError(f"Hub dataset has no column {video_column!r}; columns: {dataset.column_names}")
    if isinstance(feature, datasets.Video) and feature.decode:
        raise ManifestError(
            f"column {video_column!r} is a decoding Video feature (decoded with torchcodec); cast it first: "
            f"dataset = dataset.cast_column({video_column!r}, datasets.Video(decode=False))"
        )
    if caption_column not in dataset.column_names:
        raise ManifestError(f"Hub dataset has no column {caption_column!r}; columns: {dataset.column_names}")
    rows = []
    for record in dataset:
        row = {k: v for k, v in record.items() if k not in (video_column, caption_column)}
        row["video"] = record[video_column]
        row["caption"] = record[caption_column]
        if video_id_column is not None:
            row["video_id"] = record[video_id_column]
        row.setdefault("split", split)
        rows.append(row)
    return rows_to_dataset(rows, base_dir=base_dir, source="Hub dataset")


def write_manifest(rows: Iterable[dict[str, Any]], path: str | os.PathLike, relative_to_manifest: bool = True) -> Path:
    """Write rows as CSV or JSONL (by suffix). Absolute video paths are made relative to the manifest's folder when
    `relative_to_manifest`; relative ones are written as given (they are read relative to the manifest)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [dict(r) for r in rows]
    if relative_to_manifest:
        base = path.parent.resolve()
        for row in rows:
            if not Path(str(row["video"])).is_absolute():
                continue
            try:
                row["video"] = os.path.relpath(Path(row["video"]).resolve(), base)
            except ValueError:  # another drive (Windows)
                pass
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


@dataclass(frozen=True)
class VideoIndex:
    """Evaluation view of a caption-per-row dataset.

    `video_ids[k]` / `videos[k]`: the k-th distinct video (first-appearance order); `caption_to_video[i]`: index into
    `video_ids` of caption row i; `captions_per_video[k]`: the rows whose caption describes video k.
    """

    video_ids: list[str]
    videos: list[str]
    caption_to_video: list[int]
    captions_per_video: list[list[int]]


def _files_per_id(dataset: Any) -> dict[str, list[str]]:
    files: dict[str, dict[str, None]] = {}
    for vid, path in zip(dataset["video_id"], dataset["video"]):
        files.setdefault(str(vid), {})[str(path)] = None
    return {vid: list(paths) for vid, paths in files.items()}


def conflicting_video_ids(dataset: Any) -> dict[str, list[str]]:
    """Each `video_id` that rows give to more than one file, with those files (first-appearance order). Evaluation
    treats one id as one video, so captions of the other files would be scored against the wrong video."""
    return {vid: paths for vid, paths in _files_per_id(dataset).items() if len(paths) > 1}


def shared_video_files(dataset: Any) -> dict[str, list[str]]:
    """Each file that rows give more than one `video_id`, with those ids (the same video twice in a gallery)."""
    ids: dict[str, dict[str, None]] = {}
    for vid, path in zip(dataset["video_id"], dataset["video"]):
        ids.setdefault(str(path), {})[str(vid)] = None
    return {path: list(vids) for path, vids in ids.items() if len(vids) > 1}


def unique_videos(dataset: Any) -> VideoIndex:
    """Distinct videos of a (video, caption)-per-row dataset and, per caption, the index of its video.

    A video is a `video_id`; its file is the first row's. An id given to several files is logged as a warning naming
    them (`peft-video validate` reports it as an error)."""
    ids = [str(v) for v in dataset["video_id"]]
    paths = list(dataset["video"])
    for vid, files in conflicting_video_ids(dataset).items():
        logger.warning(
            "video_id %r names %d different files (%s); the first is used for all its captions",
            vid,
            len(files),
            ", ".join(files),
        )
    position: dict[str, int] = {}
    video_ids, videos, caption_to_video, per_video = [], [], [], []
    for row, (vid, path) in enumerate(zip(ids, paths)):
        if vid not in position:
            position[vid] = len(video_ids)
            video_ids.append(vid)
            videos.append(path)
            per_video.append([])
        caption_to_video.append(position[vid])
        per_video[position[vid]].append(row)
    return VideoIndex(video_ids, videos, caption_to_video, per_video)


def first_caption_per_video(dataset: Any):
    """Rows holding each video's first caption (a dataset for embedding every video once)."""
    index = unique_videos(dataset)
    return dataset.select([rows[0] for rows in index.captions_per_video])
