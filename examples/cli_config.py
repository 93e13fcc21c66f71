"""Command-line parsing shared by `train.py` and `evaluate.py`: dataclasses read by `transformers.HfArgumentParser`
from a YAML or JSON file (`--config FILE`), with command-line flags overriding the file's values.

Mapping fields (`MAPPING_FIELDS`: `method_config`) take a JSON object on the command line, merged key by key over
the file's.
An unknown key in the file or an unknown flag is an error that names it and suggests the closest field.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

DATASETS = ("offline_world", "manifest")


@dataclasses.dataclass
class DataSourceArguments:
    """Where the videos and captions come from and how they are decoded: the fields train.py and evaluate.py share."""

    dataset: str = dataclasses.field(
        default="offline_world",
        metadata={"help": f"One of {DATASETS}: the synthetic world (generated if missing) or a manifest file."},
    )
    manifest: str | None = dataclasses.field(
        default=None, metadata={"help": "dataset=manifest: CSV/TSV/JSONL manifest path."}
    )
    dataset_name: str | None = dataclasses.field(
        default=None, metadata={"help": "Name of the data in the model card and metrics (default: derived)."}
    )
    data_dir: str = dataclasses.field(
        default="data/offline_world", metadata={"help": "dataset=offline_world: where the world is (or is written)."}
    )
    world_num_train: int = dataclasses.field(default=512, metadata={"help": "offline_world: training videos."})
    world_num_val: int = dataclasses.field(default=128, metadata={"help": "offline_world: validation videos."})
    world_num_test: int = dataclasses.field(default=256, metadata={"help": "offline_world: test videos."})
    world_num_frames: int = dataclasses.field(
        default=12, metadata={"help": "offline_world: frames per generated video."}
    )
    world_seed: int = dataclasses.field(default=0, metadata={"help": "offline_world: generator seed."})
    video_backend: str = dataclasses.field(
        default="auto", metadata={"help": "Decoder: auto, decord, pyav or torchcodec."}
    )
    decode_timeout: float = dataclasses.field(
        default=60.0,
        metadata={"help": "Seconds per video in an isolated helper process; 0 decodes in-process (faster)."},
    )
    subset_columns: list[str] = dataclasses.field(
        default_factory=lambda: ["is_order_sensitive"],
        metadata={"help": "Boolean manifest columns whose true rows also get their own metrics (if present)."},
    )
    twin_column: str | None = dataclasses.field(
        default="order_pair_id",
        metadata={"help": "Manifest column pairing twin videos (a video and its reverse): adds twin_accuracy."},
    )


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (`.yaml`/`.yml`) or JSON (`.json`) mapping of field name to value."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        values = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {err}") from err
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of field names to values, got a {type(values).__name__}")
    return values


MAPPING_FIELDS = ("method_config",)
"""Fields declared `str` for argparse (a JSON object on the command line) that the config file gives as a mapping."""


def _field_names(dataclass_types) -> dict[str, dataclasses.Field]:
    return {f.name: f for cls in dataclass_types for f in dataclasses.fields(cls) if f.init}


def _unknown_error(kind: str, unknown: list[str], known: dict[str, Any], source: str) -> ValueError:
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(known), n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ValueError(f"{source}: unknown {kind} {', '.join(parts)}; see the field list with --help")


def parse_args(dataclass_types, argv: list[str] | None = None, description: str | None = None) -> tuple:
    """Parse `[--config FILE] [--field value ...]` into instances of `dataclass_types` (in order)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path = None
    if "--config" in argv:
        position = argv.index("--config")
        if position + 1 >= len(argv):
            raise ValueError("--config needs a file path")
        config_path = argv[position + 1]
        del argv[position : position + 2]
    fields = _field_names(dataclass_types)
    file_values = load_config_file(config_path) if config_path else {}
    unknown = sorted(set(file_values) - set(fields))
    if unknown:
        raise _unknown_error("field(s)", unknown, fields, str(config_path))

    parser = HfArgumentParser(dataclass_types, description=description)
    parser.set_defaults(**file_values)
    flags = [a[2:].split("=", 1)[0] for a in argv if a.startswith("--")]
    negations = {f"no_{name}" for name in fields}  # HfArgumentParser's --no_<flag> for boolean fields
    unknown_flags = [f for f in flags if f not in fields and f not in negations and f != "help"]
    if unknown_flags:
        raise _unknown_error("command-line flag(s)", unknown_flags, fields, "command line")
    instances = parser.parse_args_into_dataclasses(args=argv)
    for instance in instances:
        for field in dataclasses.fields(instance):
            value = getattr(instance, field.name)
            if field.name in MAPPING_FIELDS and isinstance(value, str):
                try:
                    override = json.loads(value)
                except json.JSONDecodeError as err:
                    raise ValueError(f"--{field.name} must be a JSON object, got {value!r}: {err}") from err
                if not isinstance(override, dict):
                    raise ValueError(f"--{field.name} must be a JSON object, got {value!r}")
                setattr(instance, field.name, {**(file_values.get(field.name) or {}), **override})
    return tuple(instances)
