"""Evaluate a text-video retrieval model: a peft_video adapter (folder or Hub id), a fine-tuned CLIPModel folder
(`full_finetune` output), or the zero-shot baseline of a base CLIPModel.

    accelerate launch examples/evaluate.py --adapter_name_or_path outputs/demo_tfvl [--split test] \\
        [--base_model FOLDER_OR_HUB_ID] [--dsl_temperature 0.01] [--output_file results.json]
    accelerate launch examples/evaluate.py --base_model openai/clip-vit-base-patch32 --config my_data.yaml  # zero-shot
    accelerate launch examples/evaluate.py --adapter_name_or_path outputs/demo_tfvl --dataset shards \
        --shards data/offline_world/shards --split test                     # streamed: each process its own shards

The adapter goes onto the base model named by its `adapter_config.json` (`base_model_name_or_path`) unless
`--base_model` says otherwise; its frame count, sampling and resolution come from the same file. Every video of the
split is encoded once and every caption once (video embeddings never depend on a text), sharded over the processes
and gathered with `gather_for_metrics`, so each sample counts exactly once. A streamed split (`--dataset shards` or
`hub`) is read by each process from its own shards, so each video is encoded by exactly one process.

Protocol (multi-caption): text→video ranks each caption's own video among all videos of the split; video→text follows
`--video_to_text_protocol` (by default the one papers report on the public benchmark the data comes from, else
collaborative_experts; the output says which). Reported: R@1/5/10 (percent), MdR, MnR in both directions, with ties
counted against the ground truth (`peft_video.metrics`, docs/metrics.md). With `--dsl_temperature` the dual-softmax
numbers are added under `dsl`, beside the raw ones, never instead.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from arguments import EvalArguments, parse_args

from peft_video.data import DEFAULT_NUM_FRAMES, FrameSampling
from peft_video.evaluation import RetrievalEvaluator, summary_line
from peft_video.loading import (
    load_frame_transform,
    load_tokenizer,
    load_trained_model,
    video_to_text_protocol,
)
from peft_video.metrics import TIE_POLICIES

PROTOCOL = (
    "text->video: each caption ranks its own video among all videos of the split; video->text: {video_to_text}; a "
    "wrong candidate with exactly the ground truth's score counts as ranked above it (tie_policy)."
)
VIDEO_TO_TEXT = {
    "collaborative_experts": "each video ranks the best-ranked of its own captions among all captions "
    "(collaborative_experts protocol)",
    "clip4clip": "each video ranks its own caption set, scored by its best caption, among the videos' caption sets "
    "(clip4clip protocol)",
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse `[--config FILE] [--field value ...]`, evaluate, write the JSON result; returns it."""
    (args,) = parse_args((EvalArguments,), argv, description=__doc__)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    if args.tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {TIE_POLICIES}, got {args.tie_policy!r}")
    accelerator = Accelerator(mixed_precision="bf16" if args.bf16 else "fp16" if args.fp16 else None)
    manifest, dataset_name = args.prepare(accelerator)  # a streamed source: where its shards are
    data = args.load_split(manifest, args.split, "evaluation", args.max_eval_samples)
    protocol = video_to_text_protocol(args.video_to_text_protocol, dataset_name, data)
    loaded = load_trained_model(args.adapter_name_or_path, args.base_model, args.num_frames)
    model = loaded.model.to(accelerator.device).eval()
    config = loaded.adapter_config
    clip = model.clip if hasattr(model, "clip") else model.get_base_model()
    image_size = clip.config.vision_config.image_size
    if config is not None and args.num_frames is not None and args.num_frames > config.num_frames:
        raise ValueError(f"--num_frames {args.num_frames} exceeds the adapter's num_frames {config.num_frames}")
    frames = {"num_frames": args.num_frames} if args.num_frames else {}
    sampling = FrameSampling.from_config(config or {"num_frames": DEFAULT_NUM_FRAMES}, image_size=image_size, **frames)
    max_text_length = args.max_text_length or (config.max_text_length if config is not None else 32)
    evaluate = RetrievalEvaluator(
        sampling, load_frame_transform(loaded.base_model, image_size),
        load_tokenizer(args.tokenizer_name or loaded.base_model), max_text_length=max_text_length,
        batch_size=args.per_device_eval_batch_size, num_workers=args.dataloader_num_workers,
        backend=args.video_backend, decode_timeout=args.decode_timeout or None, subset_columns=args.subset_columns,
        twin_column=args.twin_column, tie_policy=args.tie_policy, dsl_temperature=args.dsl_temperature,
        progress=not args.disable_tqdm, video_to_text_protocol=protocol,
    )  # fmt: skip
    metrics = evaluate(model, data, accelerator)
    accelerator.print(f"{loaded.method} on {dataset_name} / {args.split}: {summary_line(metrics)}")
    result = {
        "model": args.adapter_name_or_path or loaded.base_model, "method": loaded.method,
        "base_model": loaded.base_model, "dataset": dataset_name, "manifest": str(manifest), "split": args.split,
        "protocol": PROTOCOL.format(video_to_text=VIDEO_TO_TEXT[protocol]), "video_to_text_protocol": protocol,
        "frame_sampling": sampling.to_dict(), "max_text_length": max_text_length,
        "num_processes": accelerator.num_processes, "metrics": metrics, "arguments": asdict(args),
    }  # fmt: skip
    output = args.output_file
    if output is None and args.adapter_name_or_path and Path(args.adapter_name_or_path).is_dir():
        output = str(Path(args.adapter_name_or_path) / f"eval_{args.split}.json")
    gallery = args.gallery_file or (str(Path(output).with_name(f"{Path(output).stem}_worst.png")) if output else None)
    # the captions it ranks worst, to look at (a streamed split's are drawn from their shards' bytes)
    if accelerator.is_main_process and args.gallery_queries and gallery:
        evaluate.worst_queries_gallery(data, gallery, num_queries=args.gallery_queries)
        result["gallery"] = gallery
        print(f"wrote {gallery}")
    if accelerator.is_main_process:
        if output:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            Path(output).write_text(json.dumps(result, indent=1) + "\n")
            print(f"wrote {output}")
        else:
            print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
