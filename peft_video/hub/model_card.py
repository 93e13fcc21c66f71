"""The adapter's model card (README.md): huggingface_hub's `ModelCard`, `ModelCardData` and `EvalResult`, rendered from
one template, `model_cards/adapter_card.md` (the package's `hub/adapter_card.md` is a link to it, so wheels ship it).

Facts come in as arguments: the adapter config's (method, frames, sampling, resolution) and the caller's (training
setup, test results, license, the adapter's Hub id). The metadata holds only what the Hub can resolve: `base_model`
(and its tag, the title and the usage snippet) is a Hub id or absent, never a folder of the machine that trained the
adapter; `datasets` are Hub dataset ids. A README already in the folder is updated, not replaced: its metadata is kept
and ours set or merged (tags and datasets united, results of the same task, dataset and split replaced), and only the
text between our markers is rewritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import resources
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

README_NAME = "README.md"
BEGIN_MARKER, END_MARKER = "<!-- peft_video model card: begin", "<!-- peft_video model card: end -->"
LIBRARY_TAG, TASK_TAG = "peft_video", "text-video-retrieval"
# The Hub's task for models that output embeddings: its task list (huggingface.js `pipelines.ts`) has no video
# retrieval, and retrieval encoders there (sentence encoders, CLIPs used for search) carry this one.
PIPELINE_TAG = "feature-extraction"
# Hub ids of the public benchmarks (`peft_video.data.PUBLIC_DATASETS`' names); LSMDC has none.
HUB_DATASET_IDS = {
    "msrvtt": "friedrichor/MSR-VTT", "msvd": "friedrichor/MSVD", "didemo": "friedrichor/DiDeMo",
    "activitynet": "friedrichor/ActivityNet_Captions", "vatex": "HuggingFaceM4/vatex",
}  # fmt: skip
# direction of `compute_retrieval_metrics` -> (model-index task type, task name, label in the card)
DIRECTIONS = {
    "text_to_video": ("text-to-video-retrieval", "Text-to-video retrieval", "text→video"),
    "video_to_text": ("video-to-text-retrieval", "Video-to-text retrieval", "video→text"),
}


def hub_repo_id(name: str | None) -> str | None:
    """`name` when it names a Hub repository (a valid repo id that is not a local folder), else None."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or os.path.isdir(name):
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def hub_dataset_id(name: str | None) -> str | None:
    """The Hub id of a dataset: a public benchmark's name (`"msrvtt"`) or a Hub id itself, else None."""
    return HUB_DATASET_IDS.get(str(name).lower()) or (hub_repo_id(name) if name and "/" in name else None)


def model_card_tags(config: Any) -> list[str]:
    """The library, the method, the task, and `base_model:adapter:<id>` when the base model is a Hub id (the Hub lists
    the adapter under its base model then)."""
    base = hub_repo_id(getattr(config, "base_model_name_or_path", None))
    return [LIBRARY_TAG, _method(config).name, TASK_TAG, *([f"base_model:adapter:{base}"] if base else [])]


def write_model_card(
    output_dir: str | os.PathLike,
    config: Any,
    *,
    adapter_id: str | None = None,
    license: str | None = None,  # noqa: A002  (the card's field)
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    split: str = "test",
    gallery: str | None = None,
) -> ModelCard:
    """Write (or update) `output_dir/README.md`, the model card of a peft_video adapter, and return it.

    Args:
        output_dir: The adapter folder (created if missing).
        config: The adapter config. Its `base_model_name_or_path` names the base model when it is a Hub id (set it
            to the Hub id a local copy came from to name that).
        adapter_id: The adapter's Hub id, for the usage snippet and the results' model name.
        license: A Hub license id (`apache-2.0`, `mit`, ...); the base model's terms usually apply.
        training: Rows of the training-setup table, label -> value (`{"Optimizer steps": 5000}`).
        metrics: Test results as `peft_video.metrics.compute_retrieval_metrics` returns them (both directions;
            `tie_policy` and `dsl` are shown too), for the text and the metadata's `model-index`.
        dataset: Where `metrics` come from: a public benchmark's name, a Hub dataset id, or any name.
        split: The split `metrics` come from.
        gallery: A picture already in `output_dir` (a file name, e.g. `worst_test.png` from
            `peft_video.search.gallery.worst_queries_gallery`), embedded by a relative link, so that it renders on
            the Hub once uploaded beside the card.
    """
    method = _method(config)
    if training is not None and not isinstance(training, Mapping):
        raise ValueError(f"training must be a mapping of row label to value, got {type(training).__name__}")
    if metrics is not None:
        _check_metrics(metrics, dataset)
    if gallery is not None:
        _check_gallery(output_dir, gallery)
    base, dataset_id = hub_repo_id(getattr(config, "base_model_name_or_path", None)), hub_dataset_id(dataset)
    path = os.path.join(os.fspath(output_dir), README_NAME)
    existing = _load(path)
    folder_name = os.path.basename(os.path.abspath(os.fspath(output_dir)))
    existing_name = existing.data.model_name if existing else None
    data = ModelCardData(
        library_name="peft", base_model=base, pipeline_tag=PIPELINE_TAG, license=license, tags=model_card_tags(config),
        datasets=[dataset_id] if dataset_id else None, model_name=existing_name or adapter_id or folder_name,
        eval_results=_results(metrics, dataset_id or dataset, dataset, split),
    )  # fmt: skip
    image_size = getattr(config, "image_size", None)
    rows = {
        "Method": f"{method.display_name} (`peft_type: {method.peft_type}`)",
        "Frames per video (T)": config.num_frames,
        "Frame sampling": f"`{config.frame_sampling}`" + {
            "segments": ": T equal segments; the centre frame of each at evaluation, a random one in training",
            "chunked_segments": f" (chunks of {getattr(config, 'frame_chunk_size', None)} frames, chunk-major)",
            "fps": f": {getattr(config, 'sampling_fps', None)} frames per second, at most T frames",
        }.get(config.frame_sampling, ""),
        "Resolution": f"{image_size} × {image_size} px" if image_size else "the base model's",
        "Caption length": f"{config.max_text_length} tokens",
        **{label: _number(value) for label, value in (training or {}).items() if value is not None},
    }  # fmt: skip
    names = [n for n in dict.fromkeys(n for d in DIRECTIONS for n in (metrics or {}).get(d, {})) if n != "num_queries"]
    dsl = (metrics or {}).get("dsl")
    blocks = [("", metrics)] + ([(", dual softmax", dsl)] if isinstance(dsl, Mapping) else [])
    from .. import __version__

    ours = ModelCard.from_template(
        data,
        template_str=resources.files(__package__).joinpath("adapter_card.md").read_text(encoding="utf-8"),
        title=f"{method.display_name} adapter for text-video retrieval" + (f" on {base}" if base else ""),
        method=method, base=base, version=__version__, image_size=image_size or "H", num_frames=config.num_frames,
        usage_base_model=json.dumps(base or "<base CLIP model: Hub id or folder>"),
        usage_adapter_id=json.dumps(adapter_id or "<this adapter: Hub id or folder>"),
        cli_adapter=adapter_id or "ADAPTER_FOLDER_OR_HUB_ID",
        setup_rows=[(str(k).replace("|", "\\|"), str(v).replace("|", "\\|")) for k, v in rows.items()],
        dataset=dataset, dataset_id=dataset_id, split=split, metric_names=names, has_dsl=len(blocks) > 1,
        gallery=gallery,
        tie_policy=(metrics or {}).get("tie_policy", "pessimistic"),
        result_rows=[(label + suffix, [_number(block[d].get(n, "–")) for n in names])
                     for suffix, block in blocks if metrics for d, (_, _, label) in DIRECTIONS.items()],
    )  # fmt: skip
    card = _merge(existing, ours) if existing else ours
    os.makedirs(os.fspath(output_dir), exist_ok=True)
    card.save(path)
    return card


def _method(config: Any):
    from ..registry import get_video_method

    if getattr(config, "peft_type", None) is None:
        raise ValueError(f"{type(config).__name__} has no peft_type; expected a peft_video adapter config")
    return get_video_method(config.peft_type)


def _check_metrics(metrics: Mapping[str, Any], dataset: str | None) -> None:
    missing = [key for key in DIRECTIONS if not isinstance(metrics.get(key), Mapping)]
    if missing:
        raise ValueError(f"metrics must hold both directions of compute_retrieval_metrics' output; missing {missing}")
    if not dataset:
        raise ValueError("metrics need the name of the data they come from: pass dataset=")
    bad = [
        (d, n, v)
        for d in DIRECTIONS
        for n, v in metrics[d].items()
        if isinstance(v, bool) or not isinstance(v, (int, float))
    ]
    if bad:
        raise ValueError(f"metrics[{bad[0][0]!r}][{bad[0][1]!r}] must be a number, got {bad[0][2]!r}")


def _check_gallery(output_dir: str | os.PathLike, gallery: str) -> None:
    """A card's picture is a file beside it: a plain relative name (the Hub resolves it in the repository)."""
    name = os.fspath(gallery)
    if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/") or not name.strip():
        raise ValueError(f"gallery must be a file name inside the adapter folder, got {name!r}")
    if not os.path.isfile(os.path.join(os.fspath(output_dir), name)):
        raise FileNotFoundError(f"gallery {name!r} is not in {os.fspath(output_dir)}; write the picture there first")


def _load(path: str) -> ModelCard | None:
    if not os.path.exists(path):
        return None
    try:
        return ModelCard.load(path)
    except Exception as error:  # noqa: BLE001  (YAML errors, a non-mapping block, a broken model-index)
        raise ValueError(f"{path}: the existing model card's metadata cannot be read: {error}") from error


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.3g}"
    return str(value)


def _results(metrics: Mapping[str, Any] | None, dataset_type: str, dataset_name: str, split: str) -> list[EvalResult]:
    return [
        EvalResult(
            task_type=task_type,
            task_name=task_name,
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split=split,
            metric_name=f"{label} {name}",
            metric_value=round(float(value), 4),
            metric_type={"MdR": "median_rank", "MnR": "mean_rank"}.get(name, name.lower().replace("r@", "recall_at_")),
        )  # fmt: skip
        for direction, (task_type, task_name, label) in DIRECTIONS.items()
        for name, value in (metrics or {}).get(direction, {}).items()
        if name != "num_queries"
    ] or None


def _merge(existing: ModelCard, ours: ModelCard) -> ModelCard:
    """`ours` merged into `existing`: its metadata kept under ours, its text kept around our marked block."""
    data, new = existing.data, ours.data
    base = new.base_model or hub_repo_id(data.base_model if isinstance(data.base_model, str) else None)
    kept_tags = [
        t for t in data.tags or [] if not t.startswith("base_model:adapter:") or t == f"base_model:adapter:{base}"
    ]
    data.base_model, data.tags = base, _union(kept_tags, new.tags)
    data.datasets = _union(data.datasets, new.datasets) or None
    data.library_name, data.pipeline_tag, data.license = (
        new.library_name,
        new.pipeline_tag,
        new.license or data.license,
    )
    if new.eval_results:
        replaced = {r.unique_identifier for r in new.eval_results}
        kept = [r for r in data.eval_results or [] if r.unique_identifier not in replaced]
        data.eval_results, data.model_name = kept + new.eval_results, data.model_name or new.model_name
    block = ours.text[ours.text.index(BEGIN_MARKER) : ours.text.index(END_MARKER) + len(END_MARKER)]
    text, begin, end = existing.text, existing.text.find(BEGIN_MARKER), existing.text.find(END_MARKER)
    text = (
        text[:begin] + block + text[end + len(END_MARKER) :] if 0 <= begin < end else f"\n{block}\n\n{text.lstrip()}"
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{text}")


def _union(existing: Any, ours: Any) -> list[Any]:
    as_list = [] if existing is None else list(existing) if isinstance(existing, (list, tuple)) else [existing]
    return list(dict.fromkeys([*as_list, *(ours or [])]))
