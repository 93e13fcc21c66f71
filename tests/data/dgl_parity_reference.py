"""DGL numerical parity with the reference implementation (knightyxp/DGL), and the fixture that guards it.

    python tests/data/dgl_parity_reference.py --reference-dir /path/to/DGL [--vit-b32] [--write-fixtures]

`--reference-dir` is a checkout of https://github.com/knightyxp/DGL (checked at commit 9139fd1). Nothing of it is
copied here: this script imports its `modules` package from that directory at run time, on CPU, in float32.

Procedure (also in docs/methods/dgl.md):
1. Build our model from a seed: a random `CLIPModel` (tiny, or the ViT-B/32 shape) with a DGL adapter, every tensor of
   both (sorted by name) drawn from one seeded generator (`build_seeded_model`).
2. Export the same weights to the reference: HF CLIP -> OpenAI-CLIP layout (`hf_clip_to_openai`), our DGL tensors ->
   the reference's names and layouts (`dgl_to_reference`); the reference's dead postfix projection (linear variant)
   gets random values, which must not matter.
3. Run the reference's own `CLIP4Clip.forward` (eval mode, all frames real) and `get_similarity_logits`, and ours
   (`get_text_features`, `get_video_features`, `forward`) on the same seeded captions and videos.
4. Print relative errors ||ours - ref|| / ||ref|| for text embeddings, video embeddings and logits, both latent
   variants, every readout. `--write-fixtures` stores the reference's tiny-model outputs in
   tests/data/dgl_parity_<latent>.pt, which tests/test_dgl.py compares against without the reference.

The reference imports einops, boto3, botocore and ftfy at module level but does not use them on this path; when they
are not installed they are stubbed only while its modules are imported.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from argparse import Namespace
from pathlib import Path

import torch
from peft import get_peft_model
from torch import nn
from transformers import CLIPConfig, CLIPModel

from peft_video import DGLConfig
from peft_video.testing import vit_b32_config

FIXTURE_DIR = Path(__file__).resolve().parent
SEED = 20240117
READOUTS = {  # ours -> the reference's `visual_output_type`
    "global_prompt0": "global_prompt0",
    "mean_global_prompts": "average_global_prompt",
    "mean_frame_cls": "average_frame_cls_token",
    "mean_global_prompts_and_frame_cls": "average_global_prompt_and_frame_cls_token",
}


def parity_clip_config() -> CLIPConfig:
    """A tiny CLIP the reference can also build: it derives head counts as width // 64 and uses 4x MLPs."""
    vision = dict(
        hidden_size=192, intermediate_size=768, num_hidden_layers=2, num_attention_heads=3, image_size=32, patch_size=8
    )
    text = dict(
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=2,
        vocab_size=100,
        max_position_embeddings=16,
        bos_token_id=98,
        eos_token_id=99,
        pad_token_id=99,
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)


# shape of each parity case: (clip config, frames, caption tokens, batch)
CASES = {"tiny": (parity_clip_config, 3, 12, 3), "vit-b32": (vit_b32_config, 12, 32, 2)}


def seed_parameters(model: nn.Module, seed: int) -> None:
    """Draw every parameter of `model` (sorted by name) from one seeded generator: LayerNorm weights near 1, biases
    near 0, others N(0, 1/fan_in). Randomising biases and norms too makes any layout error in a converter visible."""
    norm_weights = {
        f"{name}.weight" if name else "weight"
        for name, module in model.named_modules()
        if isinstance(module, nn.LayerNorm)
    }
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("logit_scale"):
                continue
            if name in norm_weights:
                parameter.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                parameter.copy_(0.02 * noise)
            else:
                fan_in = parameter.numel() // parameter.shape[0] if parameter.ndim > 1 else parameter.numel()
                parameter.copy_(noise * fan_in**-0.5)


def build_seeded_model(case: str, latent_space: str, visual_output: str = "global_prompt0", seed: int = SEED):
    """Our PeftModel for a parity case, every tensor (CLIP and DGL) seeded; reproducible without the reference."""
    config_fn, frames, length, _ = CASES[case]
    clip = CLIPModel(config_fn()).eval()
    dgl = DGLConfig(num_frames=frames, max_text_length=length, latent_space=latent_space, visual_output=visual_output)
    model = get_peft_model(clip, dgl).eval()
    seed_parameters(model, seed)
    return model


def parity_inputs(case: str, seed: int = SEED + 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Captions [B, L] (SOT, words, EOT, then EOT padding as HF tokenizers pad), their mask, videos [B, T, 3, H, W]."""
    config_fn, frames, length, batch = CASES[case]
    config = config_fn()
    text = config.text_config
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, text.bos_token_id - 1, (batch, length), generator=generator)
    ids[:, 0] = text.bos_token_id
    lengths = [length] + torch.randint(3, length, (batch - 1,), generator=generator).tolist()
    for row, n in enumerate(lengths):
        ids[row, n - 1 :] = text.eos_token_id
    mask = (torch.arange(length)[None] < torch.tensor(lengths)[:, None]).long()
    size = config.vision_config.image_size
    videos = torch.randn(batch, frames, 3, size, size, generator=generator)
    return ids, mask, videos


def our_outputs(model, ids, mask, videos) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, pixel_values=videos)
        text = model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        video = model.get_video_features(pixel_values=videos).pooler_output
    return {"text": text, "video": video, "logits": out.logits_per_text}


# -- export to the reference -----------------------------------------------------------------------------------------
def hf_clip_to_openai(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """A HF `CLIPModel` state dict in the OpenAI-CLIP layout that the reference loads."""
    out = {}

    def block(hf: str, oa: str) -> None:
        for kind in ("weight", "bias"):
            out[f"{oa}.attn.in_proj_{kind}"] = torch.cat([state[f"{hf}.self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for ours, theirs in (
                ("self_attn.out_proj", "attn.out_proj"),
                ("layer_norm1", "ln_1"),
                ("layer_norm2", "ln_2"),
                ("mlp.fc1", "mlp.c_fc"),
                ("mlp.fc2", "mlp.c_proj"),
            ):
                out[f"{oa}.{theirs}.{kind}"] = state[f"{hf}.{ours}.{kind}"]

    out["token_embedding.weight"] = state["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = state["text_model.embeddings.position_embedding.weight"]
    out["ln_final.weight"] = state["text_model.final_layer_norm.weight"]
    out["ln_final.bias"] = state["text_model.final_layer_norm.bias"]
    out["text_projection"] = state["text_projection.weight"].t()
    out["visual.class_embedding"] = state["vision_model.embeddings.class_embedding"]
    out["visual.conv1.weight"] = state["vision_model.embeddings.patch_embedding.weight"]
    out["visual.positional_embedding"] = state["vision_model.embeddings.position_embedding.weight"]
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        out[f"visual.{theirs}.weight"] = state[f"vision_model.{ours}.weight"]
        out[f"visual.{theirs}.bias"] = state[f"vision_model.{ours}.bias"]
    out["visual.proj"] = state["visual_projection.weight"].t()
    out["logit_scale"] = state["logit_scale"]
    for i in range(num_layers):
        block(f"text_model.encoder.layers.{i}", f"transformer.resblocks.{i}")
        block(f"vision_model.encoder.layers.{i}", f"visual.transformer.resblocks.{i}")
    return {k: v.detach().clone().float() for k, v in out.items()}


def dgl_to_reference(module) -> dict[str, torch.Tensor]:
    """Our `DGLModule` tensors under the reference's names and layouts (its tables are [tokens, layers x width])."""
    out = {"visual.prompt_embeddings": module.global_prompts.unsqueeze(0)}
    if module.config.latent_space == "transformer":
        out["unified_prompt_embedding.weight"] = module.latent_tokens.transpose(0, 1).flatten(1)
        block = "PromptTransformer.resblocks.0"
        out[f"{block}.attn.in_proj_weight"] = module.generator.attn.in_proj_weight
        out[f"{block}.attn.in_proj_bias"] = module.generator.attn.in_proj_bias
        for ours, theirs in (
            ("attn.out_proj", "attn.out_proj"),
            ("norm1", "ln_1"),
            ("norm2", "ln_2"),
            ("fc1", "mlp.c_fc"),
            ("fc2", "mlp.c_proj"),
        ):
            for kind in ("weight", "bias"):
                out[f"{block}.{theirs}.{kind}"] = getattr(module.generator.get_submodule(ours), kind)
        for ours, theirs in (("0", "c_fc"), ("2", "c_proj")):
            for kind in ("weight", "bias"):
                out[f"unified_prompt_mlp.{theirs}.{kind}"] = getattr(module.text_head.get_submodule(ours), kind)
    else:
        out["visual_prompt_embedding"] = module.frame_prompts.transpose(0, 1).flatten(1).unsqueeze(0)
        out["prefix_text_prompt_proj_layer.weight"] = module.text_prompt_proj.weight
        out["prefix_text_prompt_proj_layer.bias"] = module.text_prompt_proj.bias
    return {k: v.detach().clone().float() for k, v in out.items()}


def import_reference(reference_dir: Path):
    """The reference's `CLIP4Clip` and `CrossConfig`, imported from a checkout on CPU."""
    import transformers  # noqa: F401  (before any stub: accelerate probes boto3 with find_spec)

    stubbed = []
    for name in ("einops", "boto3", "botocore", "botocore.exceptions", "ftfy"):
        if name in sys.modules or (name != "botocore.exceptions" and importlib.util.find_spec(name) is not None):
            continue
        stub = types.ModuleType(name)
        stub.__spec__ = importlib.machinery.ModuleSpec(name, None)
        stub.ClientError = Exception
        sys.modules[name] = stub
        stubbed.append(name)
    sys.path.insert(0, str(reference_dir))
    try:
        from modules.clip4clip import CLIP4Clip
        from modules.module_cross import CrossConfig
    finally:
        for name in stubbed:
            sys.modules.pop(name, None)
    return CLIP4Clip, CrossConfig


def build_reference(reference_dir: Path, model, frames: int, length: int):
    """The reference's `CLIP4Clip` (eval mode) holding the weights of our seeded `model`."""
    CLIP4Clip, CrossConfig = import_reference(reference_dir)
    module = model.base_model.model.video_adapter.dgl_modules["default"]
    config, clip = module.config, model.base_model.model
    num_layers = clip.config.vision_config.num_hidden_layers
    args = Namespace(
        shared_latent_space=config.latent_space,
        text_prompt_length=2 * config.num_text_prompts,
        local_each_frame_prompt_length=config.num_local_prompts,
        global_visual_prompt_length=config.num_global_prompts,
        unified_transformer_layers=num_layers,
        visual_output_type=READOUTS[config.visual_output],
        max_words=length,
        max_frames=frames,
        time_embedding=0,
        loose_type=True,
        linear_patch="2d",
        sim_header="meanP",
        freeze_clip=1,
        new_added_modules=[None],
        pre_visual_pooling=0,
        camoe_dsl=False,
    )
    state = hf_clip_to_openai(clip.state_dict(), num_layers)
    reference = CLIP4Clip(CrossConfig(vocab_size_or_config_json_file=512), dict(state), args)
    reference.clip.float()  # it builds CLIP in fp16
    width = clip.config.vision_config.hidden_size
    reference.clip.visual.prompt_embeddings = nn.Parameter(torch.zeros(1, config.num_global_prompts, width))  # 768
    state.update(dgl_to_reference(module))
    state["visual.position_ids"] = reference.clip.visual.position_ids
    if config.latent_space == "linear":  # the dead postfix projection: random on purpose
        generator = torch.Generator().manual_seed(SEED + 2)
        dead = reference.clip.postfix_text_prompt_proj_layer
        state["postfix_text_prompt_proj_layer.weight"] = 0.05 * torch.randn(dead.weight.shape, generator=generator)
        state["postfix_text_prompt_proj_layer.bias"] = 0.05 * torch.randn(dead.bias.shape, generator=generator)
    reference.clip.load_state_dict(state, strict=True)
    reference.eval()  # (its train() override returns None, so no chaining)
    return reference


def run_reference(reference, ids, mask, videos) -> dict[str, torch.Tensor]:
    all_real = torch.ones(videos.shape[:2], dtype=torch.long)
    out = reference(ids, torch.zeros_like(ids), mask, videos.unsqueeze(1), all_real)
    logits = reference.get_similarity_logits(
        out["sequence_output"], out["visual_output"], mask, all_real, shaped=True
    )[0]
    return {"text": out["sequence_output"].squeeze(1), "video": out["visual_output"].squeeze(1), "logits": logits}


def reference_outputs(reference_dir: Path, model, ids, mask, videos) -> dict[str, torch.Tensor]:
    reference = build_reference(reference_dir, model, videos.shape[1], ids.shape[1])
    with torch.no_grad():
        return run_reference(reference, ids, mask, videos)


def plain_clip_errors(reference, clip, ids, videos) -> dict[str, float]:
    """Step 0, before any DGL part: stock CLIP image and text features through the reference's own modules (its
    prompt-free text path; its vision layers in plain self-attention mode) vs transformers, on converted weights."""
    frames = videos.flatten(0, 1)
    with torch.no_grad():
        ref_text = reference.clip.encode_text_(reference.clip.encode_text_light(ids), ids)
        visual = reference.clip.visual
        x = visual.conv1(frames).flatten(2).transpose(1, 2)
        x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + visual.positional_embedding
        x = visual.transformer(visual.ln_pre(x).permute(1, 0, 2), visual=False).permute(1, 0, 2)
        ref_image = visual.ln_post(x[:, 0]) @ visual.proj
        hf_text = clip.get_text_features(input_ids=ids).pooler_output
        hf_image = clip.get_image_features(pixel_values=frames).pooler_output
    return {"text": relative_error(hf_text, ref_text), "image": relative_error(hf_image, ref_image)}


def postfix_gradients(reference, ids, mask, videos) -> dict[str, float]:
    """Largest |gradient| of the reference's outputs w.r.t. its prefix and postfix text projections (linear)."""
    clip = reference.clip
    clip.zero_grad(set_to_none=True)
    outputs = run_reference(reference, ids, mask, videos)
    (outputs["text"].sum() + outputs["video"].sum()).backward()
    return {
        name: max(p.grad.abs().max().item() for p in getattr(clip, f"{name}_text_prompt_proj_layer").parameters())
        for name in ("prefix", "postfix")
    }


# the modules the reference trains (its params.py `new_added_modules`, matched by substring as its train() does)
REFERENCE_TRAINED = {
    "transformer": (
        "PromptTransformer",
        "unified_prompt_mlp",
        "unified_prompt_embedding",
        "prompt_proj",
        "prompt_embeddings",
    ),
    "linear": (
        "visual_prompt_embedding",
        "prompt_embeddings",
        "prefix_text_prompt_proj_layer",
        "postfix_text_prompt_proj_layer",
    ),
}


def reference_trainable(reference, latent: str) -> dict[str, int]:
    """Parameters the reference trains, by its module names (first matching name)."""
    counts: dict[str, int] = {}
    for name, parameter in reference.clip.named_parameters():
        match = next((part for part in REFERENCE_TRAINED[latent] if part in name), None)
        if match is not None:
            counts[match] = counts.get(match, 0) + parameter.numel()
    return counts


def ours_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours - reference).norm() / reference.norm()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference-dir", type=Path, required=True, help="checkout of knightyxp/DGL")
    parser.add_argument("--vit-b32", action="store_true", help="also run the ViT-B/32 shape (minutes on CPU)")
    parser.add_argument("--write-fixtures", action="store_true", help="write tests/data/dgl_parity_<latent>.pt")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    cases = ["tiny", "vit-b32"] if args.vit_b32 else ["tiny"]
    for case in cases:
        ids, _, videos = parity_inputs(case)
        model = build_seeded_model(case, "linear")
        reference = build_reference(args.reference_dir, model, videos.shape[1], ids.shape[1])
        errors = plain_clip_errors(reference, model.base_model.model, ids, videos)
        print(
            f"{case}: plain CLIP through the reference's modules vs transformers, relative error: "
            f"text {errors['text']:.1e}, image {errors['image']:.1e}"
        )
        ids, mask, videos = parity_inputs(case)
        gradients = postfix_gradients(reference, ids, mask, videos)
        print(
            f"{case}, linear: max |grad| of the reference's outputs w.r.t. its prefix text projection "
            f"{gradients['prefix']:.2e}, postfix text projection {gradients['postfix']:.2e}"
        )
    print()
    print(f"| shape | latent_space | visual_output | text | video | logits |\n|{' --- |' * 6}")
    worst = 0.0
    counts = {}
    for case in cases:
        ids, mask, videos = parity_inputs(case)
        for latent in ("transformer", "linear"):
            fixture = {"seed": SEED, "case": case, "readouts": {}}
            for readout in READOUTS:
                model = build_seeded_model(case, latent, readout)
                ours = our_outputs(model, ids, mask, videos)
                reference = build_reference(args.reference_dir, model, videos.shape[1], ids.shape[1])
                if readout == "global_prompt0":
                    counts[(case, latent)] = (reference_trainable(reference, latent), ours_trainable(model))
                with torch.no_grad():
                    ref = run_reference(reference, ids, mask, videos)
                errors = {k: relative_error(ours[k], ref[k]) for k in ("text", "video", "logits")}
                worst = max(worst, *errors.values())
                print(
                    f"| {case} | {latent} | {readout} | "
                    + " | ".join(f"{errors[k]:.1e}" for k in ("text", "video", "logits"))
                    + " |"
                )
                fixture["readouts"][readout] = {k: v.clone() for k, v in ref.items()}
            if args.write_fixtures and case == "tiny":
                torch.save(fixture, FIXTURE_DIR / f"dgl_parity_{latent}.pt")
    print(f"\nworst relative error: {worst:.1e}\n")
    for (case, latent), (theirs, ours) in counts.items():
        parts = ", ".join(f"{name} {count:,}" for name, count in theirs.items())
        print(f"{case}, {latent}: trainable parameters, reference {sum(theirs.values()):,} ({parts}); ours {ours:,}")


if __name__ == "__main__":
    main()
