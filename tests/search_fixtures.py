"""Shared set-up of the index, search, gallery and app tests: a tiny offline world, a tiny random CLIP folder and
TFVL adapters on it (made once per test session, in a temporary folder)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from train_fixtures import write_tiny_clip, write_tiny_world

FAST = {"decode_timeout": None, "progress": False}


def make_assets(root: Path) -> SimpleNamespace:
    import torch
    from peft import get_peft_model
    from transformers import CLIPModel

    from peft_video import TFVLConfig

    clip_dir = write_tiny_clip(root / "clip")
    manifest = write_tiny_world(root / "world")
    torch.manual_seed(0)
    # TextTemp's pre-issue-13 word fields: with the defaults (centred, token-scale frame words) a random tiny text
    # tower gives every video nearly the same TextTemp output, and the index's neighbours would tie (cosine 0.99993)
    config = TFVLConfig(
        num_frames=4, max_text_length=16, text_temp_gate_init=0.5, text_temp_word_scale="free",
        text_temp_center_frames=False, text_temp_frame_positions="text",
    )  # fmt: skip
    get_peft_model(CLIPModel.from_pretrained(clip_dir), config).save_pretrained(root / "adapter")
    torch.manual_seed(1)
    get_peft_model(CLIPModel.from_pretrained(clip_dir), config).save_pretrained(root / "other_adapter")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    return SimpleNamespace(
        root=root,
        clip=clip_dir,
        manifest=manifest,
        adapter=root / "adapter",
        other_adapter=root / "other_adapter",
        rows=rows,
        test_ids=[r["video_id"] for r in rows if r["split"] == "test"],
    )


def kill_build_after_two_shards(source, directory: Path, adapter: Path, **options) -> None:
    """Run `build_index(source, directory, adapter=..., **options)` in a subprocess that SIGKILLs itself (no
    cleanup, no atexit) once its second shard is written, and check it died that way with no index.json yet."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import os, signal
        from peft_video.search import build_index
        done = []
        def kill_after_two(name):
            done.append(name)
            if len(done) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        build_index({str(source)!r}, {str(directory)!r}, adapter={str(adapter)!r}, decode_timeout=None,
                    progress=False, on_shard_written=kill_after_two, **{options!r})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr[-3000:]
    assert not (directory / "index.json").exists()


def index_with_two_processes(index_argv: list[str], port: int):
    """`peft-video index ...` under `accelerate launch` with 2 CPU processes; returns the finished process."""
    import os
    import shutil
    import subprocess
    import sys

    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(port), "-m", "peft_video.cli", *index_argv,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result
