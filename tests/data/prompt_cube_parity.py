"""Numerical parity of our Prompt Cube with the reference implementation (bladewaltz1/PromptSwitch), and the source of
`tests/data/prompt_cube_expected.safetensors`.

Both sides are HF CLIP layouts, so a seeded model of ours is exported under the reference's parameter names, the
reference runs it (in its own environment: transformers 4.26), and its outputs are compared with ours here.

    python tests/data/prompt_cube_parity.py export --shape tiny --frames 6 /tmp/pc_tiny_T6.pt
    <reference venv>/bin/python tests/data/prompt_cube_reference_driver.py --reference <checkout> \
        --vocab-dir <dir with CLIP vocab.json/merges.txt> /tmp/pc_tiny_T6.pt /tmp/pc_tiny_T6_ref.pt
    python tests/data/prompt_cube_parity.py compare /tmp/pc_tiny_T6.pt /tmp/pc_tiny_T6_ref.pt
    python tests/data/prompt_cube_parity.py store /tmp/pc_tiny_T3_ref.pt /tmp/pc_tiny_T6_ref.pt   # the test data

docs/methods/prompt_cube.md records the procedure and the figures.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import CLIPConfig, CLIPModel

from peft_video import PromptCubeConfig

EXPECTED_PATH = Path(__file__).with_name("prompt_cube_expected.safetensors")
CAPTION_LOGIT_STRIDE = 97  # the stored expectations keep every 97th vocabulary column of the caption logits
BATCH = 2


def parity_clip_config(shape: str) -> CLIPConfig:
    """`tiny`: small towers but CLIP's 49,408-token vocabulary and ids (the reference's caption-loss weights are sized
    by CLIP's tokenizer) and text width == projection dim (the reference decoder needs it). `vitb32`: ViT-B/32."""
    text_ids = dict(vocab_size=49408, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    if shape == "tiny":
        return CLIPConfig(
            text_config=dict(
                hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16, **text_ids,
            ),
            vision_config=dict(
                hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                image_size=32, patch_size=8,
            ),
            projection_dim=32,
        )  # fmt: skip
    if shape == "vitb32":
        return CLIPConfig(
            text_config=dict(
                hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                max_position_embeddings=77, **text_ids,
            ),
            vision_config=dict(
                hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                image_size=224, patch_size=32,
            ),
            projection_dim=512,
        )  # fmt: skip
    raise ValueError(f"shape must be 'tiny' or 'vitb32', got {shape!r}.")


def _fill_(name: str, tensor: torch.Tensor, generator: torch.Generator) -> None:
    """Deterministic values that depend only on the name, shape and the generator's state (not on transformers' or
    torch's init schemes): LayerNorm gains near 1, small biases, fan-in-scaled matrices, a large cube (so the switch
    matters) and a non-zero readout output projection."""
    noise = torch.randn(tensor.shape, generator=generator)
    if name.endswith("logit_scale"):
        value = torch.full_like(noise, math.log(1 / 0.07))
    elif name.endswith(".cube"):
        value = 0.5 * noise
    elif tensor.ndim == 1 and name.endswith("weight"):
        value = 1.0 + 0.1 * noise
    elif tensor.ndim == 1:
        value = 0.05 * noise
    elif "embedding" in name and "patch" not in name:
        value = 0.02 * noise
    else:
        fan_in = math.prod(tensor.shape[1:])
        value = noise * fan_in**-0.5
    tensor.copy_(value.to(tensor.dtype))


def build_seeded_model(shape: str = "tiny", num_frames: int = 6, num_prompts: int = 3, seed: int = 0):
    """Our PeftModel (Prompt Cube with captioner) on a CLIP of `shape`, every tensor filled from `seed`."""
    clip_config = parity_clip_config(shape)
    torch.manual_seed(seed)
    clip = CLIPModel(clip_config)
    config = PromptCubeConfig(num_frames=num_frames, num_prompts=num_prompts)
    model = get_peft_model(clip, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            _fill_(name, parameter, generator)
    return model


def seeded_inputs(clip_config: CLIPConfig, frames: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """BATCH videos of `frames` frames and captions `SOT w… EOT pad…` of different lengths, with frequent words."""
    generator = torch.Generator().manual_seed(seed)
    size = clip_config.vision_config.image_size
    length = min(12, clip_config.text_config.max_position_embeddings)
    pixel_values = torch.randn(BATCH, frames, 3, size, size, generator=generator)
    eos, bos = clip_config.text_config.eos_token_id, clip_config.text_config.bos_token_id
    input_ids = torch.full((BATCH, length), eos, dtype=torch.long)
    attention_mask = torch.zeros(BATCH, length, dtype=torch.long)
    frequent = torch.tensor([530, 525, 539, 518, 320, 269, 267])
    for row, n in enumerate((length, length - 5)):
        body = torch.randint(1, 49000, (n - 2,), generator=generator)
        body[::3] = frequent[torch.randint(0, len(frequent), (len(body[::3]),), generator=generator)]
        input_ids[row, 0], input_ids[row, 1 : n - 1], input_ids[row, n - 1] = bos, body, eos
        attention_mask[row, :n] = 1
    return {"pixel_values": pixel_values, "input_ids": input_ids, "attention_mask": attention_mask}


@torch.no_grad()
def our_outputs(model, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Frame features, video/text embeddings, logits, contrastive and (unweighted) caption loss and caption logits."""
    model.train()  # the captioner runs in training only; every dropout of the parity setting is 0
    tuner = model.base_model
    module = tuner.video_layer.active_module()
    clip = tuner.model
    out = model(**inputs, return_loss=True)
    video_output = out.video_model_output
    captioner = module.captioner
    tokens = inputs["input_ids"][:, :-1]
    return {
        "frame_features": video_output.frame_embeds,
        "video_embeds": out.video_embeds,
        "text_embeds": out.text_embeds,
        "logits_per_text": out.logits_per_text,
        "contrastive_loss": out.contrastive_loss,
        "caption_loss": out.auxiliary_loss / module.config.caption_loss_weight,
        "caption_logits": captioner(clip, tokens, video_output.frame_embeds, None)[..., ::CAPTION_LOGIT_STRIDE],
    }


def reference_state_dict(model) -> dict[str, torch.Tensor]:
    """Our model's tensors under the reference's names (`PromptCLIP`: `clip.*`, the cube as the vision encoder's
    `prompt_embedding`, the readout as `vision_model.attn`, and `caption_prenorm/transformer/head`)."""
    renames = {
        "cube": "clip.vision_model.encoder.prompt_embedding",
        "readout.": "clip.vision_model.attn.",
        "captioner.input_norm.": "caption_prenorm.",
        "captioner.decoder.": "caption_transformer.",
        "captioner.head.": "caption_head.",
    }
    result = {}
    for name, tensor in model.state_dict().items():
        name = name.removeprefix("base_model.model.")
        if name.startswith("video_adapter."):
            name = name.split(".default.", 1)[1]
            for ours, theirs in renames.items():
                if name.startswith(ours):
                    name = theirs + name[len(ours) :]
                    break
            else:
                raise KeyError(f"no reference name for adapter tensor {name}")
        else:
            name = "clip." + name
        result[name] = tensor.detach().clone()
    return result


def export(shape: str, frames: int, num_prompts: int, path: Path) -> None:
    model = build_seeded_model(shape, num_frames=frames, num_prompts=num_prompts)
    clip_config = model.base_model.model.config
    inputs = seeded_inputs(clip_config, frames)
    torch.save(
        {
            "shape": shape,
            "num_prompts": num_prompts,
            "clip_config": clip_config.to_dict(),
            "state_dict": reference_state_dict(model),
            "inputs": inputs,
            "ours": our_outputs(model, inputs),
        },
        path,
    )
    print(f"wrote {path}")


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference|."""
    return float((ours.double() - reference.double()).abs().max() / reference.double().abs().max())


def compare(export_path: Path, reference_path: Path) -> dict[str, float]:
    ours = torch.load(export_path, weights_only=False)["ours"]
    reference = torch.load(reference_path, weights_only=False)
    errors = {key: relative_error(ours[key], reference[key]) for key in ours}
    label = f"{reference['shape']}, T={reference['frames']}, np={reference['num_prompts']}"
    print(f"| {label} | " + " | ".join(f"{key} {value:.1e}" for key, value in errors.items()) + " |")
    return errors


def store(reference_paths: list[Path]) -> None:
    from safetensors.torch import save_file

    tensors = {}
    for path in reference_paths:
        reference = torch.load(path, weights_only=False)
        if reference["shape"] != "tiny":
            raise ValueError(f"only tiny-shape expectations are stored, {path} is {reference['shape']}.")
        for key in ("frame_features", "video_embeds", "text_embeds", "logits_per_text", "contrastive_loss",
                    "caption_loss", "caption_logits"):  # fmt: skip
            tensors[f"T{reference['frames']}.{key}"] = reference[key].contiguous()
    save_file(tensors, EXPECTED_PATH, metadata={"source": "bladewaltz1/PromptSwitch via prompt_cube_parity.py"})
    print(f"wrote {EXPECTED_PATH} ({EXPECTED_PATH.stat().st_size} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export")
    p.add_argument("--shape", choices=("tiny", "vitb32"), default="tiny")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--num-prompts", type=int, default=3)
    p.add_argument("path", type=Path)
    p = sub.add_parser("compare")
    p.add_argument("export_path", type=Path)
    p.add_argument("reference_path", type=Path)
    p = sub.add_parser("store")
    p.add_argument("reference_paths", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "export":
        export(args.shape, args.frames, args.num_prompts, args.path)
    elif args.command == "compare":
        compare(args.export_path, args.reference_path)
    else:
        store(args.reference_paths)


if __name__ == "__main__":
    main()
