"""The adapter's model card (README.md): filled from the adapter config, the training setup and the test metrics.

`write_model_card` renders `adapter_card.md` (shipped in this package; `model_cards/adapter_card.md` at the repository
root is the same file, kept identical by a test) and merges it into any README already in the folder:

- front matter: existing keys are kept; ours (`library_name`, `base_model`) are set; `tags`, `datasets` and `metrics`
  become the union of both; `model-index` results of the same task, dataset and split are replaced, others kept;
- body: the part between our begin/end markers is replaced; text outside them is kept; a README without markers keeps
  its body below our block; the "### Framework versions" list gets a `peft_video` line (peft adds its own line there).

peft's own `PeftModel.create_or_update_model_card` runs after ours during `save_pretrained` and rewrites `tags` from
`_get_peft_specific_model_tags()`; `PeftModelForVideoTextRetrieval` adds `model_card_tags(config)` there so that our
tags survive.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from ..registry import VideoMethod

TEMPLATE_NAME = "adapter_card.md"
README_NAME = "README.md"
BEGIN_MARKER = "<!-- peft_video model card: begin"
END_MARKER = "<!-- peft_video model card: end -->"
FRAMEWORK_HEADING = "### Framework versions"
LIBRARY_TAG = "peft_video"
TASK_TAG = "text-video-retrieval"
CARD_METRIC_IDS = ("recall", "median_rank", "mean_rank")

# direction key of `peft_video.metrics.compute_retrieval_metrics` -> (model-index task type, task name, short label)
DIRECTIONS: dict[str, tuple[str, str, str]] = {
    "text_to_video": ("text-to-video-retrieval", "Text-to-video retrieval", "text→video"),
    "video_to_text": ("video-to-text-retrieval", "Video-to-text retrieval", "video→text"),
}

# Known keys of the `training` mapping and their row labels; any other key is shown under its own name.
TRAINING_LABELS: dict[str, str] = {
    "dataset": "Training data",
    "steps": "Optimizer steps",
    "epochs": "Epochs",
    "global_batch_size": "Global batch size (all processes, after gradient accumulation)",
    "learning_rate": "Learning rate",
    "mixed_precision": "Mixed precision",
    "seed": "Seed",
}
TIE_POLICY_TEXT: dict[str, str] = {
    "pessimistic": "a wrong candidate with exactly the ground truth's score counts as ranked above it",
    "index": "equal scores are ordered by candidate index, as a stable sort would",
    "optimistic": "equal scores favour the ground truth (reproduces argsort-based code; inflates constant scores)",
}
# Keys of `training` that feed the card elsewhere instead of the table.
_TRAINING_META_KEYS = ("hub_model_id",)


_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)(?:\r?\n)?^---[ \t]*(?:\r?\n|\Z)", re.DOTALL | re.MULTILINE)


def peft_type_name(config: Any) -> str:
    """The config's peft type as a plain upper-case string (`"TFVL"`), whether stored as enum member or string."""
    peft_type = getattr(config, "peft_type", None)
    if peft_type is None:
        raise ValueError(f"{type(config).__name__} has no peft_type; expected a peft_video adapter config")
    return str(getattr(peft_type, "value", peft_type))


def method_info(config: Any) -> VideoMethod:
    """The registered method of the config (`peft_video.registry.VideoMethod`: display name, description, citation)."""
    from ..registry import get_video_method

    peft_type_name(config)  # a clear error for a config without peft_type
    return get_video_method(config.peft_type)


def model_card_tags(config: Any) -> list[str]:
    """Tags every peft_video adapter card carries: the library, the method (lower case) and the task.

    `PeftModelForVideoTextRetrieval._get_peft_specific_model_tags` returns these on top of peft's own, because peft's
    `create_or_update_model_card` replaces the card's `tags` with exactly that list.
    """
    return [LIBRARY_TAG, method_info(config).name, TASK_TAG]


def load_template() -> str:
    """The card template shipped with the package (identical to the repository's `model_cards/adapter_card.md`)."""
    return resources.files(__package__).joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")


def _peft_video_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("peft-video")
    except PackageNotFoundError:
        # A checkout on PYTHONPATH without installation; imported lazily to avoid a cycle with peft_video/__init__.
        from peft_video import __version__

        return __version__


def _cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, newlines flattened."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _format_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.3g}"
    return str(value)


def _is_hub_id(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name)) and not os.path.isabs(name)


def _resolve_base_model(config: Any, base_model: str | None) -> str | None:
    name = base_model if base_model else getattr(config, "base_model_name_or_path", None)
    return name or None


def _sampling_text(config: Any) -> str:
    sampling = getattr(config, "frame_sampling", None)
    if sampling == "segments":
        return "`segments`: T equal segments; the centre frame of each at evaluation, a random one in training"
    if sampling == "chunked_segments":
        chunk = getattr(config, "frame_chunk_size", None)
        return f"`chunked_segments` (chunks of {chunk} frames, chunk-major order)"
    if sampling == "fps":
        return f"`fps`: {getattr(config, 'sampling_fps', None)} frames per second, at most T frames"
    return f"`{sampling}`"


def _training_table(config: Any, method: VideoMethod, training: Mapping[str, Any] | None) -> str:
    image_size = getattr(config, "image_size", None)
    rows: list[tuple[str, Any]] = [
        ("Method", f"{method.display_name} (`peft_type: {peft_type_name(config)}`)"),
        ("Frames per video (T)", getattr(config, "num_frames", None)),
        ("Frame sampling", _sampling_text(config)),
        ("Resolution", f"{image_size} × {image_size} px" if image_size else "the base model's"),
        ("Caption length", f"{getattr(config, 'max_text_length', None)} tokens"),
    ]
    for key, value in (training or {}).items():
        if key in _TRAINING_META_KEYS or value is None:
            continue
        rows.append((TRAINING_LABELS.get(key, f"`{key}`"), _format_number(value)))
    if not training:
        rows.append(("Training run", "not recorded when this card was written"))
    lines = ["| setting | value |", "| --- | --- |"]
    lines += [f"| {_cell(label)} | {_cell(value)} |" for label, value in rows]
    return "\n".join(lines)


def _check_metrics(metrics: Mapping[str, Any]) -> None:
    missing = [key for key in DIRECTIONS if not isinstance(metrics.get(key), Mapping)]
    if missing:
        raise ValueError(
            f"metrics must hold both retrieval directions as mappings (the output of "
            f"peft_video.metrics.compute_retrieval_metrics); missing or not a mapping: {missing}"
        )
    if not metrics.get("dataset"):
        raise ValueError('metrics needs a "dataset" entry (dataset id or name) for the card\'s model-index')
    for direction in DIRECTIONS:
        for name, value in metrics[direction].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"metrics[{direction!r}][{name!r}] must be a number; got {value!r}")


def _check_training(training: Any) -> None:
    if training is not None and not isinstance(training, Mapping):
        raise ValueError(f"training must be a mapping such as {{'steps': 1000}}; got {type(training).__name__}")


def _metric_columns(metrics: Mapping[str, Any]) -> list[str]:
    columns: list[str] = []
    for direction in DIRECTIONS:
        for name in metrics[direction]:
            if name not in columns:
                columns.append(name)
    return columns


def _evaluation_section(metrics: Mapping[str, Any] | None) -> str:
    if metrics is None:
        return (
            "No evaluation results were recorded when this card was written. peft_video's `examples/evaluate.py` "
            "reports text→video and video→text R@1/5/10, MdR and MnR (protocol: peft_video's `docs/metrics.md`)."
        )
    columns = _metric_columns(metrics)
    header = "| direction | " + " | ".join(_cell(c) for c in columns) + " |"
    lines = [header, "|" + " --- |" * (len(columns) + 1)]
    blocks = [("", metrics)]
    if isinstance(metrics.get("dsl"), Mapping):
        blocks.append((", dual softmax (transductive)", metrics["dsl"]))
    for suffix, block in blocks:
        for direction, (_, _, label) in DIRECTIONS.items():
            if not isinstance(block.get(direction), Mapping):
                continue
            values = [_format_number(block[direction].get(column, "–")) for column in columns]
            lines.append(f"| {label}{suffix} | " + " | ".join(_cell(v) for v in values) + " |")
    split = metrics.get("split", "test")
    tie_policy = metrics.get("tie_policy", "pessimistic")
    text = [
        f"Dataset: `{metrics['dataset']}`, split `{split}`. R@K in percent (higher is better); MdR and MnR are the "
        "median and mean rank of the ground truth (lower is better).",
        "",
        "\n".join(lines),
        "",
        "Protocol: text→video ranks each caption's video among all videos of the split; video→text ranks, for each "
        "video, the best-ranked of its own captions among all captions (the multi-caption protocol). "
        f"Tie policy `{tie_policy}`: {TIE_POLICY_TEXT.get(tie_policy, 'see peft_video.metrics')}. Computed by "
        "`peft_video.metrics.compute_retrieval_metrics`.",
    ]
    if len(blocks) > 1:
        text += [
            "",
            "The dual-softmax rows re-score the similarities with a prior over all test queries at once, which a "
            "search answering one query at a time never has; they are shown beside the raw numbers, not instead.",
        ]
    return "\n".join(text)


def _model_index(metrics: Mapping[str, Any], model_name: str) -> list[dict[str, Any]]:
    results = []
    for direction, (task_type, task_name, label) in DIRECTIONS.items():
        dataset = {"type": str(metrics["dataset"]), "name": str(metrics.get("dataset_name", metrics["dataset"]))}
        dataset["split"] = str(metrics.get("split", "test"))
        entries = []
        for name, value in metrics[direction].items():
            if name == "num_queries":
                continue
            entries.append({"type": _metric_type(name), "value": round(float(value), 4), "name": f"{label} {name}"})
        results.append({"task": {"type": task_type, "name": task_name}, "dataset": dataset, "metrics": entries})
    return [{"name": model_name, "results": results}]


def _metric_type(name: str) -> str:
    match = re.fullmatch(r"R@(\d+)", name)
    if match:
        return f"recall_at_{match.group(1)}"
    return {"MdR": "median_rank", "MnR": "mean_rank"}.get(name, name.lower())


def render_model_card(
    config: Any,
    *,
    base_model: str | None = None,
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    model_name: str = "peft_video-adapter",
) -> tuple[dict[str, Any], str]:
    """Fill the template: returns (front matter as a dict, Markdown body). See `write_model_card` for the arguments."""
    if metrics is not None:
        _check_metrics(metrics)
    _check_training(training)
    method = method_info(config)
    base = _resolve_base_model(config, base_model)
    datasets = [str(d) for d in ((training or {}).get("dataset"), (metrics or {}).get("dataset")) if d]
    num_frames = getattr(config, "num_frames", None)
    image_size = getattr(config, "image_size", None)
    if base is None:
        base_link = "base model not recorded"
    elif _is_hub_id(base):
        base_link = f"[`{base}`](https://huggingface.co/{base})"
    else:
        base_link = f"`{base}`"
    front_values = {
        "base_model": base,
        "tags": model_card_tags(config),
        "datasets": list(dict.fromkeys(datasets)) or None,
        "metric_ids": list(CARD_METRIC_IDS),
        "model_index": _model_index(metrics, model_name) if metrics is not None else None,
    }
    body_values = {
        "title": f"{method.display_name} adapter for text-video retrieval" + (f" on {base}" if base else ""),
        "method_name": method.display_name,
        "base_model_link": base_link,
        "usage_base_model": json.dumps(base or "<base CLIP model id or folder>"),
        "usage_adapter_id": json.dumps((training or {}).get("hub_model_id") or "<this adapter's Hub id or folder>"),
        "training_table": _training_table(config, method, training),
        "image_size_text": str(image_size) if image_size else "H",
        "num_frames": str(num_frames),
        "evaluation_section": _evaluation_section(metrics),
        "method_description": method.description,
        "citation": method.citation,
        "peft_video_version": _peft_video_version(),
    }
    mapping = {key: json.dumps(value, ensure_ascii=False) for key, value in front_values.items()}
    mapping.update(body_values)
    rendered = Template(load_template()).substitute(mapping)
    front_matter, body = split_front_matter(rendered, source=TEMPLATE_NAME)
    front_matter = {key: value for key, value in front_matter.items() if value is not None}
    return front_matter, body


def split_front_matter(text: str, source: str = README_NAME) -> tuple[dict[str, Any], str]:
    """Split a card into its YAML front matter (a dict, empty when absent) and its Markdown body."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, text
    try:
        data = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{source}: the YAML front matter cannot be parsed: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{source}: the YAML front matter must be a mapping; got {type(data).__name__}")
    return data, text[match.end() :]


def _union(existing: Any, ours: list[Any]) -> list[Any]:
    if existing is None:
        existing = []
    elif not isinstance(existing, list):
        existing = [existing]
    return list(dict.fromkeys([*existing, *ours]))


def _result_key(result: Mapping[str, Any]) -> tuple[Any, ...]:
    task = result.get("task") or {}
    dataset = result.get("dataset") or {}
    return task.get("type"), dataset.get("type"), dataset.get("config"), dataset.get("split")


def _merge_model_index(existing: Any, ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(existing, list) or not existing or not isinstance(existing[0], Mapping):
        return ours
    entry = dict(existing[0])
    replaced = {_result_key(result) for result in ours[0]["results"]}
    kept = [r for r in entry.get("results") or [] if isinstance(r, Mapping) and _result_key(r) not in replaced]
    entry["results"] = kept + ours[0]["results"]
    entry.setdefault("name", ours[0]["name"])
    return [entry, *existing[1:]]


def merge_front_matter(existing: Mapping[str, Any], ours: Mapping[str, Any]) -> dict[str, Any]:
    """Our keys over the existing ones; list-valued `tags`, `datasets`, `metrics` united; `model-index` merged."""
    merged = dict(existing)
    for key, value in ours.items():
        if key in ("tags", "datasets", "metrics"):
            merged[key] = _union(existing.get(key), list(value))
        elif key == "model-index":
            merged[key] = _merge_model_index(existing.get(key), value)
        else:
            merged[key] = value
    return merged


def _ensure_framework_line(text: str, line: str) -> str:
    """Put `line` in the "### Framework versions" list: in place of an older peft_video line, else at the list's end.

    peft inserts its own "- PEFT x" line right below the heading when that line is missing; updating ours in place
    keeps repeated saves byte-identical.
    """
    lines = text.splitlines()
    for index, existing in enumerate(lines):
        if existing.startswith(f"- {LIBRARY_TAG} "):
            lines[index] = line
            return "\n".join(lines) + "\n"
    if FRAMEWORK_HEADING not in lines:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", FRAMEWORK_HEADING, ""]
    position = lines.index(FRAMEWORK_HEADING) + 1
    if position >= len(lines) or lines[position].strip():
        lines.insert(position, "")
    position += 1
    while position < len(lines) and lines[position].startswith("- "):
        position += 1
    lines.insert(position, line)
    return "\n".join(lines) + "\n"


def merge_body(existing: str, ours: str) -> str:
    """Replace our marked block in `existing` (or put it on top of a body without one), keep the rest."""
    begin, end = ours.find(BEGIN_MARKER), ours.find(END_MARKER)
    if begin < 0 or end < 0:
        raise ValueError(f"the card template lost its markers {BEGIN_MARKER!r} ... {END_MARKER!r}")
    block = ours[begin : end + len(END_MARKER)]
    framework_line = next(line for line in ours.splitlines() if line.startswith(f"- {LIBRARY_TAG} "))
    old_begin, old_end = existing.find(BEGIN_MARKER), existing.find(END_MARKER)
    if old_begin >= 0 and old_end > old_begin:
        merged = existing[:old_begin] + block + existing[old_end + len(END_MARKER) :]
    elif existing.strip():
        merged = "\n" + block + "\n\n" + existing.lstrip("\n")
    else:
        merged = ours[:begin] + block + ours[end + len(END_MARKER) :]
    return _ensure_framework_line(merged, framework_line)


def _dump_card(front_matter: Mapping[str, Any], body: str) -> str:
    yaml_text = yaml.safe_dump(dict(front_matter), sort_keys=False, allow_unicode=True, width=1000)
    if not body.startswith("\n"):
        body = "\n" + body
    return f"---\n{yaml_text}---\n{body}"


def write_model_card(
    output_dir: str | os.PathLike,
    config: Any,
    *,
    base_model: str | None,
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> None:
    """Write (or update) `output_dir/README.md`, the model card of a peft_video adapter.

    Args:
        output_dir: The adapter folder (created if missing).
        config: The adapter config (a `VideoAdapterConfig`): `peft_type`, `num_frames`, `frame_sampling`,
            `sampling_fps`, `frame_chunk_size`, `image_size`, `max_text_length`, `base_model_name_or_path` are read.
        base_model: Hub id or path of the base CLIPModel; `None` falls back to `config.base_model_name_or_path`.
        training: The run, e.g. `{"dataset": "msrvtt", "steps": 5000, "global_batch_size": 128,
            "learning_rate": 1e-3}`; keys of `TRAINING_LABELS` get readable labels, other keys are listed as they are;
            `hub_model_id` goes into the usage snippet.
        metrics: Test results: the output of `peft_video.metrics.compute_retrieval_metrics` plus `"dataset"` (and
            optionally `"split"`, default "test", and `"dataset_name"`), e.g. `{"text_to_video": {"R@1": 44.1, ...},
            "video_to_text": {...}, "dataset": "msrvtt"}`. Filled into the body and the `model-index`.

    An existing README is merged, not wiped (see the module docstring). The written card is checked with
    huggingface_hub's parser, the one peft and the Hub use, so a card that they would reject fails here, naming why.
    """
    from huggingface_hub import ModelCard

    _check_training(training)
    output_dir = os.fspath(output_dir)
    path = os.path.join(output_dir, README_NAME)
    existing_front: dict[str, Any] = {}
    existing_body = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            existing_front, existing_body = split_front_matter(handle.read(), source=path)
    index_name = None
    if isinstance(existing_front.get("model-index"), list) and existing_front["model-index"]:
        first = existing_front["model-index"][0]
        index_name = first.get("name") if isinstance(first, Mapping) else None
    hub_model_id = (training or {}).get("hub_model_id")
    model_name = index_name or hub_model_id or os.path.basename(os.path.abspath(output_dir)) or "peft_video-adapter"
    ours_front, ours_body = render_model_card(
        config, base_model=base_model, training=training, metrics=metrics, model_name=model_name
    )
    content = _dump_card(merge_front_matter(existing_front, ours_front), merge_body(existing_body, ours_body))
    try:
        ModelCard(content)
    except ValueError as error:
        raise ValueError(f"the model card for {path} would not parse on the Hub: {error}") from error
    os.makedirs(output_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(content)
