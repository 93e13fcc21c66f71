"""A video index on disk: embeddings with their metadata as a `datasets` dataset, plus a FAISS index over them.

    report = build_index("data/test.csv", "indexes/test", adapter="outputs/demo_tfvl")
    index = VideoSearchIndex.open("indexes/test")
    index.search("a red circle moves from left to right", k=10)

Layout of an index folder:
- `index.json`: format and version, the encoder identity (adapter, base model, sampling, preprocessing, embedding
  size, library version), the FAISS settings and file, the committed shards in order, unreadable videos with reasons,
  and one entry per build run. It is replaced atomically and is the only source of truth: a shard or FAISS file that
  it does not name is ignored.
- `shards/<run>-<k>/`: one `datasets` dataset per shard (`Dataset.save_to_disk`: `video_id`, `video`, `duration`,
  `captions`, `embedding`) and its `failures.json`; written to a temporary folder and renamed when complete. From a
  sharded source, one per input shard (`shards/<run>-<k>-<input shard's name>/`, with `input.json`: the input
  shard's URL, its sample count, and whether it was read to its end).
- `faiss-<generation>.index`: the FAISS index of every committed row, in shard order (FAISS id = row number).
- `runs/<run>.json` while a build run is in progress: its plan (which videos go to which shard).

Building (`build_index`) plans a run (the source's videos not yet indexed, cut into shards), encodes the shards, then
commits them. Shard k of a run is encoded by process k mod N (`accelerate launch` with N processes; each process
writes its own shards), and the shard contents do not depend on N, so 1 and 2 processes give the same index. A killed
run is resumed by the same call: shards already written are not encoded again. A later call with more videos adds
only the new ones (incremental); the embeddings of the videos already indexed are never recomputed. The index records
who made its embeddings and refuses to mix in embeddings of another adapter, base model or sampling.

From shards (`shard_sources.collect_shards`: a `peft-video shard` folder, WebDataset tars, Parquet files, a `datasets`
dataset holding bytes) nothing is exploded to disk: the unit of work and of resumption is the input shard, decoded
through the streamed evaluation chain (`StreamingVideoTextDataset.load`), input shard k encoded by process k mod N
into its own index shard. `index.json` records each index shard's input shard and whether it was read whole, so a
resumed run skips written shards and a later call encodes only input shards not indexed yet (a shard that ended
early is read again, its videos already indexed skipped before decoding).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import ann
from .encoder import VideoTextEncoder, identity_differences
from .shard_sources import ShardSource, collect_shards, index_shard_name, is_shard_source
from .sources import VideoRecord, collect_videos

logger = logging.getLogger(__name__)

INDEX_FORMAT = "peft_video.video_index"
INDEX_VERSION = 1
INDEX_FILE = "index.json"
SHARDS_DIR = "shards"
RUNS_DIR = "runs"
FAILURES_FILE = "failures.json"
INPUT_FILE = "input.json"
DEFAULT_SHARD_SIZE = 1024


class IndexCorruptError(ValueError):
    """An index folder is missing a file or holds inconsistent files; the message names the file and the fix."""


class IndexMismatchError(ValueError):
    """Embeddings of another adapter, base model or sampling would be mixed into an index (the message lists the
    fields that differ, with both values)."""


# ------------------------------------------------------------------------------------------------ the manifest file
def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically (a kill leaves the old file or the new one, never half of one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, path)


def read_index_info(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed `index.json` of an index folder, checked for format and version."""
    directory = Path(directory)
    path = directory / INDEX_FILE
    if not path.is_file():
        if not directory.is_dir():
            raise FileNotFoundError(f"no index at {directory}: the folder does not exist")
        if (directory / RUNS_DIR).is_dir() and any((directory / RUNS_DIR).glob("*.json")):
            raise IndexCorruptError(
                f"{directory} holds an index whose first build did not finish (no {INDEX_FILE} yet); run the same "
                "`peft-video index` command again to resume it"
            )
        raise IndexCorruptError(f"{directory} is not a peft_video index: {path} is missing")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IndexCorruptError(f"{path} is not valid JSON ({err}); the index folder is damaged") from err
    if not isinstance(info, dict) or info.get("format") != INDEX_FORMAT:
        raise IndexCorruptError(f"{path} is not a {INDEX_FORMAT} file (format={info.get('format')!r})")
    if info.get("version") != INDEX_VERSION:
        raise IndexCorruptError(
            f"{path} has index version {info.get('version')!r}; this peft_video reads version {INDEX_VERSION}"
        )
    for key in ("identity", "shards", "faiss_file", "num_videos"):
        if key not in info:
            raise IndexCorruptError(f"{path} lacks the field {key!r}; the index folder is damaged")
    return info


def _check_identity(ours: dict[str, Any], theirs: dict[str, Any], where: str) -> None:
    differences = identity_differences(ours, theirs)
    if differences:
        lines = "; ".join(f"{key}: index has {a!r}, this encoder has {b!r}" for key, (a, b) in differences.items())
        raise IndexMismatchError(
            f"{where} was built with another model or sampling and its embeddings cannot be mixed with these: "
            f"{lines}. Build a separate index (another folder) for this adapter."
        )


# ----------------------------------------------------------------------------------------------------- shards
def _shard_features(dim: int):
    import datasets

    return datasets.Features(
        {
            "video_id": datasets.Value("string"),
            "video": datasets.Value("string"),
            "duration": datasets.Value("float32"),
            "captions": datasets.Sequence(datasets.Value("string")),
            "embedding": datasets.Sequence(datasets.Value("float32"), length=dim),
        }
    )


def _load_shard(directory: Path, name: str):
    import datasets

    path = directory / SHARDS_DIR / name
    if not path.is_dir():
        raise IndexCorruptError(
            f"shard {path} named in {directory / INDEX_FILE} is missing; restore it or rebuild the index"
        )
    try:
        return datasets.load_from_disk(str(path))
    except Exception as err:  # datasets raises FileNotFoundError / ArrowInvalid / ValueError alike
        raise IndexCorruptError(f"shard {path} cannot be read ({type(err).__name__}: {err})") from err


def _write_shard(
    directory: Path,
    name: str,
    rows: dict[str, list],
    failures: list[dict[str, str]],
    dim: int,
    input_shard: dict[str, Any] | None = None,
) -> None:
    """Write an index shard (and, for one made from an input shard, `input.json`: which one, how many samples, and
    whether it was read to its end)."""
    import datasets

    final = directory / SHARDS_DIR / name
    tmp = directory / SHARDS_DIR / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet_datasets():
        # an empty shard (every video unreadable or already indexed) needs one Arrow file: with none, datasets 5.2
        # writes a folder that load_from_disk cannot read (IndexError in concat_tables)
        empty = not rows["video_id"]
        datasets.Dataset.from_dict(rows, features=_shard_features(dim)).save_to_disk(
            str(tmp), num_shards=1 if empty else None
        )
    (tmp / FAILURES_FILE).write_text(json.dumps(failures, indent=1))
    if input_shard is not None:
        (tmp / INPUT_FILE).write_text(json.dumps(input_shard, indent=1))
    if final.is_dir():  # a shard rewritten at commit (duplicates dropped): a directory is not replaced in one step
        stale = directory / SHARDS_DIR / f".old-{name}-{os.getpid()}"
        os.replace(final, stale)
        os.replace(tmp, final)
        shutil.rmtree(stale)
    else:
        os.replace(tmp, final)


@contextlib.contextmanager
def _quiet_datasets():
    """No "Saving the dataset" bar per shard (the build has its own progress bar)."""
    from datasets.utils import logging as datasets_logging

    was_enabled = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            datasets_logging.enable_progress_bar()


# ------------------------------------------------------------------------------------------------------ encoding
class _ShardBatches(torch.utils.data.Sampler):
    """Batches of dataset positions that never cross a shard boundary, so a shard is complete after its last one."""

    def __init__(self, shard_sizes: list[int], batch_size: int):
        self.batches = []
        start = 0
        for size in shard_sizes:
            for offset in range(0, size, batch_size):
                self.batches.append(list(range(start + offset, start + min(offset + batch_size, size))))
            start += size

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _collate(samples: list[Any]) -> dict[str, Any]:
    from ..data import FailedSample, VideoTextCollator

    batch = VideoTextCollator()(samples)
    batch["duration"] = [s["duration"] for s in samples if not isinstance(s, FailedSample)]
    return batch


def _encode_shards(
    encoder: VideoTextEncoder,
    shards: list[tuple[str, list[VideoRecord]]],
    directory: Path,
    *,
    cache: Any,
    batch_size: int,
    num_workers: int,
    decode_timeout: float | None,
    backend: str,
    progress: bool,
    on_shard_written: Callable[[str], None] | None,
) -> None:
    """Encode `shards` (name, videos) with one DataLoader (workers kept across shards) and write each when done."""
    import datasets

    from ..data import VideoTextDataset

    if not shards:
        return
    records = [record for _, videos in shards for record in videos]
    rows = datasets.Dataset.from_dict(
        {
            "video": [r.video for r in records],
            "video_id": [r.video_id for r in records],
            "caption": [r.captions[0] if r.captions else r.video_id for r in records],  # unused: the dataset wants one
        }
    )
    dataset = VideoTextDataset(
        rows,
        encoder.processor.sampling,
        encoder.processor.transform,
        train=False,
        backend=backend,
        on_error="skip",
        decode_timeout=decode_timeout,
        cache=cache,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=_ShardBatches([len(v) for _, v in shards], batch_size),
        num_workers=num_workers,
        collate_fn=_collate,
        persistent_workers=False,
    )
    from tqdm.auto import tqdm

    dim = encoder.identity["embedding_dim"]
    captions = {r.video_id: list(r.captions) for r in records}
    bar = tqdm(total=len(records), desc="encoding videos", unit="video", disable=not progress)
    shard_iter = iter(shards)
    name, videos = next(shard_iter)
    pending, buffer, failures = len(videos), _empty_rows(), []
    for batch in loader:
        failures += batch["errors"]
        if batch["batch_size"]:
            embeddings = encoder.encode_pixels(batch["pixel_values"], batch["video_mask"])
            buffer["video_id"] += batch["video_id"]
            buffer["video"] += batch["video"]
            buffer["duration"] += [float(d) for d in batch["duration"]]
            buffer["captions"] += [captions[v] for v in batch["video_id"]]
            buffer["embedding"] += list(embeddings)
        done = batch["batch_size"] + len(batch["errors"])
        pending -= done
        bar.update(done)
        while pending == 0:
            _write_shard(directory, name, buffer, failures, dim)
            if on_shard_written is not None:
                on_shard_written(name)
            buffer, failures = _empty_rows(), []
            try:
                name, videos = next(shard_iter)
            except StopIteration:
                break
            pending = len(videos)
    bar.close()


def _empty_rows() -> dict[str, list]:
    return {"video_id": [], "video": [], "duration": [], "captions": [], "embedding": []}


def _encode_input_shards(
    encoder: VideoTextEncoder,
    source: ShardSource,
    shards: list[tuple[int, str]],
    directory: Path,
    *,
    skip_ids: set[str],
    batch_size: int,
    num_workers: int,
    decode_timeout: float | None,
    backend: str,
    progress: bool,
    on_shard_written: Callable[[str], None] | None,
) -> None:
    """Encode input shards ((position in `source`, index shard name)) through the streamed evaluation chain
    (`StreamingVideoTextDataset.load`: the same decoding, sampling and preprocessing as files), DataLoader worker w
    of n reading whole input shards w::n, and write each index shard when its input shard has been read to the end."""
    from tqdm.auto import tqdm

    from ..data import StreamingVideoTextDataset
    from .shard_sources import InputShardStream, collate_entries

    if not shards:
        return
    decoder = StreamingVideoTextDataset(
        source.samples, encoder.processor.sampling, encoder.processor.transform, train=False, shuffle_buffer=0,
        rank=0, world_size=1, backend=backend, on_error="skip", decode_timeout=decode_timeout,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        InputShardStream(source, shards, decoder, skip_ids),
        batch_size=batch_size,
        num_workers=min(num_workers, len(shards)),
        collate_fn=collate_entries,
    )
    inputs = {name: source.inputs[position] for position, name in shards}
    dim = encoder.identity["embedding_dim"]
    buffers: dict[str, dict[str, list]] = {}
    rows_of: dict[str, dict[str, int]] = {}
    failures: dict[str, list[dict[str, str]]] = {}
    bar = tqdm(total=len(shards), desc="encoding shards", unit="shard", disable=not progress)
    for batch in loader:
        embeddings = encoder.encode_pixels(batch["pixel_values"], batch["video_mask"]) if batch["batch_size"] else None
        for name, kind, payload in batch["entries"]:
            rows = buffers.setdefault(name, _empty_rows())
            if kind == "sample":
                rows_of.setdefault(name, {})[batch["video_id"][payload]] = len(rows["video_id"])
                rows["video_id"].append(batch["video_id"][payload])
                rows["video"].append(batch["video"][payload])
                rows["duration"].append(float(batch["duration"][payload]))
                rows["captions"].append(list(batch["captions"][payload]))
                rows["embedding"].append(embeddings[payload])
            elif kind == "failed":
                failures.setdefault(name, []).append(payload)
            elif kind == "captions":  # another row of a video of this shard (a caption-per-row source)
                row = rows_of.get(name, {}).get(payload.video_id)
                if row is not None:
                    rows["captions"][row] += [c for c in payload.captions if c not in rows["captions"][row]]
            else:
                record = {"input_shard": inputs[name], "samples": payload.samples, "complete": payload.complete}
                _write_shard(directory, name, buffers.pop(name), failures.pop(name, []), dim, record)
                rows_of.pop(name, None)
                if on_shard_written is not None:
                    on_shard_written(name)
                bar.update(1)
    bar.close()


# -------------------------------------------------------------------------------------------------------- building
def process_state():
    """Accelerate's `PartialState` (rank, world size, device, barriers) of this process, honouring
    `ACCELERATE_USE_CPU` as `Accelerator` does (`PartialState` alone ignores it and would not join the group)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


@dataclass
class BuildReport:
    """What a `build_index` call did."""

    index_dir: Path
    num_videos: int
    added: int
    already_indexed: int
    failed: dict[str, str] = field(default_factory=dict)
    resumed_shards: int = 0
    factory: str = ""
    seconds: float = 0.0
    input_shards: int = 0
    incomplete_shards: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"index {self.index_dir}: {self.num_videos} videos ({self.added} added, {self.already_indexed} already "
            f"indexed, {len(self.failed)} unreadable), FAISS {self.factory}, {self.seconds:.1f} s"
        ]
        if self.input_shards:
            lines.append(f"{self.input_shards} input shards indexed")
        if self.resumed_shards:
            lines.append(f"resumed an interrupted run: {self.resumed_shards} shards already written were kept")
        lines += [f"  INCOMPLETE {shard}: read again by the next call" for shard in self.incomplete_shards]
        lines += [f"  UNREADABLE {video}: {reason}" for video, reason in sorted(self.failed.items())]
        return "\n".join(lines)


def build_index(
    source: Any,
    index_dir: str | os.PathLike,
    *,
    encoder: VideoTextEncoder | None = None,
    adapter: str | os.PathLike | None = None,
    base_model: str | os.PathLike | None = None,
    num_frames: int = 12,
    dtype: str = "float32",
    factory: str = "auto",
    search_params: str | None = None,
    split: str | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = 16,
    num_workers: int = 0,
    cache: Any = "auto",
    decode_timeout: float | None = 60.0,
    backend: str = "auto",
    progress: bool = True,
    on_shard_written: Callable[[str], None] | None = None,
    caption_field: str | None = None,
    video_column: str | None = None,
    key_column: str | None = None,
) -> BuildReport:
    """Encode the videos of `source` that `index_dir` does not hold yet and add them to it (creating it if needed).

    Args:
        source: Files: a manifest, a folder of videos, a `datasets.Dataset` of paths or a list of paths
            (`collect_videos`). Shards (`collect_shards`): a folder written by `peft-video shard` (`split` picks
            the split's folder), WebDataset tars or Parquet files (list, brace range or glob; local or fsspec URLs),
            a `datasets.IterableDataset`, or a `datasets.Dataset` whose video column holds bytes. Shards are
            indexed one index shard per input shard (the unit of work and of resumption); an indexed sample's
            `video` is `<shard url>#<key>`.
        index_dir: The index folder.
        encoder: A loaded `VideoTextEncoder`; otherwise one is loaded from `adapter` / `base_model` (zero-shot with
            `num_frames` when there is no adapter), in `dtype`.
        factory: FAISS index type: `"auto"` (exact up to `ann.EXACT_LIMIT` videos, IVF above), `"Flat"`, or any
            `faiss.index_factory` string; `search_params` its search-time settings (e.g. `"nprobe=64"`).
        shard_size: Videos per shard (the unit of resumption and of work per process).
        cache: A frame cache (folder or `FrameCache`) built with the adapter's sampling; `"auto"` uses the one
            beside a manifest source when it matches; None decodes every video.
        decode_timeout: Seconds per video in an isolated helper process (None: decode in-process).
        on_shard_written: Called with each shard's name once it is on disk (progress reporting, tests).
        caption_field: Shards: the WebDataset caption field (`"auto"`, `"txt"`, `"json:FIELD"`...) or the Parquet /
            `datasets` caption column (default: `shards.json`'s, else auto / captions / caption). `video_column`,
            `key_column`: the Parquet / `datasets` columns holding the video and the sample's key.

    Under `accelerate launch` every process encodes its share of the shards; the main process commits. Unreadable
    videos are skipped, listed in the report and in `index.json`, and retried by the next call.
    """
    started = time.perf_counter()
    state = process_state()
    directory = Path(index_dir)
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard_size and batch_size must be positive, got {shard_size} and {batch_size}")
    columns = {"caption_field": caption_field, "video_column": video_column, "key_column": key_column}
    is_sharded = is_shard_source(source, split=split, video_column=video_column)
    sharded = collect_shards(source, split=split, **columns) if is_sharded else None
    videos = None if sharded is not None else _collect_files(source, split, caption_field, video_column)
    if encoder is None:
        encoder = VideoTextEncoder.load(adapter, base_model, num_frames=num_frames, device=state.device, dtype=dtype)
    info = read_index_info(directory) if (directory / INDEX_FILE).is_file() else None
    if info is not None:
        _check_identity(info["identity"], encoder.identity, f"index {directory}")
    if isinstance(cache, str) and cache == "auto":
        from ..data.cache import manifest_frame_cache

        manifest = videos.manifest if videos is not None else None
        cache = manifest_frame_cache(manifest, encoder.processor.sampling) if manifest else None
    options = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        decode_timeout=decode_timeout,
        backend=backend,
        progress=progress and state.is_main_process,
        on_shard_written=on_shard_written,
    )
    if sharded is None:
        indexed_before = _indexed_ids(directory, info)
        already = sum(r.video_id in indexed_before for r in videos.records)
    else:
        done_inputs = _indexed_inputs(info)
        already = sum(s["rows"] for s in (info["shards"] if info else []) if s.get("input_shard") in done_inputs)
    resumed = added = inputs_done = 0
    failed: dict[str, str] = {}
    incomplete: list[str] = []
    while True:  # an interrupted run first (if there is one), then the source's videos not indexed yet
        state.wait_for_everyone()
        plan = _read_plan(directory)
        resuming = plan is not None
        state.wait_for_everyone()  # every process has looked before the main process writes a new plan
        if resuming:
            _check_identity(plan["identity"], encoder.identity, f"the interrupted build run in {directory}")
        else:
            if sharded is None:
                indexed = _indexed_ids(directory, info)
                pending = [r for r in videos.records if r.video_id not in indexed]
            else:
                indexed_inputs = _indexed_inputs(info)
                pending = [url for url in sharded.inputs if url not in indexed_inputs]
            if not pending:
                break
            if state.is_main_process:
                if sharded is None:
                    _write_plan(directory, info, encoder.identity, pending, shard_size, videos.description)
                else:
                    _write_shards_plan(directory, info, encoder.identity, pending, sharded)
            state.wait_for_everyone()
            plan = _read_plan(directory)
        names = [s["name"] for s in plan["shards"]]
        written = {name for name in names if (directory / SHARDS_DIR / name).is_dir()}
        resumed += len(written) if resuming else 0
        mine = [k for k in range(len(names)) if k % state.num_processes == state.process_index]
        mine = [k for k in mine if names[k] not in written]
        if "input" in (plan["shards"][0] if plan["shards"] else {}):  # a run over input shards
            positions = _input_positions(plan, sharded, directory)
            work = [(positions[plan["shards"][k]["input"]], names[k]) for k in mine]
            skip = _indexed_ids(directory, read_index_info(directory) if (directory / INDEX_FILE).is_file() else None)
            _encode_input_shards(encoder, sharded, work, directory, skip_ids=skip, **options)
        else:
            shards = [(s["name"], [VideoRecord(v[0], v[1], tuple(v[2])) for v in s["videos"]]) for s in plan["shards"]]
            _encode_shards(encoder, [shards[k] for k in mine], directory, cache=cache, **options)
        state.wait_for_everyone()
        if state.is_main_process:
            summary = _commit(directory, plan, factory, search_params, state.num_processes)
            added += summary["added"]
            failed.update(summary["failed"])
            inputs_done += summary["input_shards"]
            incomplete += summary["incomplete"]
        state.wait_for_everyone()
        info = read_index_info(directory)
        if not resuming:
            break
    if info is None:  # an empty source into a new folder
        described = sharded.description if sharded is not None else videos.description
        raise ValueError(f"nothing to index: {described} holds no videos")
    return BuildReport(
        directory,
        info["num_videos"],
        added,
        already,
        failed,
        resumed,
        info["factory"],
        time.perf_counter() - started,
        inputs_done,
        incomplete,
    )


def _collect_files(source: Any, split: str | None, caption_field: str | None, video_column: str | None):
    columns = {"caption_column": caption_field, "video_column": video_column}
    return collect_videos(source, split=split, **{k: v for k, v in columns.items() if v is not None})


def _indexed_inputs(info: dict[str, Any] | None) -> set[str]:
    """Input shards whose every sample is in the index (a shard that ended early is read again)."""
    return {s["input_shard"] for s in (info["shards"] if info else []) if s.get("input_shard") and s.get("complete")}


def _input_positions(plan: dict[str, Any], source: ShardSource | None, directory: Path) -> dict[str, int]:
    """Where each input shard of a (possibly interrupted) run is in the source given now."""
    positions = {url: k for k, url in enumerate(source.inputs)} if source is not None else {}
    missing = [s["input"] for s in plan["shards"] if s["input"] not in positions]
    if missing:
        raise ValueError(
            f"the build run {plan['run']} in {directory} indexes input shards of {plan.get('source', '?')} that "
            f"this source does not hold ({missing[:3]}...); run the command that started it again to finish it"
        )
    return positions


def _indexed_ids(directory: Path, info: dict[str, Any] | None) -> set[str]:
    if info is None:
        return set()
    ids: set[str] = set()
    for shard in info["shards"]:
        ids.update(_load_shard(directory, shard["name"])["video_id"])
    return ids


def _read_plan(directory: Path) -> dict[str, Any] | None:
    plans = sorted((directory / RUNS_DIR).glob("*.json")) if (directory / RUNS_DIR).is_dir() else []
    if not plans:
        return None
    try:
        return json.loads(plans[0].read_text())
    except json.JSONDecodeError as err:
        raise IndexCorruptError(
            f"build plan {plans[0]} is not valid JSON ({err}); delete it to start that run anew"
        ) from err


def _write_plan(directory, info, identity, pending: list[VideoRecord], shard_size: int, description: str) -> None:
    run = f"run{len(info['runs']) + 1 if info else 1:04d}"
    (directory / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    (directory / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    shards = [
        {
            "name": f"{run}-{k:05d}",
            "videos": [[r.video_id, r.video, list(r.captions)] for r in pending[start : start + shard_size]],
        }
        for k, start in enumerate(range(0, len(pending), shard_size))
    ]
    plan = {"run": run, "identity": identity, "source": description, "shards": shards}
    _write_json(directory / RUNS_DIR / f"{run}.json", plan)


def _write_shards_plan(directory, info, identity, pending: list[str], source: ShardSource) -> None:
    run = f"run{len(info['runs']) + 1 if info else 1:04d}"
    (directory / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    (directory / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    shards = [{"name": index_shard_name(run, k, url), "input": url} for k, url in enumerate(pending)]
    plan = {"run": run, "identity": identity, "source": source.description, "reader": source.reader, "shards": shards}
    _write_json(directory / RUNS_DIR / f"{run}.json", plan)


def _drop_indexed_twice(directory: Path, names: list[str], shards: list, seen: set[str], dim: int) -> list:
    """Rows of new index shards whose `video_id` is already in the index or in an earlier new shard (a video whose
    rows straddle two input shards) are dropped, the first one kept; the shard is rewritten without them."""
    kept = []
    for name, shard in zip(names, shards):
        ids = shard["video_id"]
        keep, dropped = [], set()
        for row, video_id in enumerate(ids):
            if video_id in seen:
                dropped.add(video_id)
            else:
                keep.append(row)
                seen.add(video_id)
        if dropped:
            dropped = sorted(dropped)
            logger.warning(
                "shard %s: %d video(s) already indexed are not added twice: %s", name, len(dropped), dropped
            )
            path = directory / SHARDS_DIR / name
            rows = shard.select(keep).to_dict()
            failures = json.loads((path / FAILURES_FILE).read_text())
            _write_shard(directory, name, rows, failures, dim, json.loads((path / INPUT_FILE).read_text()))
            shard = _load_shard(directory, name)
        kept.append(shard)
    return kept


def _commit(directory: Path, plan: dict[str, Any], factory: str, search_params: str | None, processes: int):
    """Add a finished run's shards to the index: new FAISS file, then `index.json` (atomic), then drop the plan."""
    import datasets

    info = read_index_info(directory) if (directory / INDEX_FILE).is_file() else None
    identity = plan["identity"]
    committed = [s["name"] for s in info["shards"]] if info else []
    new_names = [s["name"] for s in plan["shards"] if s["name"] not in committed]
    new_shards = [_load_shard(directory, name) for name in new_names]
    inputs = {
        name: json.loads(path.read_text())
        for name in new_names
        if (path := directory / SHARDS_DIR / name / INPUT_FILE).is_file()
    }
    if inputs:
        new_shards = _drop_indexed_twice(
            directory, new_names, new_shards, _indexed_ids(directory, info), identity["embedding_dim"]
        )
    failures: dict[str, dict[str, str]] = dict(info["failed"]) if info else {}
    for name in new_names:
        for failure in json.loads((directory / SHARDS_DIR / name / FAILURES_FILE).read_text()):
            failures[failure["video"]] = {"reason": failure["reason"]}
    new_rows = sum(len(s) for s in new_shards)
    for shard in new_shards:  # a video indexed now is no longer a failure
        for video in shard["video"]:
            failures.pop(video, None)
    for record in inputs.values():  # nor is a shard read to its end now
        if record["complete"]:
            failures.pop(record["input_shard"], None)
    total = (info["num_videos"] if info else 0) + new_rows
    wanted, wanted_params = _factory_for(factory, search_params, total, info)
    generation = (info["faiss_generation"] + 1) if info else 1
    faiss_file = f"faiss-{generation:04d}.index"
    if total:
        old_index = _reuse_faiss(directory, info, wanted)
        if old_index is not None:
            for shard in new_shards:
                ann.add_vectors(old_index, _vectors(shard))
            index = old_index
        else:
            all_shards = [_load_shard(directory, name) for name in committed] + new_shards
            index = ann.build_faiss(
                np.concatenate([_vectors(s) for s in all_shards]), wanted, wanted_params
            )  # no re-encoding: the stored embeddings are indexed again
        ann.write_faiss(index, directory / faiss_file)
    import peft_video

    runs = list(info["runs"]) if info else []
    runs.append(
        {
            "run": plan["run"],
            "source": plan.get("source", ""),
            "videos": sum(r["samples"] for r in inputs.values())
            if inputs
            else sum(len(s["videos"]) for s in plan["shards"]),
            "added": new_rows,
            "num_processes": processes,
            **({"reader": plan["reader"], "input_shards": len(inputs)} if "reader" in plan else {}),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    payload = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "peft_video_version": peft_video.__version__,
        "datasets_version": datasets.__version__,
        "identity": identity,
        "factory": wanted,
        "auto_factory": factory == "auto" and (info is None or info.get("auto_factory", True)),
        "search_params": wanted_params,
        "faiss_file": faiss_file if total else None,
        "faiss_generation": generation,
        "num_videos": total,
        "embedding_dim": identity["embedding_dim"],
        "shards": (info["shards"] if info else [])
        + [{"name": n, "rows": len(s), **_input_fields(inputs.get(n))} for n, s in zip(new_names, new_shards)],
        "failed": failures,
        "runs": runs,
    }
    _write_json(directory / INDEX_FILE, payload)
    for stale in directory.glob("faiss-*.index"):  # older generations: no longer named by index.json
        if stale.name != faiss_file:
            stale.unlink()
    (directory / RUNS_DIR / f"{plan['run']}.json").unlink(missing_ok=True)
    run_failed = {
        f["video"]: f["reason"]
        for name in new_names
        for f in json.loads((directory / SHARDS_DIR / name / FAILURES_FILE).read_text())
    }
    return {
        "added": new_rows,
        "failed": {v: r for v, r in run_failed.items() if v in failures},
        "input_shards": len(inputs),
        "incomplete": [r["input_shard"] for r in inputs.values() if not r["complete"]],
    }


def _input_fields(record: dict[str, Any] | None) -> dict[str, Any]:
    """An index shard's entry in `index.json`: the input shard it was made from, and whether it was read whole."""
    if record is None:
        return {}
    return {"input_shard": record["input_shard"], "complete": record["complete"], "samples": record["samples"]}


def _factory_for(factory: str, search_params: str | None, total: int, info: dict[str, Any] | None) -> tuple[str, str]:
    if factory == "auto" and info is not None and not info.get("auto_factory", True):
        factory = info["factory"]  # an index built with an explicit factory keeps it
    if factory == "auto":
        chosen, params = ann.auto_factory(total)
        return chosen, search_params if search_params is not None else params
    if search_params is None:
        search_params = info["search_params"] if info is not None and info["factory"] == factory else ""
    return factory, search_params


def _reuse_faiss(directory: Path, info: dict[str, Any] | None, factory: str):
    """The committed FAISS index when it has the wanted type (new vectors are appended to it), else None."""
    if info is None or not info.get("faiss_file") or info["factory"] != factory:
        return None
    try:
        return ann.read_faiss(directory / info["faiss_file"], info["search_params"])
    except Exception as err:  # a damaged FAISS file is rebuilt from the stored embeddings
        logger.warning("rebuilding the FAISS index of %s from its embeddings: %s", directory, err)
        return None


def _vectors(shard) -> np.ndarray:
    if len(shard) == 0:
        return np.zeros((0, shard.features["embedding"].length), np.float32)
    return np.asarray(shard.with_format("numpy")["embedding"], dtype=np.float32)


def rebuild_faiss(
    index_dir: str | os.PathLike, factory: str | None = None, search_params: str | None = None
) -> dict[str, Any]:
    """Rebuild the FAISS file of an index from its stored embeddings (a lost or damaged FAISS file, or another index
    type: `factory`), without re-encoding any video. Returns the new `index.json` contents."""
    directory = Path(index_dir)
    info = read_index_info(directory)
    vectors = np.concatenate([_vectors(_load_shard(directory, s["name"])) for s in info["shards"]])
    if factory in (None, "auto"):
        wanted, params = ann.auto_factory(len(vectors))
    else:
        wanted, params = factory, ""
    params = params if search_params is None else search_params
    index = ann.build_faiss(vectors, wanted, params)
    generation = info["faiss_generation"] + 1
    faiss_file = f"faiss-{generation:04d}.index"
    ann.write_faiss(index, directory / faiss_file)
    info.update(
        factory=wanted,
        search_params=params,
        faiss_file=faiss_file,
        faiss_generation=generation,
        auto_factory=factory in (None, "auto"),
    )
    _write_json(directory / INDEX_FILE, info)
    for stale in directory.glob("faiss-*.index"):
        if stale.name != faiss_file:
            stale.unlink()
    return info
