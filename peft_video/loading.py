"""What a training or evaluation run loads, each failure naming the thing: the data splits (the offline world or a
manifest), the base CLIPModel with its tokenizer and frame transform, the model of a method chosen by name, and a
saved model to evaluate (an adapter folder or Hub id, a fine-tuned CLIPModel folder, or a base model's zero-shot
baseline), and a trained model's weights saved and put back (`save_trained_model`, `load_trained_weights`: the best
validation step's adapter). `examples/train.py` and `examples/evaluate.py` are built from these; so can any other
script.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .data.defaults import DEFAULT_NUM_FRAMES

DATASETS = ("offline_world", "manifest", "shards", "hub")
STREAMED_DATASETS = ("shards", "hub")
"""Sources read as streams (`datasets.IterableDataset`s of raw samples, `peft_video.data.shards`): no length, no random
access; `examples/train.py` trains on them by `max_steps` and evaluates each video once (docs/shards.md)."""
VIDEO_TO_TEXT_PROTOCOL_SETTINGS = ("auto", "collaborative_experts", "clip4clip")
BASELINES: dict[str, str] = {
    "zero_shot": "frozen CLIP, mean of the frame embeddings (evaluation only)",
    "full_finetune": "every CLIP weight trained, mean of the frame embeddings (CLIP4Clip-meanP)",
}


@dataclasses.dataclass
class DataSourceArguments:
    """Where the videos and captions come from and how they are decoded (the data fields every script shares)."""

    dataset: str = dataclasses.field(
        default="offline_world",
        metadata={
            "help": f"One of {DATASETS}: the synthetic world (generated if missing), a manifest file, streamed "
            "WebDataset/Parquet shards (`shards`), or a `datasets` dataset streamed with load_dataset (`hub`)."
        },
    )
    manifest: str | None = dataclasses.field(default=None, metadata={"help": "dataset=manifest: CSV/TSV/JSONL path."})
    shards: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "dataset=shards: where each split's shards are: a folder or URL with one folder per split, each "
            "with the shards.json of `peft-video shard` (data/shards -> data/shards/train, ...), or a pattern where "
            "{split} stands for the split name (data/{split}/shard-{00000..00063}.tar, s3://bucket/{split}/*.parquet)."
        },
    )
    hub_dataset: str | None = dataclasses.field(
        default=None,
        metadata={"help": "dataset=hub: a Hub dataset id or folder, read with load_dataset(..., streaming=True)."},
    )
    hub_config: str | None = dataclasses.field(default=None, metadata={"help": "dataset=hub: its configuration name."})
    caption_field: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "Streamed sources: where the caption(s) are. WebDataset: auto, txt, txt:lines or json:FIELD; "
            "Parquet and hub: a column of strings or lists of strings. Default: shards.json's, else auto "
            "(WebDataset), captions (Parquet), caption (hub)."
        },
    )
    video_column: str = dataclasses.field(
        default="video", metadata={"help": "Parquet and hub: the column of video bytes (or Video(decode=False))."}
    )
    key_column: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "Parquet and hub: the column naming each video uniquely (Parquet default: key; required for hub)."
        },
    )
    dataset_name: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "Name of the data in metrics and the model card: a public benchmark's name (msrvtt, msvd, "
            "didemo, activitynet, lsmdc, vatex) or a Hub dataset id puts its Hub id in the card (default: derived)."
        },
    )
    data_dir: str = dataclasses.field(
        default="data/offline_world", metadata={"help": "dataset=offline_world: where the world is (or is written)."}
    )
    world_num_train: int = dataclasses.field(default=512, metadata={"help": "offline_world: training videos."})
    world_num_val: int = dataclasses.field(default=128, metadata={"help": "offline_world: validation videos."})
    world_num_test: int = dataclasses.field(default=256, metadata={"help": "offline_world: test videos."})
    world_num_frames: int = dataclasses.field(
        default=DEFAULT_NUM_FRAMES, metadata={"help": "offline_world: frames per video."}
    )
    world_seed: int = dataclasses.field(default=0, metadata={"help": "offline_world: generator seed."})
    video_backend: str = dataclasses.field(default="auto", metadata={"help": "auto, decord, pyav or torchcodec."})
    decode_timeout: float = dataclasses.field(
        default=60.0,
        metadata={"help": "Seconds per video in an isolated helper process; 0 decodes in-process (faster)."},
    )
    subset_columns: list[str] = dataclasses.field(
        default_factory=lambda: ["is_order_sensitive"],
        metadata={
            "help": "Boolean manifest columns whose true rows also get their own metrics (if present; a streamed "
            "split: fields of its videos' metadata)."
        },
    )
    twin_column: str | None = dataclasses.field(
        default="order_pair_id",
        metadata={
            "help": "Manifest column pairing twin videos (a video and its reverse): adds twin_accuracy (a streamed "
            "split: a field of its videos' metadata)."
        },
    )
    video_to_text_protocol: str = dataclasses.field(
        default="auto",
        metadata={
            "help": "video->text protocol (docs/metrics.md): collaborative_experts (a video's best caption among all "
            "captions) or clip4clip (its caption set among videos); auto: the one papers report on the public "
            "benchmark the data comes from (manifest column `benchmark`, or dataset_name), else collaborative_experts."
        },
    )

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; known datasets: {list(DATASETS)}")
        if self.dataset == "manifest" and not self.manifest:
            raise ValueError("dataset=manifest needs manifest=<path to a CSV/TSV/JSONL manifest>")
        if self.dataset == "shards" and not self.shards:
            raise ValueError(
                "dataset=shards needs shards=<a folder or URL with one shard folder per split, or a pattern with "
                "{split}>"
            )
        if self.dataset == "hub" and not (self.hub_dataset and self.key_column):
            raise ValueError(
                "dataset=hub needs hub_dataset=<Hub id or folder> and key_column=<the column that names each video "
                "uniquely> (evaluation counts each video once by it)"
            )
        if self.video_to_text_protocol not in VIDEO_TO_TEXT_PROTOCOL_SETTINGS:
            raise ValueError(
                f"video_to_text_protocol must be one of {VIDEO_TO_TEXT_PROTOCOL_SETTINGS}, "
                f"got {self.video_to_text_protocol!r}"
            )

    @property
    def streamed(self) -> bool:
        """Whether the splits are read as streams (`STREAMED_DATASETS`) rather than manifest rows."""
        return self.dataset in STREAMED_DATASETS

    def prepare(self, accelerator: Any = None) -> tuple[Path | str, str]:
        """The manifest to read (or, for a streamed source, its location) and the data's name; writes the offline
        world first when it is missing (on the main process, the others waiting)."""
        if self.dataset == "shards":
            return self.shards, self.dataset_name or _location_name(self.shards)
        if self.dataset == "hub":
            return self.hub_dataset, self.dataset_name or self.hub_dataset
        if self.dataset == "manifest":
            if not Path(self.manifest).is_file():
                raise FileNotFoundError(f"manifest not found: {self.manifest}")
            return Path(self.manifest), self.dataset_name or Path(self.manifest).stem
        from contextlib import nullcontext

        from .synthetic import WorldConfig, write_world

        if not (Path(self.data_dir) / "manifest.jsonl").exists():
            logging.getLogger(__name__).warning("writing the offline world to %s (first run only)", self.data_dir)
        with accelerator.main_process_first() if accelerator is not None else nullcontext():
            manifest = write_world(
                self.data_dir, self.world_num_train, self.world_num_val, self.world_num_test,
                config=WorldConfig(num_frames=self.world_num_frames, seed=self.world_seed),
            )  # fmt: skip
        return Path(manifest), self.dataset_name or "peft_video offline world"

    def load_split(self, source: Path | str, split: str, role: str, limit: int | None = None):
        """One split: manifest rows (`load_split`) or, for a streamed source, its raw samples (`open_stream`)."""
        if not self.streamed:
            return load_split(source, split, role, limit)
        if limit is not None:
            raise ValueError(
                f"a row limit for the {role} split (max_train_samples / max_eval_samples) needs random access; a "
                "streamed source has none: write fewer shards (peft-video shard --split) or point at fewer of them"
            )
        return self.open_stream(split, role)

    def open_stream(self, split: str, role: str):
        """The raw samples of `split` as a streamed `datasets.IterableDataset` (`peft_video.data.shards`); an error
        names the role, the split and where it was looked for."""
        if self.dataset == "hub":
            return self._open_hub_split(split, role)
        from .data import open_shards, parquet_samples, webdataset_samples

        location = self.shards.replace("{split}", split) if "{split}" in self.shards else _join(self.shards, split)
        kind = _shard_kind(location)
        try:
            if kind == "webdataset":
                return webdataset_samples(location, caption_field=self.caption_field or "auto")
            if kind == "parquet":
                columns = {"caption_column": self.caption_field or "captions", "video_column": self.video_column}
                return parquet_samples(location, key_column=self.key_column or "key", **columns)
            return open_shards(location, **self._index_overrides(location))
        except (FileNotFoundError, ValueError) as err:
            raise type(err)(f"{role} split {split!r}: no shards at {location}: {err}") from err

    def _index_overrides(self, location: str) -> dict[str, Any]:
        """Reader options that override what a shards.json says (only those the user set)."""
        from .data import shard_index

        options: dict[str, Any] = {}
        webdataset = shard_index(location)["format"] == "webdataset"
        if self.caption_field:
            options["caption_field" if webdataset else "caption_column"] = self.caption_field
        if not webdataset and self.video_column != "video":
            options["video_column"] = self.video_column
        if not webdataset and self.key_column:
            options["key_column"] = self.key_column
        return options

    def _open_hub_split(self, split: str, role: str):
        import datasets

        from .data import dataset_samples

        try:
            data = datasets.load_dataset(self.hub_dataset, self.hub_config, split=split, streaming=True)
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"{role} split {split!r} of {self.hub_dataset}: {err}") from err
        if self.key_column not in (data.column_names or []):
            raise ValueError(
                f"{role} split {split!r} of {self.hub_dataset} has no key_column {self.key_column!r}; "
                f"columns: {data.column_names}"
            )
        return dataset_samples(
            data, video_column=self.video_column, caption_column=self.caption_field or "caption",
            key_column=self.key_column, video_id_column=self.key_column, name=f"{self.hub_dataset}/{split}",
            meta_column="meta",  # per-video metadata when the dataset has it (`peft-video shard`'s Parquet files)
        )  # fmt: skip


def _join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}" if "://" in location else str(Path(location) / name)


def _location_name(location: str) -> str:
    return location.rstrip("/").split("{split}")[0].rstrip("/").rsplit("/", 1)[-1] or location


def _shard_kind(location: str) -> str | None:
    """webdataset / parquet for a shard file or pattern, None for a folder (read through its shards.json)."""
    last = location.lower().rstrip("/").rsplit("/", 1)[-1]
    return "webdataset" if ".tar" in last else "parquet" if ".parquet" in last else None


def video_to_text_protocol(setting: str, dataset_name: str | None = None, data: Any = None) -> str:
    """The video->text protocol an evaluation reports (`peft_video.metrics`): `setting` unless it is "auto"; then the
    one papers report on the public benchmark the data comes from (`PUBLIC_DATASETS[name].video_to_text_protocol`),
    named by the rows' `benchmark` column (written by `peft-video benchmark`) or by `dataset_name`; otherwise the
    library's default, collaborative_experts."""
    from .data import PUBLIC_DATASETS

    if setting != "auto":
        return setting  # checked by DataSourceArguments and by the metrics
    names = []
    if data is not None and "benchmark" in (getattr(data, "column_names", None) or []):
        names = sorted({str(name) for name in data["benchmark"] if name})
    if len(names) > 1:
        raise ValueError(
            f"the split mixes benchmarks {names}: their papers may report different video->text protocols; set "
            "video_to_text_protocol"
        )
    name = names[0] if names else dataset_name
    spec = PUBLIC_DATASETS.get(str(name).lower()) if name else None
    return spec.video_to_text_protocol if spec is not None else "collaborative_experts"


def load_split(manifest: str | Path, split: str, role: str, limit: int | None = None):
    """One split of a manifest as a `datasets.Dataset` (its first `limit` rows); empty or missing is an error naming
    the split, its role (training, validation, ...) and the file."""
    from .data import ManifestError, load_manifest

    try:
        data = load_manifest(manifest, split=split)
    except ManifestError as err:
        raise ValueError(f"{role} split {split!r} of {manifest} is empty or unreadable: {err}") from err
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    if len(data) == 0:
        raise ValueError(f"{role} split {split!r} of {manifest} has no rows")
    return data


def load_base_model(name: str | None = None, role: str = "base model", dtype: Any = None):
    """`(CLIPModel, its name)`; `None` is the offline world's tiny CLIP; `dtype` (e.g. `torch.bfloat16`) loads its
    weights in that type (default: as saved, float32 for CLIP). An error names the model and the role."""
    from transformers import CLIPModel

    from .synthetic import TINY_CLIP_PATH

    name = name or str(TINY_CLIP_PATH)
    try:
        return CLIPModel.from_pretrained(name, **({"dtype": dtype} if dtype is not None else {})), name
    except (OSError, ValueError) as err:
        hint = (
            " (the tiny CLIP is made by `python examples/pretrain_tiny_clip.py`)"
            if name == str(TINY_CLIP_PATH)
            else ""
        )
        raise OSError(f"{role} {name!r} cannot be loaded as a CLIPModel{hint}: {err}") from err


def load_tokenizer(name: str):
    """The tokenizer at `name` (a folder or Hub id), with an error naming it."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise OSError(f"tokenizer {name!r} cannot be loaded (set tokenizer_name): {err}") from err


def load_frame_transform(model_name: str, image_size: int):
    """CLIP preprocessing from the base model's image processor settings (its preprocessor_config.json, in a folder
    or on the Hub, read without an image-processor backend) when it has them, else OpenAI CLIP's at `image_size`.
    The same function builds `VideoTextProcessor`'s transform (`processing.transform_for_base_model`)."""
    from .processing import transform_for_base_model

    return transform_for_base_model(model_name, image_size)


def known_method_names() -> list[str]:
    """Every name a run's `method` may take: the registered adapter methods, then the baselines."""
    from .registry import video_methods

    return [*video_methods(), *BASELINES]


def check_method_name(method: str) -> None:
    """Raise a ValueError naming the known methods (and the closest one) when `method` is none of them."""
    known = known_method_names()
    if method not in known:
        hint = difflib.get_close_matches(str(method), known, n=1)
        raise ValueError(
            f"unknown method {method!r}; known methods: {known}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        )


def build_method_config(method: str, fields: Mapping[str, Any] | None = None):
    """The adapter config of a registered method built from `fields`; a field the config class does not have is a
    ValueError listing the valid ones (and the closest); the config's `__post_init__` validates the values."""
    from .registry import video_methods

    check_method_name(method)
    if method in BASELINES:
        raise ValueError(f"{method!r} is a baseline, not an adapter method: it has no adapter config")
    config_class = video_methods()[method].config_cls
    valid = sorted(f.name for f in dataclasses.fields(config_class) if f.init)
    unknown = sorted(set(fields or {}) - set(valid))
    if unknown:
        hints = ", ".join(
            f"{name!r} -> {h[0]!r}?" for name in unknown if (h := difflib.get_close_matches(name, valid, 1))
        )
        raise ValueError(
            f"{config_class.__name__} has no field(s) {unknown}"
            + (f" ({hints})" if hints else "")
            + f"; valid fields: {valid}"
        )
    return config_class(**dict(fields or {}))


def build_model(method: str, clip, adapter_config=None, *, num_frames: int, train_logit_scale: bool = False):
    """The model `method` trains on `clip`: a peft_video adapter model (`adapter_config`), or a `MeanPoolingCLIP` for
    the baselines (frozen for `zero_shot`, every weight trainable for `full_finetune`)."""
    from peft import get_peft_model

    from .baselines import MeanPoolingCLIP

    if method in BASELINES:
        trainable = method == "full_finetune"
        return MeanPoolingCLIP(
            clip, num_frames, trainable=trainable, train_logit_scale=trainable and train_logit_scale
        )
    return get_peft_model(clip, adapter_config)


@dataclasses.dataclass
class LoadedModel:
    """A model loaded for evaluation: `model` (adapter model or `MeanPoolingCLIP`), its `adapter_config` (None for a
    baseline), the `base_model` it runs on (a folder or Hub id that also holds its tokenizer) and the `method` name."""

    model: Any
    adapter_config: Any
    base_model: str
    method: str


def load_trained_model(
    adapter_name_or_path: str | None = None,
    base_model: str | None = None,
    num_frames: int | None = None,
    dtype: Any = None,
) -> LoadedModel:
    """Load what `adapter_name_or_path` names: a peft_video adapter (folder or Hub id; its base model from its
    `adapter_config.json` unless `base_model` is given), a fine-tuned CLIPModel folder (`full_finetune` output), or,
    with no adapter, `base_model`'s zero-shot baseline. Baselines take `num_frames` frames (default
    `DEFAULT_NUM_FRAMES`). `dtype` loads the CLIPModel in that type (adapter weights stay float32, as in every peft
    tuner)."""
    from peft import PeftConfig, PeftModel

    from .baselines import MeanPoolingCLIP

    frames = num_frames or DEFAULT_NUM_FRAMES
    if adapter_name_or_path is None:
        if base_model is None:
            raise ValueError("give --adapter_name_or_path (an adapter) or --base_model (its zero-shot baseline)")
        clip, name = load_base_model(base_model, dtype=dtype)
        return LoadedModel(MeanPoolingCLIP(clip, frames), None, name, "zero_shot")
    folder = Path(adapter_name_or_path)
    if folder.is_dir() and not (folder / "adapter_config.json").is_file():
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{folder} holds neither adapter_config.json (an adapter) nor config.json (a CLIP)"
            )
        clip, name = load_base_model(str(folder), role="fine-tuned model", dtype=dtype)
        return LoadedModel(MeanPoolingCLIP(clip, frames), None, name, "full_finetune")
    try:
        config = PeftConfig.from_pretrained(adapter_name_or_path)
    except Exception as err:  # noqa: BLE001  (peft raises ValueError/OSError/HTTP errors alike)
        raise OSError(
            f"adapter {adapter_name_or_path!r} is neither a local folder with adapter_config.json nor a reachable Hub "
            f"repository: {err}"
        ) from err
    base = base_model or config.base_model_name_or_path
    if not base:
        raise ValueError(f"adapter {adapter_name_or_path!r} does not name its base model; pass --base_model")
    try:
        clip, name = load_base_model(base, dtype=dtype)
    except OSError as err:
        origin = (
            "--base_model" if base_model else f"base_model_name_or_path in {adapter_name_or_path}'s adapter_config"
        )
        raise OSError(
            f"the base model of adapter {adapter_name_or_path!r} cannot be found: {base!r} (from {origin}); pass "
            f"--base_model with a folder or Hub id of that CLIPModel. Cause: {err}"
        ) from err
    model = PeftModel.from_pretrained(clip, adapter_name_or_path)
    method = str(getattr(config.peft_type, "value", config.peft_type)).lower()
    return LoadedModel(model, model.active_peft_config, name, method)


def save_trained_model(network: Any, folder: str | Path, processor: Any = None) -> None:
    """Save a trained model into `folder`: an adapter (`save_pretrained`) with, beside it, the `processor` that
    prepares a video and a caption exactly as the run evaluated them (`VideoTextProcessor.from_pretrained(folder)`: one
    id is all a user needs), or a fine-tuned baseline's whole CLIPModel (no processor: transformers' own processors
    would read its processor_config.json)."""
    network.save_pretrained(str(folder))
    if processor is not None and hasattr(network, "peft_config"):
        processor.save_pretrained(folder)


def load_trained_weights(network: Any, folder: str | Path) -> None:
    """Put the weights `save_trained_model` saved in `folder` back into `network` (the same kind of model: an adapter
    model, or a `full_finetune` baseline); adapter keys the model does not have are an error naming them."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import CLIPModel

    folder = Path(folder)
    if not hasattr(network, "peft_config"):  # full_finetune: a whole CLIPModel folder
        network.clip.load_state_dict(CLIPModel.from_pretrained(folder).state_dict())
        return
    weights = load_file(folder / "adapter_model.safetensors")
    if unexpected := set_peft_model_state_dict(network, weights).unexpected_keys:
        raise RuntimeError(f"{folder}: unexpected adapter keys {unexpected[:5]}")
