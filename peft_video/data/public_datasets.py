"""Manifests of the public text-video retrieval datasets (MSR-VTT, MSVD, DiDeMo, ActivityNet Captions, LSMDC, VATEX),
built from their official annotation files plus a local folder of videos.

Nothing is downloaded: point a builder at the annotation folder and the video folder you already have. Each builder
returns a `datasets.Dataset` (one row per caption, columns `video`, `caption`, `video_id`, `split` and the annotation's
own fields) and a `BuildReport` that compares the counts found with the published ones and lists missing videos up
front, instead of failing in the middle of an epoch.

Annotation files expected in `annotation_dir` (the names the datasets ship with; CLIP4Clip's split files for MSR-VTT
and MSVD):

- msrvtt (train_9k, train_7k, test_1k, train_full, val_full, test_full): MSRVTT_data.json, MSRVTT_train.9k.csv,
  MSRVTT_train.7k.csv, MSRVTT_JSFUSION_test.csv (the 1k-A test);
- msvd (train, val, test): raw-captions.pkl, train_list.txt, val_list.txt, test_list.txt;
- didemo (train, val, test; paragraph-to-video): train_data.json, val_data.json, test_data.json;
- activitynet (train, val_1, val_2; paragraph-to-video): train.json, val_1.json, val_2.json;
- lsmdc (train, val, test): LSMDC16_annos_training.csv, LSMDC16_annos_val.csv, LSMDC16_challenge_1000_publictect.csv;
- vatex, official splits (train, val, test): vatex_training_v1.0.json, vatex_validation_v1.0.json,
  vatex_public_test_english_v1.1.json;
- vatex, the retrieval split of HGR (Chen et al., CVPR 2020) that the retrieval literature reports (CLIP2Video,
  TS2-Net, DGL, ...): `train` (the official 25,991) and `hgr_val` / `hgr_test` (1,500 + 1,500 videos, HGR's random
  halves of the official validation file), from the split lists that code ships, `val_list.txt` / `test_list.txt`
  (CLIP2Video's `data/vatex_data/`) or HGR's own `val_names.npy` / `tst_names.npy`, with the captions of
  vatex_validation_v1.0.json; videos in list order.

Videos are matched by name: the annotation's file name or id, with any common video extension, anywhere under
`video_dir` (LSMDC's per-movie folders and ActivityNet's optional `v_` prefix included). Paths are absolute, so a
manifest written anywhere (`write_manifest`) points at them relative to its own folder.

Each row carries a `benchmark` column with the dataset's name, and every `PublicDatasetSpec` says which video->text
protocol the papers on it report (`peft_video.metrics`: "clip4clip" for all six; it only matters where a video has
several captions: MSVD, MSR-VTT's full splits, VATEX).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ManifestError
from .manifest import rows_to_dataset

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".3gp", ".3g2", ".flv", ".wmv", ".mts",
    ".m2ts",
)  # fmt: skip


@dataclass
class BuildReport:
    """Counts expected (published) versus found, and the videos that are annotated but not on disk."""

    benchmark: str
    split: str
    expected_videos: int | None
    expected_captions: int | None
    annotated_videos: int = 0
    captions: int = 0
    found_videos: int = 0
    missing_videos: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing_videos and (self.expected_videos is None or self.found_videos == self.expected_videos)

    def __str__(self) -> str:
        def versus(found: int, expected: int | None) -> str:
            return f"{found}" if expected is None else f"{found} (expected {expected})"

        videos = versus(self.annotated_videos, self.expected_videos)
        lines = [
            f"{self.benchmark} {self.split}: annotated videos {videos}, "
            f"captions {versus(self.captions, self.expected_captions)}, videos on disk {self.found_videos}, "
            f"missing {len(self.missing_videos)}"
        ]
        if self.missing_videos:
            shown = self.missing_videos[:20]
            more = f" ... and {len(self.missing_videos) - 20} more" if len(self.missing_videos) > 20 else ""
            lines.append("missing videos: " + ", ".join(shown) + more)
        return "\n".join(lines)


class VideoFolder:
    """Finds videos under a folder by file name or by stem (any extension), indexing the folder once."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()  # absolute paths: valid from wherever the manifest is written
        if not self.root.is_dir():
            raise FileNotFoundError(f"video folder not found: {self.root}")
        self.by_name: dict[str, str] = {}
        self.by_stem: dict[str, str] = {}
        for directory, _, files in os.walk(self.root):
            for name in files:
                path = os.path.join(directory, name)
                self.by_name.setdefault(name, path)
                if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                    self.by_stem.setdefault(os.path.splitext(name)[0], path)

    def find(self, *names: str) -> str | None:
        """First match for any of `names` (exact file name first, then stem with a video extension)."""
        for name in names:
            if name in self.by_name:
                return self.by_name[name]
            stem = os.path.splitext(name)[0] if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS else name
            if stem in self.by_stem:
                return self.by_stem[stem]
        return None


@dataclass(frozen=True)
class _Annotated:
    """One video of a split as the annotations describe it: its id, names to look for, captions, extra fields."""

    video_id: str
    names: tuple[str, ...]
    captions: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


def _need(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {name} not found in {directory}")
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err


def _csv_column(path: Path, column: str) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise ManifestError(f"{path}: expected a column {column!r}, found {reader.fieldnames}")
        return list(reader)


# --- MSR-VTT


def _msrvtt(directory: Path, split: str) -> list[_Annotated]:
    if split == "test_1k":  # JSFusion's 1k-A test: one caption per video
        rows = _csv_column(_need(directory, "MSRVTT_JSFUSION_test.csv"), "video_id")
        return [_Annotated(r["video_id"], (r["video_id"],), [r["sentence"]], {"key": r.get("key", "")}) for r in rows]
    data = _read_json(_need(directory, "MSRVTT_data.json"))
    try:
        captions: dict[str, list[str]] = {}
        for sentence in data["sentences"]:
            captions.setdefault(sentence["video_id"], []).append(sentence["caption"])
        videos = data["videos"]
    except (KeyError, TypeError) as err:
        raise ManifestError(f"{directory / 'MSRVTT_data.json'}: expected keys videos and sentences ({err})") from err
    if split in ("train_9k", "train_7k"):
        file = "MSRVTT_train.9k.csv" if split == "train_9k" else "MSRVTT_train.7k.csv"
        ids = [r["video_id"] for r in _csv_column(_need(directory, file), "video_id")]
        categories = {}
    else:
        official = {"train_full": "train", "val_full": "validate", "test_full": "test"}[split]
        ids = [v["video_id"] for v in videos if v.get("split") == official]
        categories = {v["video_id"]: v.get("category") for v in videos}
    return [
        _Annotated(vid, (vid,), captions.get(vid, []), {"category": categories.get(vid)} if categories else {})
        for vid in ids
    ]


# --- MSVD


def _msvd(directory: Path, split: str) -> list[_Annotated]:
    # raw-captions.pkl maps video id -> list of captions, each a list of tokens (CLIP4Clip's release). It is a pickle:
    # load only files you obtained from a source you trust.
    with _need(directory, "raw-captions.pkl").open("rb") as handle:
        raw = pickle.load(handle)
    ids = [line.strip() for line in _need(directory, f"{split}_list.txt").read_text().splitlines() if line.strip()]
    out = []
    for vid in ids:
        captions = [" ".join(c) if isinstance(c, (list, tuple)) else str(c) for c in raw.get(vid, [])]
        out.append(_Annotated(vid, (vid,), captions))
    return out


# --- DiDeMo (paragraph-to-video)


def _didemo(directory: Path, split: str) -> list[_Annotated]:
    # The official files name some videos with two extensions (`x.mov` and `x.mp4`, or `x.` and `x.mp4`): one video,
    # so its descriptions are grouped by the id without the extension (val: 1094 file names, 1065 videos; test: 1037
    # and 1004), in annotation order.
    entries = _read_json(_need(directory, f"{split}_data.json"))
    paragraphs: dict[str, list[str]] = {}
    names: dict[str, dict[str, None]] = {}
    for entry in entries:
        try:
            video_id = os.path.splitext(entry["video"])[0]
            paragraphs.setdefault(video_id, []).append(entry["description"].strip())
            names.setdefault(video_id, {})[entry["video"]] = None
        except (KeyError, TypeError, AttributeError) as err:
            where = directory / f"{split}_data.json"
            raise ManifestError(f"{where}: entry without video/description: {entry!r}") from err
    return [
        _Annotated(
            video_id,
            (*names[video_id], video_id),
            [" ".join(sentences)],
            {"sentences": len(sentences)},
        )
        for video_id, sentences in paragraphs.items()
    ]


# --- ActivityNet Captions (paragraph-to-video)


def _activitynet(directory: Path, split: str) -> list[_Annotated]:
    data = _read_json(_need(directory, f"{split}.json"))
    out = []
    for vid, entry in data.items():
        sentences = [s.strip() for s in entry.get("sentences", [])]
        bare = vid[2:] if vid.startswith("v_") else vid
        out.append(
            _Annotated(
                vid,
                (vid, bare, f"v_{bare}"),
                [" ".join(sentences)],
                {"duration": entry.get("duration"), "sentences": len(sentences)},
            )
        )
    return out


# --- LSMDC


def _lsmdc(directory: Path, split: str) -> list[_Annotated]:
    file = {
        "train": "LSMDC16_annos_training.csv",
        "val": "LSMDC16_annos_val.csv",
        "test": "LSMDC16_challenge_1000_publictect.csv",
    }[split]
    path = _need(directory, file)
    out = []
    with path.open(encoding="utf-8", newline="") as handle:
        for number, fields in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not fields:
                continue
            if len(fields) < 6:
                raise ManifestError(
                    f"{path}: line {number} has {len(fields)} tab-separated fields, expected 6 "
                    "(clip id, 4 timestamps, sentence)"
                )
            clip = fields[0]
            out.append(_Annotated(clip, (clip,), [fields[-1].strip()], {"movie": clip.rsplit("_", 1)[0]}))
    return out


# --- VATEX


VATEX_FILES = {
    "train": "vatex_training_v1.0.json",
    "val": "vatex_validation_v1.0.json",
    "test": "vatex_public_test_english_v1.1.json",
}
# HGR's halves of the official validation file: the list names of CLIP4Clip-derived code, then HGR's own files.
VATEX_HGR_LISTS = {"hgr_val": ("val_list.txt", "val_names.npy"), "hgr_test": ("test_list.txt", "tst_names.npy")}


def _vatex_entries(directory: Path, file: str) -> list[dict[str, Any]]:
    entries = _read_json(_need(directory, file))
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "videoID" in e for e in entries):
        raise ManifestError(f"{directory / file}: expected a list of objects with videoID and enCap")
    return entries


def _split_list(directory: Path, names: tuple[str, ...]) -> tuple[Path, list[str]]:
    for name in names:
        path = directory / name
        if path.suffix == ".txt" and path.is_file():
            return path, [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if path.suffix == ".npy" and path.is_file():
            import numpy as np

            try:
                ids = np.load(path, allow_pickle=False)  # a plain array of strings; pickled objects are refused
            except ValueError as err:
                raise ManifestError(f"{path}: expected an array of video ids saved without pickle ({err})") from err
            return path, [str(i) for i in ids.tolist()]
    raise FileNotFoundError(f"split list {' or '.join(names)} not found in {directory}")


def _vatex(directory: Path, split: str) -> list[_Annotated]:
    if split in VATEX_FILES:
        entries = _vatex_entries(directory, VATEX_FILES[split])
        return [_Annotated(e["videoID"], (e["videoID"],), list(e.get("enCap", []))) for e in entries]
    captions = {e["videoID"]: list(e.get("enCap", [])) for e in _vatex_entries(directory, VATEX_FILES["val"])}
    path, ids = _split_list(directory, VATEX_HGR_LISTS[split])
    unknown = [i for i in ids if i not in captions]
    if unknown:
        raise ManifestError(
            f"{path}: {len(unknown)} video id(s) are not in {VATEX_FILES['val']} (HGR's split halves the official "
            f"validation set), e.g. {unknown[:5]}"
        )
    return [_Annotated(i, (i,), captions[i]) for i in ids]


@dataclass(frozen=True)
class PublicDatasetSpec:
    """A benchmark's splits, with the published (videos, captions) counts of each (None where not fixed), and the
    video->text protocol (`peft_video.metrics`) that papers on it report."""

    name: str
    parse: Callable[[Path, str], list[_Annotated]]
    expected: dict[str, tuple[int | None, int | None]]
    paragraph: bool = False
    # CLIP4Clip and the code derived from it (X-Pool, CLIP2Video, TS2-Net, DGL, Prompt Switch) produce the numbers
    # that the methods here are compared with; their multi-sentence evaluation ranks a video's caption set, scored
    # by its best caption, among videos.
    video_to_text_protocol: str = "clip4clip"


# Published sizes: MSR-VTT (Xu et al. 2016; 9k/7k and 1k-A splits as used by CLIP4Clip), MSVD (Chen & Dolan 2011,
# 1200/100/670 split), DiDeMo (Hendricks et al. 2017), ActivityNet Captions (Krishna et al. 2017; val_2 as released),
# LSMDC 2016 challenge, VATEX v1.0/v1.1 (Wang et al. 2019) and HGR's retrieval split of it (Chen et al. 2020).
PUBLIC_DATASETS: dict[str, PublicDatasetSpec] = {
    "msrvtt": PublicDatasetSpec(
        "msrvtt",
        _msrvtt,
        {
            "train_9k": (9000, 180000),
            "train_7k": (7010, 140200),
            "test_1k": (1000, 1000),
            "train_full": (6513, 130260),
            "val_full": (497, 9940),
            "test_full": (2990, 59800),
        },
    ),
    "msvd": PublicDatasetSpec("msvd", _msvd, {"train": (1200, None), "val": (100, None), "test": (670, None)}),
    "didemo": PublicDatasetSpec(
        "didemo", _didemo, {"train": (8395, 8395), "val": (1065, 1065), "test": (1004, 1004)}, paragraph=True
    ),
    "activitynet": PublicDatasetSpec(
        "activitynet",
        _activitynet,
        {"train": (10009, 10009), "val_1": (4917, 4917), "val_2": (4885, 4885)},
        paragraph=True,
    ),
    "lsmdc": PublicDatasetSpec(
        "lsmdc", _lsmdc, {"train": (101079, 101079), "val": (7408, 7408), "test": (1000, 1000)}
    ),
    "vatex": PublicDatasetSpec(
        "vatex",
        _vatex,
        {
            "train": (25991, 259910),
            "val": (3000, 30000),
            "test": (6000, 60000),
            "hgr_val": (1500, 15000),
            "hgr_test": (1500, 15000),
        },
    ),
}


def build_public_dataset(
    name: str,
    annotation_dir: str | os.PathLike,
    video_dir: str | os.PathLike,
    split: str,
    *,
    missing: str = "drop",
):
    """Build `split` of benchmark `name` as a `datasets.Dataset` and return `(dataset, BuildReport)`.

    `missing`: "drop" leaves out annotated videos that are not on disk (listed in the report and logged), "raise"
    raises a `ManifestError` listing them.
    """
    if name not in PUBLIC_DATASETS:
        raise ValueError(f"unknown benchmark {name!r}; available: {sorted(PUBLIC_DATASETS)}")
    spec = PUBLIC_DATASETS[name]
    if split not in spec.expected:
        raise ValueError(f"{name} has no split {split!r}; available: {list(spec.expected)}")
    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    annotated = spec.parse(Path(annotation_dir), split)
    folder = VideoFolder(video_dir)
    expected_videos, expected_captions = spec.expected[split]
    report = BuildReport(name, split, expected_videos, expected_captions, annotated_videos=len(annotated))
    rows = []
    for item in annotated:
        path = folder.find(*item.names)
        captions = [c for c in item.captions if c and c.strip()]
        report.captions += len(captions)
        if path is None:
            report.missing_videos.append(item.video_id)
            continue
        report.found_videos += 1
        for caption in captions:
            rows.append(
                {
                    "video": path,
                    "caption": caption,
                    "video_id": item.video_id,
                    "split": split,
                    "benchmark": name,
                    **item.extra,
                }
            )
    if report.missing_videos:
        if missing == "raise":
            raise ManifestError(str(report))
        logger.warning("%s", report)
    if not rows:
        raise ManifestError(f"{name} {split}: no annotated video was found under {video_dir}\n{report}")
    return rows_to_dataset(rows, source=f"{name} {split}"), report
