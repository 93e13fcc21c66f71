"""What an index is built from: a manifest, a folder of videos, a `datasets` dataset or a list of paths, reduced to one
record per distinct video (`video_id`, absolute `video` path, its `captions` when the source has any)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
"""Files a folder source picks up (case-insensitive)."""


@dataclass(frozen=True)
class VideoRecord:
    """One distinct video of a source."""

    video_id: str
    video: str
    captions: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class VideoSource:
    """The distinct videos of a source, and the manifest they came from (its frame cache is used when present)."""

    records: list[VideoRecord]
    manifest: Path | None = None
    description: str = ""


def collect_videos(
    source: Any,
    *,
    split: str | None = None,
    video_column: str = "video",
    caption_column: str = "caption",
    video_id_column: str | None = None,
) -> VideoSource:
    """Distinct videos of `source`: a CSV/TSV/JSONL manifest path (`split` keeps those rows), a folder (every file with
    a `VIDEO_EXTENSIONS` suffix below it; `video_id` = path relative to the folder without suffix), a
    `datasets.Dataset` with a video column (paths or `Video(decode=False)` values; captions when it has a caption
    column), or a list of video paths. A `video_id` naming two different files is an error."""
    from ..data import from_hub_dataset, load_manifest, rows_to_dataset

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not files:
                raise FileNotFoundError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {path}")
            base = path.resolve()
            records = [
                VideoRecord(str(f.resolve().relative_to(base).with_suffix("")), str(f.resolve())) for f in files
            ]
            return VideoSource(records, None, f"folder {path}")
        if not path.exists():
            raise FileNotFoundError(f"index source not found: {path} (expected a manifest, a folder or a dataset)")
        return VideoSource(_group(load_manifest(path, split=split)), path, f"manifest {path}")
    if hasattr(source, "column_names") and hasattr(source, "features"):  # a datasets.Dataset
        if caption_column in source.column_names:
            data = from_hub_dataset(
                source, video_column=video_column, caption_column=caption_column, video_id_column=video_id_column
            )
        else:
            id_column = video_id_column or ("video_id" if "video_id" in source.column_names else None)
            rows = [
                {"video": row[video_column], **({"video_id": row[id_column]} if id_column else {})} for row in source
            ]
            data = rows_to_dataset(rows, source="dataset")
        return VideoSource(_group(data, with_captions=caption_column in source.column_names), None, "dataset")
    if isinstance(source, Sequence):
        data = rows_to_dataset([{"video": str(v)} for v in source], source="video list")
        return VideoSource(_group(data, with_captions=False), None, f"{len(source)} videos")
    raise TypeError(f"cannot index a {type(source).__name__}: give a manifest, a folder, a datasets.Dataset or paths")


def _group(data: Any, with_captions: bool = True) -> list[VideoRecord]:
    ids, paths = [str(v) for v in data["video_id"]], list(data["video"])
    captions = list(data["caption"]) if with_captions and "caption" in data.column_names else [""] * len(ids)
    videos: dict[str, str] = {}
    texts: dict[str, list[str]] = {}
    for video_id, path, caption in zip(ids, paths, captions):
        known = videos.setdefault(video_id, path)
        if known != path:
            raise ValueError(f"video_id {video_id!r} names two different files: {known} and {path}")
        if caption:
            texts.setdefault(video_id, []).append(caption)
    return [VideoRecord(v, p, tuple(texts.get(v, ()))) for v, p in videos.items()]
