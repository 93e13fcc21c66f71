"""Train a peft_video adapter (or a baseline) for text-video retrieval with Accelerate.

    accelerate launch examples/train.py --config examples/configs/demo_tfvl.yaml [--field value ...]
    accelerate launch examples/train.py examples/configs/demo_tfvl.yaml          # the file alone, as in transformers

`main` reads top to bottom: check every argument before anything is loaded or deleted; load the splits, the base
model and the method; evaluate the zero-shot baseline; train (Accelerate: mixed precision, gradient accumulation,
`save_state` checkpoints that `--resume_from_checkpoint last` continues exactly); keep the adapter of the best
validation step (the test split never selects); evaluate it once on test; save it with its model card and
metrics.json, and push it. Field names follow `transformers.TrainingArguments` where it has one; examples/README.md
lists every field.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.checkpointing import load_custom_state
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from cli_config import parse_args
from tqdm.auto import tqdm
from transformers import get_scheduler

from peft_video.data import DataErrorSummary, EpochSeededDataset, FrameSampling, VideoTextCollator, VideoTextDataset
from peft_video.evaluation import RetrievalEvaluator, check_metric_name, greater_is_better, metric_value, summary_line
from peft_video.hub import push_adapter_to_hub, write_model_card
from peft_video.loading import (
    BASELINES,
    DataSourceArguments,
    build_method_config,
    build_model,
    check_method_name,
    load_base_model,
    load_frame_transform,
    load_split,
    load_tokenizer,
)
from peft_video.metrics import flatten_metrics
from peft_video.optimization import count_parameters, parameter_groups

RUN_STATE_INDEX = 1  # registered after the scheduler, the run state is the last file save_state writes:
RUN_STATE_FILE = f"custom_checkpoint_{RUN_STATE_INDEX}.pkl"  # its presence marks a complete checkpoint
TRAIN_LOG_NAME, METRICS_NAME, BEST_DIR = "train_log.jsonl", "metrics.json", "best_adapter"


@dataclass
class ModelArguments:
    """Which model and method."""

    method: str = field(
        default="tfvl",
        metadata={
            "help": "A registered adapter method (tfvl, dgl, prompt_cube, or one an installed package adds through "
            "the `peft_video.methods` entry point) or a baseline (zero_shot, full_finetune)."
        },
    )
    method_config: str | None = field(
        default=None,
        metadata={
            "help": "Fields of the method's adapter config (e.g. TFVLConfig): a mapping in the config file, or a JSON "
            "object on the command line (merged over the file's), e.g. '{\"text_temp_prompt_tokens\": 8}'."
        },
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Base CLIPModel (folder or Hub id). Default: the offline world's tiny CLIP."}
    )
    base_model_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the base model when model_name_or_path is a local copy of it: written to "
            "adapter_config.json and the model card, which never name a local folder."
        },
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer; default: the base model's."})
    backbone_learning_rate: float = field(
        default=1e-6,
        metadata={"help": "Learning rate of trainable tensors outside the adapter (modules_to_save; full_finetune)."},
    )
    train_logit_scale: bool = field(default=False, metadata={"help": "full_finetune: also train CLIP's temperature."})


@dataclass
class DataArguments(DataSourceArguments):
    """Which videos and captions, and how frames are drawn."""

    train_split: str = field(default="train", metadata={"help": "Manifest split used for training."})
    validation_split: str = field(default="val", metadata={"help": "Split used for model selection."})
    test_split: str = field(default="test", metadata={"help": "Split evaluated once, with the selected model."})
    num_frames: int = field(default=12, metadata={"help": "Frames per video fed to the model (adapter num_frames)."})
    train_num_frames: int | None = field(
        default=None, metadata={"help": "Fewer frames in training only (Prompt Switch: 6, then 12 at evaluation)."}
    )
    max_text_length: int = field(default=32, metadata={"help": "Caption length in tokens (SOT and EOT included)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N eval rows."})
    on_error: str = field(default="skip", metadata={"help": "Unreadable video: skip (logged, counted) or raise."})
    frame_cache: str | None = field(default=None, metadata={"help": "A peft_video frame cache folder to read from."})


@dataclass
class TrainArguments:
    """How to train; names follow transformers.TrainingArguments."""

    output_dir: str = field(default="outputs/run", metadata={"help": "Where checkpoints, adapter and metrics go."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Start afresh over an earlier run's files."})
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
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "A transformers scheduler name."})
    warmup_steps: float = field(
        default=0.1, metadata={"help": "Linear warmup: steps, or a ratio of max_steps if < 1."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (default: accelerate launch's)."})
    fp16: bool = field(default=False, metadata={"help": "fp16 mixed precision (default: accelerate launch's)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations in backward."})
    seed: int = field(default=42, metadata={"help": "Seed of model init, frame jitter and (by default) data order."})
    data_seed: int | None = field(default=None, metadata={"help": "Seed of the data order; default: seed."})
    logging_steps: int = field(default=10, metadata={"help": "Optimizer steps between tracker logs."})
    logging_dir: str | None = field(default=None, metadata={"help": "Tracker folder; default: output_dir/logs."})
    eval_strategy: str | None = field(
        default=None, metadata={"help": "steps, epoch or no; default: steps if eval_steps is set, else epoch."}
    )
    eval_steps: int | None = field(default=None, metadata={"help": "Optimizer steps between validation runs."})
    save_steps: int | None = field(
        default=None, metadata={"help": "Steps between checkpoints; default: at each eval."}
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Test and save the best validation step's weights, not the last step's."}
    )
    metric_for_best_model: str = field(
        default="text_to_video/R@1", metadata={"help": "Validation metric that selects the best step."}
    )
    greater_is_better: bool | None = field(default=None, metadata={"help": "Default: true for R@K, false for ranks."})
    eval_before_training: bool = field(
        default=True, metadata={"help": "Evaluate the zero-shot baseline on validation and test first."}
    )
    dsl_temperature: float | None = field(
        default=None, metadata={"help": "Also report dual-softmax metrics (beside the raw ones) at this temperature."}
    )
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder, or 'last' for the newest complete one in output_dir."}
    )
    report_to: str = field(default="tensorboard", metadata={"help": "Trackers, comma-separated; all or none."})
    run_name: str | None = field(default=None, metadata={"help": "Tracker run name."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the final adapter with its model card."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repository (default: output_dir's name)."})
    hub_private_repo: bool | None = field(default=None, metadata={"help": "Create the Hub repository private."})
    license: str | None = field(default=None, metadata={"help": "Hub license id for the model card (apache-2.0...)."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})
    stop_after_steps: int | None = field(
        default=None, metadata={"help": "Stop abruptly after N steps, as a preemption would (to test resuming)."}
    )


ALL_ARGUMENTS = (ModelArguments, DataArguments, TrainArguments)


@dataclass
class RunState:
    """Where the run is and the best validation result so far: the one state of a run. Registered for checkpointing,
    so `save_state` / `load_state` keep it with the weights, optimizer, scheduler and RNG states. `identity` is what a
    checkpoint must match to continue this run."""

    identity: dict[str, Any]
    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    train_time_s: float = 0.0
    best_step: int | None = None
    best_metric: float | None = None
    best_validation: dict | None = None
    zero_shot: dict | None = None

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def check_can_resume_from(self, checkpoint: Path) -> None:
        """A checkpoint of another setting (method, base model, adapter config, batch...) cannot continue this run:
        raise naming what differs."""
        saved = RunState(identity={})
        load_custom_state(saved, str(checkpoint), index=RUN_STATE_INDEX)
        diffs = []
        for key, value in self.identity.items():
            old = saved.identity.get(key)
            if isinstance(old, dict) and isinstance(value, dict):
                diffs += [f"{key}.{k}: checkpoint {old.get(k)!r} vs this run {value.get(k)!r}"
                          for k in sorted(set(old) | set(value)) if old.get(k) != value.get(k)]  # fmt: skip
            elif old != value:
                diffs.append(f"{key}: checkpoint {old!r} vs this run {value!r}")
        if diffs:
            raise ValueError(
                f"cannot resume from {checkpoint}: it was written by a different run setting: " + "; ".join(diffs)
            )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Check, load, evaluate zero-shot, train, select on validation, test once, save; returns metrics.json's data."""
    model_args, data_args, args = parse_args(ALL_ARGUMENTS, argv, description=__doc__)
    adapter_config = check_arguments(model_args, data_args, args)
    output_dir, checkpoint = Path(args.output_dir), find_checkpoint(args)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision="bf16" if args.bf16 else "fp16" if args.fp16 else None,  # None: accelerate launch's setting
        log_with=trackers(args) or None,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir),
            logging_dir=args.logging_dir or str(output_dir / "logs"),
            automatic_checkpoint_naming=True,
            total_limit=args.save_total_limit,
        ),  # fmt: skip
        dataloader_config=DataLoaderConfiguration(
            use_seedable_sampler=True, data_seed=args.seed if args.data_seed is None else args.data_seed
        ),
    )
    set_seed(args.seed)

    # Data first (a bad split fails in seconds), then the base model and the method.
    manifest, dataset_name = data_args.prepare(accelerator)
    roles = {"train": data_args.train_split, "validation": data_args.validation_split, "test": data_args.test_split}
    if model_args.method == "zero_shot":
        del roles["train"]
    limits = {"train": data_args.max_train_samples}
    splits = {
        role: load_split(manifest, name, role, limits.get(role, data_args.max_eval_samples))
        for role, name in roles.items()
    }
    check_metric_name(
        args.metric_for_best_model, columns=splits["validation"].column_names,
        subset_columns=data_args.subset_columns, twin_column=data_args.twin_column,
    )  # fmt: skip
    clip, base_name = load_base_model(model_args.model_name_or_path)
    tokenizer = load_tokenizer(model_args.tokenizer_name or base_name)
    if adapter_config is not None:
        adapter_config.base_model_name_or_path = model_args.base_model_id or base_name
    model = build_model(
        model_args.method, clip, adapter_config, num_frames=data_args.num_frames,
        train_logit_scale=model_args.train_logit_scale,
    )  # fmt: skip
    if args.gradient_checkpointing:
        enable_activation_checkpointing(clip)
    image_size = clip.config.vision_config.image_size
    sampling = FrameSampling.from_config(adapter_config or {"num_frames": data_args.num_frames}, image_size=image_size)
    transform = load_frame_transform(base_name, image_size)
    evaluate = RetrievalEvaluator(
        sampling, transform, tokenizer, max_text_length=data_args.max_text_length,
        batch_size=args.per_device_eval_batch_size, num_workers=args.dataloader_num_workers,
        backend=data_args.video_backend, decode_timeout=data_args.decode_timeout or None,
        subset_columns=data_args.subset_columns, twin_column=data_args.twin_column,
        dsl_temperature=args.dsl_temperature, progress=not args.disable_tqdm,
    )  # fmt: skip
    processes = accelerator.num_processes
    global_batch = args.per_device_train_batch_size * processes * args.gradient_accumulation_steps
    parameters = count_parameters(model)
    summary = {
        "method": model_args.method, "base_model": base_name, "dataset": dataset_name, "manifest": str(manifest),
        "splits": {role: {"name": roles[role], "rows": len(data)} for role, data in splits.items()},
        "parameters": parameters, "num_processes": processes, "global_batch_size": global_batch,
        "frame_sampling": sampling.to_dict(), "arguments": {**asdict(model_args), **asdict(data_args), **asdict(args)},
    }  # fmt: skip
    accelerator.print(
        f"method {model_args.method} on {base_name}: {parameters['trainable']:,} trainable of {parameters['total']:,} "
        f"parameters; {processes} process(es), global batch {global_batch} ({args.per_device_train_batch_size} per "
        f"device × {processes} × {args.gradient_accumulation_steps} accumulation)"
    )

    def evaluate_on(network, role: str, desc: str) -> dict[str, Any]:
        metrics = evaluate(network, splits[role], accelerator)
        accelerator.print(f"{desc}: {summary_line(metrics)}")
        return metrics

    if model_args.method == "zero_shot":
        metrics = {
            **summary,
            **{role: evaluate_on(model, role, f"zero-shot {role}") for role in ("validation", "test")},
        }
        if accelerator.is_main_process:
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / METRICS_NAME).write_text(json.dumps(metrics, indent=1) + "\n")
        return metrics

    # Training data, optimizer and schedule, prepared by Accelerate.
    train_items = EpochSeededDataset(training_dataset(splits["train"], data_args, sampling, transform), args.seed)
    collator = VideoTextCollator(tokenizer, max_text_length=data_args.max_text_length)
    train_loader = training_loader(train_items, collator, args)
    groups = parameter_groups(
        model, learning_rate=args.learning_rate, other_learning_rate=model_args.backbone_learning_rate,
        weight_decay=args.weight_decay,
    )  # fmt: skip
    optimizer = torch.optim.AdamW(groups, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if len(train_loader) == 0:
        raise ValueError(
            f"the training split has {len(train_items)} rows: fewer than one global batch "
            f"({args.per_device_train_batch_size} × {processes} processes); lower per_device_train_batch_size"
        )
    updates_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    max_steps = args.max_steps if args.max_steps > 0 else max(1, math.ceil(args.num_train_epochs * updates_per_epoch))
    warmup = math.ceil(args.warmup_steps * max_steps) if args.warmup_steps < 1 else int(args.warmup_steps)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=max_steps)
    eval_steps = args.eval_steps if eval_strategy(args) == "steps" else updates_per_epoch
    save_steps = args.save_steps or eval_steps
    larger_is_better = args.greater_is_better
    if larger_is_better is None:
        larger_is_better = greater_is_better(args.metric_for_best_model)
    summary.update(max_steps=max_steps, epochs=round(max_steps / updates_per_epoch, 2))

    # One run state, saved and restored by Accelerate with everything else; checkpoints hold trainable tensors only.
    state = RunState(
        identity=run_identity(model_args, data_args, args, adapter_config, base_name, dataset_name, processes)
    )
    accelerator.register_for_checkpointing(scheduler, state)  # the scheduler is stepped by hand, once per update
    trainable = {n for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}

    def keep_trainable_weights(models, weights, folder):  # a checkpoint holds the adapter, not the frozen base model
        for i, named in enumerate(weights):
            weights[i] = {k: v for k, v in named.items() if k.removeprefix("module.") in trainable}

    accelerator.register_save_state_pre_hook(keep_trainable_weights)
    train_log = output_dir / TRAIN_LOG_NAME
    if checkpoint is not None:
        state.check_can_resume_from(checkpoint)
        accelerator.load_state(str(checkpoint), strict=False)  # the frozen base model is not in it
        accelerator.print(
            f"resumed from {checkpoint} at step {state.step} (epoch {state.epoch}, batch {state.batches_in_epoch})"
        )
    if accelerator.is_main_process:
        start_output_dir(output_dir, checkpoint, state.step)
    accelerator.wait_for_everyone()
    if trackers(args):
        config = {k: v for k, v in summary["arguments"].items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers(
            args.run_name or output_dir.name, config={**config, "global_batch_size": global_batch}
        )
    network = accelerator.unwrap_model(model)
    if args.eval_before_training and state.zero_shot is None:
        with network.disable_adapter() if hasattr(network, "disable_adapter") else nullcontext():
            state.zero_shot = {
                role: evaluate_on(network, role, f"zero-shot {role}") for role in ("validation", "test")
            }
        accelerator.log(scalars("zero_shot/validation", state.zero_shot["validation"]), step=0)

    # The loop: one optimizer step per `accumulate` window; validation, checkpoints and logs count optimizer steps.
    errors, losses, window = DataErrorSummary(), [], []
    started, stopped = time.time() - state.train_time_s, False
    bar = tqdm(
        total=max_steps, initial=state.step, desc=f"training {model_args.method}",
        disable=args.disable_tqdm or not accelerator.is_main_process,
    )  # fmt: skip
    model.train()
    while state.step < max_steps and not stopped:
        train_loader.set_epoch(state.epoch)  # data order: a function of data_seed and epoch
        train_items.set_epoch(state.epoch)  # frame jitter: a function of seed, epoch and sample
        batches = train_loader
        if state.batches_in_epoch:  # resumed inside an epoch: skip what the checkpointed run had consumed
            batches = accelerator.skip_first_batches(train_loader, state.batches_in_epoch)
            batches.set_epoch(state.epoch)
        for batch in batches:
            state.batches_in_epoch += 1
            if not usable(batch, errors, accelerator):
                continue
            with accelerator.accumulate(model):
                inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "video_mask")}
                loss = model(**inputs, return_loss=True).loss
                accelerator.backward(loss)
                losses.append(loss.detach().float())
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            learning_rates = {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)}
            scheduler.step()
            state.step += 1
            loss = accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()
            losses.clear()
            window.append(loss)
            if accelerator.is_main_process:
                with train_log.open("a") as handle:
                    handle.write(
                        json.dumps({"step": state.step, "epoch": state.epoch, "loss": loss, "lr": learning_rates})
                        + "\n"
                    )
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            last = state.step == max_steps
            if state.step % args.logging_steps == 0 or last:
                logged = {"train/loss": sum(window) / len(window), "train/epoch": state.epoch}
                accelerator.log({**logged, **{f"train/lr/{k}": v for k, v in learning_rates.items()}}, step=state.step)
                window.clear()
            if eval_strategy(args) != "no" and (state.step % eval_steps == 0 or last):
                validation = evaluate_on(network, "validation", f"validation @ step {state.step}")
                accelerator.log(scalars("validation", validation), step=state.step)
                value = metric_value(validation, args.metric_for_best_model)
                if state.best_metric is None or (
                    value > state.best_metric if larger_is_better else value < state.best_metric
                ):
                    state.best_metric, state.best_step, state.best_validation = value, state.step, validation
                    if accelerator.is_main_process:
                        network.save_pretrained(str(output_dir / BEST_DIR))
                    accelerator.wait_for_everyone()
                model.train()
            if state.step % save_steps == 0 or last:
                state.train_time_s = time.time() - started
                accelerator.project_configuration.iteration = state.step  # checkpoints/checkpoint_<step>
                accelerator.save_state()
            stopped = args.stop_after_steps is not None and state.step >= args.stop_after_steps
            if last or stopped:
                break
        else:
            state.epoch, state.batches_in_epoch = state.epoch + 1, 0
    bar.close()
    if errors.count:
        accelerator.print(str(errors))
    if stopped:
        accelerator.print(f"stopped after step {state.step} (stop_after_steps)")
        accelerator.end_training()
        return {"stopped_at": state.step}

    # The selected weights, evaluated once on test, saved with their card and the run's metrics.
    if args.load_best_model_at_end and state.best_step is not None:
        load_weights(network, output_dir / BEST_DIR, model_args.method)
    test = evaluate_on(
        network, "test", f"test (weights of step {state.best_step if args.load_best_model_at_end else state.step})"
    )
    accelerator.log(scalars("test", test), step=state.step)
    metrics = {
        **summary, "train_time_s": round(time.time() - started, 1), "steps": state.step,
        "selection": {"metric": args.metric_for_best_model, "split": data_args.validation_split,
                      "best_step": state.best_step, "best_value": state.best_metric},
        "zero_shot": state.zero_shot, "validation": state.best_validation, "test": test, "data_errors": errors.count,
    }  # fmt: skip
    if state.zero_shot is not None:
        before, after = state.zero_shot["test"]["text_to_video"]["R@1"], test["text_to_video"]["R@1"]
        accelerator.print(f"test text→video R@1: zero-shot {before:.1f} -> trained {after:.1f}")
    if accelerator.is_main_process:
        network.save_pretrained(str(output_dir))
        card = card_facts(metrics, args, dataset_name, data_args.test_split, accelerator.mixed_precision)
        if model_args.method == "full_finetune":  # a standalone CLIPModel folder: tokenizer and image processor too
            tokenizer.save_pretrained(output_dir)
            if (Path(base_name) / "preprocessor_config.json").is_file():
                shutil.copyfile(Path(base_name) / "preprocessor_config.json", output_dir / "preprocessor_config.json")
        else:
            write_model_card(output_dir, network.active_peft_config, **card)
        (output_dir / METRICS_NAME).write_text(json.dumps(metrics, indent=1) + "\n")
        accelerator.print(f"saved {model_args.method} to {output_dir} with {METRICS_NAME}")
        if args.push_to_hub:
            push(network, args.hub_model_id or output_dir.resolve().name, card, args.hub_private_repo)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def check_arguments(model_args: ModelArguments, data_args: DataArguments, args: TrainArguments):
    """Everything that can be checked before any file is read, loaded or deleted; returns the adapter config (None for
    the baselines)."""
    check_method_name(model_args.method)
    adapter_config = None
    if model_args.method in BASELINES:
        if model_args.method_config:
            raise ValueError(f"method_config is for adapter methods; the baseline {model_args.method!r} takes none")
    else:
        fields = dict(model_args.method_config or {})
        for name in ("num_frames", "max_text_length"):
            if name in fields and fields[name] != getattr(data_args, name):
                raise ValueError(
                    f"method_config.{name}={fields[name]} disagrees with {name}={getattr(data_args, name)}; set it in "
                    f"one place only (the top-level {name} is what the data loader uses)"
                )
            fields[name] = getattr(data_args, name)
        adapter_config = build_method_config(model_args.method, fields)
    if data_args.on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be skip or raise, got {data_args.on_error!r}")
    if data_args.validation_split == data_args.test_split:
        raise ValueError(
            f"validation_split and test_split are both {data_args.test_split!r}: model selection must never see the "
            "test split"
        )
    if model_args.method != "zero_shot" and data_args.train_split in (
        data_args.validation_split,
        data_args.test_split,
    ):
        raise ValueError(f"train_split {data_args.train_split!r} is also an evaluation split")
    if data_args.train_num_frames is not None and not 0 < data_args.train_num_frames <= data_args.num_frames:
        raise ValueError(
            f"train_num_frames={data_args.train_num_frames} must be in [1, num_frames={data_args.num_frames}]"
        )
    for name in (
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "logging_steps",
    ):
        if getattr(args, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(args, name)}")
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise ValueError("set max_steps > 0 or num_train_epochs > 0")
    if args.warmup_steps < 0 or (args.warmup_steps >= 1 and args.warmup_steps != int(args.warmup_steps)):
        raise ValueError(f"warmup_steps must be a whole number of steps or a ratio in [0, 1), got {args.warmup_steps}")
    if args.bf16 and args.fp16:
        raise ValueError("bf16 and fp16 are both set; choose one")
    if eval_strategy(args) not in ("steps", "epoch", "no") or (eval_strategy(args) == "steps" and not args.eval_steps):
        raise ValueError(f"eval_strategy must be steps (with eval_steps), epoch or no, got {args.eval_strategy!r}")
    if args.load_best_model_at_end and eval_strategy(args) == "no":
        raise ValueError("load_best_model_at_end needs a validation: set eval_strategy to steps or epoch")
    check_metric_name(
        args.metric_for_best_model, subset_columns=data_args.subset_columns, twin_column=data_args.twin_column
    )
    trackers(args)
    if args.push_to_hub and model_args.method == "zero_shot":
        raise ValueError("push_to_hub: the zero_shot baseline trains nothing, there is nothing to upload")
    return adapter_config


def eval_strategy(args: TrainArguments) -> str:
    """transformers' `eval_strategy`; unset: every `eval_steps` steps if that is set, else once per epoch."""
    return args.eval_strategy or ("steps" if args.eval_steps else "epoch")


def trackers(args: TrainArguments) -> list[str] | str:
    """The Accelerate trackers of `report_to`; one that is not installed is an error, not a run without logs."""
    from accelerate.tracking import get_available_trackers

    if args.report_to in ("all", "none", "", None):
        return "all" if args.report_to == "all" else []
    wanted = [name.strip() for name in args.report_to.split(",") if name.strip()]
    available = [str(t) for t in get_available_trackers()]
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ValueError(
            f"report_to: {missing} not installed or not an Accelerate tracker; available here: {available}"
        )
    return wanted


def find_checkpoint(args: TrainArguments) -> Path | None:
    """The checkpoint to resume from: a folder, or `last` (the newest complete one of output_dir); None for a fresh
    run, which an output_dir holding checkpoints only gets with overwrite_output_dir."""
    found = sorted(
        (p for p in (Path(args.output_dir) / "checkpoints").glob("checkpoint_*") if (p / RUN_STATE_FILE).is_file()),
        key=lambda p: int(p.name.rsplit("_", 1)[-1]),
    )
    if args.resume_from_checkpoint in ("last", "latest", "true", "True"):
        if not found:
            raise FileNotFoundError(
                f"resume_from_checkpoint=last but {args.output_dir}/checkpoints holds no complete checkpoint"
            )
        return found[-1]
    if args.resume_from_checkpoint:
        path = Path(args.resume_from_checkpoint)
        if not (path / RUN_STATE_FILE).is_file():
            raise FileNotFoundError(
                f"{path} is not a complete checkpoint of examples/train.py ({RUN_STATE_FILE} missing)"
            )
        return path
    if found and not args.overwrite_output_dir:
        raise FileExistsError(
            f"{args.output_dir} already holds checkpoints of a run; continue it with --resume_from_checkpoint last or "
            "start afresh with --overwrite_output_dir true"
        )
    return None


def run_identity(model_args, data_args, args, adapter_config, base_name, dataset_name, processes) -> dict[str, Any]:
    """What a checkpoint must share with this run to continue it (a JSON round trip: what a checkpoint holds)."""
    identity = {
        "method": model_args.method, "base_model": base_name, "num_processes": processes, "seed": args.seed,
        "adapter_config": adapter_config.to_dict() if adapter_config is not None else None, "dataset": dataset_name,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
    }  # fmt: skip
    return json.loads(json.dumps(identity, default=str))


def start_output_dir(output_dir: Path, checkpoint: Path | None, step: int) -> None:
    """A fresh run removes an earlier run's checkpoints, best adapter and log (only now: every check has passed); a
    resumed run drops the log lines and checkpoints after the step it resumes from (they are redone)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    log = output_dir / TRAIN_LOG_NAME
    if checkpoint is None:
        shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(output_dir / BEST_DIR, ignore_errors=True)
        log.unlink(missing_ok=True)
        return
    for later in (output_dir / "checkpoints").glob("checkpoint_*"):
        if int(later.name.rsplit("_", 1)[-1]) > step:
            shutil.rmtree(later)
    if log.exists():
        lines = [line for line in log.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        log.write_text("".join(line + "\n" for line in lines))


def training_dataset(rows, data_args: DataArguments, sampling: FrameSampling, transform) -> VideoTextDataset:
    """The training split's (video, caption) pairs, with `train_num_frames` frames when set (an error names a count
    the method's sampling cannot take, e.g. one that is not a multiple of Prompt Cube's chunk)."""
    frames = data_args.train_num_frames or sampling.num_frames
    try:
        sampling = replace(sampling, num_frames=frames)
    except ValueError as err:
        raise ValueError(f"train_num_frames={frames} does not fit the frame sampling: {err}") from err
    return VideoTextDataset(
        rows, sampling, transform, train=True, backend=data_args.video_backend, on_error=data_args.on_error,
        decode_timeout=data_args.decode_timeout or None, cache=data_args.frame_cache,
    )  # fmt: skip


def training_loader(items, collator, args: TrainArguments) -> torch.utils.data.DataLoader:
    """Whole batches (a contrastive batch needs its negatives) in an order Accelerate's seedable sampler makes a
    function of data_seed and epoch, so a resumed run sees the batches the uninterrupted run saw."""
    return torch.utils.data.DataLoader(
        items, batch_size=args.per_device_train_batch_size, shuffle=True, drop_last=True,
        num_workers=args.dataloader_num_workers, collate_fn=collator,
    )  # fmt: skip


def usable(batch: dict[str, Any], errors: DataErrorSummary, accelerator: Accelerator) -> bool:
    """Count a batch's failed samples; a batch whose samples all failed is skipped with one process, refused with
    several (one process skipping a step would leave the others waiting in the loss's all-gather)."""
    errors.record(batch.get("errors", ()))
    if batch.get("batch_size", 1) > 0:
        return True
    if accelerator.num_processes > 1:
        raise RuntimeError(
            f"every sample of a training batch failed to load on process {accelerator.process_index} "
            f"({[e['video'] for e in batch['errors']]}); with several processes this cannot be skipped. Fix or remove "
            "the files (or build a frame cache)."
        )
    return False


def enable_activation_checkpointing(clip) -> None:
    """transformers 5 calls it `activation_checkpointing_enable`; peft_video's own layer loops read the same flag."""
    clip.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if not getattr(clip.vision_model.encoder, "gradient_checkpointing", False):
        raise RuntimeError("gradient_checkpointing was requested but the vision encoder did not switch it on")


def load_weights(network, folder: Path, method: str) -> None:
    """Put the weights saved in `folder` (the best validation step's) back into `network`."""
    if method == "full_finetune":
        from transformers import CLIPModel

        network.clip.load_state_dict(CLIPModel.from_pretrained(folder).state_dict())
        return
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(network, load_file(str(folder / "adapter_model.safetensors")))
    if getattr(result, "unexpected_keys", None):
        raise RuntimeError(f"{folder}: unexpected adapter keys {result.unexpected_keys[:5]}")


def scalars(prefix: str, metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics dict as `prefix/...` tracker scalars."""
    return {k: float(v) for k, v in flatten_metrics({prefix: metrics}).items() if isinstance(v, (int, float))}


def card_facts(metrics, args: TrainArguments, dataset_name: str, test_split: str, precision: str) -> dict[str, Any]:
    """`write_model_card`'s arguments: the run's setup and its test results."""
    selection = metrics["selection"]
    return {
        "adapter_id": args.hub_model_id, "license": args.license, "metrics": metrics["test"], "dataset": dataset_name,
        "split": test_split, "training": {
            "Training data": dataset_name, "Optimizer steps": metrics["steps"],
            "Selected step": f"{selection['best_step']} ({selection['metric']} on split {selection['split']})",
            "Global batch size (all processes, after accumulation)": metrics["global_batch_size"],
            "Learning rate": args.learning_rate, "Schedule": f"{args.lr_scheduler_type}, warmup {args.warmup_steps}",
            "Mixed precision": precision, "Seed": args.seed,
        },
    }  # fmt: skip


def push(network, repo_id: str, card: dict[str, Any], private: bool | None) -> None:
    """Upload the final model: an adapter with its card (`push_adapter_to_hub`), or the fine-tuned CLIPModel."""
    if hasattr(network, "active_peft_config"):
        push_adapter_to_hub(network, repo_id, card={**card, "adapter_id": repo_id}, private=private)
    else:
        network.push_to_hub(repo_id, private=private)
    print(f"pushed to the Hub: {repo_id}")


if __name__ == "__main__":
    main()
