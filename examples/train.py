"""Train a peft_video adapter (or a baseline) for text-video retrieval with Accelerate.

    accelerate launch examples/train.py --config examples/configs/demo_tfvl.yaml [--any_field value ...]

Fields come from three dataclasses below (`ModelArguments`, `DataArguments`, `TrainArguments`); their names follow
`transformers.TrainingArguments` where one exists. The config file (YAML or JSON) sets them, command-line flags win.
See examples/README.md for the whole list and the configs.

What a run does:
1. checks everything it can before any work (method and its fields, dataset and its splits, base model, resume
   folder, output folder), so a mistake fails in seconds, not after an epoch;
2. optionally evaluates the zero-shot baseline (the frozen CLIP with mean pooling) on validation and test;
3. trains with AdamW (adapter and other trainable tensors in separate learning-rate groups), warmup + cosine,
   gradient clipping and accumulation, mixed precision, optional gradient checkpointing; logs to TensorBoard (or
   other trackers) and to `train_log.jsonl` (every optimizer step's loss); checkpoints with `save_state`;
4. selects the best step on the validation split (never test), keeps that adapter in `best_adapter/`;
5. evaluates the best adapter once on test and saves it in `output_dir` with a filled model card and `metrics.json`;
   `--push_to_hub true` uploads it.

An interrupted run continues exactly with `--resume_from_checkpoint last` (or a checkpoint folder): model, optimizer,
scheduler and RNG states are restored and the batches already seen in the current epoch are skipped.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_config import DATASETS, DataSourceArguments, parse_args  # noqa: E402

logger = logging.getLogger("train")

RUN_STATE_NAME = "run_state.json"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best_adapter"
TRAIN_LOG_NAME = "train_log.jsonl"
METRICS_NAME = "metrics.json"


@dataclass
class ModelArguments:
    """Which model and method."""

    method: str = field(
        default="tfvl",
        metadata={"help": "Adapter method (tfvl, dgl, prompt_cube) or baseline (zero_shot, full_finetune)."},
    )
    method_config: str | None = field(
        default=None,
        metadata={
            "help": "Fields of the method's adapter config (e.g. TFVLConfig), as a mapping in the config file or a "
            "JSON object on the command line (merged over the file's), e.g. '{\"text_temp_prompt_tokens\": 8}'."
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Base CLIPModel (folder or Hub id). Default: the offline world's tiny CLIP."},
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer; default: the base model's."})
    backbone_learning_rate: float = field(
        default=1e-6,
        metadata={
            "help": "Learning rate of every trainable tensor that is not part of the adapter (modules_to_save "
            "copies; the whole CLIP for full_finetune)."
        },
    )
    train_logit_scale: bool = field(default=False, metadata={"help": "full_finetune: also train CLIP's temperature."})


@dataclass
class DataArguments(DataSourceArguments):
    """Which videos and captions, and how frames are drawn."""

    train_split: str = field(default="train", metadata={"help": "Manifest split used for training."})
    validation_split: str = field(default="val", metadata={"help": "Split used for model selection."})
    test_split: str = field(default="test", metadata={"help": "Split evaluated once, with the selected adapter."})
    num_frames: int = field(default=12, metadata={"help": "Frames per video fed to the model (adapter num_frames)."})
    train_num_frames: int | None = field(
        default=None,
        metadata={
            "help": "Frames per video in training only, if fewer than num_frames (Prompt Switch trains on 6 and "
            "evaluates on 12); default num_frames."
        },
    )
    max_text_length: int = field(default=32, metadata={"help": "Caption length in tokens (SOT and EOT included)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N rows of validation and test."}
    )
    on_error: str = field(default="skip", metadata={"help": "Unreadable video: skip (logged, counted) or raise."})
    frame_cache: str | None = field(default=None, metadata={"help": "A peft_video frame cache folder to read from."})


@dataclass
class TrainArguments:
    """How to train; names follow transformers.TrainingArguments."""

    output_dir: str = field(default="outputs/run", metadata={"help": "Where checkpoints, adapter and metrics go."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow starting afresh in an output_dir that already holds checkpoints."}
    )
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps; > 0 overrides num_train_epochs."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs when max_steps <= 0."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Pairs per process per micro-batch."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Videos per process per eval batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate of the adapter's tensors."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (tensors of rank >= 2 only)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Share of max_steps with linear warmup."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler name."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    mixed_precision: str = field(default="no", metadata={"help": "no, bf16 or fp16 (or set bf16/fp16 true)."})
    bf16: bool = field(default=False, metadata={"help": "Shortcut for mixed_precision=bf16."})
    fp16: bool = field(default=False, metadata={"help": "Shortcut for mixed_precision=fp16."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations in backward."})
    seed: int = field(default=42, metadata={"help": "Seed of model init, data order and frame jitter."})
    logging_steps: int = field(default=10, metadata={"help": "Optimizer steps between tracker logs."})
    eval_steps: int | None = field(
        default=None, metadata={"help": "Optimizer steps between validation runs (default: once per epoch)."}
    )
    save_steps: int | None = field(
        default=None, metadata={"help": "Optimizer steps between checkpoints (default: at each evaluation)."}
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder, or 'last' for the newest one in output_dir."}
    )
    metric_for_best_model: str = field(
        default="text_to_video/R@1", metadata={"help": "Validation metric that selects the best step."}
    )
    greater_is_better: bool | None = field(
        default=None, metadata={"help": "Default: true for R@K, false for MdR/MnR."}
    )
    eval_before_training: bool = field(
        default=True, metadata={"help": "Evaluate the zero-shot baseline on validation and test first."}
    )
    dsl_temperature: float | None = field(
        default=None, metadata={"help": "Also report dual-softmax metrics (beside the raw ones) at this temperature."}
    )
    report_to: str = field(
        default="tensorboard", metadata={"help": "Trackers: tensorboard, wandb, ..., comma-separated, all or none."}
    )
    run_name: str | None = field(default=None, metadata={"help": "Tracker run name."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the final adapter with its model card."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repository (default: output_dir name)."})
    hub_private_repo: bool | None = field(default=None, metadata={"help": "Create the Hub repository private."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})
    stop_after_steps: int | None = field(
        default=None,
        metadata={
            "help": "Stop abruptly after this many optimizer steps, as a preemption would (no final evaluation, no "
            "final save); for testing resumption."
        },
    )


ALL_ARGUMENTS = (ModelArguments, DataArguments, TrainArguments)


# -- checks that run before any work -------------------------------------------------------------------------------


def resolve_mixed_precision(args: TrainArguments) -> str:
    """One of no/bf16/fp16 from `mixed_precision` and the `bf16`/`fp16` shortcuts; contradictions are errors."""
    chosen = {"no", args.mixed_precision}
    if args.bf16:
        chosen.add("bf16")
    if args.fp16:
        chosen.add("fp16")
    chosen.discard("no")
    if len(chosen) > 1:
        raise ValueError(f"conflicting mixed precision settings: {sorted(chosen)} (mixed_precision/bf16/fp16)")
    value = chosen.pop() if chosen else "no"
    if value not in ("no", "bf16", "fp16"):
        raise ValueError(f"mixed_precision must be no, bf16 or fp16, got {value!r}")
    return value


def validate_arguments(model_args: ModelArguments, data_args: DataArguments, train_args: TrainArguments):
    """Everything that can be checked without loading data or weights. Returns the adapter config (None for the
    baselines)."""
    from peft_video.training import BASELINES, build_method_config, check_method_name

    check_method_name(model_args.method)
    adapter_config = None
    if model_args.method not in BASELINES:
        fields = dict(model_args.method_config or {})
        for name in ("num_frames", "max_text_length"):
            value = getattr(data_args, name)
            if name in fields and fields[name] != value:
                raise ValueError(
                    f"method_config.{name}={fields[name]} disagrees with {name}={value}; set it in one place only "
                    f"(the top-level {name} is what the data loader uses)"
                )
            fields[name] = value
        adapter_config = build_method_config(model_args.method, fields)
    elif model_args.method_config:
        raise ValueError(f"method_config is for adapter methods; the baseline {model_args.method!r} takes none")
    if data_args.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {data_args.dataset!r}; known datasets: {list(DATASETS)}")
    if data_args.dataset == "manifest":
        if not data_args.manifest:
            raise ValueError("dataset=manifest needs manifest=<path to a CSV/TSV/JSONL manifest>")
        if not Path(data_args.manifest).is_file():
            raise FileNotFoundError(f"manifest not found: {data_args.manifest}")
    if data_args.on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be skip or raise, got {data_args.on_error!r}")
    splits = (data_args.train_split, data_args.validation_split, data_args.test_split)
    if data_args.validation_split == data_args.test_split:
        raise ValueError(
            f"validation_split and test_split are both {data_args.test_split!r}: model selection must "
            "never see the test split"
        )
    if model_args.method != "zero_shot" and data_args.train_split in splits[1:]:
        raise ValueError(f"train_split {data_args.train_split!r} is also an evaluation split")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(train_args, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(train_args, name)}")
    if train_args.max_steps <= 0 and train_args.num_train_epochs <= 0:
        raise ValueError("set max_steps > 0 or num_train_epochs > 0")
    if not 0 <= train_args.warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {train_args.warmup_ratio}")
    resolve_mixed_precision(train_args)
    metric_key(train_args.metric_for_best_model)
    if train_args.push_to_hub and model_args.method == "zero_shot":
        raise ValueError("push_to_hub: the zero_shot baseline trains nothing, there is nothing to upload")
    return adapter_config


def metric_key(name: str) -> tuple[str, str]:
    """`"text_to_video/R@1"` -> `("text_to_video", "R@1")`, the keys of a `compute_retrieval_metrics` result."""
    direction, _, metric = name.partition("/")
    if direction not in ("text_to_video", "video_to_text") or not metric:
        raise ValueError(
            f"metric_for_best_model must look like 'text_to_video/R@1' or 'video_to_text/MnR', got {name!r}"
        )
    return direction, metric


def greater_is_better(args: TrainArguments) -> bool:
    """Whether a larger value of `metric_for_best_model` is better (recall yes, ranks no) unless set explicitly."""
    if args.greater_is_better is not None:
        return args.greater_is_better
    return metric_key(args.metric_for_best_model)[1] not in ("MdR", "MnR")


def find_checkpoint(output_dir: Path, resume: str) -> Path:
    """The checkpoint folder `resume` names: a folder written by this script, or `last` (the newest of output_dir)."""
    if resume in ("last", "latest", "true", "True"):
        found = sorted_checkpoints(output_dir)
        if not found:
            raise FileNotFoundError(f"resume_from_checkpoint={resume!r} but {output_dir / CHECKPOINTS_DIR} holds none")
        return found[-1]
    path = Path(resume)
    if not (path / RUN_STATE_NAME).is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint written by examples/train.py ({RUN_STATE_NAME} missing)")
    return path


def sorted_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints of output_dir (those with a run_state.json), oldest step first."""
    folder = output_dir / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("checkpoint-*") if (p / RUN_STATE_NAME).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def check_resume_state(state: dict[str, Any], expected: dict[str, Any], checkpoint: Path) -> None:
    """A checkpoint of another run setting cannot continue this one: name what differs (for the adapter config,
    only its differing fields)."""
    diffs = []
    for key, value in expected.items():
        saved = state.get(key)
        if saved == value:
            continue
        if isinstance(saved, dict) and isinstance(value, dict):
            fields = sorted(k for k in set(saved) | set(value) if saved.get(k) != value.get(k))
            diffs += [f"{key}.{k}: checkpoint {saved.get(k)!r} vs this run {value.get(k)!r}" for k in fields]
        else:
            diffs.append(f"{key}: checkpoint {saved!r} vs this run {value!r}")
    if diffs:
        raise ValueError(
            f"cannot resume from {checkpoint}: it was written by a different run setting: " + "; ".join(diffs)
        )


# -- data, model --------------------------------------------------------------------------------------------------


def prepare_manifest(data_args, accelerator) -> tuple[Path, str]:
    """The manifest to read and the data's display name; writes the offline world first when it is missing."""
    if data_args.dataset == "offline_world":
        from peft_video.synthetic import WorldConfig, write_world

        with accelerator.main_process_first():
            if accelerator.is_main_process and not (Path(data_args.data_dir) / "manifest.jsonl").exists():
                accelerator.print(f"writing the offline world to {data_args.data_dir} (first run only)")
            manifest = write_world(
                data_args.data_dir,
                data_args.world_num_train,
                data_args.world_num_val,
                data_args.world_num_test,
                config=WorldConfig(num_frames=data_args.world_num_frames, seed=data_args.world_seed),
            )
        return Path(manifest), data_args.dataset_name or "peft_video offline world"
    if data_args.dataset != "manifest":
        raise ValueError(f"unknown dataset {data_args.dataset!r}; known datasets: {list(DATASETS)}")
    if not data_args.manifest or not Path(data_args.manifest).is_file():
        raise FileNotFoundError(f"dataset=manifest needs an existing manifest file, got {data_args.manifest!r}")
    return Path(data_args.manifest), data_args.dataset_name or Path(data_args.manifest).stem


def load_split(manifest: Path, split: str, role: str, limit: int | None):
    """One split of the manifest as a `datasets.Dataset`; an empty or missing split is an error naming it."""
    from peft_video.data import ManifestError, load_manifest

    try:
        data = load_manifest(manifest, split=split)
    except ManifestError as err:
        raise ValueError(f"{role} split {split!r} of {manifest} is empty or unreadable: {err}") from err
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    if len(data) == 0:
        raise ValueError(f"{role} split {split!r} of {manifest} has no rows")
    return data


def load_splits(data_args: DataArguments, accelerator, need_train: bool) -> tuple[dict[str, Any], str, Path]:
    """The train/validation/test `datasets.Dataset`s, all checked non-empty before anything else is loaded."""
    manifest, name = prepare_manifest(data_args, accelerator)
    wanted = {"validation": data_args.validation_split, "test": data_args.test_split}
    if need_train:
        wanted = {"train": data_args.train_split, **wanted}
    splits = {}
    for role, split in wanted.items():
        limit = data_args.max_train_samples if role == "train" else data_args.max_eval_samples
        splits[role] = load_split(manifest, split, role, limit)
    return splits, name, manifest


def load_base_model(name: str | None, role: str = "base model"):
    """(CLIPModel, its name) with a clear error when the base model cannot be found."""
    from transformers import CLIPModel

    from peft_video.synthetic import TINY_CLIP_PATH

    name = name or str(TINY_CLIP_PATH)
    try:
        return CLIPModel.from_pretrained(name), name
    except (OSError, ValueError) as err:
        hint = (
            " (the tiny CLIP is made by `python examples/pretrain_tiny_clip.py`)"
            if name == str(TINY_CLIP_PATH)
            else ""
        )
        raise OSError(f"{role} {name!r} cannot be loaded as a CLIPModel{hint}: {err}") from err


def load_tokenizer(name: str):
    """The tokenizer at `name`, with an error naming it when it cannot be loaded."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise OSError(f"tokenizer {name!r} cannot be loaded (set tokenizer_name): {err}") from err


def frame_transform(model_name: str, image_size: int):
    """CLIP preprocessing from the base model's image processor settings when it has them, else OpenAI CLIP's at
    image_size. A local folder's preprocessor_config.json is read directly (no image-processor backend needed)."""
    from types import SimpleNamespace

    from peft_video.data import ClipFrameTransform

    folder = Path(model_name)
    if folder.is_dir():
        config_file = folder / "preprocessor_config.json"
        if not config_file.is_file():
            return ClipFrameTransform.for_image_size(image_size)
        settings = json.loads(config_file.read_text())
        return ClipFrameTransform.from_processor(SimpleNamespace(**settings), image_size=image_size)
    try:
        from transformers import CLIPImageProcessor

        processor = CLIPImageProcessor.from_pretrained(model_name)
    except (OSError, ValueError):
        return ClipFrameTransform.for_image_size(image_size)
    return ClipFrameTransform.from_processor(processor, image_size=image_size)


def build_model(model_args: ModelArguments, data_args: DataArguments, adapter_config, clip):
    """The model a method trains: a peft_video adapter model, or a `MeanPoolingCLIP` for the baselines."""
    from peft import get_peft_model

    from peft_video.baselines import MeanPoolingCLIP

    if model_args.method == "zero_shot":
        return MeanPoolingCLIP(clip, data_args.num_frames, trainable=False)
    if model_args.method == "full_finetune":
        return MeanPoolingCLIP(
            clip, data_args.num_frames, trainable=True, train_logit_scale=model_args.train_logit_scale
        )
    return get_peft_model(clip, adapter_config)


def enable_activation_checkpointing(clip) -> None:
    """transformers >= 5.x names it `activation_checkpointing_enable` (the old name warns); both set the encoders'
    `gradient_checkpointing` flag that peft_video's own layer loops read too."""
    enable = getattr(clip, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        clip.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not getattr(clip.vision_model.encoder, "gradient_checkpointing", False):
        raise RuntimeError("gradient_checkpointing was requested but the vision encoder did not switch it on")


def base_clip(model):
    """The CLIPModel inside an adapter model or a baseline."""
    return model.clip if hasattr(model, "clip") else model.get_base_model()


class EpochPermutation(torch.utils.data.Sampler):
    """A shuffle that is a function of (seed, epoch) only, so a resumed run sees the same order."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


# -- evaluation ----------------------------------------------------------------------------------------------------


def evaluate_split(model, data, context: dict[str, Any], accelerator, desc: str) -> dict[str, Any]:
    """Retrieval metrics of `model` on one split (each video and caption encoded once), printed on one line."""
    from peft_video.evaluation import encode_split, split_metrics

    encoded = encode_split(
        model,
        data,
        sampling=context["sampling"],
        transform=context["transform"],
        tokenizer=context["tokenizer"],
        max_text_length=context["max_text_length"],
        batch_size=context["eval_batch_size"],
        num_workers=context["num_workers"],
        accelerator=accelerator,
        backend=context["backend"],
        decode_timeout=context["decode_timeout"],
        progress=context["progress"],
    )
    metrics = split_metrics(
        encoded,
        data,
        subset_columns=context["subset_columns"],
        twin_column=context.get("twin_column"),
        dsl_temperature=context["dsl_temperature"],
        tie_policy=context.get("tie_policy", "pessimistic"),
    )
    t2v, v2t = metrics["text_to_video"], metrics["video_to_text"]
    accelerator.print(
        f"{desc}: text→video R@1 {t2v['R@1']:.1f} R@5 {t2v['R@5']:.1f} MnR {t2v['MnR']:.1f} | "
        f"video→text R@1 {v2t['R@1']:.1f} MnR {v2t['MnR']:.1f} ({metrics['num_captions']} captions, "
        f"{metrics['num_videos']} videos)"
    )
    return metrics


def flat_for_tracker(prefix: str, metrics: dict[str, Any]) -> dict[str, float]:
    """`{prefix}/{direction}/{metric}` scalars for the trackers."""
    out = {}
    for direction in ("text_to_video", "video_to_text"):
        for key, value in metrics[direction].items():
            if key != "num_queries":
                out[f"{prefix}/{direction}/{key}"] = float(value)
    return out


# -- main ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse `[--config FILE] [--field value ...]` and run; returns the metrics written to metrics.json."""
    model_args, data_args, train_args = parse_args(ALL_ARGUMENTS, argv, description=__doc__)
    return run(model_args, data_args, train_args)


@dataclass
class Run:
    """Everything one training run works with, built once by `prepare_run` before any step."""

    model_args: ModelArguments
    data_args: DataArguments
    train_args: TrainArguments
    accelerator: Any
    adapter_config: Any
    model: Any
    model_name: str
    tokenizer: Any
    splits: dict[str, Any]
    dataset_name: str
    context: dict[str, Any]
    summary: dict[str, Any]
    identity: dict[str, Any]
    checkpoint: Path | None
    trackers: list[str] | str

    @property
    def method(self) -> str:
        return self.model_args.method

    @property
    def output_dir(self) -> Path:
        return Path(self.train_args.output_dir)

    @property
    def global_batch(self) -> int:
        return self.summary["global_batch_size"]


def run(model_args: ModelArguments, data_args: DataArguments, train_args: TrainArguments) -> dict[str, Any]:
    """Check, evaluate zero-shot, train, select on validation, test once, save (see the module docstring)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logger.setLevel(logging.INFO)
    current = prepare_run(model_args, data_args, train_args)
    if current.method == "zero_shot":
        return finish_zero_shot(current)
    return train(current)


def prepare_run(model_args: ModelArguments, data_args: DataArguments, train_args: TrainArguments) -> Run:
    """Validate the settings, then load data (a bad split fails before any weight is loaded), the base model and the
    method, and check a resume folder against this run's identity."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    import peft_video  # noqa: F401  (registers the methods with peft)
    from peft_video.data import FrameSampling
    from peft_video.training import count_parameters

    adapter_config = validate_arguments(model_args, data_args, train_args)
    method = model_args.method
    output_dir = Path(train_args.output_dir)
    trackers = [] if train_args.report_to in ("none", "", None) else train_args.report_to.split(",")
    if train_args.report_to == "all":
        trackers = "all"
    checkpoint = None
    if train_args.resume_from_checkpoint:
        checkpoint = find_checkpoint(output_dir, train_args.resume_from_checkpoint)
    elif sorted_checkpoints(output_dir) and not train_args.overwrite_output_dir:
        raise FileExistsError(
            f"{output_dir} already holds checkpoints of a run; continue it with --resume_from_checkpoint last or "
            "start afresh with --overwrite_output_dir true"
        )

    accelerator = Accelerator(
        gradient_accumulation_steps=train_args.gradient_accumulation_steps,
        mixed_precision=resolve_mixed_precision(train_args),
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    set_seed(train_args.seed)
    splits, dataset_name, manifest = load_splits(data_args, accelerator, need_train=method != "zero_shot")
    clip, model_name = load_base_model(model_args.model_name_or_path)
    tokenizer = load_tokenizer(model_args.tokenizer_name or model_name)
    image_size = clip.config.vision_config.image_size
    if adapter_config is not None:
        adapter_config.base_model_name_or_path = model_name
    model = build_model(model_args, data_args, adapter_config, clip)
    if train_args.gradient_checkpointing:
        enable_activation_checkpointing(base_clip(model))

    sampling = FrameSampling.from_config(adapter_config or {"num_frames": data_args.num_frames}, image_size=image_size)
    context = {
        "sampling": sampling,
        "transform": frame_transform(model_name, image_size),
        "tokenizer": tokenizer,
        "max_text_length": data_args.max_text_length,
        "eval_batch_size": train_args.per_device_eval_batch_size,
        "num_workers": train_args.dataloader_num_workers,
        "backend": data_args.video_backend,
        "decode_timeout": data_args.decode_timeout or None,
        "progress": not train_args.disable_tqdm,
        "subset_columns": data_args.subset_columns,
        "twin_column": data_args.twin_column,
        "dsl_temperature": train_args.dsl_temperature,
    }
    world = accelerator.num_processes
    identity = {
        "method": method,
        "base_model": model_name,
        # a json round trip: what run_state.json holds and will be compared against
        "adapter_config": json.loads(json.dumps(adapter_config.to_dict(), default=str)) if adapter_config else None,
        "num_processes": world,
        "per_device_train_batch_size": train_args.per_device_train_batch_size,
        "gradient_accumulation_steps": train_args.gradient_accumulation_steps,
        "seed": train_args.seed,
        "dataset": dataset_name,
    }
    if checkpoint is not None:
        check_resume_state(json.loads((checkpoint / RUN_STATE_NAME).read_text()), identity, checkpoint)
    elif train_args.overwrite_output_dir and accelerator.is_main_process:
        shutil.rmtree(output_dir / CHECKPOINTS_DIR, ignore_errors=True)
        shutil.rmtree(output_dir / BEST_DIR, ignore_errors=True)

    split_names = {
        "train": data_args.train_split,
        "validation": data_args.validation_split,
        "test": data_args.test_split,
    }
    parameters = count_parameters(model)
    global_batch = train_args.per_device_train_batch_size * world * train_args.gradient_accumulation_steps
    summary = {
        "method": method,
        "base_model": model_name,
        "dataset": dataset_name,
        "manifest": str(manifest),
        "splits": {
            role: {"name": name, "rows": len(splits[role])} for role, name in split_names.items() if role in splits
        },
        "parameters": parameters,
        "num_processes": world,
        "global_batch_size": global_batch,
        "frame_sampling": sampling.to_dict(),
        "arguments": {**asdict(model_args), **asdict(data_args), **asdict(train_args)},
    }
    accelerator.print(
        f"method {method} on {model_name}: {parameters['trainable']:,} trainable of {parameters['total']:,} "
        f"parameters; {world} process(es), global batch {global_batch} "
        f"({train_args.per_device_train_batch_size} per device × {world} × {train_args.gradient_accumulation_steps} "
        f"accumulation)"
    )
    return Run(
        model_args, data_args, train_args, accelerator, adapter_config, model, model_name, tokenizer, splits,
        dataset_name, context, summary, identity, checkpoint, trackers,
    )  # fmt: skip


@dataclass
class Training:
    """The prepared objects and the resumable state of the optimisation."""

    model: Any
    optimizer: Any
    scheduler: Any
    loader: Any
    items: Any
    max_steps: int
    updates_per_epoch: int
    state: dict[str, Any]


def training_sampling(current: Run):
    """The evaluation sampling, with `train_num_frames` frames when set (a clear error if the method cannot take
    them, e.g. a count that is not a multiple of Prompt Cube's chunk)."""
    import dataclasses

    sampling, frames = current.context["sampling"], current.data_args.train_num_frames
    if frames is None or frames == sampling.num_frames:
        return sampling
    if frames > sampling.num_frames:
        raise ValueError(f"train_num_frames={frames} exceeds num_frames={sampling.num_frames}")
    try:
        return dataclasses.replace(sampling, num_frames=frames)
    except ValueError as err:
        raise ValueError(f"train_num_frames={frames} does not fit the frame sampling: {err}") from err


def build_training(current: Run) -> Training:
    """Training data (order and frame jitter functions of seed, epoch and sample), AdamW with learning-rate groups,
    warmup + schedule, everything prepared by Accelerate; checkpoints keep only the trainable weights."""
    from transformers import get_scheduler

    from peft_video.data import VideoTextCollator, VideoTextDataset
    from peft_video.training import EpochSeededDataset, parameter_groups

    args, data_args, accelerator = current.train_args, current.data_args, current.accelerator
    dataset = VideoTextDataset(
        current.splits["train"], training_sampling(current), current.context["transform"], train=True,
        backend=data_args.video_backend, on_error=data_args.on_error, decode_timeout=data_args.decode_timeout or None,
        cache=data_args.frame_cache,
    )  # fmt: skip
    items = EpochSeededDataset(dataset, args.seed)
    loader = torch.utils.data.DataLoader(
        items,
        batch_size=args.per_device_train_batch_size,
        sampler=EpochPermutation(len(items), args.seed),
        drop_last=True,
        num_workers=args.dataloader_num_workers,
        collate_fn=VideoTextCollator(current.tokenizer, max_text_length=data_args.max_text_length),
    )
    groups = parameter_groups(
        current.model,
        learning_rate=args.learning_rate,
        other_learning_rate=current.model_args.backbone_learning_rate,
        weight_decay=args.weight_decay,
    )
    optimizer = torch.optim.AdamW(groups, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    model, optimizer, loader = accelerator.prepare(current.model, optimizer, loader)
    if len(loader) == 0:
        raise ValueError(
            f"the training split has {len(items)} rows: fewer than one global batch "
            f"({args.per_device_train_batch_size} × {accelerator.num_processes} processes); lower "
            "per_device_train_batch_size"
        )
    updates_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    max_steps = args.max_steps if args.max_steps > 0 else max(1, math.ceil(args.num_train_epochs * updates_per_epoch))
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=math.ceil(args.warmup_ratio * max_steps),
        num_training_steps=max_steps,
    )
    # stepped by hand once per optimizer step (a prepared scheduler would step once per process)
    accelerator.register_for_checkpointing(scheduler)
    trainable = {n for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}

    def keep_trainable_weights(models, weights, _output_dir):
        # checkpoints hold what training changes (an adapter of a few MB), not the frozen base model
        for i, weights_i in enumerate(weights):
            weights[i] = {k: v for k, v in weights_i.items() if _strip_module(k) in trainable}

    accelerator.register_save_state_pre_hook(keep_trainable_weights)
    current.summary.update(max_steps=max_steps, epochs=round(max_steps / updates_per_epoch, 2))
    state = {
        "global_step": 0,
        "epoch": 0,
        "batches_in_epoch": 0,
        "best_metric": None,
        "best_step": None,
        "best_validation": None,
        "zero_shot": None,
        "evaluations": [],
        "train_time_s": 0.0,
        **current.identity,
    }
    return Training(model, optimizer, scheduler, loader, items, max_steps, updates_per_epoch, state)


def start_or_resume(current: Run, training: Training) -> None:
    """Restore a checkpoint (weights, optimizer, scheduler, RNG states, run state), or start a fresh log; start the
    trackers; evaluate the zero-shot baseline once."""
    accelerator, args, state = current.accelerator, current.train_args, training.state
    if accelerator.is_main_process:
        current.output_dir.mkdir(parents=True, exist_ok=True)
    if current.trackers:
        settings = {**asdict(current.model_args), **asdict(current.data_args), **asdict(args)}
        config = {k: v for k, v in settings.items() if isinstance(v, (int, float, str, bool))}
        config["global_batch_size"] = current.global_batch
        accelerator.init_trackers(args.run_name or current.output_dir.name, config=config)
    train_log = current.output_dir / TRAIN_LOG_NAME
    if current.checkpoint is not None:
        accelerator.load_state(str(current.checkpoint), strict=False)
        saved = json.loads((current.checkpoint / RUN_STATE_NAME).read_text())
        state.update({k: saved[k] for k in state if k in saved})
        if accelerator.is_main_process and train_log.exists():
            # a killed run may have logged steps after its last checkpoint: they are redone now
            lines = [line for line in train_log.read_text().splitlines() if line.strip()]
            kept = [line for line in lines if json.loads(line)["step"] <= state["global_step"]]
            train_log.write_text("".join(line + "\n" for line in kept))
        accelerator.print(
            f"resumed from {current.checkpoint} at step {state['global_step']} (epoch {state['epoch']}, "
            f"{state['batches_in_epoch']} batches into it)"
        )
    elif accelerator.is_main_process and train_log.exists():
        train_log.unlink()
    accelerator.wait_for_everyone()

    if args.eval_before_training and state["zero_shot"] is None:
        network = accelerator.unwrap_model(training.model)
        with zero_shot_view(network):
            state["zero_shot"] = {
                role: evaluate_split(network, current.splits[role], current.context, accelerator, f"zero-shot {role}")
                for role in ("validation", "test")
            }
        if current.trackers:
            accelerator.log(flat_for_tracker("zero_shot/validation", state["zero_shot"]["validation"]), step=0)


def train(current: Run) -> dict[str, Any]:
    """The optimisation loop, then the selected adapter on test and the saved result."""
    from tqdm.auto import tqdm

    from peft_video.data import DataErrorSummary

    training = build_training(current)
    start_or_resume(current, training)
    accelerator, args, state = current.accelerator, current.train_args, training.state
    model, optimizer, scheduler = training.model, training.optimizer, training.scheduler
    eval_steps = args.eval_steps or training.updates_per_epoch
    save_steps = args.save_steps or eval_steps
    train_log = current.output_dir / TRAIN_LOG_NAME
    errors = DataErrorSummary()
    bar = tqdm(
        total=training.max_steps,
        initial=state["global_step"],
        desc=f"training {current.method}",
        disable=not (current.context["progress"] and accelerator.is_main_process),
    )
    model.train()
    window_losses: list[float] = []
    micro_losses: list[torch.Tensor] = []
    start_time = time.time() - state["train_time_s"]
    stopped = False
    while state["global_step"] < training.max_steps and not stopped:
        epoch = state["epoch"]
        # the prepared loader re-applies its own epoch counter to the sampler when iterated: set it, not the sampler
        training.loader.set_epoch(epoch)
        training.items.set_epoch(epoch)
        loader = training.loader
        if state["batches_in_epoch"]:
            loader = accelerator.skip_first_batches(training.loader, state["batches_in_epoch"])
            loader.set_epoch(epoch)
        for batch in usable_batches(_count_batches(loader, state), errors, accelerator):
            with accelerator.accumulate(model):
                out = model(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    pixel_values=batch["pixel_values"],
                    video_mask=batch["video_mask"],
                    return_loss=True,
                )
                accelerator.backward(out.loss)
                micro_losses.append(out.loss.detach().float())
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            lrs = {group.get("name", str(i)): group["lr"] for i, group in enumerate(optimizer.param_groups)}
            scheduler.step()
            state["global_step"] += 1
            step = state["global_step"]
            loss = accelerator.reduce(torch.stack(micro_losses).mean(), reduction="mean").item()
            micro_losses.clear()
            window_losses.append(loss)
            if accelerator.is_main_process:
                with train_log.open("a") as handle:
                    handle.write(json.dumps({"step": step, "epoch": epoch, "loss": loss, "lr": lrs}) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            last = step == training.max_steps
            if current.trackers and (step % args.logging_steps == 0 or last):
                accelerator.log(
                    {
                        "train/loss": sum(window_losses) / len(window_losses),
                        **{f"train/lr/{k}": v for k, v in lrs.items()},
                        "train/global_batch_size": current.global_batch,
                        "train/epoch": epoch,
                    },
                    step=step,
                )
                window_losses.clear()
            if step % eval_steps == 0 or last:
                validate_and_select(current, training, step)
                model.train()
            if step % save_steps == 0 or last:
                state["train_time_s"] = time.time() - start_time
                save_checkpoint(accelerator, current.output_dir, state, args.save_total_limit)
            stopped = args.stop_after_steps is not None and step >= args.stop_after_steps
            if last or stopped:
                break
        else:
            state["epoch"] += 1
            state["batches_in_epoch"] = 0
    bar.close()
    if errors.count:
        accelerator.print(str(errors))
    if stopped:
        accelerator.print(f"stopped after step {state['global_step']} (stop_after_steps)")
        accelerator.end_training()
        return {"stopped_at": state["global_step"]}
    current.summary["train_time_s"] = round(time.time() - start_time, 1)
    return finish(current, training, errors)


def usable_batches(loader, errors, accelerator):
    """Record failed samples; skip a batch whose samples all failed on a single process, but refuse it with several
    processes (one process skipping a step would leave the others waiting in the loss's all-gather)."""
    for batch in loader:
        errors.record(batch.get("errors", ()))
        if batch.get("batch_size", 1) > 0:
            yield batch
        elif accelerator.num_processes > 1:
            raise RuntimeError(
                f"every sample of a training batch failed to load on process {accelerator.process_index} "
                f"({[e['video'] for e in batch['errors']]}); with several processes this cannot be skipped. Fix or "
                "remove the files (or build a frame cache)."
            )


def validate_and_select(current: Run, training: Training, step: int) -> None:
    """Evaluate on the validation split; keep the adapter (in `best_adapter/`) when it is the best so far."""
    accelerator, args, state = current.accelerator, current.train_args, training.state
    network = accelerator.unwrap_model(training.model)
    validation = evaluate_split(
        network, current.splits["validation"], current.context, accelerator, f"validation @ step {step}"
    )
    direction, metric_name = metric_key(args.metric_for_best_model)
    value = validation[direction][metric_name]
    state["evaluations"].append({"step": step, direction: {metric_name: value}})
    if current.trackers:
        accelerator.log(flat_for_tracker("validation", validation), step=step)
    best = state["best_metric"]
    if best is None or (value > best if greater_is_better(args) else value < best):
        state.update(best_metric=value, best_step=step, best_validation=validation)
        if accelerator.is_main_process:
            save_model(network, current.output_dir / BEST_DIR)
        accelerator.wait_for_everyone()


def finish(current: Run, training: Training, errors) -> dict[str, Any]:
    """Put the best validation step's weights back, evaluate them once on test, save (and push) the result."""
    accelerator, args, state = current.accelerator, current.train_args, training.state
    network = accelerator.unwrap_model(training.model)
    accelerator.wait_for_everyone()
    load_best(network, current.output_dir / BEST_DIR, current.method)
    test = evaluate_split(
        network, current.splits["test"], current.context, accelerator, f"test (best step {state['best_step']})"
    )
    if current.trackers:
        accelerator.log(flat_for_tracker("test", test), step=state["global_step"])
    metrics = {
        **current.summary,
        "steps": state["global_step"],
        "selection": {
            "metric": args.metric_for_best_model,
            "split": current.data_args.validation_split,
            "best_step": state["best_step"],
            "best_value": state["best_metric"],
        },
        "zero_shot": state["zero_shot"],
        "validation": state["best_validation"],
        "test": test,
        "data_errors": errors.count,
    }
    if state["zero_shot"] is not None:
        before, after = state["zero_shot"]["test"], test
        accelerator.print(
            "test, zero-shot -> trained: "
            + ", ".join(
                f"{label} R@1 {before[key]['R@1']:.1f} -> {after[key]['R@1']:.1f}"
                for key, label in (("text_to_video", "text→video"), ("video_to_text", "video→text"))
            )
        )
    if accelerator.is_main_process:
        save_final(network, current, metrics)
        if args.push_to_hub:
            push(network, current.output_dir, args)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def _strip_module(name: str) -> str:
    return name[len("module.") :] if name.startswith("module.") else name


def _count_batches(loader, state: dict[str, Any]):
    """Count micro-batches consumed in the epoch (what `skip_first_batches` skips on resume)."""
    for batch in loader:
        state["batches_in_epoch"] += 1
        yield batch


class zero_shot_view:  # noqa: N801  (a context manager used like a function)
    """The frozen CLIP with mean pooling: the adapter disabled (adapter methods), or the model as it is before
    training (full fine-tuning starts from the frozen CLIP)."""

    def __init__(self, network):
        self.context = network.disable_adapter() if hasattr(network, "disable_adapter") else None

    def __enter__(self):
        return self.context.__enter__() if self.context is not None else None

    def __exit__(self, *exc):
        return self.context.__exit__(*exc) if self.context is not None else False


def save_model(network, folder: Path) -> None:
    """`save_pretrained` into `folder` (an adapter with its card, or a whole CLIPModel)."""
    folder.mkdir(parents=True, exist_ok=True)
    network.save_pretrained(str(folder))


def load_best(network, folder: Path, method: str) -> None:
    """Put the weights of the best validation step back into `network`."""
    from safetensors.torch import load_file

    if method == "full_finetune":
        from transformers import CLIPModel

        network.clip.load_state_dict(CLIPModel.from_pretrained(folder).state_dict())
        return
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(network, load_file(str(folder / "adapter_model.safetensors")))
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise RuntimeError(f"{folder}: unexpected adapter keys {unexpected[:5]}")


def save_checkpoint(accelerator, output_dir: Path, state: dict[str, Any], limit: int | None) -> None:
    """`accelerator.save_state` plus run_state.json; keeps the newest `limit` checkpoints."""
    folder = output_dir / CHECKPOINTS_DIR / f"checkpoint-{state['global_step']}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        (folder / RUN_STATE_NAME).write_text(json.dumps(state, indent=1, default=str))
        if limit is not None and limit > 0:
            for old in sorted_checkpoints(output_dir)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def finish_zero_shot(current: Run) -> dict[str, Any]:
    """The zero_shot baseline: validation and test metrics, nothing trained or saved but metrics.json."""
    accelerator = current.accelerator
    metrics = {
        **current.summary,
        **{
            role: evaluate_split(
                current.model, current.splits[role], current.context, accelerator, f"zero-shot {role}"
            )
            for role in ("validation", "test")
        },
    }
    if accelerator.is_main_process:
        current.output_dir.mkdir(parents=True, exist_ok=True)
        (current.output_dir / METRICS_NAME).write_text(json.dumps(metrics, indent=1) + "\n")
        accelerator.print(f"metrics: {current.output_dir / METRICS_NAME} (zero_shot has no weights to save)")
    return metrics


def save_final(network, current: Run, metrics: dict[str, Any]) -> None:
    """The selected model in output_dir: the adapter with its filled card (adapter methods) or a standalone
    fine-tuned CLIPModel folder (full_finetune), and metrics.json."""
    args, output_dir = current.train_args, current.output_dir
    if current.method == "full_finetune":
        save_model(network, output_dir)
        save_preprocessing(output_dir, current.tokenizer, current.model_name)
    else:
        network.model_card_training = {
            "dataset": current.dataset_name,
            "steps": metrics["steps"],
            "best_step": metrics["selection"]["best_step"],
            "global_batch_size": current.global_batch,
            "learning_rate": args.learning_rate,
            "lr_scheduler": f"{args.lr_scheduler_type}, warmup ratio {args.warmup_ratio}",
            "mixed_precision": resolve_mixed_precision(args),
            "seed": args.seed,
            "selection": f"{args.metric_for_best_model} on split {current.data_args.validation_split}",
            "hub_model_id": args.hub_model_id,
        }
        network.model_card_metrics = {
            **{k: metrics["test"][k] for k in ("text_to_video", "video_to_text", "tie_policy")},
            **({"dsl": metrics["test"]["dsl"]} if "dsl" in metrics["test"] else {}),
            "dataset": current.dataset_name,
            "split": current.data_args.test_split,
        }
        save_model(network, output_dir)
    (output_dir / METRICS_NAME).write_text(json.dumps(metrics, indent=1) + "\n")
    print(f"saved {current.method} to {output_dir} with {METRICS_NAME}")


def save_preprocessing(output_dir: Path, tokenizer, model_name: str) -> None:
    """Tokenizer and image processor beside a fine-tuned CLIPModel, as in any Hugging Face model folder."""
    tokenizer.save_pretrained(output_dir)
    if (Path(model_name) / "preprocessor_config.json").is_file():
        shutil.copyfile(Path(model_name) / "preprocessor_config.json", output_dir / "preprocessor_config.json")


def push(network, output_dir: Path, train_args: TrainArguments):
    """Upload the final model to `hub_model_id` (default: the output folder's name) with its model card."""
    repo_id = train_args.hub_model_id or output_dir.resolve().name
    info = network.push_to_hub(repo_id, private=train_args.hub_private_repo)
    print(f"pushed to the Hub: {repo_id}")
    return info


if __name__ == "__main__":
    main()
