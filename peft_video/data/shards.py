"""Reading video-text shards as streamed `datasets.IterableDataset`s of raw samples (video bytes + captions).

Sources:
- **WebDataset tar shards** (`webdataset_samples`), as video2dataset writes them: `{key}.mp4` + `{key}.txt` and/or
  `{key}.json`, members of one sample next to each other. Local paths, `http(s)://`, `hf://`, `s3://`... (anything
  fsspec opens, through `datasets`' own `xopen`), brace ranges (`shard-{00000..00099}.tar`) and globs.
- **Parquet shards with embedded bytes** (`parquet_samples`): a `datasets` `Video(decode=False)` column (`{"bytes",
  "path"}`) or a raw bytes column, read one record batch at a time.
- **Any `datasets` dataset** (`dataset_samples`): a Hub dataset, `load_dataset(..., streaming=True)`, a map-style
  `Dataset` (made iterable with `to_iterable_dataset`), whose video column holds `Video(decode=False)` values, bytes or
  paths.

Every source yields the same rows (`sample_features()`): `key`, `shard`, `video` (bytes, or None), `path` (a file
path when the source holds paths instead of bytes), `captions` (one or several), `video_id`, `meta` (the video's other
fields as a JSON object text, or None; see below), and `error`, which names what is wrong with a sample the reader
could not make whole (a shard that ends mid-member, a member without a caption, a caption without a video, unreadable
JSON, a shard that cannot be opened). The reader never raises on bad data: the stream dataset decides what to do with
`error` rows (`on_error`), and the rest of the shard is read on.

Why the tar reader is ours and not `load_dataset("webdataset", streaming=True)`: measured with datasets 5.2, that
builder (1) infers the columns from the first five samples and refuses the whole dataset when one of them lacks a
member ("don't share the same prefix or the same types"); (2) lets a shard that ends mid-member raise out of the
stream (`tarfile.ReadError`), which ends the iteration of every later shard; (3) types `.mp4` members as `Video()`,
which decodes with torchcodec. Sharding, the split across processes and DataLoader workers, and the resumable
position stay `datasets`' (`IterableDataset.from_generator` with the shard list as generator argument); only the tar
parsing is here. A `load_dataset("webdataset", ...)` stream with explicit `features` still works through
`dataset_samples(ds, video_column="mp4", caption_column="txt", key_column="__key__", shard_column="__url__")`.

Per-video metadata (`meta`): what `peft-video shard` stored besides the video and its captions, i.e. the manifest's
other columns (the offline world's `kind`, `order_pair_id`, `is_order_sensitive`, ...; `preprocess` when re-encoded),
so that an evaluation of a streamed split reports twin accuracy and subsets as one of the manifest does. Read from a
WebDataset sample's `.json` member (every field except `video_id`, `captions`, `caption` and `split`, which the
writer puts there itself; for foreign shards, e.g. video2dataset's, its other fields: `url`, `status`, ...), from a
Parquet / `datasets` column holding a JSON object text or a struct (`meta_column`; the writer's `meta`), else None.
JSON types are kept (a bool stays a bool). Kept on `error` rows too, so a video that fails keeps its metadata.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from typing import Any

VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "mov", "avi", "m4v", "mpeg", "mpg", "ts")
"""Members of a WebDataset sample that hold its video (the first one present is used)."""

CAPTION_FIELDS_HELP = (
    '"txt" (the .txt member, one caption), "txt:lines" (one caption per non-empty line), "json:FIELD" (a string or a '
    'list of strings; FIELD may be dotted, e.g. "json:meta.caption"), or "auto" (json "captions", then json '
    '"caption", then txt)'
)


def sample_features():
    """The `datasets.Features` of a raw sample row (what every source yields)."""
    import datasets

    return datasets.Features(
        {
            "key": datasets.Value("string"),
            "shard": datasets.Value("string"),
            "video": datasets.Value("binary"),
            "path": datasets.Value("string"),
            "captions": datasets.List(datasets.Value("string")),
            "video_id": datasets.Value("string"),
            "meta": datasets.Value("string"),
            "error": datasets.Value("string"),
        }
    )


META_EXCLUDED_JSON_FIELDS = ("video_id", "captions", "caption", "split")
"""Fields of a WebDataset `.json` member that are not per-video metadata (the writer's own; see the module doc)."""


def _row(
    key: str, shard: str, *, video=None, path=None, captions=(), video_id=None, meta=None, error=None
) -> dict[str, Any]:
    return {
        "key": key,
        "shard": shard,
        "video": video,
        "path": path,
        "captions": list(captions),
        "video_id": video_id if video_id is not None else key,
        "meta": json.dumps(meta, ensure_ascii=False, default=str) if meta else None,
        "error": error,
    }


def parse_meta(value: Any) -> dict[str, Any] | None:
    """A raw sample's `meta` (a JSON object text, or already a dict) as a dict; None when absent, not an object or not
    JSON."""
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    return dict(value) if isinstance(value, dict) and value else None


# ---------------------------------------------------------------------------------------------------- shard lists


_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_shards(shards: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Shard URLs from a list, brace ranges (`shard-{00000..00009}.tar`, zero padding kept, as webdataset writes
    them) and globs (`data/*.tar`; remote globs where the filesystem lists, e.g. `hf://` or `s3://`, not `http`).
    Raises `FileNotFoundError` when a pattern matches nothing."""
    items = [shards] if isinstance(shards, (str, os.PathLike)) else list(shards)
    out: list[str] = []
    for item in items:
        for url in _expand_braces(str(item)):
            if not any(char in url for char in "*?["):
                out.append(url)
                continue
            matches = _glob(url)
            if not matches:
                raise FileNotFoundError(f"no shard matches {url!r}")
            out.extend(matches)
    if not out:
        raise ValueError("no shards given")
    return out


def _expand_braces(pattern: str) -> list[str]:
    match = _BRACES.search(pattern)
    if match is None:
        return [pattern]
    first, last = match.group(1), match.group(2)
    width = len(first) if first.startswith("0") or len(first) == len(last) else 0
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [
        expanded
        for number in range(int(first), int(last) + 1)
        for expanded in _expand_braces(f"{head}{number:0{width}d}{tail}")
    ]


def _glob(pattern: str) -> list[str]:
    if "://" not in pattern:
        return sorted(glob.glob(pattern))
    import fsspec

    fs, _, _ = fsspec.core.get_fs_token_paths(pattern)
    protocol = pattern.split("://", 1)[0]
    return [f"{protocol}://{path}" for path in sorted(fs.glob(pattern))]


def _open(url: str):
    """A binary file object for a local path or any fsspec URL (datasets' `xopen`: retries and Hub credentials)."""
    from datasets.utils.file_utils import xopen

    return xopen(url, "rb")


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:300]


# ------------------------------------------------------------------------------------------------------ captions


def _lookup(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _as_captions(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    return [str(value)]


def check_caption_field(caption_field: str) -> str:
    """Validate a caption-field specification (see `CAPTION_FIELDS_HELP`); returns it."""
    if caption_field in ("auto", "txt", "txt:lines") or (caption_field.startswith("json:") and len(caption_field) > 5):
        return caption_field
    raise ValueError(f"unknown caption field {caption_field!r}; expected {CAPTION_FIELDS_HELP}")


class _Members:
    """The members of one WebDataset sample, parsed on demand (JSON once)."""

    def __init__(self, members: dict[str, bytes]):
        self.members = members
        self._json: Any = None

    def json(self) -> Any:
        if self._json is None and "json" in self.members:
            self._json = json.loads(self.members["json"].decode("utf-8"))
        return self._json

    def text(self) -> str | None:
        return self.members["txt"].decode("utf-8") if "txt" in self.members else None

    def captions(self, caption_field: str) -> list[str]:
        if caption_field == "auto":
            data = self.json()
            for field in ("captions", "caption"):
                found = _as_captions(_lookup(data, field))
                if found:
                    return found
            return _as_captions(self.text())
        if caption_field == "txt":
            return _as_captions(self.text())
        if caption_field == "txt:lines":
            return _as_captions((self.text() or "").splitlines())
        return _as_captions(_lookup(self.json(), caption_field[len("json:") :]))

    def video_id(self) -> str | None:
        data = self.json() if "json" in self.members else None
        value = _lookup(data, "video_id")
        return None if value is None else str(value)

    def meta(self) -> dict[str, Any] | None:
        """The `.json` member's fields other than `META_EXCLUDED_JSON_FIELDS` (None without a JSON object)."""
        data = self.json() if "json" in self.members else None
        if not isinstance(data, dict):
            return None
        return {k: v for k, v in data.items() if k not in META_EXCLUDED_JSON_FIELDS} or None


# -------------------------------------------------------------------------------------------------------- tar shards


def split_member_name(name: str) -> tuple[str | None, str]:
    """(key, extension) of a tar member: the key is the path up to the first dot of the file name, the extension the
    rest, lower-cased (the WebDataset convention that `datasets` and `webdataset` share: `a/b.c.mp4` -> `a/b`,
    `c.mp4`)."""
    match = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", name)
    if not match:
        return None, ""
    return match.group(1), match.group(2).lower()


class _BrokenOff(Exception):
    """The archive ended or failed inside member `inside` (its data), or between members after member `after`."""

    def __init__(self, cause: BaseException, inside: str | None, after: str | None):
        super().__init__(str(cause))
        self.cause, self.inside, self.after = cause, inside, after


class _CountingReader:
    """Counts the bytes tarfile reads, to tell a proper end of archive from a file cut off at a header."""

    def __init__(self, handle):
        self.handle, self.count = handle, 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.count += len(data)
        return data


def _tar_members(handle) -> Iterator[tuple[str, bytes] | _BrokenOff]:
    """(name, data) per regular member, then a `_BrokenOff` when the archive breaks off (and nothing after it)."""
    last: str | None = None
    reading: str | None = None
    counting = _CountingReader(handle)
    try:
        stream = tarfile.open(fileobj=counting, mode="r|*")
        for info in stream:
            if not info.isreg():
                continue
            reading = info.name
            data = stream.extractfile(info).read()
            reading, last = None, info.name
            stream.members = []  # stream mode keeps every header otherwise: memory grows with the shard
            yield info.name, data
        # tarfile takes a file cut off inside (or right before) a header for the end of the archive. A real end is a
        # 512-byte zero block at `stream.offset`; fewer bytes left means the file was cut (uncompressed tars only).
        if getattr(stream.fileobj, "comptype", "tar") == "tar" and last is not None:
            while counting.read(1 << 16):
                pass
            if counting.count - stream.offset < tarfile.BLOCKSIZE:
                raise tarfile.ReadError("no end-of-archive block: the file was cut off")
    except Exception as err:  # tarfile.ReadError ("unexpected end of data"), network errors, gzip errors
        yield _BrokenOff(err, reading, last)


def iter_webdataset_shard(
    shard: str,
    *,
    caption_field: str = "auto",
    video_extensions: Sequence[str] = VIDEO_EXTENSIONS,
) -> Iterator[dict[str, Any]]:
    """The samples of one WebDataset tar shard as raw rows (`SAMPLE_FEATURES`); problems become `error` rows."""
    try:
        handle = _open(shard)
    except Exception as err:
        yield _row("", shard, error=f"cannot open shard: {_short(err)}")
        return
    with handle:
        key: str | None = None
        members: dict[str, bytes] = {}
        problems: list[str] = []
        for item in _tar_members(handle):
            if isinstance(item, _BrokenOff):
                broken_key = split_member_name(item.inside)[0] if item.inside else None
                if key is not None and key != broken_key:  # the sample before the break is whole
                    yield _webdataset_row(key, shard, members, problems, caption_field, video_extensions)
                if item.inside:  # the member being read is lost, and with it its sample
                    reason = f"shard ends inside member {item.inside!r}"
                else:  # a header is broken: whatever followed is unknown
                    reason = f"shard breaks off after member {item.after!r}" if item.after else "not a tar archive"
                yield _row(broken_key or "", shard, error=f"{reason}: {_short(item.cause)}")
                return
            name, data = item
            sample_key, extension = split_member_name(name)
            if sample_key is None:
                continue  # a member without an extension (e.g. a folder marker): not part of any sample
            if sample_key != key:
                if key is not None:
                    yield _webdataset_row(key, shard, members, problems, caption_field, video_extensions)
                key, members, problems = sample_key, {}, []
            if extension in members:
                problems.append(f"duplicate member {name!r}")
                continue
            members[extension] = data
        if key is not None:
            yield _webdataset_row(key, shard, members, problems, caption_field, video_extensions)


def _webdataset_row(
    key: str,
    shard: str,
    members: dict[str, bytes],
    problems: list[str],
    caption_field: str,
    video_extensions: Sequence[str],
) -> dict[str, Any]:
    if problems:
        return _row(key, shard, error="; ".join(problems))
    video = next((members[ext] for ext in video_extensions if ext in members), None)
    parsed = _Members(members)
    try:
        captions = parsed.captions(caption_field)
        video_id = parsed.video_id()
        meta = parsed.meta()
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return _row(key, shard, error=f"unreadable caption member: {_short(err)}")
    found = ", ".join(sorted(members)) or "none"
    if video is None:
        error = f"no video member (members: {found})"
        return _row(key, shard, captions=captions, video_id=video_id, meta=meta, error=error)
    if not captions:
        error = f"no caption in {caption_field!r} (members: {found})"
        return _row(key, shard, video_id=video_id, meta=meta, error=error)
    return _row(key, shard, video=video, captions=captions, video_id=video_id, meta=meta)


def _webdataset_generator(shards: list[str], caption_field: str, video_extensions: tuple[str, ...]):
    for shard in shards:
        yield from iter_webdataset_shard(shard, caption_field=caption_field, video_extensions=video_extensions)


def webdataset_samples(
    shards: str | Sequence[str],
    *,
    caption_field: str = "auto",
    video_extensions: Sequence[str] = VIDEO_EXTENSIONS,
):
    """A streamed `datasets.IterableDataset` of raw samples (`sample_features()`) read from WebDataset tar shards.

    One `datasets` shard per tar file, so `split_dataset_by_node` and DataLoader workers divide the files, and
    `state_dict()` records (file, sample) positions.

    Args:
        shards: Paths or URLs, brace ranges or globs (`expand_shards`).
        caption_field: Where the caption is (`CAPTION_FIELDS_HELP`): "txt", "txt:lines", "json:FIELD" or "auto".
        video_extensions: Members that hold the video, in order of preference.
    """
    import datasets

    return datasets.IterableDataset.from_generator(
        _webdataset_generator,
        features=sample_features(),
        gen_kwargs={
            "shards": expand_shards(shards),
            "caption_field": check_caption_field(caption_field),
            "video_extensions": tuple(ext.lower().lstrip(".") for ext in video_extensions),
        },
    )


# ---------------------------------------------------------------------------------------------------- Parquet shards


def _video_value(value: Any) -> tuple[bytes | None, str | None]:
    """(bytes, path) of a video cell: a `Video(decode=False)` / `{"bytes", "path"}` struct, raw bytes, or a path."""
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        if data:
            return bytes(data), None
        return None, path or None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), None
    if isinstance(value, str) and value.strip():
        return None, value.strip()
    return None, None


def sample_from_record(
    record: dict[str, Any],
    shard: str,
    fallback_key: str,
    *,
    video_column: str,
    caption_column: str,
    key_column: str | None,
    video_id_column: str | None,
    meta_column: str | None = None,
) -> dict[str, Any]:
    """A raw sample from one table row (Parquet record, `datasets` row). `meta_column` holds the video's metadata as
    a JSON object text (the writer's `meta`) or a struct; a value that is neither counts as no metadata."""
    key = record.get(key_column) if key_column else None
    key = fallback_key if key is None or str(key) == "" else str(key)
    video_id = record.get(video_id_column) if video_id_column else None
    video_id = None if video_id is None or str(video_id) == "" else str(video_id)
    meta = parse_meta(record.get(meta_column)) if meta_column else None
    if video_column not in record:
        return _row(key, shard, video_id=video_id, meta=meta, error=f"no column {video_column!r}")
    data, path = _video_value(record[video_column])
    captions = _as_captions(record[caption_column] if caption_column in record else _lookup(record, caption_column))
    if data is None and path is None:
        error = f"no video in column {video_column!r}"
        return _row(key, shard, captions=captions, video_id=video_id, meta=meta, error=error)
    if not captions:
        return _row(key, shard, video_id=video_id, meta=meta, error=f"no caption in column {caption_column!r}")
    return _row(key, shard, video=data, path=path, captions=captions, video_id=video_id, meta=meta)


def iter_parquet_shard(
    shard: str,
    *,
    video_column: str = "video",
    caption_column: str = "captions",
    key_column: str | None = "key",
    video_id_column: str | None = "video_id",
    meta_column: str | None = "meta",
    batch_size: int = 16,
) -> Iterator[dict[str, Any]]:
    """The rows of one Parquet file as raw samples, `batch_size` rows in memory at a time. A row without a key is
    named `row<N>`. A file that cannot be opened, or breaks off, becomes an `error` row naming the shard and row.
    `meta_column` (when the file has it): each video's metadata (`sample_from_record`)."""
    import pyarrow.parquet as pq

    row_number = 0
    try:
        with _open(shard) as handle:
            parquet = pq.ParquetFile(handle)
            names = set(parquet.schema_arrow.names)
            columns = (video_column, caption_column, key_column, video_id_column, meta_column)
            wanted = list(dict.fromkeys(c for c in columns if c and c in names))
            if video_column not in names or caption_column not in names:
                missing = [c for c in (video_column, caption_column) if c not in names]
                yield _row("", shard, error=f"no column(s) {missing} in the Parquet file; it has {sorted(names)}")
                return
            for batch in parquet.iter_batches(batch_size=batch_size, columns=wanted):
                for record in batch.to_pylist():
                    yield sample_from_record(
                        record,
                        shard,
                        f"row{row_number}",
                        video_column=video_column,
                        caption_column=caption_column,
                        key_column=key_column if key_column in names else None,
                        video_id_column=video_id_column if video_id_column in names else None,
                        meta_column=meta_column if meta_column in names else None,
                    )
                    row_number += 1
    except Exception as err:  # not Parquet, truncated, unreachable
        where = "cannot open shard" if row_number == 0 else f"shard breaks off after {row_number} rows"
        yield _row(f"row{row_number}", shard, error=f"{where}: {_short(err)}")


def _parquet_generator(shards: list[str], **columns: Any):
    for shard in shards:
        yield from iter_parquet_shard(shard, **columns)


def parquet_samples(
    shards: str | Sequence[str],
    *,
    video_column: str = "video",
    caption_column: str = "captions",
    key_column: str | None = "key",
    video_id_column: str | None = "video_id",
    meta_column: str | None = "meta",
):
    """A streamed `datasets.IterableDataset` of raw samples read from Parquet files with embedded video bytes (one
    `datasets` shard per file). The caption column holds a string or a list of strings (several captions);
    `meta_column` (used when present) each video's metadata as a JSON object text (the writer's `meta`) or a struct."""
    import datasets

    return datasets.IterableDataset.from_generator(
        _parquet_generator,
        features=sample_features(),
        gen_kwargs={
            "shards": expand_shards(shards),
            "video_column": video_column,
            "caption_column": caption_column,
            "key_column": key_column,
            "video_id_column": video_id_column,
            "meta_column": meta_column,
        },
    )


# --------------------------------------------------------------------------------------------- any datasets dataset


def dataset_samples(
    dataset: Any,
    *,
    video_column: str = "video",
    caption_column: str = "caption",
    key_column: str | None = None,
    video_id_column: str | None = None,
    shard_column: str | None = None,
    meta_column: str | None = None,
    name: str = "dataset",
    num_shards: int = 64,
):
    """Raw samples from any `datasets` dataset whose video column holds `Video(decode=False)` values, bytes or paths.

    `caption_column` holds a string or a list of strings, or names a field inside a struct column with a dot (e.g.
    `"json.captions"` for `load_dataset("webdataset")` rows).

    A decoding `Video` column is switched to `decode=False` (datasets would decode it with torchcodec). A map-style
    `Dataset` is streamed with `to_iterable_dataset(num_shards)` (its rows are read lazily from the Arrow files, never
    all in memory). Errors name `shard_column`'s value (e.g. `__url__` of `load_dataset("webdataset")`) or `name`,
    and `key_column`'s value (e.g. `__key__`) or the row number in the reading worker's stream (pass a key column
    for names that stay stable). `meta_column`: a column of per-video metadata (a JSON object text, e.g. the
    `meta` of `peft-video shard`'s Parquet files, or a struct); None: no metadata.
    """
    import datasets

    if video_column not in (dataset.column_names or []):
        raise ValueError(f"dataset has no column {video_column!r}; columns: {dataset.column_names}")
    if caption_column.split(".")[0] not in dataset.column_names:
        raise ValueError(f"dataset has no column {caption_column!r}; columns: {dataset.column_names}")
    feature = (dataset.features or {}).get(video_column)
    if isinstance(feature, datasets.Video) and feature.decode:
        dataset = dataset.cast_column(video_column, datasets.Video(decode=False))
    if isinstance(dataset, datasets.Dataset):
        dataset = dataset.to_iterable_dataset(num_shards=max(1, min(num_shards, len(dataset))))
    convert = functools.partial(  # a module-level function: DataLoader workers started by "spawn" pickle it
        _convert_record,
        shard_column=shard_column,
        name=name,
        video_column=video_column,
        caption_column=caption_column,
        key_column=key_column,
        video_id_column=video_id_column,
        meta_column=meta_column if meta_column in dataset.column_names else None,
    )
    return dataset.map(convert, with_indices=True, remove_columns=dataset.column_names, features=sample_features())


def _convert_record(record: dict[str, Any], index: int, *, shard_column: str | None, name: str, **columns: Any):
    shard = str(record.get(shard_column) or name) if shard_column else name
    return sample_from_record(record, shard, f"row{index}", **columns)


# ------------------------------------------------------------------------------------------ shards.json (the writer's)


def _join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}" if "://" in location else os.path.join(location, name)


def shard_index(location: str | os.PathLike) -> dict[str, Any]:
    """The `shards.json` that `peft-video shard` wrote in `location` (a folder, or its URL)."""
    from .shard_writer import INDEX_FILE, INDEX_FORMAT

    location = str(location)
    try:
        with _open(_join(location, INDEX_FILE)) as handle:
            index = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"no {INDEX_FILE} in {location} (`peft-video shard` writes one); read other shards with "
            f"webdataset_samples('{location}/*.tar') or parquet_samples('{location}/*.parquet')"
        ) from err
    if index.get("format_name") != INDEX_FORMAT:
        raise ValueError(f"{_join(location, INDEX_FILE)} is not a peft-video shard index")
    return index


def open_shards(location: str | os.PathLike, **options: Any):
    """Raw samples of the shards `peft-video shard` wrote in `location` (a folder or its URL, e.g.
    `https://host/data/train` or `hf://datasets/user/name/train`), read as its `shards.json` says. `options` go to
    `webdataset_samples` or `parquet_samples`."""
    index = shard_index(location)
    urls = [_join(str(location), shard["name"]) for shard in index["shards"]]
    if not urls:
        raise ValueError(f"{location}: the shard index lists no shards")
    if index["format"] == "webdataset":
        return webdataset_samples(urls, **{"caption_field": index["caption_field"], **options})
    return parquet_samples(urls, **{"caption_column": index["caption_field"], **options})
