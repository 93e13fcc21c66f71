"""Evaluate a text-video retrieval model: a peft_video adapter (folder or Hub id), a fine-tuned CLIPModel folder
(`full_finetune` output), or the zero-shot baseline of a base CLIPModel.

    accelerate launch examples/evaluate.py --adapter_name_or_path outputs/demo_tfvl [--split test] \\
        [--base_model FOLDER_OR_HUB_ID] [--dsl_temperature 0.01] [--output_file results.json]
    accelerate launch examples/evaluate.py --base_model openai/clip-vit-base-patch32 --config my_data.yaml  # zero-shot

The adapter goes onto the base model named by its `adapter_config.json` (`base_model_name_or_path`) unless
`--base_model` says otherwise; its frame count, sampling and resolution come from the same file. Every video of the
split is encoded once and every caption once (video embeddings never depend on a text), sharded over the processes
and gathered with `gather_for_metrics`, so each sample counts exactly once.

Protocol (multi-caption): text→video ranks each caption's own video among all videos of the split; video→text ranks,
for each video, the best-ranked of its own captions among all captions. Reported: R@1/5/10 (percent), MdR, MnR in
both directions, with ties counted against the ground truth (`peft_video.metrics`, docs/metrics.md). With
`--dsl_temperature` the dual-softmax numbers are added under `dsl`, beside the raw ones, never instead.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_config import DataSourceArguments, parse_args  # noqa: E402

PROTOCOL = (
    "text->video: each caption ranks its own video among all videos of the split; video->text: each video ranks the "
    "best-ranked of its own captions among all captions (multi-caption protocol); a wrong candidate with exactly the "
    "ground truth's score counts as ranked above it (tie_policy)."
)


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
        default=None, metadata={"help": "Frames per video; default: the adapter's (12 without an adapter)."}
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
    mixed_precision: str = field(default="no", metadata={"help": "no, bf16 or fp16."})
    output_file: str | None = field(
        default=None, metadata={"help": "JSON output; default: <adapter folder>/eval_<split>.json, else stdout only."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})


def load_model(args: EvalArguments):
    """(model, adapter config or None, base model name, description) for `args`; every failure names the thing."""
    from peft import PeftConfig, PeftModel
    from train import load_base_model

    from peft_video.baselines import MeanPoolingCLIP

    source = args.adapter_name_or_path
    if source is None:
        if args.base_model is None:
            raise ValueError("give --adapter_name_or_path (an adapter) or --base_model (its zero-shot baseline)")
        clip, name = load_base_model(args.base_model)
        return MeanPoolingCLIP(clip, args.num_frames or 12), None, name, "zero_shot"
    folder = Path(source)
    if folder.is_dir() and not (folder / "adapter_config.json").is_file():
        if (folder / "config.json").is_file():  # a full fine-tuning result: a whole CLIPModel
            clip, name = load_base_model(str(folder), role="fine-tuned model")
            return MeanPoolingCLIP(clip, args.num_frames or 12), None, name, "full_finetune"
        raise FileNotFoundError(
            f"{folder} holds neither adapter_config.json (an adapter) nor config.json (a CLIPModel)"
        )
    try:
        config = PeftConfig.from_pretrained(source)
    except Exception as err:  # noqa: BLE001  (peft raises ValueError/OSError/HTTP errors alike)
        raise OSError(
            f"adapter {source!r} is neither a local folder with adapter_config.json nor a reachable Hub repository: "
            f"{err}"
        ) from err
    base = args.base_model or config.base_model_name_or_path
    if not base:
        raise ValueError(f"adapter {source!r} does not name its base model; pass --base_model")
    try:
        clip, name = load_base_model(base)
    except OSError as err:
        origin = "--base_model" if args.base_model else f"base_model_name_or_path in {source}'s adapter_config.json"
        raise OSError(
            f"the base model of adapter {source!r} cannot be found: {base!r} (from {origin}); pass --base_model "
            f"with a folder or Hub id of that CLIPModel. Cause: {err}"
        ) from err
    model = PeftModel.from_pretrained(clip, source)
    method = str(getattr(config.peft_type, "value", config.peft_type)).lower()
    return model, model.active_peft_config, name, method


def main(argv: list[str] | None = None) -> dict[str, Any]:
    (args,) = parse_args((EvalArguments,), argv, description=__doc__)
    return run(args)


def run(args: EvalArguments) -> dict[str, Any]:
    from accelerate import Accelerator
    from train import evaluate_split, frame_transform, load_split, load_tokenizer, prepare_manifest

    import peft_video  # noqa: F401  (registers the methods with peft)
    from peft_video.data import FrameSampling
    from peft_video.metrics import TIE_POLICIES

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    if args.tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {TIE_POLICIES}, got {args.tie_policy!r}")
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    manifest, dataset_name = prepare_manifest(args, accelerator)
    data = load_split(manifest, args.split, "evaluation", args.max_eval_samples)
    model, adapter_config, base_name, method = load_model(args)
    model = model.to(accelerator.device).eval()
    clip = model.clip if hasattr(model, "clip") else model.get_base_model()
    image_size = clip.config.vision_config.image_size
    if adapter_config is not None:
        if args.num_frames is not None and args.num_frames > adapter_config.num_frames:
            raise ValueError(
                f"--num_frames {args.num_frames} exceeds the adapter's num_frames {adapter_config.num_frames}"
            )
        sampling = FrameSampling.from_config(
            adapter_config, image_size=image_size, **({"num_frames": args.num_frames} if args.num_frames else {})
        )
        max_text_length = args.max_text_length or adapter_config.max_text_length
    else:
        sampling = FrameSampling(num_frames=args.num_frames or 12, image_size=image_size)
        max_text_length = args.max_text_length or 32
    tokenizer_source = args.tokenizer_name or (base_name if method != "full_finetune" else args.adapter_name_or_path)
    context = {
        "sampling": sampling,
        "transform": frame_transform(base_name, image_size),
        "tokenizer": load_tokenizer(tokenizer_source),
        "max_text_length": max_text_length,
        "eval_batch_size": args.per_device_eval_batch_size,
        "num_workers": args.dataloader_num_workers,
        "backend": args.video_backend,
        "decode_timeout": args.decode_timeout or None,
        "progress": not args.disable_tqdm,
        "subset_columns": args.subset_columns,
        "twin_column": args.twin_column,
        "dsl_temperature": args.dsl_temperature,
        "tie_policy": args.tie_policy,
    }
    metrics = evaluate_split(model, data, context, accelerator, f"{method} on {dataset_name} / {args.split}")
    result = {
        "model": args.adapter_name_or_path or base_name,
        "method": method,
        "base_model": base_name,
        "dataset": dataset_name,
        "manifest": str(manifest),
        "split": args.split,
        "protocol": PROTOCOL,
        "frame_sampling": sampling.to_dict(),
        "max_text_length": max_text_length,
        "num_processes": accelerator.num_processes,
        "metrics": metrics,
        "arguments": asdict(args),
    }
    output = args.output_file
    if output is None and args.adapter_name_or_path and Path(args.adapter_name_or_path).is_dir():
        output = str(Path(args.adapter_name_or_path) / f"eval_{args.split}.json")
    if accelerator.is_main_process:
        text = json.dumps(result, indent=1)
        if output:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            Path(output).write_text(text + "\n")
            print(f"wrote {output}")
        else:
            print(text)
    return result


if __name__ == "__main__":
    main()
