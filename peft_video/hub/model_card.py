"""The adapter's model card (README.md), made with huggingface_hub's `ModelCard`, `ModelCardData` and `EvalResult` from
one Jinja template: `model_cards/adapter_card.md` (the package's `hub/adapter_card.md` is a link to it, so that wheels
and sdists ship its content).

Facts come in as arguments: the adapter config (method, frames, sampling, resolution) and what only the caller knows
(the base model's Hub id, the training setup, test results, license, the adapter's own id). Nothing is read from
attributes set on a model.

The Hub's metadata holds only what the Hub can resolve: `base_model` (and the `base_model:adapter:` tag, the title and
the usage snippet) is a Hub id or absent, never a folder of the machine that trained the adapter; `datasets` are Hub
dataset ids (the public benchmarks' known ids; other data is named in the text only).

A README already in the folder is updated, not replaced: its metadata is kept and ours set or merged (tags and datasets
united, results for the same task, dataset and split replaced), and only the text between our markers is rewritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import resources
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

README_NAME = "README.md"
BEGIN_MARKER = "<!-- peft_video model card: begin"
END_MARKER = "<!-- peft_video model card: end -->"
LIBRARY_TAG = "peft_video"
TASK_TAG = "text-video-retrieval"
# The Hub's task for models that output embeddings; its task list (huggingface.js `pipelines.ts`) has no video
# retrieval task, and retrieval models there (sentence encoders, CLIPs used for search) carry this one.
PIPELINE_TAG = "feature-extraction"
# Hub dataset ids of the public benchmarks (`peft_video.data.PUBLIC_DATASETS` names); LSMDC has none.
HUB_DATASET_IDS = {
    "msrvtt": "friedrichor/MSR-VTT",
    "msvd": "friedrichor/MSVD",
    "didemo": "friedrichor/DiDeMo",
    "activitynet": "friedrichor/ActivityNet_Captions",
    "vatex": "HuggingFaceM4/vatex",
}
# direction key of `compute_retrieval_metrics` -> (model-index task type, task name, label in the card)
DIRECTIONS = {
    "text_to_video": ("text-to-video-retrieval", "Text-to-video retrieval", "text→video"),
    "video_to_text": ("video-to-text-retrieval", "Video-to-text retrieval", "video→text"),
}
TIE_POLICY_TEXT = {
    "pessimistic": "a wrong candidate with exactly the ground truth's score counts as ranked above it",
    "index": "equal scores are ordered by candidate index, as a stable sort would",
    "optimistic": "equal scores favour the ground truth (inflates constant scores)",
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


def method_of(config: Any):
    """The registered method of an adapter config (`peft_video.registry.VideoMethod`)."""
    from ..registry import get_video_method

    if getattr(config, "peft_type", None) is None:
        raise ValueError(f"{type(config).__name__} has no peft_type; expected a peft_video adapter config")
    return get_video_method(config.peft_type)


def model_card_tags(config: Any) -> list[str]:
    """Tags every peft_video card carries: the library, the method and the task, and `base_model:adapter:<id>` when
    the base model is a Hub id (the Hub lists the adapter under its base model)."""
    base = hub_repo_id(getattr(config, "base_model_name_or_path", None))
    return [LIBRARY_TAG, method_of(config).name, TASK_TAG, *([f"base_model:adapter:{base}"] if base else [])]


def write_model_card(
    output_dir: str | os.PathLike,
    config: Any,
    *,
    adapter_id: str | None = None,
    license: str | None = None,  # noqa: A002  (the card's field name)
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    split: str = "test",
) -> ModelCard:
    """Write (or update) `output_dir/README.md`, the model card of a peft_video adapter, and return it.

    Args:
        output_dir: The adapter folder (created if missing).
        config: The adapter config: method, frames, sampling and resolution are read from it, and the base model from
            `base_model_name_or_path` when that is a Hub id (set it to the Hub id of a local copy to name it).
        adapter_id: The adapter's Hub id, for the usage snippet and the results' model name.
        license: A Hub license id (`apache-2.0`, `mit`, ...); the base model's terms usually apply.
        training: Rows of the training-setup table, label -> value (`{"Optimizer steps": 5000}`).
        metrics: Test results, as `peft_video.metrics.compute_retrieval_metrics` returns them: both directions, and
            optionally `tie_policy` and `dsl`. Filled into the text and the metadata (`model-index`).
        dataset: The data `metrics` come from: a public benchmark's name, a Hub dataset id, or any name.
        split: The split `metrics` come from.
    """
    method = method_of(config)
    if training is not None and not isinstance(training, Mapping):
        raise ValueError(f"training must be a mapping of row label to value, got {type(training).__name__}")
    if metrics is not None:
        _check_metrics(metrics, dataset)
    base = hub_repo_id(getattr(config, "base_model_name_or_path", None))
    dataset_id = hub_dataset_id(dataset)
    path = os.path.join(os.fspath(output_dir), README_NAME)
    existing = _load_card(path)
    model_name = (existing.data.model_name if existing else None) or adapter_id or _folder_name(output_dir)
    data = ModelCardData(
        library_name="peft",
        base_model=base,
        pipeline_tag=PIPELINE_TAG,
        license=license,
        tags=model_card_tags(config),
        datasets=[dataset_id] if dataset_id else None,
        eval_results=_eval_results(metrics, dataset_id or dataset, dataset, split) if metrics else None,
        model_name=model_name,
    )
    ours = ModelCard.from_template(
        data,
        template_str=resources.files(__package__).joinpath("adapter_card.md").read_text(encoding="utf-8"),
        **_template_values(config, method, base, adapter_id, training, metrics, dataset, split),
    )
    card = _merge(existing, ours) if existing else ours
    os.makedirs(os.fspath(output_dir), exist_ok=True)
    card.save(path)
    return card


def _check_metrics(metrics: Mapping[str, Any], dataset: str | None) -> None:
    missing = [key for key in DIRECTIONS if not isinstance(metrics.get(key), Mapping)]
    if missing:
        raise ValueError(f"metrics must hold both directions of compute_retrieval_metrics' output; missing {missing}")
    if not dataset:
        raise ValueError("metrics need the name of the data they come from: pass dataset=")
    for direction in DIRECTIONS:
        for name, value in metrics[direction].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"metrics[{direction!r}][{name!r}] must be a number, got {value!r}")


def _load_card(path: str) -> ModelCard | None:
    if not os.path.exists(path):
        return None
    try:
        return ModelCard.load(path)
    except Exception as error:  # noqa: BLE001  (YAML errors, a non-mapping block, a broken model-index)
        raise ValueError(f"{path}: the existing model card's metadata cannot be read: {error}") from error


def _folder_name(output_dir: str | os.PathLike) -> str:
    return os.path.basename(os.path.abspath(os.fspath(output_dir))) or "peft_video-adapter"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.3g}"
    return str(value)


def _metric_type(name: str) -> str:
    return {"MdR": "median_rank", "MnR": "mean_rank"}.get(name, name.lower().replace("r@", "recall_at_"))


def _eval_results(metrics: Mapping[str, Any], dataset_type: str, dataset_name: str, split: str) -> list[EvalResult]:
    return [
        EvalResult(
            task_type=task_type,
            task_name=task_name,
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split=split,
            metric_type=_metric_type(name),
            metric_name=f"{label} {name}",
            metric_value=round(float(value), 4),
        )
        for direction, (task_type, task_name, label) in DIRECTIONS.items()
        for name, value in metrics[direction].items()
        if name != "num_queries"
    ]


def _sampling_text(config: Any) -> str:
    sampling = getattr(config, "frame_sampling", None)
    if sampling == "segments":
        return "`segments`: T equal segments; the centre frame of each at evaluation, a random one in training"
    if sampling == "chunked_segments":
        return f"`chunked_segments` (chunks of {getattr(config, 'frame_chunk_size', None)} frames, chunk-major order)"
    if sampling == "fps":
        return f"`fps`: {getattr(config, 'sampling_fps', None)} frames per second, at most T frames"
    return f"`{sampling}`"


def _template_values(config, method, base, adapter_id, training, metrics, dataset, split) -> dict[str, Any]:
    from .. import __version__

    image_size = getattr(config, "image_size", None)
    rows = [
        ("Method", f"{method.display_name} (`peft_type: {method.peft_type}`)"),
        ("Frames per video (T)", getattr(config, "num_frames", None)),
        ("Frame sampling", _sampling_text(config)),
        ("Resolution", f"{image_size} × {image_size} px" if image_size else "the base model's"),
        ("Caption length", f"{getattr(config, 'max_text_length', None)} tokens"),
        *((label, _number(value)) for label, value in (training or {}).items() if value is not None),
    ]
    values = {
        "title": f"{method.display_name} adapter for text-video retrieval" + (f" on {base}" if base else ""),
        "method_name": method.display_name,
        "base_model_text": f"[`{base}`](https://huggingface.co/{base})" if base else "see `adapter_config.json`",
        "peft_video_version": __version__,
        "usage_base_model": json.dumps(base or "<base CLIP model: Hub id or folder>"),
        "usage_adapter_id": json.dumps(adapter_id or "<this adapter: Hub id or folder>"),
        "setup_rows": [(str(label).replace("|", "\\|"), str(value).replace("|", "\\|")) for label, value in rows],
        "image_size": image_size or "H",
        "num_frames": getattr(config, "num_frames", None),
        "method_description": method.description,
        "citation": method.citation,
        "result_rows": [],
    }
    if metrics:
        names = list(dict.fromkeys(n for d in DIRECTIONS for n in metrics[d] if n != "num_queries"))
        blocks = [("", metrics)] + (
            [(", dual softmax", metrics["dsl"])] if isinstance(metrics.get("dsl"), Mapping) else []
        )
        tie_policy = metrics.get("tie_policy", "pessimistic")
        values.update(
            metric_names=names,
            result_rows=[
                (label + suffix, [_number(block[d].get(n, "–")) for n in names])
                for suffix, block in blocks
                for d, (_, _, label) in DIRECTIONS.items()
            ],
            dataset=f"[`{hub_dataset_id(dataset)}`](https://huggingface.co/datasets/{hub_dataset_id(dataset)})"
            if hub_dataset_id(dataset)
            else f"`{dataset}`",
            split=split,
            tie_policy=tie_policy,
            tie_policy_text=TIE_POLICY_TEXT.get(tie_policy, "see peft_video.metrics"),
            has_dsl=len(blocks) > 1,
        )
    return values


def _merge(existing: ModelCard, ours: ModelCard) -> ModelCard:
    """`ours` merged into `existing`: its metadata kept under ours, its text kept around our marked block."""
    data, new = existing.data, ours.data
    base = new.base_model or hub_repo_id(data.base_model if isinstance(data.base_model, str) else None)
    data.base_model = base
    data.tags = _union(
        [t for t in data.tags or [] if not t.startswith("base_model:adapter:") or t == f"base_model:adapter:{base}"],
        new.tags,
    )
    data.datasets = _union(data.datasets, new.datasets) or None
    data.library_name, data.pipeline_tag = new.library_name, new.pipeline_tag
    data.license = new.license or data.license
    if new.eval_results:
        replaced = {r.unique_identifier for r in new.eval_results}
        kept = [r for r in data.eval_results or [] if r.unique_identifier not in replaced]
        data.eval_results, data.model_name = kept + new.eval_results, data.model_name or new.model_name
    begin, end = ours.text.index(BEGIN_MARKER), ours.text.index(END_MARKER) + len(END_MARKER)
    block, text = ours.text[begin:end], existing.text
    old_begin, old_end = text.find(BEGIN_MARKER), text.find(END_MARKER)
    if old_begin >= 0 and old_end > old_begin:
        text = text[:old_begin] + block + text[old_end + len(END_MARKER) :]
    else:
        text = "\n" + block + "\n\n" + text.lstrip("\n")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{text}")


def _union(existing: Any, ours: Any) -> list[Any]:
    return list(dict.fromkeys([*_as_list(existing), *_as_list(ours)]))


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]
