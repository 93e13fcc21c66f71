"""Retrieval evaluation of a split: every distinct video encoded once and every caption once (a video's embedding
never depends on a text), optionally sharded over Accelerate processes with each sample counted exactly once, then
`peft_video.metrics.compute_retrieval_metrics` on the cosine similarities.

`RetrievalEvaluator` holds one evaluation setting (frames, transform, tokenizer, protocol) and scores any model on
any split with it (`peft_video.selection.ModelSelection` reads the metric that selects a model from its results).
`examples/train.py` and `examples/evaluate.py` are built from these.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .metrics import DEFAULT_KS, compute_retrieval_metrics, twin_accuracy

DIRECTIONS = ("text_to_video", "video_to_text")


@dataclass
class RetrievalEvaluator:
    """Retrieval metrics of any model on any split, with one setting: how frames are drawn and transformed, how
    captions are tokenized, and the protocol (subsets, twins, tie policy, dual softmax).

        evaluate = RetrievalEvaluator(sampling, transform, tokenizer, max_text_length=32)
        metrics = evaluate(model, load_split(manifest, "test", "test"), accelerator=accelerator)

    With an `accelerator`, videos and captions are sharded over its processes, each counted exactly once
    (`encode_split`); the result is `split_metrics`'. `last_encoded` keeps the latest call's `encode_split` output
    (embeddings of one split), from which pictures are drawn (`peft_video.search.gallery.worst_queries_gallery`).
    """

    sampling: Any
    transform: Any
    tokenizer: Any
    max_text_length: int = 32
    batch_size: int = 32
    num_workers: int = 0
    backend: str = "auto"
    decode_timeout: float | None = None
    subset_columns: Sequence[str] = ()
    twin_column: str | None = None
    tie_policy: str = "pessimistic"
    dsl_temperature: float | None = None
    progress: bool = False
    video_to_text_protocol: str = "collaborative_experts"
    last_encoded: dict[str, Any] | None = field(default=None, init=False, repr=False)

    def __call__(self, model: nn.Module, data: Any, accelerator: Any = None) -> dict[str, Any]:
        """Metrics of `model` on `data`: a caption-per-row `datasets.Dataset`, or a streamed `datasets.IterableDataset`
        of raw samples (`peft_video.data.shards`), each video of which one process encodes (`encode_stream`)."""
        import datasets

        encode = encode_stream if isinstance(data, datasets.IterableDataset) else encode_split
        self.last_encoded = encoded = encode(
            model, data, sampling=self.sampling, transform=self.transform, tokenizer=self.tokenizer,
            max_text_length=self.max_text_length, batch_size=self.batch_size, num_workers=self.num_workers,
            accelerator=accelerator, backend=self.backend, decode_timeout=self.decode_timeout, progress=self.progress,
        )  # fmt: skip
        return split_metrics(
            encoded, encoded.get("rows", data), subset_columns=self.subset_columns, twin_column=self.twin_column,
            tie_policy=self.tie_policy, dsl_temperature=self.dsl_temperature,
            video_to_text_protocol=self.video_to_text_protocol,
        )  # fmt: skip

    def worst_queries_gallery(self, data: Any, path: Any = None, *, num_queries: int = 4, k: int = 5):
        """The picture of the last evaluation's `num_queries` worst-ranked captions of `data` (the split it scored),
        each with its top `k` videos and its own (`peft_video.search.gallery.worst_queries_gallery`); a streamed
        split's videos are drawn from their shards' bytes. Saved as PNG to `path` when given; returns the image."""
        from .search.gallery import worst_queries_gallery

        if self.last_encoded is None:
            raise RuntimeError("worst_queries_gallery draws the last evaluation: call the evaluator first")
        captions = self.last_encoded.get("rows", data)["caption"]
        return worst_queries_gallery(
            self.last_encoded, captions, path, num_queries=num_queries, k=k, backend=self.backend
        )


def summary_line(metrics: Mapping[str, Any]) -> str:
    """One line of a `split_metrics` result, for logs (twin accuracy with its n when the split has twins)."""
    t2v, v2t = metrics["text_to_video"], metrics["video_to_text"]
    twins = metrics.get("twin_accuracy")
    twin_text = f" | twin accuracy {twins['accuracy']:.1f} % (n={twins['num_queries']})" if twins else ""
    return (
        f"text→video R@1 {t2v['R@1']:.1f} R@5 {t2v['R@5']:.1f} MnR {t2v['MnR']:.1f} | video→text R@1 {v2t['R@1']:.1f} "
        f"MnR {v2t['MnR']:.1f}{twin_text} ({metrics['num_captions']} captions, {metrics['num_videos']} videos)"
    )


class _IndexedVideos(torch.utils.data.Dataset):
    """Items of a `VideoTextDataset` tagged with their index; a failed video becomes a placeholder marked invalid, so
    that batches keep their size (needed by `gather_for_metrics`) and the failure is dropped after gathering."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from .data import FailedSample

        item = self.dataset[index]
        if isinstance(item, FailedSample):
            return {"index": index, "valid": False, "video": item.video, "reason": item.reason}
        return {
            "index": index, "valid": True, "pixel_values": item["pixel_values"], "video_mask": item["video_mask"],
            "partial": item.get("partial"),
        }  # fmt: skip


def _collate_videos(items: list[dict[str, Any]]) -> dict[str, Any]:
    reports = {
        "errors": [{"video": i["video"], "reason": i["reason"]} for i in items if not i["valid"]],
        "partial_videos": [i["partial"] for i in items if i.get("partial")],
    }
    return {**_stack_videos(items), **reports}


def _stack_videos(items: list[dict[str, Any]]) -> dict[str, Any]:
    template = next((i for i in items if i["valid"]), None)
    pixel_values, masks = [], []
    for item in items:
        if item["valid"]:
            pixel_values.append(item["pixel_values"])
            masks.append(item["video_mask"])
        else:  # placeholder: one zero "real" frame keeps the model's input checks satisfied
            shape = template["pixel_values"].shape if template is not None else None
            pixel_values.append(torch.zeros(shape) if shape is not None else None)
            mask = torch.zeros(shape[0] if shape is not None else 1, dtype=torch.bool)
            mask[0] = True
            masks.append(mask)
    if template is None:
        return {"index": torch.tensor([i["index"] for i in items]), "valid": torch.zeros(len(items), dtype=torch.bool)}
    return {
        "index": torch.tensor([i["index"] for i in items]),
        "valid": torch.tensor([i["valid"] for i in items]),
        "pixel_values": torch.stack(pixel_values),
        "video_mask": torch.stack(masks),
    }


class _Captions(torch.utils.data.Dataset):
    def __init__(self, captions: Sequence[str]):
        self.captions = list(captions)

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> tuple[int, str]:
        return index, self.captions[index]


def _unwrap(model: nn.Module, accelerator: Any) -> nn.Module:
    return accelerator.unwrap_model(model) if accelerator is not None else model


@torch.no_grad()
def encode_split(
    model: nn.Module,
    data: Any,
    *,
    sampling: Any,
    transform: Any,
    tokenizer: Any,
    max_text_length: int,
    batch_size: int = 16,
    num_workers: int = 0,
    accelerator: Any = None,
    backend: str = "auto",
    decode_timeout: float | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Embed every distinct video of `data` once and every caption once (videos never depend on a text).

    `data` is a (video, caption)-per-row `datasets.Dataset` (`peft_video.data.load_manifest`). With an `accelerator`
    the work is sharded over its processes and gathered with `gather_for_metrics`, so each video and caption is
    counted exactly once. Returns normalised `video_embeds` [V, P] and `text_embeds` [N, P] (float32, CPU),
    `caption_to_video` [N], `video_valid` [V] (False for videos that could not be decoded), the `VideoIndex`, and
    `video_counts` / `text_counts`: how often each index was gathered (a RuntimeError is raised unless all are 1).
    """
    from .data import DataErrorSummary, VideoTextCollator, VideoTextDataset, first_caption_per_video, unique_videos

    index = unique_videos(data)
    video_rows = first_caption_per_video(data)
    videos = _IndexedVideos(
        VideoTextDataset(
            video_rows, sampling, transform, train=False, backend=backend, on_error="skip",
            decode_timeout=decode_timeout,
        )
    )  # fmt: skip
    video_loader = torch.utils.data.DataLoader(
        videos, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate_videos
    )
    collator = VideoTextCollator(tokenizer, max_text_length=max_text_length)
    if accelerator is not None:
        # not `accelerator.prepare`: that would register the loaders for checkpointing on every evaluation
        video_loader = _shard(video_loader, accelerator)
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    network = _unwrap(model, accelerator)
    was_training = network.training
    network.eval()
    show = progress and (accelerator is None or accelerator.is_main_process)

    errors = DataErrorSummary()
    video_parts, video_indices, video_valid = [], [], []
    for batch in _progress(video_loader, "encoding videos", show):
        errors.record_batch(batch)
        valid = batch["valid"].to(device)
        if "pixel_values" in batch:
            with _autocast(accelerator):
                embeds = network.get_video_features(
                    pixel_values=batch["pixel_values"].to(device), video_mask=batch["video_mask"].to(device)
                ).pooler_output
            embeds = F.normalize(embeds.float(), dim=-1)
        else:
            embeds = torch.zeros(len(valid), _projection_dim(network), device=device)
        # the flag travels as uint8: not every collective backend gathers bool tensors
        embeds, indices, valid = _gather(accelerator, (embeds, batch["index"].to(device), valid.to(torch.uint8)))
        video_parts.append(embeds.cpu())
        video_indices.append(indices.cpu())
        video_valid.append(valid.cpu().bool())

    text_embeds, text_counts = _encode_captions(
        network, list(data["caption"]), collator, batch_size, accelerator, device, show
    )
    network.train(was_training)

    video_index_all = torch.cat(video_indices)
    num_videos = len(index.video_ids)
    video_counts = torch.bincount(video_index_all, minlength=num_videos)
    if not (video_counts == 1).all() or not (text_counts == 1).all():
        raise RuntimeError(
            "sharded evaluation did not see every sample exactly once: videos counted "
            f"{sorted(set(video_counts.tolist()))} times, captions {sorted(set(text_counts.tolist()))} times"
        )
    video_embeds = torch.zeros(num_videos, video_parts[0].shape[1])
    video_embeds[video_index_all] = torch.cat(video_parts)
    valid_all = torch.zeros(num_videos, dtype=torch.bool)
    valid_all[video_index_all] = torch.cat(video_valid)
    return {
        "video_embeds": video_embeds,
        "text_embeds": text_embeds,
        "caption_to_video": torch.tensor(index.caption_to_video, dtype=torch.long),
        "video_valid": valid_all,
        "index": index,
        "video_counts": video_counts,
        "text_counts": text_counts,
        "errors": _gather_errors(errors, accelerator),
    }


def _encode_captions(network, captions, collator, batch_size, accelerator, device, show):
    """Normalised embeddings [N, P] (CPU, in caption order) of `captions`, sharded over the processes, and how often
    each caption was gathered (all 1 when the sharding is right)."""

    def collate_text(items):
        return {"index": torch.tensor([i for i, _ in items]), **collator.tokenize([c for _, c in items])}

    loader = torch.utils.data.DataLoader(
        _Captions(captions), batch_size=max(batch_size, 64), shuffle=False, collate_fn=collate_text
    )
    if accelerator is not None:
        loader = _shard(loader, accelerator)
    parts, indices = [], []
    for batch in _progress(loader, "encoding captions", show):
        with _autocast(accelerator):
            embeds = network.get_text_features(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
            ).pooler_output
        embeds, index = _gather(accelerator, (F.normalize(embeds.float(), dim=-1), batch["index"].to(device)))
        parts.append(embeds.cpu())
        indices.append(index.cpu())
    index_all = torch.cat(indices)
    text_embeds = torch.zeros(len(captions), parts[0].shape[1])
    text_embeds[index_all] = torch.cat(parts)
    return text_embeds, torch.bincount(index_all, minlength=len(captions))


def _gather_errors(errors: Any, accelerator: Any):
    """Every process's unreadable and partly decodable videos in one summary, each video counted once (an evaluation
    reads each video once; `gather_for_metrics`' padding may repeat one on another process)."""
    from accelerate.utils import gather_object

    from .data import DataErrorSummary

    merged = DataErrorSummary.merged(gather_object([errors]) if accelerator is not None else [errors])
    merged.count = len(merged.failures)
    return merged


@torch.no_grad()
def encode_stream(
    model: nn.Module,
    samples: Any,
    *,
    sampling: Any,
    transform: Any,
    tokenizer: Any,
    max_text_length: int,
    batch_size: int = 16,
    num_workers: int = 0,
    accelerator: Any = None,
    backend: str = "auto",
    decode_timeout: float | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """`encode_split` for a streamed split: `samples` is a `datasets.IterableDataset` of raw samples (one per video,
    with all its captions; `peft_video.data.shards`). Each process reads its own shards (`StreamingVideoTextDataset`
    with the process' rank: each video is read by exactly one process), embeds its videos, and the (video id,
    captions, embedding) triples of all processes are gathered; a video id met twice (a caption-per-row source) is one
    video with the captions of both. Captions are then encoded sharded, as in `encode_split`. A failed video keeps its
    captions (they count as misses, as a failed file does in `encode_split`). Also returns `rows`: the split as a
    caption-per-row `datasets.Dataset` (`video_id`, `caption`, then one column per field of the videos' metadata,
    the `meta` of the raw samples: each caption gets its video's value, None where a video lacks the field), ordered
    by video id, the order of the embeddings; `split_metrics` reads its twin, kind and subset columns from it as from
    a manifest split's rows (`metadata_columns`)."""
    import datasets
    from accelerate.utils import gather_object

    from .data import DataErrorSummary, StreamingVideoTextDataset, VideoIndex, VideoTextCollator

    rank, world_size = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    videos = StreamingVideoTextDataset(
        samples, sampling, transform, train=False, shuffle_buffer=0, rank=rank, world_size=world_size,
        backend=backend, on_error="skip", decode_timeout=decode_timeout,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        videos, batch_size=batch_size, num_workers=num_workers, collate_fn=VideoTextCollator()
    )
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    network = _unwrap(model, accelerator)
    was_training = network.training
    network.eval()
    show = progress and (accelerator is None or accelerator.is_main_process)
    errors, found = DataErrorSummary(), []
    for batch in _progress(loader, "encoding videos", show):
        errors.record_batch(batch)
        for error in batch["errors"]:  # a failed video keeps its id, captions and metadata
            video_id, captions = error.get("video_id") or error["video"], list(error.get("captions", ()))
            found.append((video_id, error["video"], captions, None, error.get("meta")))
        if not batch["batch_size"]:
            continue
        with _autocast(accelerator):
            embeds = network.get_video_features(
                pixel_values=batch["pixel_values"].to(device), video_mask=batch["video_mask"].to(device)
            ).pooler_output
        embeds = F.normalize(embeds.float(), dim=-1).cpu()
        metas = batch.get("meta") or [None] * len(embeds)
        found += list(zip(batch["video_id"], batch["video"], batch["captions"], embeds, metas))
    if accelerator is not None and accelerator.num_processes > 1:
        found = gather_object(found)  # pickled: the metadata dicts travel with their videos
    videos_by_id: dict[str, dict[str, Any]] = {}
    for video_id, name, captions, embedding, meta in sorted(found, key=lambda entry: (str(entry[0]), entry[1])):
        video = videos_by_id.setdefault(str(video_id), {"name": name, "captions": [], "metas": [], "embedding": None})
        video["captions"] += captions
        video["metas"] += [meta] * len(captions)  # per caption: a video id met twice keeps each part's own
        if video["embedding"] is None:
            video["embedding"] = embedding
    if not any(video["embedding"] is not None for video in videos_by_id.values()):
        raise ValueError(f"no video of the streamed split could be decoded ({len(videos_by_id)} read): {errors}")
    ids = sorted(videos_by_id)
    dim = next(v["embedding"] for v in videos_by_id.values() if v["embedding"] is not None).shape[0]
    video_embeds = torch.stack([
        videos_by_id[i]["embedding"] if videos_by_id[i]["embedding"] is not None else torch.zeros(dim) for i in ids
    ])  # fmt: skip
    caption_to_video = [k for k, i in enumerate(ids) for _ in videos_by_id[i]["captions"]]
    captions = [c for i in ids for c in videos_by_id[i]["captions"]]
    metas = [m for i in ids for m in videos_by_id[i]["metas"]]
    collator = VideoTextCollator(tokenizer, max_text_length=max_text_length)
    text_embeds, text_counts = _encode_captions(network, captions, collator, batch_size, accelerator, device, show)
    network.train(was_training)
    if not (text_counts == 1).all():
        raise RuntimeError(f"sharded caption encoding counted captions {sorted(set(text_counts.tolist()))} times")
    per_video = [[] for _ in ids]
    for row, video in enumerate(caption_to_video):
        per_video[video].append(row)
    return {
        "video_embeds": video_embeds,
        "text_embeds": text_embeds,
        "caption_to_video": torch.tensor(caption_to_video, dtype=torch.long),
        "video_valid": torch.tensor([videos_by_id[i]["embedding"] is not None for i in ids]),
        "index": VideoIndex(ids, [videos_by_id[i]["name"] for i in ids], caption_to_video, per_video),
        "errors": _gather_errors(errors, accelerator),
        "rows": datasets.Dataset.from_dict(
            {"video_id": [ids[v] for v in caption_to_video], "caption": captions, **metadata_columns(metas)}
        ),
    }


def metadata_columns(metas: Sequence[Mapping[str, Any] | None], reserved: Sequence[str] = ("video_id", "caption")):
    """Columns (name -> one value per row) from per-row metadata dicts (None: no metadata), in first-seen order of
    their fields; a row without a field gets None. Values keep their JSON types; a column whose values Arrow cannot
    hold in one type (e.g. ints in some rows, strings in others) becomes strings (None kept). Fields named in
    `reserved` are left out."""
    import pyarrow as pa

    names = list(dict.fromkeys(name for meta in metas if meta for name in meta if name not in reserved))
    columns: dict[str, list[Any]] = {}
    for name in names:
        values = [meta.get(name) if meta else None for meta in metas]
        try:
            pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            values = [None if v is None else v if isinstance(v, str) else json.dumps(v, default=str) for v in values]
        columns[name] = values
    return columns


def retrieval_metrics_from_embeddings(
    text_embeds: torch.Tensor,
    video_embeds: torch.Tensor,
    caption_to_video: torch.Tensor,
    *,
    video_valid: torch.Tensor | None = None,
    video_subset: torch.Tensor | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    tie_policy: str = "pessimistic",
    dsl_temperature: float | None = None,
    video_to_text_protocol: str = "collaborative_experts",
) -> dict[str, Any]:
    """`compute_retrieval_metrics` on cosine similarities of normalised embeddings. Videos marked invalid (not
    decodable) are dropped with their captions; `video_subset` [V] bool restricts the gallery to a subset (videos
    outside it are left out without counting as failures). `num_videos`, `num_captions` and `failed_videos` (the
    gallery's undecodable videos) say what was scored."""
    if video_valid is None:
        video_valid = torch.ones(video_embeds.shape[0], dtype=torch.bool)
    in_gallery = video_subset if video_subset is not None else torch.ones_like(video_valid)
    failed = in_gallery & ~video_valid
    video_valid = video_valid & in_gallery
    kept = torch.nonzero(video_valid).flatten()
    if kept.numel() == 0:
        raise ValueError("no video of the split could be decoded: nothing to evaluate")
    new_position = torch.full((video_embeds.shape[0],), -1, dtype=torch.long)
    new_position[kept] = torch.arange(kept.numel())
    caption_video = new_position[caption_to_video]
    caption_kept = caption_video >= 0
    similarity = text_embeds[caption_kept] @ video_embeds[kept].t()
    result = compute_retrieval_metrics(
        similarity, caption_video[caption_kept], ks=ks, tie_policy=tie_policy, dsl_temperature=dsl_temperature,
        video_to_text_protocol=video_to_text_protocol,
    )  # fmt: skip
    result.update(
        num_videos=int(kept.numel()),
        num_captions=int(caption_kept.sum()),
        failed_videos=int(failed.sum()),
    )
    return result


def split_metrics(
    encoded: Mapping[str, Any],
    data: Any,
    *,
    subset_columns: Sequence[str] = (),
    twin_column: str | None = None,
    twin_kind_column: str | None = "kind",
    ks: Sequence[int] = DEFAULT_KS,
    tie_policy: str = "pessimistic",
    dsl_temperature: float | None = None,
    video_to_text_protocol: str = "collaborative_experts",
) -> dict[str, Any]:
    """Metrics of an `encode_split` result; for each boolean column of `data` in `subset_columns`, the same metrics
    on the sub-gallery of rows where it is true, under `subsets[column]` (e.g. the offline world's
    `is_order_sensitive` pairs). With `twin_column` (rows sharing a value there show twin videos, e.g. the offline
    world's `order_pair_id`: a video and its exact reverse), `twin_accuracy`: how often a caption scores its own video
    above its twin (`peft_video.metrics.twin_accuracy`; mean pooling over frames is at 50 %), and per value of
    `twin_kind_column` when `data` has it (the offline world's `kind`), each with its number of queries.
    `data_errors`: the split's unreadable and partly decodable videos, by name (`DataErrorSummary.to_dict`)."""
    protocol = {"ks": ks, "tie_policy": tie_policy, "video_to_text_protocol": video_to_text_protocol}
    result = retrieval_metrics_from_embeddings(
        encoded["text_embeds"],
        encoded["video_embeds"],
        encoded["caption_to_video"],
        video_valid=encoded["video_valid"],
        dsl_temperature=dsl_temperature,
        **protocol,
    )
    subsets = {}
    for column in subset_columns:
        if column not in data.column_names:
            continue
        rows = torch.tensor([bool(v) for v in data[column]])
        if not rows.any():
            continue
        videos = torch.zeros_like(encoded["video_valid"])
        videos[encoded["caption_to_video"][rows]] = True
        subsets[column] = retrieval_metrics_from_embeddings(
            encoded["text_embeds"],
            encoded["video_embeds"],
            encoded["caption_to_video"],
            video_valid=encoded["video_valid"],
            video_subset=videos,
            **protocol,
        )
    if subsets:
        result["subsets"] = subsets
    if twin_column is not None and twin_column in data.column_names:
        kinds = data[twin_kind_column] if twin_kind_column and twin_kind_column in data.column_names else None
        result["twin_accuracy"] = _twin_accuracy(encoded, data[twin_column], kinds)
    if "errors" in encoded:
        result["data_errors"] = encoded["errors"].to_dict()
    return result


def _twin_accuracy(
    encoded: Mapping[str, Any], pair_ids: Sequence[Any], kinds: Sequence[Any] | None = None
) -> dict[str, Any]:
    """Twin accuracy over the decodable videos whose pair (same non-empty id) has exactly two decodable videos;
    per caption kind too when `kinds` (one per caption) is given."""
    videos_of_pair: dict[Any, set[int]] = {}
    for caption, pair in enumerate(pair_ids):
        if pair is not None and pair != "":
            videos_of_pair.setdefault(pair, set()).add(int(encoded["caption_to_video"][caption]))
    valid = encoded["video_valid"]
    video_twin = torch.full(valid.shape, -1, dtype=torch.long)
    for videos in videos_of_pair.values():
        pair = sorted(v for v in videos if valid[v])
        if len(pair) == 2:
            video_twin[pair[0]], video_twin[pair[1]] = pair[1], pair[0]
    similarity = encoded["text_embeds"] @ encoded["video_embeds"].t()
    return twin_accuracy(similarity, encoded["caption_to_video"], video_twin, kinds=kinds)


def _projection_dim(network: nn.Module) -> int:
    clip = getattr(network, "clip", None) or network.get_base_model()
    return clip.config.projection_dim


def _shard(loader, accelerator):
    from accelerate.data_loader import prepare_data_loader

    return prepare_data_loader(
        loader,
        device=accelerator.device,
        num_processes=accelerator.num_processes,
        process_index=accelerator.process_index,
        put_on_device=True,
        even_batches=True,
    )


def _gather(accelerator: Any, tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    if accelerator is None:
        return tensors
    return tuple(accelerator.gather_for_metrics(t) for t in tensors)


def _autocast(accelerator: Any):
    import contextlib

    return accelerator.autocast() if accelerator is not None else contextlib.nullcontext()


def _progress(iterable, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=not enabled, leave=False)
