"""Train a peft_video adapter (or a baseline) for text-video retrieval with Accelerate.

    accelerate launch examples/train.py --config examples/configs/demo_tfvl.yaml [--field value ...]
    accelerate launch examples/train.py examples/configs/demo_tfvl.yaml          # the file alone, as in transformers
    accelerate launch examples/train.py --config examples/configs/demo_tfvl_shards.yaml  # streamed from shards

`main` reads top to bottom: check every argument before anything is loaded or deleted; load the splits (manifest
rows, or streams of shards that each process reads its own part of), the base model and the method; evaluate the
zero-shot baseline; train (Accelerate: mixed precision, gradient accumulation, `save_state` checkpoints, sealed with
each file's size and hash, that `--resume_from_checkpoint last` continues exactly); keep the adapter of the best
validation step (the test split never selects); evaluate it once on test; save it with its model card and
metrics.json, and push it. The fields and their checks are in `arguments.py` (names of `transformers.TrainingArguments`
where it has one) and examples/README.md; the reusable pieces in the library: `peft_video.checkpointing` (sealed
checkpoints), `peft_video.data.loaders` (resumable, grouped or streamed training batches), `peft_video.evaluation`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from arguments import (
    ALL_ARGUMENTS,
    TrainArguments,
    check_arguments,
    check_contrastive_batch,
    model_selection,
    parse_args,
    run_identity,
)
from tqdm.auto import tqdm
from transformers import get_scheduler

from peft_video.checkpointing import (
    append_line,
    find_checkpoint,
    keep_log_lines,
    keep_trainable_weights,
    load_stream_state,
    refuse_another_run,
    save_checkpoint,
    start_output_dir,
)
from peft_video.data import FrameSampling, VideoTextCollator
from peft_video.data.loaders import TrainingBatches, streaming_training_loader, training_loader, training_sampling
from peft_video.evaluation import RetrievalEvaluator, summary_line
from peft_video.hub import push_adapter_to_hub, write_model_card
from peft_video.loading import (
    build_model,
    load_base_model,
    load_frame_transform,
    load_tokenizer,
    load_trained_weights,
    save_trained_model,
    video_to_text_protocol,
)
from peft_video.metrics import flatten_metrics
from peft_video.optimization import count_parameters, parameter_groups
from peft_video.processing import VideoTextProcessor

RUN_STATE_INDEX = 1  # registered after the scheduler, the run state is the last file save_state writes
TRAIN_LOG_NAME, METRICS_NAME, BEST_DIR = "train_log.jsonl", "metrics.json", "best_adapter"
SAMPLES_DIR = "samples"  # log_samples: samples/rank<r>.jsonl, the video ids of every batch each process trained on
CARD_GALLERY_NAME = "worst_queries.png"  # beside the card, which embeds it


@dataclass
class RunState:
    """The one state of a run: where it is and the best validation result so far. Registered for checkpointing, so
    `save_state` / `load_state` keep it with the weights, optimizer, scheduler, sampler and RNG states. `identity`
    is what a checkpoint must share with this run to continue it (`arguments.run_identity`)."""

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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Check, load, evaluate zero-shot, train, select on validation, test once, save; returns metrics.json's data."""
    model_args, data_args, args = parse_args(ALL_ARGUMENTS, argv, description=__doc__)  # each group checks itself
    adapter_config = check_arguments(model_args, data_args, args)
    output_dir, streamed = Path(args.output_dir), data_args.streamed
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision="bf16" if args.bf16 else "fp16" if args.fp16 else None,  # None: accelerate launch's setting
        log_with=args.trackers() or None,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=args.logging_dir or str(output_dir / "logs"),
            automatic_checkpoint_naming=True,  # no total_limit: save_checkpoint rotates once the new one is sealed
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.data_seed),
    )  # fmt: skip
    if model_args.method != "zero_shot":
        check_contrastive_batch(args, accelerator.num_processes)
    checkpoint = find_checkpoint(
        output_dir, args.resume_from_checkpoint, overwrite_output_dir=args.overwrite_output_dir,
        warn=accelerator.is_main_process,
    )  # fmt: skip
    set_seed(args.seed)

    # Data first (a bad split fails in seconds), then the base model, the method and how both are evaluated.
    manifest, dataset_name = data_args.prepare(accelerator)  # a streamed source: where its shards are
    roles = {"train": data_args.train_split, "validation": data_args.validation_split, "test": data_args.test_split}
    if model_args.method == "zero_shot":
        del roles["train"]
    limits = {role: data_args.max_train_samples if role == "train" else data_args.max_eval_samples for role in roles}
    splits = {role: data_args.load_split(manifest, name, role, limits[role]) for role, name in roles.items()}
    protocol = video_to_text_protocol(data_args.video_to_text_protocol, dataset_name, splits["validation"])
    # a stream's columns are its raw samples' (key, video, ...): the metadata columns that twin accuracy and subsets
    # read are known once it is evaluated, so the names are checked then (ModelSelection.resolve)
    columns = None if streamed else splits["validation"].column_names
    selection = model_selection(args, data_args, columns=columns)
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
        "splits": {role: {"name": roles[role], "rows": len(data) if hasattr(data, "__len__") else None}
                   for role, data in splits.items()},
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

    # Training data (whole contrastive batches, resumable), optimizer and schedule, prepared by Accelerate.
    collator = VideoTextCollator(tokenizer, max_text_length=data_args.max_text_length)
    train_sampling = training_sampling(sampling, data_args.train_num_frames)
    decoding = {
        "backend": data_args.video_backend, "on_error": data_args.on_error,
        "decode_timeout": data_args.decode_timeout or None, "num_workers": args.dataloader_num_workers,
    }  # fmt: skip
    if streamed:  # each process reads its own shards (docs/shards.md, "Across machines"): not through prepare
        train_items, train_loader = streaming_training_loader(
            splits["train"], train_sampling, transform, collator, batch_size=args.per_device_train_batch_size,
            data_seed=args.data_seed, process_index=accelerator.process_index, num_processes=processes,
            shuffle_buffer=data_args.shuffle_buffer, **decoding,
        )  # fmt: skip
    else:
        train_items, train_loader = training_loader(
            splits["train"], train_sampling, transform, collator, batch_size=args.per_device_train_batch_size,
            seed=args.seed, data_seed=args.data_seed, num_processes=processes,
            group_by_column=data_args.group_by_column, frame_cache=data_args.frame_cache, **decoding,
        )  # fmt: skip
    groups = parameter_groups(
        model, learning_rate=args.learning_rate, other_learning_rate=model_args.backbone_learning_rate,
        weight_decay=args.weight_decay,
    )  # fmt: skip
    optimizer = torch.optim.AdamW(groups, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    updates_per_epoch = None  # a stream's length is unknown: max_steps (checked)
    if streamed:
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
    state = RunState(
        identity=run_identity(model_args, data_args, args, adapter_config, base_name, dataset_name, processes)
    )
    accelerator.register_for_checkpointing(scheduler, state)  # the scheduler is stepped by hand, once per update
    keep_trainable_weights(accelerator, model)
    if checkpoint is not None:
        refuse_another_run(checkpoint, state.identity, index=RUN_STATE_INDEX)
        accelerator.load_state(str(checkpoint), strict=False)  # strict=False: the frozen base model is not in it
        if streamed:
            position = load_stream_state(checkpoint, train_loader, accelerator.process_index)
            state.epoch, state.batches_in_epoch = position["epoch"], position["batches"]
        accelerator.print(f"resumed from {checkpoint} at step {state.step}, epoch {state.epoch}")
    if accelerator.is_main_process:
        start_output_dir(
            output_dir, checkpoint, state.step, fresh_removes=(BEST_DIR, SAMPLES_DIR), logs=(TRAIN_LOG_NAME,)
        )
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
    batches = TrainingBatches(
        train_items, train_loader, accelerator, streamed=streamed, earlier_errors=state.data_errors,
        earlier_skipped=state.skipped_batches,
    )  # fmt: skip
    losses, window, stopped = [], [], False
    started = time.time() - state.train_time_s
    hide = args.disable_tqdm or not accelerator.is_main_process
    bar = tqdm(total=max_steps, initial=state.step, desc=f"training {model_args.method}", disable=hide)
    model.train()
    while state.step < max_steps and not stopped:
        for batch in batches.epoch(state):
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
                append_line(output_dir / TRAIN_LOG_NAME, record)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if state.step % args.logging_steps == 0 or last:
                logs = {"train/loss": sum(window) / len(window), "train/epoch": state.epoch}
                accelerator.log({**logs, **{f"train/lr/{k}": v for k, v in learning_rates.items()}}, step=state.step)
                window.clear()
            if args.eval_strategy != "no" and (state.step % eval_steps == 0 or last):  # select on validation only
                validation = evaluate_on(network, "validation", f"validation @ step {state.step}")
                accelerator.log(scalars("validation", validation), step=state.step)
                log_worst_queries(accelerator, evaluate, splits["validation"], state.step, args.log_gallery_queries)
                value = selection.value(validation)
                if selection.is_better(value, state.best_metric):
                    state.best_metric, state.best_step, state.best_validation = value, state.step, validation
                    if accelerator.is_main_process:
                        save_trained_model(network, output_dir / BEST_DIR, processor)
                    accelerator.wait_for_everyone()
                model.train()
            if state.step % save_steps == 0 or last:
                state.train_time_s = time.time() - started
                errors, skipped = batches.report()
                state.data_errors, state.skipped_batches = errors.to_dict(), dict(skipped)
                save_checkpoint(
                    accelerator, state.step, stream_position=batches.stream_position(state), keep=args.save_total_limit
                )
            stopped = args.stop_after_steps is not None and state.step >= args.stop_after_steps
            if last or stopped:
                break
        else:
            state.epoch, state.batches_in_epoch = state.epoch + 1, 0
    bar.close()
    errors, skipped = batches.report()
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
        load_trained_weights(network, output_dir / BEST_DIR)
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
        save_trained_model(network, output_dir, processor)
        card = card_facts(metrics, args, dataset_name, data_args.test_split, accelerator.mixed_precision)
        if args.card_gallery_queries > 0:  # the test captions ranked worst: a picture the card embeds
            card["gallery"] = CARD_GALLERY_NAME
            evaluate.worst_queries_gallery(
                splits["test"], output_dir / card["gallery"], num_queries=args.card_gallery_queries, k=3
            )
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


def scalars(prefix: str, metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics dict as `prefix/...` tracker scalars."""
    return {k: float(v) for k, v in flatten_metrics({prefix: metrics}).items() if isinstance(v, (int, float))}


def log_worst_queries(accelerator: Accelerator, evaluate: RetrievalEvaluator, data, step: int, count: int) -> None:
    """A validation's `count` worst-ranked captions (each with its top hits and its own video) as one TensorBoard
    image, when the tensorboard tracker is on."""
    if count <= 0 or not accelerator.is_main_process or "tensorboard" not in {t.name for t in accelerator.trackers}:
        return
    image = evaluate.worst_queries_gallery(data, num_queries=count, k=3)
    writer = accelerator.get_tracker("tensorboard", unwrap=True)
    writer.add_image("validation/worst_queries", np.asarray(image), step, dataformats="HWC")


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
