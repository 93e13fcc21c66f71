"""Shards as an index source: a folder written by `peft-video shard` (its `shards.json`), WebDataset tars or Parquet
files (a list, a brace range or a glob; local or any fsspec URL), or a `datasets` dataset whose video column holds
bytes (streamed or map-style). The unit of work and of resumption of a build run is the INPUT shard: input shard k
is the k-th `datasets` shard of the source's raw samples (`peft_video.data.shards`), encoded by process k mod N into
an index shard named after it.

    source = collect_shards("data/shards/test")          # None for a manifest, a folder of videos or a path list
    source.inputs                                        # ['/abs/data/shards/test/shard-00000.tar', ...]
    InputShardStream(source, [(0, "run0001-00000-shard-00000")], decoder, skip_ids)   # decoded items + end markers

An indexed sample's `video` is `"<shard url>#<key>"` (`peft_video.data.sample_name`); `shard_member_bytes` reads that
member's bytes back from its shard (a sequential scan of one tar, a Parquet row lookup) for pictures.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

WEBDATASET_SUFFIXES = (".tar", ".tar.gz", ".tgz")
PARQUET_SUFFIXES = (".parquet",)
SHARD_LEVEL_ERRORS = ("cannot open shard", "shard breaks off", "shard ends inside member", "not a tar archive")
"""How the readers of `peft_video.data.shards` begin the reason of an error that ends a shard early (the rest of the
shard was not read): such an input shard is committed as incomplete and read again by the next build call."""


@dataclass
class ShardSource:
    """The raw samples of a sharded source (one `datasets` shard per input shard) and the input shards' names."""

    samples: Any
    inputs: list[str]
    description: str
    reader: dict[str, Any] = field(default_factory=dict)

    def input_samples(self, position: int):
        """The raw samples of input shard `position` alone (a `datasets.IterableDataset` with one shard)."""
        return self.samples.shard(num_shards=len(self.inputs), index=position)


def _kind(url: str) -> str | None:
    name = url.lower().split("?", 1)[0]
    if name.endswith(WEBDATASET_SUFFIXES):
        return "webdataset"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _absolute(url: str) -> str:
    """A local path made absolute (an index is searched from other working directories); a URL as it is."""
    return url if "://" in url else str(Path(url).resolve())


def _join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}" if "://" in location else os.path.join(location, name)


def _is_dataset(source: Any) -> bool:
    import datasets

    return isinstance(source, (datasets.Dataset, datasets.IterableDataset))


def _holds_bytes(dataset: Any, video_column: str) -> bool:
    """Whether a map-style dataset's video column holds the videos' bytes (else paths: the files route)."""
    import datasets

    if video_column not in dataset.column_names or len(dataset) == 0:
        return False
    feature = dataset.features[video_column]
    column = dataset.cast_column(video_column, datasets.Video(decode=False)) if isinstance(
        feature, datasets.Video
    ) else dataset  # fmt: skip
    value = column[0][video_column]
    if isinstance(value, dict):
        return bool(value.get("bytes"))
    return isinstance(value, (bytes, bytearray, memoryview))


def is_shard_source(source: Any, *, split: str | None = None, video_column: str | None = None) -> bool:
    """Whether `build_index` reads `source` as shards (see `collect_shards`) rather than as files."""
    if _is_dataset(source):
        import datasets

        if isinstance(source, datasets.IterableDataset):
            return True
        return _holds_bytes(source, video_column or _default_video_column(source.column_names))
    if isinstance(source, (str, os.PathLike)):
        text = str(source)
        if _kind(text) or "://" in text:
            return True
        path = Path(text)
        if path.is_dir():
            return (path / "shards.json").is_file() or bool(_split_folders(path))
        return any(char in text for char in "*?[{") and not path.exists()
    if isinstance(source, Sequence) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        return all(_kind(str(s)) for s in source)
    return False


def _split_folders(path: Path) -> list[str]:
    """Subfolders of `path` holding a `shards.json` (`peft-video shard` writes one per split without --split)."""
    return sorted(child.name for child in path.iterdir() if (child / "shards.json").is_file())


def _default_video_column(columns: Sequence[str] | None) -> str:
    columns = list(columns or [])
    return next((c for c in ("video", "mp4", "webm") if c in columns), "video")


def collect_shards(
    source: Any,
    *,
    split: str | None = None,
    caption_field: str | None = None,
    video_column: str | None = None,
    key_column: str | None = None,
) -> ShardSource:
    """The input shards of a sharded `source` (`is_shard_source`):

    - a folder (or URL) with a `shards.json` written by `peft-video shard`, or with one such folder per split
      (`split` picks it);
    - WebDataset tars (`.tar`, `.tar.gz`, `.tgz`) or Parquet files: a list, a brace range or a glob, local or any
      fsspec URL (`peft_video.data.expand_shards`);
    - a `datasets.IterableDataset`, or a `datasets.Dataset` whose video column holds bytes (`dataset_samples`).

    `caption_field`: the WebDataset caption field ("auto", "txt", "json:FIELD", ...) or the Parquet / `datasets`
    caption column (default: the `shards.json`'s, else "auto" / "captions" / the first of captions, caption, text).
    `video_column` and `key_column` name the Parquet / `datasets` columns (defaults: video, key)."""
    from ..data.shards import check_caption_field, expand_shards, parquet_samples, shard_index, webdataset_samples

    if _is_dataset(source):
        return _dataset_source(source, caption_field, video_column, key_column)
    if isinstance(source, (str, os.PathLike)) and not _kind(str(source)) and not any(c in str(source) for c in "*?[{"):
        location = str(source) if "://" in str(source) else _absolute(str(source))
        if "://" not in location and not (Path(location) / "shards.json").is_file():
            splits = _split_folders(Path(location))
            if split is None or split not in splits:
                raise ValueError(
                    f"{location} holds the shards of the splits {splits}, one folder each: pick one with "
                    f"--split / split= (got {split!r})"
                )
            location = _join(location, split)
        try:
            index = shard_index(location)
        except FileNotFoundError:
            if "://" not in location or split is None:
                raise
            location = _join(location, split)  # a URL with one folder per split
            index = shard_index(location)
        if split is not None and index.get("splits") and index["splits"] != [split]:
            raise ValueError(
                f"{location} holds the splits {index['splits']} in one set of shards; the shard readers cannot keep "
                f"only {split!r}: write the splits apart (`peft-video shard` without --split) or leave out --split"
            )
        urls = [_join(location, shard["name"]) for shard in index["shards"]]
        if not urls:
            raise ValueError(f"{location}: its shards.json lists no shards")
        kind, description = index["format"], f"shards {location}"
        caption_field = caption_field or index["caption_field"]
    else:
        urls = [_absolute(url) for url in expand_shards(source)]
        kinds = {_kind(url) for url in urls}
        if len(kinds) != 1 or None in kinds:
            raise ValueError(
                f"shards must all be WebDataset tars ({', '.join(WEBDATASET_SUFFIXES)}) or all Parquet files; got "
                f"{sorted(urls)[:5]}"
            )
        kind = kinds.pop()
        description = f"{len(urls)} {kind} shards" + (f" ({source})" if isinstance(source, (str, os.PathLike)) else "")
    if len(set(urls)) != len(urls):
        raise ValueError(f"a shard is named twice in {source!r}")
    if kind == "webdataset":
        reader = {"format": kind, "caption_field": check_caption_field(caption_field or "auto")}
        samples = webdataset_samples(urls, caption_field=reader["caption_field"])
    else:
        reader = {
            "format": kind,
            "caption_column": caption_field or "captions",
            "video_column": video_column or "video",
            "key_column": key_column or "key",
        }
        samples = parquet_samples(urls, **{k: v for k, v in reader.items() if k != "format"})
    return ShardSource(samples, urls, description, reader)


def _dataset_source(dataset: Any, caption_field: str | None, video_column: str | None, key_column: str | None):
    from ..data.shards import dataset_samples

    columns = list(dataset.column_names or [])
    video_column = video_column or _default_video_column(columns)
    if caption_field is None:
        caption_field = next((c for c in ("captions", "caption", "text", "txt") if c in columns), None)
        if caption_field is None:
            raise ValueError(f"the dataset has no caption column (captions, caption, text, txt); columns: {columns}")
    if key_column is None:  # stable names (`shard#key`) beat row numbers
        key_column = next((c for c in ("__key__", "key", "video_id") if c in columns), None)
    name = getattr(dataset.info, "dataset_name", None) or "dataset"
    samples = dataset_samples(
        dataset,
        video_column=video_column,
        caption_column=caption_field,
        key_column=key_column,
        video_id_column="video_id" if "video_id" in columns else None,
        shard_column="__url__" if "__url__" in columns else None,
        name=name,
    )
    count = samples.num_shards
    inputs = [f"{name}:{k:05d}-of-{count:05d}" for k in range(count)]
    reader = {
        "format": "datasets",
        "caption_column": caption_field,
        "video_column": video_column,
        "key_column": key_column,
    }
    return ShardSource(samples, inputs, f"datasets dataset {name!r} ({count} shards)", reader)


def index_shard_name(run: str, position: int, input_shard: str) -> str:
    """`<run>-<k>-<the input shard's file name>` (letters, digits, `_`, `-`; at most 60 characters of it)."""
    stem = input_shard.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (*WEBDATASET_SUFFIXES, *PARQUET_SUFFIXES):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return f"{run}-{position:05d}-{re.sub(r'[^A-Za-z0-9_-]+', '_', stem)[:60]}"


# ------------------------------------------------------------------------------------------------------- encoding
@dataclass(frozen=True)
class MoreCaptions:
    """A second row of a video already met in the same input shard (a caption-per-row source): its captions."""

    video_id: str
    captions: tuple[str, ...]


@dataclass(frozen=True)
class ShardEnd:
    """Every sample of an input shard has been handed out; `complete` is False when the shard ended early."""

    samples: int
    complete: bool


class InputShardStream(torch.utils.data.IterableDataset):
    """(index shard name, entry) pairs for the input shards given, DataLoader worker w of n taking the shards w::n and
    reading each one to its end: entries are decoded samples (`StreamingVideoTextDataset.load`, the streamed
    training and evaluation chain) or `FailedSample`s named `<shard>#<key>`, `MoreCaptions`, then one `ShardEnd`
    per input shard. Rows whose `video_id` is in `skip_ids` (already indexed) are not decoded."""

    def __init__(self, source: ShardSource, shards: list[tuple[int, str]], decoder: Any, skip_ids: set[str]):
        self.source, self.shards, self.decoder, self.skip_ids = source, shards, decoder, skip_ids

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for position, name in self.shards[worker::workers]:
            yield from self._shard(position, name)

    def _shard(self, position: int, name: str) -> Iterator[tuple[str, Any]]:
        from ..data import FailedSample, VideoDecodeError, sample_name

        seen: set[str] = set()
        complete, count = True, 0
        # `.iter()`, not `iter()`: inside a DataLoader worker `datasets` would split the one shard across workers
        for batch in self.source.input_samples(position).iter(batch_size=8):
            for row in (dict(zip(batch, values)) for values in zip(*batch.values())):
                count += 1
                if row["error"] and row["error"].startswith(SHARD_LEVEL_ERRORS):
                    complete = False
                video_id = row.get("video_id") or row["key"]
                if video_id in self.skip_ids:
                    continue
                if video_id in seen:
                    yield name, MoreCaptions(video_id, tuple(row["captions"] or ()))
                    continue
                seen.add(video_id)
                try:
                    yield name, self.decoder.load(row, 0)
                except VideoDecodeError as err:
                    yield name, FailedSample(err.path or sample_name(row["shard"], row["key"]), err.reason)
        yield name, ShardEnd(count, complete)


def collate_entries(entries: list[tuple[str, Any]]) -> dict[str, Any]:
    """A batch of `InputShardStream` entries: the decoded samples collated (`pixel_values`, ...), and `entries`, in
    order, as (index shard name, kind, payload) with kind "sample" (payload: position in the batch), "failed",
    "captions" or "end"."""
    from ..data import FailedSample
    from .index import _collate

    samples = [item for _, item in entries if not isinstance(item, (FailedSample, MoreCaptions, ShardEnd))]
    batch = _collate(samples) if samples else {"batch_size": 0, "errors": []}
    order, position = [], 0
    for name, item in entries:
        if isinstance(item, FailedSample):
            order.append((name, "failed", {"video": item.video, "reason": item.reason}))
        elif isinstance(item, MoreCaptions):
            order.append((name, "captions", item))
        elif isinstance(item, ShardEnd):
            order.append((name, "end", item))
        else:
            order.append((name, "sample", position))
            position += 1
    batch["entries"] = order
    return batch


# ---------------------------------------------------------------------------------------------- bytes for pictures
def split_sample_name(video: str) -> tuple[str, str] | None:
    """(shard, key) of a `<shard>#<key>` name whose shard is a WebDataset tar or a Parquet file, else None."""
    if "#" not in video:
        return None
    shard, key = video.rsplit("#", 1)
    return (shard, key) if _kind(shard) and key else None


def shard_member_bytes(video: str, *, video_column: str = "video", key_column: str = "key") -> bytes:
    """The video bytes of the sample `<shard>#<key>`: a tar is scanned up to that sample (members are read in order,
    nothing else is kept); in a Parquet file the key column is read, then only the row group holding that row
    (`row<N>` keys: row N). Raises `LookupError` naming the shard and key when the sample is not there or holds no
    video."""
    from ..data.shards import iter_webdataset_shard

    parts = split_sample_name(video)
    if parts is None:
        raise LookupError(f"{video!r} names no sample of a WebDataset or Parquet shard (<shard>#<key>)")
    shard, key = parts
    if _kind(shard) == "parquet":
        value = _parquet_cell(shard, key, video_column, key_column)
        data = value.get("bytes") if isinstance(value, dict) else value
        if not data:
            raise LookupError(f"sample {video}: no video bytes in column {video_column!r}")
        return bytes(data)
    for row in iter_webdataset_shard(shard, caption_field="auto"):
        if row["key"] == key or (row["error"] and not row["key"]):
            if row["video"]:
                return row["video"]
            raise LookupError(f"sample {video}: {row['error'] or 'no video member'}")
    raise LookupError(f"shard {shard} holds no sample with key {key!r}")


def _parquet_cell(shard: str, key: str, video_column: str, key_column: str) -> Any:
    import pyarrow.parquet as pq
    from datasets.utils.file_utils import xopen

    with xopen(shard, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        names = parquet.schema_arrow.names
        if video_column not in names:
            raise LookupError(f"shard {shard} has no column {video_column!r}; it has {names}")
        row = None
        if key_column in names:
            keys = [str(k) for k in parquet.read(columns=[key_column]).column(0).to_pylist()]
            row = keys.index(key) if key in keys else None
        if row is None and re.fullmatch(r"row\d+", key):
            row = int(key[3:])
        if row is None or row >= parquet.metadata.num_rows:
            raise LookupError(f"shard {shard} holds no sample with key {key!r}")
        start = 0
        for group in range(parquet.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            if row < start + size:
                return parquet.read_row_group(group, columns=[video_column]).column(0)[row - start].as_py()
            start += size
    raise LookupError(f"shard {shard} holds no sample with key {key!r}")
