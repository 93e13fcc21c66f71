"""The command line of `train.py` and `evaluate.py`: their argument dataclasses (field names follow
`transformers.TrainingArguments` where it has one; each group checks its values when parsed, as TrainingArguments
does; `check_arguments` checks what needs several groups, before anything is loaded or deleted), read by
`transformers.HfArgumentParser` with a YAML or JSON config file given as transformers' examples take it
(the file alone: `train.py config.yaml`) or as TRL's scripts do (`--config config.yaml`), flags overriding the file.

What HfArgumentParser does not do itself: an unknown key in the file or an unknown flag is an error that names it and
the closest field (HfArgumentParser's own message lists the leftovers without a hint), and `method_config` (a mapping
in the file) takes a JSON object on the command line, merged key by key over the file's.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from accelerate.tracking import get_available_trackers
from transformers import HfArgumentParser

from peft_video.data.defaults import DEFAULT_NUM_FRAMES
from peft_video.loading import BASELINES, DataSourceArguments, build_method_config, check_method_name
from peft_video.selection import ModelSelection


def arg(default: Any, help: str) -> Any:  # noqa: A002
    """A dataclass field with the help text `HfArgumentParser` shows."""
    return field(default=default, metadata={"help": help})


@dataclass
class ModelArguments:
    """Which model and method."""

    method: str = arg("tfvl", "An adapter method (tfvl, dgl, prompt_cube, ...) or zero_shot / full_finetune.")
    method_config: str | None = arg(
        None,
        "Fields of the method's config (e.g. TFVLConfig): a mapping in the config file, or a JSON object on the "
        "command line, merged over the file's, e.g. '{\"text_temp_prompt_tokens\": 8}'.",
    )
    model_name_or_path: str | None = arg(None, "Base CLIPModel, folder or Hub id; default: the tiny CLIP.")
    base_model_id: str | None = arg(None, "Hub id of a local base model, for adapter_config.json and the card.")
    tokenizer_name: str | None = arg(None, "Tokenizer; default: the base model's.")
    backbone_learning_rate: float = arg(1e-6, "Learning rate of trainable tensors outside the adapter.")
    train_logit_scale: bool = arg(False, "full_finetune: also train CLIP's temperature.")


@dataclass
class DataArguments(DataSourceArguments):
    """Which videos and captions, and how frames are drawn."""

    train_split: str = arg("train", "Manifest split used for training.")
    validation_split: str = arg("val", "Split used for model selection.")
    test_split: str = arg("test", "Split evaluated once, with the selected model.")
    num_frames: int = arg(DEFAULT_NUM_FRAMES, "Frames per video fed to the model (adapter num_frames).")
    train_num_frames: int | None = arg(None, "Fewer frames in training only (Prompt Switch: 6, then 12).")
    max_text_length: int = arg(32, "Caption length in tokens (SOT and EOT included).")
    max_train_samples: int | None = arg(None, "Keep only the first N training rows.")
    max_eval_samples: int | None = arg(None, "Keep only the first N eval rows.")
    on_error: str = arg("skip", "Unreadable video: skip (logged, counted) or raise.")
    frame_cache: str | None = arg(None, "A peft_video frame cache folder to read from.")
    shuffle_buffer: int = arg(
        256, "Streamed training data: shard order permuted per epoch, samples in windows of this many (0: in order)."
    )
    group_by_column: str | None = arg(
        None,
        "Rows sharing a value in this column train in one global contrastive batch (GroupedBatchSampler; hard "
        "negatives: the offline world's order_pair_id, a video and its reverse). docs/batches_and_selection.md.",
    )
    log_samples: bool = arg(
        False, "Write the video ids of every training batch to output_dir/samples/rank<process>.jsonl (data order)."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {self.shuffle_buffer}")
        if self.on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be skip or raise, got {self.on_error!r}")
        if self.validation_split == self.test_split:
            raise ValueError(
                f"validation_split and test_split are both {self.test_split!r}: model selection must never see the "
                "test split"
            )
        if self.train_num_frames is not None and not 0 < self.train_num_frames <= self.num_frames:
            raise ValueError(f"train_num_frames={self.train_num_frames} must be in [1, num_frames={self.num_frames}]")


@dataclass
class TrainArguments:
    """How to train; names follow transformers.TrainingArguments."""

    output_dir: str = arg("outputs/run", "Where checkpoints, adapter and metrics go.")
    overwrite_output_dir: bool = arg(False, "Start afresh over an earlier run's files.")
    max_steps: int = arg(-1, "Optimizer steps; > 0 overrides num_train_epochs.")
    num_train_epochs: float = arg(1.0, "Epochs when max_steps <= 0.")
    per_device_train_batch_size: int = arg(16, "Pairs per process per micro-batch.")
    per_device_eval_batch_size: int = arg(32, "Videos per process per eval batch.")
    gradient_accumulation_steps: int = arg(1, "Micro-batches per optimizer step.")
    learning_rate: float = arg(1e-3, "Peak learning rate of the adapter's tensors.")
    weight_decay: float = arg(0.0, "AdamW weight decay (tensors of rank >= 2 only).")
    adam_beta1: float = arg(0.9, "AdamW beta1.")
    adam_beta2: float = arg(0.999, "AdamW beta2.")
    adam_epsilon: float = arg(1e-8, "AdamW epsilon.")
    lr_scheduler_type: str = arg("cosine", "A transformers scheduler name.")
    warmup_steps: float = arg(0.1, "Linear warmup: steps, or a ratio of max_steps if < 1.")
    max_grad_norm: float = arg(1.0, "Gradient clipping norm (0 disables).")
    bf16: bool = arg(False, "bf16 mixed precision (default: accelerate launch's).")
    fp16: bool = arg(False, "fp16 mixed precision (default: accelerate launch's).")
    gradient_checkpointing: bool = arg(False, "Recompute activations in backward.")
    seed: int = arg(42, "Seed of model init, frame jitter and (by default) data order.")
    data_seed: int | None = arg(None, "Seed of the data order; default: seed.")
    logging_steps: int = arg(10, "Optimizer steps between tracker logs.")
    logging_dir: str | None = arg(None, "Tracker folder; default: output_dir/logs.")
    eval_strategy: str | None = arg(None, "steps, epoch or no; default: steps if eval_steps is set, else epoch.")
    eval_steps: int | None = arg(None, "Optimizer steps between validation runs.")
    save_steps: int | None = arg(None, "Steps between checkpoints; default: at each eval.")
    save_total_limit: int | None = arg(2, "Keep at most this many checkpoints.")
    load_best_model_at_end: bool = arg(True, "Test and save the best validation step's weights, not the last step's.")
    metric_for_best_model: str = arg(
        "text_to_video/R@1",
        "Validation metric that selects the best step, or a weighted sum "
        "('0.5*twin_accuracy + 0.5*text_to_video/R@1'; docs/batches_and_selection.md).",
    )
    greater_is_better: bool | None = arg(None, "Default: true for R@K, accuracy and sums, false for a single rank.")
    eval_before_training: bool = arg(True, "Evaluate the zero-shot baseline on validation and test first.")
    dsl_temperature: float | None = arg(None, "Also report dual-softmax metrics at this temperature.")
    resume_from_checkpoint: str | None = arg(None, "A checkpoint folder, or 'last': output_dir's newest complete one.")
    report_to: str = arg("tensorboard", "Trackers, comma-separated; all or none.")
    run_name: str | None = arg(None, "Tracker run name.")
    log_gallery_queries: int = arg(3, "TensorBoard image of the N worst-ranked captions at each validation (0: none).")
    card_gallery_queries: int = arg(3, "The model card's picture: the N worst-ranked test captions (0: none).")
    push_to_hub: bool = arg(False, "Upload the final adapter with its model card.")
    hub_model_id: str | None = arg(None, "Hub repository (default: output_dir's name).")
    hub_private_repo: bool | None = arg(None, "Create the Hub repository private.")
    license: str | None = arg(None, "Hub license id for the model card (apache-2.0...).")
    dataloader_num_workers: int = arg(0, "DataLoader worker processes.")
    disable_tqdm: bool = arg(False, "No progress bars.")
    stop_after_steps: int | None = arg(None, "Stop abruptly after N steps, as a preemption would (to test resuming).")

    def __post_init__(self) -> None:
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError("set max_steps > 0 or num_train_epochs > 0")
        if self.warmup_steps < 0 or (self.warmup_steps >= 1 and self.warmup_steps != int(self.warmup_steps)):
            raise ValueError(f"warmup_steps must be a number of steps or a ratio in [0, 1), got {self.warmup_steps}")
        for name in ("log_gallery_queries", "card_gallery_queries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: no picture), got {getattr(self, name)}")
        if self.bf16 and self.fp16:
            raise ValueError("bf16 and fp16 are both set; choose one")
        self.eval_strategy = self.eval_strategy or ("steps" if self.eval_steps else "epoch")
        if self.eval_strategy not in ("steps", "epoch", "no") or (
            self.eval_strategy == "steps" and not self.eval_steps
        ):
            raise ValueError(f"eval_strategy must be steps (with eval_steps), epoch or no, got {self.eval_strategy!r}")
        if self.load_best_model_at_end and self.eval_strategy == "no":
            raise ValueError("load_best_model_at_end needs a validation: set eval_strategy to steps or epoch")
        if self.greater_is_better is None:
            self.greater_is_better = ModelSelection.parse(self.metric_for_best_model).greater_is_better
        if self.data_seed is None:
            self.data_seed = self.seed
        self.trackers()

    def trackers(self) -> list[str] | str:
        """The Accelerate trackers of `report_to`; one that is not installed is an error, not a run without logs."""
        if self.report_to in ("all", "none", ""):
            return "all" if self.report_to == "all" else []
        wanted, available = self.report_to.split(","), [str(t) for t in get_available_trackers()]
        if set(wanted) - set(available):
            raise ValueError(f"report_to: {sorted(set(wanted) - set(available))} not installed; here: {available}")
        return wanted


ALL_ARGUMENTS = (ModelArguments, DataArguments, TrainArguments)


def check_arguments(model_args: ModelArguments, data_args: DataArguments, args: TrainArguments):
    """What needs several argument groups (each group checks itself when parsed): all before any file is read,
    loaded or deleted. Returns the adapter config (None for a baseline)."""
    check_method_name(model_args.method)
    model_selection(args, data_args)
    if model_args.method != "zero_shot" and data_args.train_split in (
        data_args.validation_split,
        data_args.test_split,
    ):
        raise ValueError(f"train_split {data_args.train_split!r} is also an evaluation split")
    if args.push_to_hub and model_args.method == "zero_shot":
        raise ValueError("push_to_hub: the zero_shot baseline trains nothing, there is nothing to upload")
    if data_args.streamed and model_args.method != "zero_shot":
        check_streamed_training(data_args, args)
    if model_args.method in BASELINES:
        if model_args.method_config:
            raise ValueError(f"method_config is for adapter methods; the baseline {model_args.method!r} takes none")
        return None
    fields = dict(model_args.method_config or {})
    for name in ("num_frames", "max_text_length"):  # the data loader's values are the adapter's
        if fields.setdefault(name, getattr(data_args, name)) != getattr(data_args, name):
            raise ValueError(
                f"method_config.{name}={fields[name]} disagrees with {name}={getattr(data_args, name)}; set it in one "
                f"place only (the top-level {name}, which the data loader uses)"
            )
    return build_method_config(model_args.method, fields)


def model_selection(args: TrainArguments, data_args: DataArguments, columns=None) -> ModelSelection:
    """The validation criterion that keeps the best step (`metric_for_best_model`, `greater_is_better`), checked
    against what the evaluation will report (and the validation split's `columns`, once loaded)."""
    try:
        selection = ModelSelection.parse(args.metric_for_best_model)
        selection.check(columns=columns, subset_columns=data_args.subset_columns, twin_column=data_args.twin_column)
    except ValueError as err:
        raise ValueError(f"metric_for_best_model={args.metric_for_best_model!r}: {err}") from None
    return replace(selection, greater_is_better=args.greater_is_better)


def check_contrastive_batch(args: TrainArguments, processes: int) -> None:
    """Refuse a contrastive batch of one pair (11.14): the softmax over a single candidate is 1, so the loss is
    constant (0) and its gradient exactly zero; the run would train nothing, silently. Negatives come from the
    micro-batch of every process (the loss gathers them), not from accumulation, so the count is per-device batch ×
    processes. For every method, Prompt Cube included: its captioning loss would still move the captioner (and what
    its gradient reaches), but the retrieval objective, the one the adapter is trained and selected for, would not."""
    if args.per_device_train_batch_size * processes == 1:
        raise ValueError(
            "a contrastive batch of one pair has a constant loss (the pair is its own only candidate): with "
            f"per_device_train_batch_size=1 and {processes} process, nothing would be trained. Use at least 2 pairs "
            "per contrastive batch (per_device_train_batch_size × processes; gradient_accumulation_steps adds no "
            "negatives)"
        )


def check_streamed_training(data_args: DataArguments, args: TrainArguments) -> None:
    """A stream has no length and no random access: the schedule counts optimizer steps, validation runs every
    eval_steps, and file-level options do not apply."""
    if args.max_steps <= 0:
        raise ValueError(
            f"dataset={data_args.dataset} is streamed and has no known length: set max_steps (num_train_epochs "
            "cannot be turned into optimizer steps; each process restarts its own shards when it runs out)"
        )
    if args.eval_strategy == "epoch":
        raise ValueError(
            f"dataset={data_args.dataset} is streamed: an epoch has no fixed number of steps; set eval_steps (or "
            "eval_strategy no with load_best_model_at_end false)"
        )
    if data_args.frame_cache:
        raise ValueError("frame_cache reads decoded frames of manifest files; a streamed source has none")
    if data_args.group_by_column:
        raise ValueError(
            "group_by_column needs the whole training split to pack its groups into batches; a stream is read in "
            "windows (write the shards with each group's rows side by side instead)"
        )


def run_identity(
    model_args: ModelArguments, data_args: DataArguments, args: TrainArguments, adapter_config, base_name: str,
    dataset_name: str, processes: int,
) -> dict[str, Any]:  # fmt: skip
    """What a checkpoint must share with this run to continue it (a JSON round trip: what a checkpoint holds). A
    stream resumes exactly only with the same shards, workers per process, shuffle buffer and seed."""
    stream = {
        "source": data_args.shards or data_args.hub_dataset, "dataloader_num_workers": args.dataloader_num_workers,
        "shuffle_buffer": data_args.shuffle_buffer, "data_seed": args.data_seed,
    } if data_args.streamed else None  # fmt: skip
    identity = {
        "method": model_args.method, "base_model": base_name, "num_processes": processes, "seed": args.seed,
        "adapter_config": adapter_config.to_dict() if adapter_config is not None else None, "dataset": dataset_name,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps, "stream": stream,
    }  # fmt: skip
    return json.loads(json.dumps(identity, default=str))


@dataclass
class EvalArguments(DataSourceArguments):
    """What to evaluate, on which data."""

    adapter_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "peft_video adapter folder or Hub id, or a fine-tuned CLIPModel folder; none: the zero-shot "
            "baseline of base_model."
        },
    )
    base_model: str | None = field(
        default=None, metadata={"help": "Base CLIPModel; default: the adapter config's base_model_name_or_path."}
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer; default: the base model's."})
    num_frames: int | None = field(
        default=None,
        metadata={"help": f"Frames per video; default: the adapter's ({DEFAULT_NUM_FRAMES} without an adapter)."},
    )
    max_text_length: int | None = field(
        default=None, metadata={"help": "Caption length in tokens; default: the adapter's (32 without one)."}
    )
    split: str = field(default="test", metadata={"help": "Manifest split to evaluate."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N rows."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Videos per process per batch."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    tie_policy: str = field(default="pessimistic", metadata={"help": "pessimistic, index or optimistic."})
    dsl_temperature: float | None = field(
        default=None, metadata={"help": "Also report dual-softmax numbers at this temperature (cosine units)."}
    )
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (default: accelerate launch's setting)."})
    fp16: bool = field(default=False, metadata={"help": "fp16 autocast (default: accelerate launch's setting)."})
    output_file: str | None = field(
        default=None, metadata={"help": "JSON output; default: <adapter folder>/eval_<split>.json, else stdout only."}
    )
    gallery_queries: int = field(
        default=4, metadata={"help": "A PNG of the N worst-ranked captions, their top hits and own video (0: none)."}
    )
    gallery_file: str | None = field(
        default=None, metadata={"help": "Where that PNG goes; default: beside the JSON output, <its name>_worst.png."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gallery_queries < 0:
            raise ValueError(f"gallery_queries must be >= 0 (0: no gallery), got {self.gallery_queries}")


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
