"""How far a half-precision base model moves each method's embeddings from the float32 model: the figures behind the
tolerance of the dtype tests (tests/test_method_common.py) and behind docs/methods/*.md "Half precision".

    python benchmarks/bench_half_precision.py --out benchmarks/results/half_precision_cpu.md

For every registered method variant (the registry's small test variants on the test suite's tiny CLIP, and each
method's default config on the ViT-B/32 shape, random weights), one float32 model with a perturbed ("trained") adapter
is saved; its adapter is then loaded onto the same base cast to fp16 and to bf16, with `autocast_adapter_dtype` True
(adapter in fp32) and False (adapter in the base dtype). Reported: the largest distance over the batch between the
unit-norm video embeddings (and text embeddings) of the half and the float32 model, in units of the dtype's unit
roundoff u (fp16 2^-11, bf16 2^-8), and the same for the frozen CLIP with mean pooling (adapter disabled) as the
yardstick: how much of the error the adapter adds to what CLIP itself loses in that dtype.
"""

from __future__ import annotations

import argparse
import copy
import platform
import tempfile
import time
from pathlib import Path

import torch

UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def perturb_adapter(model, seed: int = 0, scale: float = 0.02) -> None:
    """Move every adapter tensor away from its init, as training would (zero-initialised parts included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
                parameter.add_((scale * noise).to(parameter.device, parameter.dtype))


def embeddings(model, captions, videos) -> dict[str, torch.Tensor]:
    """Unit-norm video and text embeddings (float32, from the shared head), adapter on and off."""
    model.eval()
    out = {}
    with torch.no_grad():
        result = model(**captions, pixel_values=videos)
        out["video"], out["text"] = result.video_embeds, result.text_embeds
        with model.disable_adapter():
            result = model(**captions, pixel_values=videos)
        out["video_zero_shot"], out["text_zero_shot"] = result.video_embeds, result.text_embeds
    return out


def half_precision_errors(clip_config, config, *, frames: int, batch: int, seed: int = 0) -> list[dict]:
    """One row per (dtype, autocast_adapter_dtype): max row distance / u of each embedding."""
    from peft import PeftModel, get_peft_model

    from peft_video.testing import make_clip, random_captions, random_videos

    base = make_clip(clip_config, seed=seed)
    model = get_peft_model(copy.deepcopy(base), config)
    perturb_adapter(model, seed=seed)
    captions, videos = random_captions(clip_config, batch, seed=seed), random_videos(clip_config, batch, frames)
    reference = embeddings(model, captions, videos)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        for dtype, u in UNIT_ROUNDOFF.items():
            for autocast in (True, False):
                half = PeftModel.from_pretrained(
                    copy.deepcopy(base).to(dtype), folder, autocast_adapter_dtype=autocast
                )
                got = embeddings(half, captions, videos)
                row = {"dtype": str(dtype).removeprefix("torch."), "autocast_adapter_dtype": autocast}
                for key, value in got.items():
                    row[key] = float((value - reference[key]).norm(dim=-1).max()) / u
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="Write the Markdown table here (default: print).")
    parser.add_argument("--skip-vit-b32", action="store_true", help="Only the tiny CLIP (seconds instead of minutes).")
    args = parser.parse_args(argv)

    import peft_video
    from peft_video.testing import tiny_clip_config, vit_b32_config

    torch.manual_seed(0)
    shapes = [("tiny", tiny_clip_config(), 4, 4, {n: b(4) for n, b in _variants(peft_video).items()})]
    if not args.skip_vit_b32:
        defaults = {m.name: m.config_cls(num_frames=6) for m in peft_video.video_methods().values()}
        shapes.append(("ViT-B/32", vit_b32_config(), 6, 2, defaults))
    lines = [
        "# Half-precision base models: distance to the float32 model",
        "",
        "Made by `python benchmarks/bench_half_precision.py` "
        f"({platform.machine()}, torch {torch.__version__}, CPU). Entries: max over the batch of ||e_half - e_fp32||"
        " for unit-norm embeddings, in units of the dtype's unit roundoff u (fp16: 2^-11 = 4.9e-4, bf16: 2^-8 = "
        "3.9e-3). `zero-shot`: the same model with the adapter disabled (stock CLIP, mean pooling), the yardstick.",
        "",
        "| shape | variant | dtype | autocast_adapter_dtype | video | text | video zero-shot | text zero-shot |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for shape, clip_config, frames, batch, configs in shapes:
        for variant, config in configs.items():
            started = time.perf_counter()
            for row in half_precision_errors(clip_config, config, frames=frames, batch=batch):
                lines.append(
                    f"| {shape} | {variant} | {row['dtype']} | {row['autocast_adapter_dtype']} | {row['video']:.1f} "
                    f"| {row['text']:.1f} | {row['video_zero_shot']:.1f} | {row['text_zero_shot']:.1f} |"
                )
            print(f"{shape} {variant}: {time.perf_counter() - started:.0f}s", flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


def _variants(peft_video) -> dict:
    return {name: build for m in peft_video.video_methods().values() for name, build in m.test_variants.items()}


if __name__ == "__main__":
    main()
