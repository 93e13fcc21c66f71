"""Worker for tests/test_distributed.py: one process of `accelerate launch --multi_gpu --num_processes 2`.

Each process takes its slice of a seeded union batch (unequal slices: 3 and 2 pairs), runs the DDP-wrapped model's
forward and backward, and writes the loss and the (DDP-averaged) adapter gradients for the test to compare with one
process over the union batch.
"""

import sys

import torch
from accelerate import Accelerator
from peft import get_peft_model

import peft_video  # noqa: F401  (registers the methods)
from peft_video.testing import make_clip, random_captions, random_videos, tiny_clip_config

SLICES = [(0, 3), (3, 5)]


def union_batch():
    clip_config = tiny_clip_config()
    return clip_config, random_captions(clip_config, 5, seed=7), random_videos(clip_config, 5, 3, seed=7)


def build_model(clip_config):
    from peft_video import TFVLConfig

    return get_peft_model(make_clip(clip_config, seed=3), TFVLConfig(num_frames=3, text_temp_gate_init=0.5)).train()


def main(out_path: str) -> None:
    accelerator = Accelerator()
    assert accelerator.num_processes == 2, f"expected 2 processes, got {accelerator.num_processes}"
    clip_config, captions, videos = union_batch()
    model = accelerator.prepare(build_model(clip_config))
    start, stop = SLICES[accelerator.process_index]
    out = model(
        input_ids=captions["input_ids"][start:stop],
        attention_mask=captions["attention_mask"][start:stop],
        pixel_values=videos[start:stop],
        return_loss=True,
    )
    accelerator.backward(out.loss)
    grads = {
        n: p.grad.detach().clone() for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad
    }
    if accelerator.is_main_process:
        torch.save({"loss": out.loss.detach(), "grads": grads, "world": accelerator.num_processes}, out_path)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
