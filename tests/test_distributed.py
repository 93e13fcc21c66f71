"""Negatives across processes: 2 gloo processes give the loss and gradients of 1 process over the union batch."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from distributed_worker import build_model, union_batch

HERE = Path(__file__).parent


def test_two_processes_match_one_process_over_the_union_batch(tmp_path):
    out_path = tmp_path / "rank0.pt"
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
        str(HERE / "distributed_worker.py"), str(out_path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    distributed = torch.load(out_path)
    assert distributed["world"] == 2

    clip_config, captions, videos = union_batch()
    model = build_model(clip_config)
    out = model(**captions, pixel_values=videos, return_loss=True)
    out.loss.backward()
    torch.testing.assert_close(distributed["loss"], out.loss.detach(), rtol=1e-5, atol=1e-6)
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad.abs().sum() > 0, name
            torch.testing.assert_close(distributed["grads"][name], parameter.grad, rtol=1e-4, atol=1e-6)


def test_gather_without_a_process_group_is_the_identity():
    from peft_video.losses import gather_with_grad

    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x
