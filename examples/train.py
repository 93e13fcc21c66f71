"""Train a peft_video adapter (or a baseline) for text-video retrieval with Accelerate.

    accelerate launch examples/train.py --config examples/configs/demo_tfvl.yaml [--field value ...]
    accelerate launch examples/train.py examples/configs/demo_tfvl.yaml          # the file alone, as in transformers
    accelerate launch examples/train.py --config examples/configs/demo_tfvl_shards.yaml  # streamed from shards

`main` reads top to bottom: check every argument before anything is loaded or deleted; load the splits (manifest
rows, or streams of shards that each process reads its own part of), the base model and the method; evaluate the
zero-shot baseline; train (Accelerate: mixed precision, gradient accumulation, `save_state` checkpoints, sealed with
each file's size and hash, that `--resume_from_checkpoint last` continues exactly); keep the adapter of the best
validation step (the test split never selects); evaluate it once on test; save it with its model card and
metrics.json, and push it. The fields are in `arguments.py` (names of `transformers.TrainingArguments` where it has
one) and examples/README.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import warnings
from collections import Counter
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.checkpointing import load_custom_state
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, gather_object, set_seed
from arguments import ALL_ARGUMENTS, DataArguments, ModelArguments, TrainArguments, parse_args
from peft.utils import set_peft_model_state_dict
from safetensors.torch import load_file
from tqdm.auto import tqdm
from transformers import CLIPModel, get_scheduler

from peft_video.data import (
    DataErrorSummary,
    EpochSeededDataset,
    FrameSampling,
    GroupedBatchSampler,
    StreamingVideoTextDataset,
    VideoTextCollator,
    VideoTextDataset,
)
from peft_video.evaluation import RetrievalEvaluator, summary_line
from peft_video.hub import push_adapter_to_hub, write_model_card
from peft_video.loading import (
    BASELINES,
    build_method_config,
    build_model,
    check_method_name,
    load_base_model,
    load_frame_transform,
    load_tokenizer,
    video_to_text_protocol,
)
from peft_video.metrics import flatten_metrics
from peft_video.optimization import count_parameters, parameter_groups
from peft_video.processing import VideoTextProcessor
from peft_video.search.gallery import worst_queries_gallery
from peft_video.selection import ModelSelection

RUN_STATE_INDEX = 1  # registered after the scheduler, the run state is the last file save_state writes
RUN_STATE_FILE = f"custom_checkpoint_{RUN_STATE_INDEX}.pkl"
SEAL_FILE = "checkpoint_files.json"  # written last: every file's size and SHA-256; its presence marks a complete one
STREAM_STATE_FILE = "stream_rank{rank}.pt"  # a streamed source: each process' own position in its own shards
TRAIN_LOG_NAME, METRICS_NAME, BEST_DIR = "train_log.jsonl", "metrics.json", "best_adapter"
SAMPLES_DIR = "samples"  # log_samples: samples/rank<r>.jsonl, the video ids of every batch each process trained on
CARD_GALLERY_NAME = "worst_queries.png"  # beside the card, which embeds it


@dataclass
class RunState:
    """The one state of a run: where it is and the best validation result so far. Registered for checkpointing, so
    `save_state` / `load_state` keep it with the weights, optimizer, scheduler, sampler and RNG states. `identity`
    is what a checkpoint must share with this run to continue it."""

    identity: dict[str, Any]
    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    train_time_s: float = 0.0
    best_step: int | None = None
    best_metric: float | None = None
    best_validation: dict | None = None
    zero_shot: dict | None = None
    data_errors: dict | None = None  # of every process up to this state (DataErrorSummary.to_dict)
    skipped_batches: dict[str, int] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def refuse_another_run(self, checkpoint: Path) -> None:
        """Raise, naming what differs, when `checkpoint` was written with another method, base model, adapter config,
        batch setting... (for a dict, the fields that differ)."""
        saved = RunState(identity={})
        load_custom_state(saved, str(checkpoint), index=RUN_STATE_INDEX)
        differences = []
        for key, ours in self.identity.items():
            theirs = saved.identity.get(key)
            pairs = [(key, theirs, ours)]
            if isinstance(ours, dict) and isinstance(theirs, dict):
                pairs = [(f"{key}.{k}", theirs.get(k), ours.get(k)) for k in sorted({*theirs, *ours})]
            differences += [f"{name}: checkpoint {a!r} vs this run {b!r}" for name, a, b in pairs if a != b]
        if differences:
            raise ValueError(
                f"cannot resume from {checkpoint}, written by another run setting: " + "; ".join(differences)
            )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Check, load, evaluate zero-shot, train, select on validation, test once, save; returns metrics.json's data."""
    model_args, data_args, args = parse_args(ALL_ARGUMENTS, argv, description=__doc__)  # each group checks itself
    adapter_config = check_arguments(model_args, data_args, args)
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision="bf16" if args.bf16 else "fp16" if args.fp16 else None,  # None: accelerate launch's setting
        log_with=args.trackers() or None,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=args.logging_dir or str(output_dir / "logs"),
            automatic_checkpoint_naming=True,  # no total_limit: rotate_checkpoints (see there)
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.data_seed),
    )  # fmt: skip
    if model_args.method != "zero_shot":
        check_contrastive_batch(args, accelerator.num_processes)
    checkpoint = find_checkpoint(args, warn=accelerator.is_main_process)
    set_seed(args.seed)

    # Data first (a bad split fails in seconds), then the base model, the method and how both are evaluated.
    manifest, dataset_name = data_args.prepare(accelerator)  # a streamed source: where its shards are
    roles = {"train": data_args.train_split, "validation": data_args.validation_split, "test": data_args.test_split}
    if model_args.method == "zero_shot":
        del roles["train"]
    limits = {role: data_args.max_train_samples if role == "train" else data_args.max_eval_samples for role in roles}
    splits = {role: data_args.load_split(manifest, name, role, limits[role]) for role, name in roles.items()}
    protocol = video_to_text_protocol(data_args.video_to_text_protocol, dataset_name, splits["validation"])
    selection = model_selection(args, data_args, columns=splits["validation"].column_names)
    clip, base_name = load_base_model(model_args.model_name_or_path)
    tokenizer = load_tokenizer(model_args.tokenizer_name or base_name)
    model = build_model(
        model_args.method, clip, adapter_config, num_frames=data_args.num_frames,
        train_logit_scale=model_args.train_logit_scale,
    )  # fmt: skip
    if model_args.base_model_id and adapter_config is not None:  # get_peft_model recorded the local folder
        adapter_config.base_model_name_or_path = model_args.base_model_id
    if args.gradient_checkpointing:  # also read by peft_video's own layer loops
        clip.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    image_size = clip.config.vision_config.image_size
    sampling = FrameSampling.from_config(adapter_config or {"num_frames": data_args.num_frames}, image_size=image_size)
    transform = load_frame_transform(base_name, image_size)
    evaluate = RetrievalEvaluator(
        sampling, transform, tokenizer, max_text_length=data_args.max_text_length,
        batch_size=args.per_device_eval_batch_size, num_workers=args.dataloader_num_workers,
        backend=data_args.video_backend, decode_timeout=data_args.decode_timeout or None,
        subset_columns=data_args.subset_columns, twin_column=data_args.twin_column,
        dsl_temperature=args.dsl_temperature, progress=not args.disable_tqdm, video_to_text_protocol=protocol,
    )  # fmt: skip
    processor = VideoTextProcessor(  # saved beside the adapter: inputs prepared exactly as evaluated here
        tokenizer, sampling=sampling, transform=transform, max_text_length=data_args.max_text_length,
        video_backend=data_args.video_backend,
    )  # fmt: skip

    def evaluate_on(network, role: str, desc: str) -> dict[str, Any]:
        metrics = evaluate(network, splits[role], accelerator)
        accelerator.print(f"{desc}: {summary_line(metrics)}")
        return metrics

    processes, parameters = accelerator.num_processes, count_parameters(model)
    global_batch = args.per_device_train_batch_size * processes * args.gradient_accumulation_steps
    summary = {
        "method": model_args.method, "base_model": base_name, "dataset": dataset_name, "manifest": str(manifest),
        "splits": {role: {"name": roles[role], "rows": rows_of(data)} for role, data in splits.items()},
        "parameters": parameters, "num_processes": processes, "global_batch_size": global_batch,
        "frame_sampling": sampling.to_dict(), "video_to_text_protocol": protocol,
        "arguments": {**asdict(model_args), **asdict(data_args), **asdict(args)},
    }  # fmt: skip
    accelerator.print(
        f"method {model_args.method} on {base_name}: {parameters['trainable']:,} trainable of {parameters['total']:,} "
        f"parameters; {processes} process(es), global batch {global_batch} ({args.per_device_train_batch_size} per "
        f"device × {processes} × {args.gradient_accumulation_steps} accumulation)"
    )
    if model_args.method == "zero_shot":  # nothing to train: the frozen CLIP on validation and test
        metrics = {**summary, **{role: evaluate_on(model, role, f"zero-shot {role}") for role in roles}}
        if accelerator.is_main_process:
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / METRICS_NAME).write_text(json.dumps(metrics, indent=1) + "\n")
        return metrics

    # Training data, optimizer and schedule, prepared by Accelerate.
    collator = VideoTextCollator(tokenizer, max_text_length=data_args.max_text_length)
    train_items, train_loader = training_loader(
        splits["train"], data_args, args, sampling, transform, collator, accelerator
    )
    groups = parameter_groups(
        model, learning_rate=args.learning_rate, other_learning_rate=model_args.backbone_learning_rate,
        weight_decay=args.weight_decay,
    )  # fmt: skip
    optimizer = torch.optim.AdamW(groups, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    streamed, updates_per_epoch = data_args.streamed, None  # a stream's length is unknown: max_steps (checked)
    if streamed:  # not through prepare: each process reads its own shards (docs/shards.md, "Across machines")
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
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
    eval_steps = args.eval_steps if args.eval_strategy == "steps" else updates_per_epoch
    save_steps = args.save_steps or eval_steps
    summary.update(max_steps=max_steps, epochs=round(max_steps / updates_per_epoch, 2) if updates_per_epoch else None)

    # One run state, saved and restored by Accelerate with everything else; checkpoints hold trainable tensors only.
    identity = run_identity(model_args, data_args, args, adapter_config, base_name, dataset_name, processes)
    state = RunState(identity=identity)
    accelerator.register_for_checkpointing(scheduler, state)  # the scheduler is stepped by hand, once per update
    trainable = {n for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}

    def keep_trainable_weights(models, weights, folder):  # a checkpoint holds the adapter, not the frozen base model
        for i, named in enumerate(weights):
            weights[i] = {k: v for k, v in named.items() if k.removeprefix("module.") in trainable}

    accelerator.register_save_state_pre_hook(keep_trainable_weights)
    if checkpoint is not None:
        state.refuse_another_run(checkpoint)
        accelerator.load_state(str(checkpoint), strict=False)  # strict=False: the frozen base model is not in it
        if streamed:
            load_stream_state(checkpoint, train_loader, state, accelerator.process_index)
        accelerator.print(f"resumed from {checkpoint} at step {state.step}, epoch {state.epoch}")
    if accelerator.is_main_process:
        start_output_dir(output_dir, checkpoint, state.step)
    accelerator.wait_for_everyone()
    samples_log = output_dir / SAMPLES_DIR / f"rank{accelerator.process_index}.jsonl"
    if data_args.log_samples:
        keep_log_lines(samples_log, state.step if checkpoint is not None else 0)
    if args.trackers():
        config = {k: v for k, v in summary["arguments"].items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers(args.run_name or output_dir.name, {**config, "global_batch_size": global_batch})
    network = accelerator.unwrap_model(model)
    if args.eval_before_training and state.zero_shot is None:
        with network.disable_adapter() if hasattr(network, "disable_adapter") else nullcontext():
            state.zero_shot = {
                role: evaluate_on(network, role, f"zero-shot {role}") for role in ("validation", "test")
            }
        accelerator.log(scalars("zero_shot/validation", state.zero_shot["validation"]), step=0)

    # The loop: one optimizer step per `accumulate` window; logs, validation and checkpoints count optimizer steps.
    errors, skipped, losses, window, stopped = DataErrorSummary(), Counter(), [], [], False
    earlier = (DataErrorSummary.from_dict(state.data_errors or {}), Counter(state.skipped_batches))  # before a resume
    started = time.time() - state.train_time_s
    hide = args.disable_tqdm or not accelerator.is_main_process
    bar = tqdm(total=max_steps, initial=state.step, desc=f"training {model_args.method}", disable=hide)
    model.train()
    while state.step < max_steps and not stopped:
        for batch in epoch_batches(train_items, train_loader, state, accelerator, streamed, errors, skipped):
            if data_args.log_samples:
                append_line(samples_log, {"step": state.step + 1, "epoch": state.epoch, "video_id": batch["video_id"]})
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
            learning_rates = {group.get("name", str(i)): group["lr"] for i, group in enumerate(optimizer.param_groups)}
            scheduler.step()
            state.step, last = state.step + 1, state.step + 1 == max_steps
            loss = accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()
            losses.clear()
            window.append(loss)
            if accelerator.is_main_process:
                record = {"step": state.step, "epoch": state.epoch, "loss": loss, "lr": learning_rates}
                with (output_dir / TRAIN_LOG_NAME).open("a") as log:
                    log.write(json.dumps(record) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if state.step % args.logging_steps == 0 or last:
                logs = {"train/loss": sum(window) / len(window), "train/epoch": state.epoch}
                accelerator.log({**logs, **{f"train/lr/{k}": v for k, v in learning_rates.items()}}, step=state.step)
                window.clear()
            if args.eval_strategy != "no" and (state.step % eval_steps == 0 or last):  # select on validation only
                validation = evaluate_on(network, "validation", f"validation @ step {state.step}")
                accelerator.log(scalars("validation", validation), step=state.step)
                if not streamed:  # a stream's videos are inside its shards: no files to draw
                    log_worst_queries(
                        accelerator, evaluate, splits["validation"], state.step, args.log_gallery_queries
                    )
                value = selection.value(validation)
                if selection.is_better(value, state.best_metric):
                    state.best_metric, state.best_step, state.best_validation = value, state.step, validation
                    if accelerator.is_main_process:
                        save_model(network, processor, output_dir / BEST_DIR)
                    accelerator.wait_for_everyone()
                model.train()
            if state.step % save_steps == 0 or last:
                state.train_time_s = time.time() - started
                state.data_errors, state.skipped_batches = run_data_report(errors, skipped, earlier, as_dict=True)
                save_checkpoint(accelerator, state, train_loader if streamed else None, args.save_total_limit)
            stopped = args.stop_after_steps is not None and state.step >= args.stop_after_steps
            if last or stopped:
                break
        else:
            state.epoch, state.batches_in_epoch = state.epoch + 1, 0
    bar.close()
    errors, skipped = run_data_report(errors, skipped, earlier)
    if errors.count or errors.partial:
        accelerator.print(str(errors))
    if skipped:
        accelerator.print(f"batches skipped (not trained on): {dict(skipped)}")
    if stopped:
        accelerator.print(f"stopped after step {state.step} (stop_after_steps)")
        accelerator.end_training()
        return {"stopped_at": state.step}

    # The selected weights, evaluated once on test, saved with their card and the run's metrics.
    if args.load_best_model_at_end and state.best_step is not None:
        load_weights(network, output_dir / BEST_DIR)
    test = evaluate_on(
        network, "test", f"test (step {state.best_step if args.load_best_model_at_end else state.step})"
    )
    accelerator.log(scalars("test", test), step=state.step)
    metrics = {
        **summary, "train_time_s": round(time.time() - started, 1), "steps": state.step,
        "selection": {"metric": args.metric_for_best_model, "split": data_args.validation_split,
                      "best_step": state.best_step, "best_value": state.best_metric},
        "zero_shot": state.zero_shot, "validation": state.best_validation, "test": test,
        "data_errors": errors.to_dict(), "skipped_batches": dict(skipped),
    }  # fmt: skip
    if accelerator.is_main_process:
        save_model(network, processor, output_dir)
        card = card_facts(metrics, args, dataset_name, data_args.test_split, accelerator.mixed_precision)
        if args.card_gallery_queries > 0 and not streamed:  # the test captions ranked worst: a picture the card embeds
            card["gallery"] = CARD_GALLERY_NAME
            worst_queries_gallery(
                evaluate.last_encoded, splits["test"]["caption"], output_dir / card["gallery"],
                num_queries=args.card_gallery_queries, k=3, backend=data_args.video_backend,
            )  # fmt: skip
        if model_args.method == "full_finetune":  # a standalone CLIPModel folder: tokenizer and image processor too
            tokenizer.save_pretrained(output_dir)
            if (Path(base_name) / "preprocessor_config.json").is_file():
                shutil.copyfile(Path(base_name) / "preprocessor_config.json", output_dir / "preprocessor_config.json")
        else:
            write_model_card(output_dir, network.active_peft_config, **card)
        (output_dir / METRICS_NAME).write_text(json.dumps(metrics, indent=1) + "\n")
        accelerator.print(f"saved {model_args.method} to {output_dir} with {METRICS_NAME}")
        if args.push_to_hub:
            push(network, processor, output_dir, args.hub_model_id or output_dir.resolve().name, card, args)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def model_selection(args: TrainArguments, data_args: DataArguments, columns=None) -> ModelSelection:
    """The validation criterion that keeps the best step (`metric_for_best_model`, `greater_is_better`), checked
    against what the evaluation will report (and the validation split's `columns`, once loaded)."""
    try:
        selection = ModelSelection.parse(args.metric_for_best_model)
        selection.check(columns=columns, subset_columns=data_args.subset_columns, twin_column=data_args.twin_column)
    except ValueError as err:
        raise ValueError(f"metric_for_best_model={args.metric_for_best_model!r}: {err}") from None
    return replace(selection, greater_is_better=args.greater_is_better)


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


def checkpoint_folders(output_dir: str | Path) -> list[Path]:
    """output_dir's checkpoint folders (complete or not), oldest first."""
    folders = Path(output_dir, "checkpoints").glob("checkpoint_*")
    return sorted((p for p in folders if p.name.split("_")[-1].isdigit()), key=lambda p: int(p.name.split("_")[-1]))


def find_checkpoint(args: TrainArguments, warn: bool = True) -> Path | None:
    """The checkpoint to resume from (a folder, or `last`: output_dir's newest complete checkpoint whose files are
    intact), or None for a fresh run, which an output_dir holding checkpoints only gets with overwrite_output_dir.
    `last` skips a damaged or incomplete newer checkpoint with a warning naming what is wrong (11.16)."""
    folders = checkpoint_folders(args.output_dir)
    if args.resume_from_checkpoint in ("last", "latest", "true", "True"):
        passed = []
        for folder in reversed(folders):
            problems = checkpoint_problems(folder)
            if not problems:
                if passed and warn:
                    warnings.warn(
                        f"resume_from_checkpoint=last: {'; '.join(passed)}. Falling back to {folder}", stacklevel=2
                    )
                return folder
            passed.append(f"{folder} is not usable ({'; '.join(problems)})")
        raise FileNotFoundError(
            f"resume_from_checkpoint=last but {args.output_dir}/checkpoints holds no complete, intact checkpoint"
            + (f": {'; '.join(passed)}" if passed else "")
        )
    if args.resume_from_checkpoint:
        if problems := checkpoint_problems(Path(args.resume_from_checkpoint)):
            raise ValueError(
                f"cannot resume from {args.resume_from_checkpoint}: {'; '.join(problems)}. Name another checkpoint, "
                "or use --resume_from_checkpoint last (the newest intact one)"
            )
        return Path(args.resume_from_checkpoint)
    if any((p / SEAL_FILE).is_file() for p in folders) and not args.overwrite_output_dir:
        raise FileExistsError(
            f"{args.output_dir} already holds checkpoints of a run; continue it with --resume_from_checkpoint last or "
            "start afresh with --overwrite_output_dir true"
        )
    return None


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def seal_checkpoint(folder: Path) -> None:
    """Record the size and SHA-256 of every file of a complete checkpoint, in SEAL_FILE, written last (and atomically):
    a checkpoint without it was interrupted while saving; one whose files differ from it was damaged afterwards."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SEAL_FILE)
    record = {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": file_digest(p)} for p in files}
    partial = folder / f".{SEAL_FILE}.partial"
    partial.write_text(json.dumps({"files": record}, indent=1) + "\n")
    os.replace(partial, folder / SEAL_FILE)


def checkpoint_problems(folder: Path) -> list[str]:
    """What makes `folder` unusable as a checkpoint (empty: complete and intact): no seal (not a checkpoint, or one
    interrupted while saving), or a file missing, of another size, or with other content than the seal records."""
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    if not (folder / SEAL_FILE).is_file():
        return [f"incomplete: no {SEAL_FILE} (the run stopped while saving it, or it is not a checkpoint)"]
    try:
        recorded = json.loads((folder / SEAL_FILE).read_text())["files"]
    except (ValueError, KeyError, TypeError) as err:
        return [f"{SEAL_FILE} is unreadable ({err})"]
    problems = []
    for name, facts in recorded.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != facts["size"]:
            problems.append(f"{name} has {path.stat().st_size} bytes, {facts['size']} when saved (truncated?)")
        elif file_digest(path) != facts["sha256"]:
            problems.append(f"{name} differs from what was saved (SHA-256 mismatch: overwritten or zeroed?)")
    return problems


def save_checkpoint(accelerator: Accelerator, state: RunState, stream_loader, keep: int | None) -> Path:
    """checkpoints/checkpoint_<step>: Accelerate's state (weights, optimizer, scheduler, sampler, RNG, run state),
    each process' position in its stream (a streamed source: `register_for_checkpointing` objects are saved by the
    main process only), then the seal; then the oldest complete checkpoints beyond `keep` are removed."""
    accelerator.project_configuration.iteration = state.step  # names it checkpoints/checkpoint_<step>
    folder = Path(accelerator.save_state())
    if stream_loader is not None:
        position = {"loader": stream_loader.state_dict(), "epoch": state.epoch, "batches": state.batches_in_epoch}
        partial = folder / f".{STREAM_STATE_FILE.format(rank=accelerator.process_index)}.partial"
        torch.save(position, partial)
        os.replace(partial, folder / STREAM_STATE_FILE.format(rank=accelerator.process_index))
    accelerator.wait_for_everyone()  # every process's files are in the folder before it is sealed
    if accelerator.is_main_process:
        seal_checkpoint(folder)
        rotate_checkpoints(folder.parent, keep)
    return folder


def rotate_checkpoints(checkpoints: Path, keep: int | None) -> None:
    """Keep the newest `keep` complete checkpoints (None or <= 0: all, as transformers' `rotate_checkpoints`). Done
    after the new one is sealed, as transformers does, not before it is written as Accelerate's `total_limit` does: a
    run killed while saving still has its previous checkpoint."""
    if keep is None or keep <= 0:
        return
    folders = checkpoint_folders(checkpoints.parent)
    complete = [p for p in folders if (p / SEAL_FILE).is_file()]
    newest = int(complete[-1].name.split("_")[-1]) if complete else -1
    leftovers = [p for p in folders if p not in complete and int(p.name.split("_")[-1]) < newest]
    for folder in complete[:-keep] + leftovers:
        shutil.rmtree(folder)


def load_stream_state(checkpoint: Path, loader, state: RunState, rank: int) -> None:
    """Put this process' stream where the checkpoint left it (its loader workers' positions, epoch, batches)."""
    path = checkpoint / STREAM_STATE_FILE.format(rank=rank)
    if not path.is_file():
        raise FileNotFoundError(
            f"{checkpoint} has no {path.name}: it was not written by a run on a streamed source with this process "
            "count"
        )
    position = torch.load(path, weights_only=False)  # written by save_checkpoint: plain Python containers
    try:
        loader.load_state_dict(position["loader"])
    except (ValueError, KeyError) as err:  # another shuffle_buffer, seed, world size or worker count
        raise ValueError(f"cannot resume the stream from {path}: {err}") from err
    state.epoch, state.batches_in_epoch = position["epoch"], position["batches"]


def run_identity(
    model_args, data_args, args, adapter_config, base_name: str, dataset_name: str, processes: int
) -> dict:
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


def start_output_dir(output_dir: Path, checkpoint: Path | None, step: int) -> None:
    """A fresh run removes an earlier run's checkpoints, best adapter and log (only now, every check passed); a
    resumed run drops the log lines and checkpoints after the step it resumes from (they are redone)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    log = output_dir / TRAIN_LOG_NAME
    if checkpoint is None:
        for folder in ("checkpoints", BEST_DIR, SAMPLES_DIR):
            shutil.rmtree(output_dir / folder, ignore_errors=True)
        log.unlink(missing_ok=True)
        return
    for later in checkpoint_folders(output_dir):
        if int(later.name.split("_")[-1]) > step:
            shutil.rmtree(later)
    keep_log_lines(log, step)


def keep_log_lines(log: Path, step: int) -> None:
    """Drop the lines of a JSON-lines log written after optimizer step `step` (a resumed run writes them again)."""
    if log.exists():
        lines = [line for line in log.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        log.write_text("".join(line + "\n" for line in lines))


def append_line(log: Path, record: dict[str, Any]) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def training_loader(rows, data_args: DataArguments, args: TrainArguments, sampling, transform, collator, accelerator):
    """The training (video, caption) pairs with `train_num_frames` frames, their frame jitter a function of (seed,
    epoch, sample), and the loader: whole batches (a contrastive batch needs its negatives: the last, incomplete batch
    of an epoch is dropped) in an order Accelerate's seedable sampler makes a function of (data_seed, epoch). A
    resumed run sees what the uninterrupted run saw. A streamed source: `streaming_loader`."""
    try:
        sampling = replace(sampling, num_frames=data_args.train_num_frames or sampling.num_frames)
    except ValueError as err:
        raise ValueError(
            f"train_num_frames={data_args.train_num_frames} does not fit the frame sampling: {err}"
        ) from err
    if data_args.streamed:
        return streaming_loader(rows, data_args, args, sampling, transform, collator, accelerator)
    dataset = VideoTextDataset(
        rows, sampling, transform, train=True, backend=data_args.video_backend, on_error=data_args.on_error,
        decode_timeout=data_args.decode_timeout or None, cache=data_args.frame_cache,
    )  # fmt: skip
    items = EpochSeededDataset(dataset, args.seed)
    if data_args.group_by_column:  # hard negatives in one global batch, the order a function of (data_seed, epoch)
        if data_args.group_by_column not in rows.column_names:
            raise ValueError(
                f"group_by_column {data_args.group_by_column!r} is not a column of the training split "
                f"({rows.column_names})"
            )
        sampler = GroupedBatchSampler(
            rows[data_args.group_by_column], args.per_device_train_batch_size,
            num_processes=accelerator.num_processes, seed=args.data_seed,
        )  # fmt: skip
        loader = torch.utils.data.DataLoader(
            items, batch_sampler=sampler, num_workers=args.dataloader_num_workers, collate_fn=collator
        )
        return items, loader
    loader = torch.utils.data.DataLoader(
        items, batch_size=args.per_device_train_batch_size, shuffle=True, drop_last=True,
        num_workers=args.dataloader_num_workers, collate_fn=collator,
    )  # fmt: skip
    return items, loader


def streaming_loader(
    samples, data_args: DataArguments, args: TrainArguments, sampling, transform, collator, accelerator
):
    """This process' share of a streamed training split (its shards, split again over its DataLoader workers: each
    sample once per epoch across the job), shuffled per epoch from data_seed (shard order and windows of
    shuffle_buffer samples; frame jitter and the caption drawn among several too), in a torchdata StatefulDataLoader
    whose position `save_checkpoint` keeps per process. Not passed through `accelerator.prepare`, whose default for
    an IterableDataset lets process 0 read every batch. An epoch's last batch per worker may be smaller (no sample is
    dropped); `usable` skips a contrastive batch of one pair."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    warnings.filterwarnings("ignore", message="'set_vital' is deprecated")  # torchdata 0.11 on torch 2.13, harmless
    dataset = StreamingVideoTextDataset(
        samples, sampling, transform, train=True, shuffle_buffer=data_args.shuffle_buffer, seed=args.data_seed,
        rank=accelerator.process_index, world_size=accelerator.num_processes, backend=data_args.video_backend,
        on_error=data_args.on_error, decode_timeout=data_args.decode_timeout or None,
    )  # fmt: skip
    workers = max(1, args.dataloader_num_workers)
    if dataset.num_shards < workers:
        warnings.warn(
            f"process {accelerator.process_index} reads {dataset.num_shards} shard(s) with {workers} DataLoader "
            "worker(s): the workers without a shard stay idle (write at least processes × workers shards)",
            stacklevel=2,
        )
    loader = StatefulDataLoader(
        dataset, batch_size=args.per_device_train_batch_size, num_workers=args.dataloader_num_workers,
        collate_fn=collator,
    )  # fmt: skip
    return dataset, loader


def epoch_batches(items, loader, state: RunState, accelerator: Accelerator, streamed: bool, errors, skipped):
    """The batches this process trains on in epoch `state.epoch`, from where the run stands (`state.batches_in_epoch`
    counts the batches read). Manifest rows: Accelerate's prepared loader, its order a function of (data_seed,
    epoch), the batches a resumed run had read skipped. A stream: the loader's own resumable position, batches moved
    to the device; each process goes through its shards at its own pace. Batches `usable` refuses are read, counted
    and skipped; an epoch of which none could be trained on is an error (it would repeat forever)."""
    items.set_epoch(state.epoch)  # frame jitter (a stream: its order too): a function of seed, epoch and sample
    batches = loader
    if not streamed:
        loader.set_epoch(state.epoch)  # data order: a function of data_seed and epoch
        GroupedBatchSampler.set_loader_epoch(loader, state.epoch)
        if state.batches_in_epoch:  # resumed inside an epoch: skip what the checkpointed run had read
            batches = accelerator.skip_first_batches(loader, state.batches_in_epoch)
            batches.set_epoch(state.epoch)
    resumed_at, trained = state.batches_in_epoch, 0
    for batch in batches:
        state.batches_in_epoch += 1
        if usable(batch, errors, skipped, accelerator, streamed):
            trained += 1
            yield {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in batch.items()}
    read = state.batches_in_epoch - resumed_at
    if trained == 0 and (read > 0 or resumed_at == 0):  # (a run resumed at an epoch's very end reads nothing)
        raise RuntimeError(
            f"process {accelerator.process_index} could train on no batch of epoch {state.epoch}: "
            + (f"{read} read, skipped {dict(skipped)}; {errors}" if read else "its data yielded no sample")
        )


def usable(
    batch: dict[str, Any], errors: DataErrorSummary, skipped: Counter, accelerator: Accelerator, streamed: bool
) -> bool:
    """Count a batch's failed and partly decodable samples, and say whether to train on it. Skipped (and counted in
    `skipped`): a batch whose samples all failed (with several processes only from a stream, whose processes go
    through their shards independently; otherwise one process skipping would leave the others waiting in the loss's
    all-gather: refused), and with one process a batch of one pair (11.14: its contrastive loss is constant)."""
    errors.record_batch(batch)
    size = batch.get("batch_size", 1)
    if size == 0 and accelerator.num_processes > 1 and not streamed:
        raise RuntimeError(
            f"every sample of a training batch failed to load on process {accelerator.process_index} "
            f"({[e['video'] for e in batch['errors']]}); with several processes this cannot be skipped. Fix or remove "
            "the files (or build a frame cache)."
        )
    if size == 0 or (size == 1 and accelerator.num_processes == 1):
        skipped["all_failed" if size == 0 else "single_pair"] += 1
        return False
    return True


def run_data_report(errors: DataErrorSummary, skipped: Counter, earlier: tuple, as_dict: bool = False):
    """The run's failed and partly decodable samples and skipped batches: every process's (a collective: all call
    it), plus what the run reported before it was resumed (`earlier`, from the checkpoint)."""
    errors = DataErrorSummary.merged([earlier[0], *gather_object([errors])])
    skipped = sum(gather_object([skipped]), Counter(earlier[1]))
    return (errors.to_dict(), dict(skipped)) if as_dict else (errors, skipped)


def rows_of(data) -> int | None:
    """A split's row count (None for a stream)."""
    return len(data) if hasattr(data, "__len__") else None


def save_model(network, processor: VideoTextProcessor, folder: Path) -> None:
    """The trained weights and, for an adapter, beside them the processor that prepares a video and a caption exactly
    as this run evaluated them (`VideoTextProcessor.from_pretrained(folder)`: one id is all a user needs). A fine-tuned
    CLIPModel folder (full_finetune) gets none: transformers' own processors would read its processor_config.json."""
    network.save_pretrained(str(folder))
    if hasattr(network, "peft_config"):
        processor.save_pretrained(folder)


def log_worst_queries(accelerator: Accelerator, evaluate: RetrievalEvaluator, data, step: int, count: int) -> None:
    """A validation's `count` worst-ranked captions (each with its top hits and its own video) as one TensorBoard
    image, when the tensorboard tracker is on."""
    if count <= 0 or not accelerator.is_main_process or "tensorboard" not in {t.name for t in accelerator.trackers}:
        return
    image = worst_queries_gallery(
        evaluate.last_encoded, data["caption"], num_queries=count, k=3, backend=evaluate.backend
    )
    writer = accelerator.get_tracker("tensorboard", unwrap=True)
    writer.add_image("validation/worst_queries", np.asarray(image), step, dataformats="HWC")


def load_weights(network, folder: Path) -> None:
    """Put the weights saved in `folder` (the best validation step's) back into `network`."""
    if not hasattr(network, "peft_config"):  # full_finetune: a whole CLIPModel folder
        network.clip.load_state_dict(CLIPModel.from_pretrained(folder).state_dict())
    elif unexpected := set_peft_model_state_dict(
        network, load_file(folder / "adapter_model.safetensors")
    ).unexpected_keys:
        raise RuntimeError(f"{folder}: unexpected adapter keys {unexpected[:5]}")


def scalars(prefix: str, metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics dict as `prefix/...` tracker scalars."""
    return {k: float(v) for k, v in flatten_metrics({prefix: metrics}).items() if isinstance(v, (int, float))}


def card_facts(metrics, args: TrainArguments, dataset_name: str, test_split: str, precision: str) -> dict[str, Any]:
    """`write_model_card`'s arguments: the run's setup and its test results."""
    selection = metrics["selection"]
    training = {
        "Training data": dataset_name, "Optimizer steps": metrics["steps"],
        "Selected step": f"{selection['best_step']} ({selection['metric']} on split {selection['split']})",
        "Global batch size (all processes, after accumulation)": metrics["global_batch_size"],
        "Learning rate": args.learning_rate, "Schedule": f"{args.lr_scheduler_type}, warmup {args.warmup_steps}",
        "Mixed precision": precision, "Seed": args.seed,
    }  # fmt: skip
    return {"adapter_id": args.hub_model_id, "license": args.license, "metrics": metrics["test"],
            "dataset": dataset_name, "split": test_split, "training": training}  # fmt: skip


def push(network, processor, output_dir: Path, repo_id: str, card: dict[str, Any], args: TrainArguments) -> None:
    """Upload the final model: an adapter with its processor, card and the card's picture (`push_adapter_to_hub`), or
    the fine-tuned CLIPModel."""
    if hasattr(network, "peft_config"):
        files = [output_dir / card["gallery"]] if card.get("gallery") else []
        push_adapter_to_hub(
            network, repo_id, card={**card, "adapter_id": repo_id}, processor=processor, files=files,
            private=args.hub_private_repo,
        )  # fmt: skip
    else:
        network.push_to_hub(repo_id, private=args.hub_private_repo)
    print(f"pushed to the Hub: {repo_id}")


if __name__ == "__main__":
    main()
