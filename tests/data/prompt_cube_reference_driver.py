"""Run the reference Prompt Switch model (bladewaltz1/PromptSwitch) on weights and inputs exported by
`prompt_cube_parity.py export`, and save its outputs for `prompt_cube_parity.py compare`.

Runs in the REFERENCE's environment (transformers 4.26), never in ours, and is not part of the test suite:

    <ref venv>/bin/python tests/data/prompt_cube_reference_driver.py --reference <PromptSwitch checkout> \
        --tokenizer <openai/clip-vit-base-patch32 or a folder with its vocab.json + merges.txt> IN.pt OUT.pt

The reference hard-codes `from_pretrained("openai/clip-vit-base-patch32")` for its config, weights and tokenizer; this
driver substitutes the exported config and weights and the given tokenizer, and otherwise calls the reference's own
classes (`PromptCLIP`, `CLIPLoss`, `CaptionLoss`, `sim_matrix_training`) unchanged. Its vision config's `num_frames` is
set to `num_prompts`, which is what the reference runs at test time (its frame count stays at the training value, 6 =
np, while 12 test frames arrive): a video of T = k·np frames is then processed as k chunks.
"""

from __future__ import annotations

import argparse
import sys
import types


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="checkout of bladewaltz1/PromptSwitch")
    parser.add_argument("--tokenizer", required=True, help="CLIP tokenizer name or folder")
    parser.add_argument("inputs")
    parser.add_argument("outputs")
    args = parser.parse_args()
    sys.path.insert(0, args.reference)

    import torch
    from transformers import CLIPTokenizer

    tokenizer_module = types.ModuleType("modules.tokenizer")
    tokenizer_module.clip_tokenizer = CLIPTokenizer.from_pretrained(args.tokenizer)
    import modules

    sys.modules["modules.tokenizer"] = tokenizer_module
    modules.tokenizer = tokenizer_module
    import model.prompt_clip as prompt_clip
    from modules.loss import CaptionLoss, CLIPLoss
    from modules.metrics import sim_matrix_training

    exported = torch.load(args.inputs, weights_only=False)
    clip_config = prompt_clip.CLIPConfig.from_dict(exported["clip_config"])
    prompts_per_frame = exported["num_prompts"]
    inputs = exported["inputs"]
    batch, frames = inputs["pixel_values"].shape[:2]

    class RunConfig:  # the fields of the reference's argparse namespace that PromptCLIP and the losses read
        num_frames = prompts_per_frame
        num_test_frames = prompts_per_frame
        num_prompts = prompts_per_frame
        loss = "clip+caption"
        num_captioner_layers = 2
        pooling_type = pooling_type_test = "avg"
        input_res = clip_config.vision_config.image_size
        frequent_word_weight = 0.25
        caption_loss_mult = 1.0  # compared unweighted

    prompt_clip.CLIPConfig.from_pretrained = classmethod(lambda cls, name: clip_config)
    prompt_clip.CLIPModel.from_pretrained = classmethod(lambda cls, name, config: cls(config))
    model = prompt_clip.PromptCLIP(RunConfig())
    missing, unexpected = model.load_state_dict(exported["state_dict"], strict=False)
    if unexpected or any(not key.endswith("position_ids") for key in missing):
        raise SystemExit(f"weight transfer mismatch: missing {missing}, unexpected {unexpected}")
    model.train()  # the captioner only runs in training mode; all dropouts are 0

    with torch.no_grad():
        data = {
            "video": inputs["pixel_values"],
            "text": {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]},
        }
        out = model(data, return_all_frames=True)
        size = RunConfig.input_res
        frame_features = model.clip.get_image_features(inputs["pixel_values"].reshape(-1, 3, size, size))
        sims = sim_matrix_training(out["text_features"], out["video_features_pooled"], "avg")
        pooled = out["video_features_pooled"]
        result = {
            "shape": exported["shape"],
            "num_prompts": prompts_per_frame,
            "frames": frames,
            "frame_features": frame_features.reshape(batch, frames, -1),
            "video_embeds": pooled / pooled.norm(dim=-1, keepdim=True),
            "text_embeds": out["text_features"],
            "logits_per_text": sims * model.clip.logit_scale.exp(),
            "contrastive_loss": CLIPLoss()(sims, model.clip.logit_scale),
            "caption_loss": CaptionLoss(RunConfig())(out["pred_logits"], out["input_ids"]),
            "caption_logits": out["pred_logits"][..., ::97],
        }
    torch.save(result, args.outputs)
    print(f"wrote {args.outputs}")


if __name__ == "__main__":
    main()
