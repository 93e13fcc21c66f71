"""The command line of `train.py` and `evaluate.py`: `transformers.HfArgumentParser` over their dataclasses, with a
YAML or JSON config file given as transformers' examples take it (the file alone: `train.py config.yaml`) or as TRL's
scripts do (`--config config.yaml`), and flags that override the file's values.

What HfArgumentParser does not do itself: an unknown key in the file or an unknown flag is an error that names it and
the closest field (HfArgumentParser's own message lists the leftovers without a hint), and `method_config` (a mapping
in the file) takes a JSON object on the command line, merged key by key over the file's.
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

MAPPING_FIELDS = ("method_config",)
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def parse_args(dataclass_types, argv: list[str] | None = None, description: str | None = None) -> tuple:
    """Parse `[CONFIG | --config CONFIG] [--field value ...]` into instances of `dataclass_types` (in order)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config = None
    if "--config" in argv:
        position = argv.index("--config")
        if position + 1 >= len(argv):
            raise ValueError("--config needs a file path")
        config = argv.pop(position + 1)
        argv.pop(position)
    elif argv and not argv[0].startswith("-") and argv[0].lower().endswith(CONFIG_SUFFIXES):
        config = argv.pop(0)
    fields = {f.name for cls in dataclass_types for f in dataclasses.fields(cls) if f.init}
    file_values = read_config(config) if config else {}
    _refuse_unknown(set(file_values) - fields, fields, f"{config}: unknown field(s)")
    flags = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}
    _refuse_unknown(
        flags - fields - {f"no_{name}" for name in fields} - {"help"}, fields, "unknown command-line flag(s)"
    )

    parser = HfArgumentParser(dataclass_types, description=description)
    parser.set_defaults(**file_values)
    instances = parser.parse_args_into_dataclasses(args=argv)
    for instance in instances:
        for name in MAPPING_FIELDS:
            value = getattr(instance, name, None)
            if isinstance(value, str):
                setattr(instance, name, {**(file_values.get(name) or {}), **_json_object(name, value)})
    return tuple(instances)


def read_config(path: str | Path) -> dict[str, Any]:
    """A YAML (`.yaml`/`.yml`) or JSON (`.json`) mapping of field name to value."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        values = json.loads(path.read_text()) if path.suffix.lower() == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {err}") from err
    if not isinstance(values, dict | None):
        raise ValueError(f"{path}: expected a mapping of field names to values, got a {type(values).__name__}")
    return values or {}


def _refuse_unknown(unknown: set[str], known: set[str], what: str) -> None:
    if unknown:
        named = [
            f"{n!r}" + "".join(f" (did you mean {c!r}?)" for c in difflib.get_close_matches(n, known, 1))
            for n in sorted(unknown)
        ]
        raise ValueError(f"{what} {', '.join(named)}; see the field list with --help")


def _json_object(name: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--{name} must be a JSON object, got {text!r}: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"--{name} must be a JSON object, got {text!r}")
    return value
