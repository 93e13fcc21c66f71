"""Shared set-up of the training and evaluation script tests: a tiny offline world on disk and a tiny random CLIP
folder with the world's tokenizer (so the tests never need the committed tiny CLIP or any download)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

# 32-px frames in 8-px patches, 2-layer towers of width 32: a training step takes milliseconds.
WORLD = {"world_num_train": 16, "world_num_val": 8, "world_num_test": 8, "world_num_frames": 4}


def load_script(name: str):
    """Import examples/<name>.py as a module (examples/ is not a package)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and HfArgumentParser resolve annotations through it
    spec.loader.exec_module(module)
    return module


def write_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random CLIPModel whose vocabulary is the offline world's, saved with the world's tokenizer."""
    from peft_video.synthetic.tokenizer import BOS_TOKEN, EOS_TOKEN, build_tokenizer, world_vocabulary
    from peft_video.testing import make_clip, tiny_clip_config

    vocab = world_vocabulary()
    config = tiny_clip_config(
        text={"vocab_size": len(vocab), "bos_token_id": vocab[BOS_TOKEN], "eos_token_id": vocab[EOS_TOKEN],
              "pad_token_id": vocab[EOS_TOKEN]}
    )  # fmt: skip
    make_clip(config, seed=seed).save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    return folder


def write_tiny_world(folder: Path) -> Path:
    from peft_video.synthetic import WorldConfig, write_world

    return write_world(
        folder, WORLD["world_num_train"], WORLD["world_num_val"], WORLD["world_num_test"],
        config=WorldConfig(num_frames=WORLD["world_num_frames"], seed=0),
    )  # fmt: skip


def write_tiny_assets(root: Path):
    """A tiny random CLIP (`root/clip`) and the tiny world (`root/world`) with its manifest rows."""
    import json
    from types import SimpleNamespace

    clip_dir, world = write_tiny_clip(root / "clip"), root / "world"
    write_tiny_world(world)
    rows = [json.loads(line) for line in (world / "manifest.jsonl").read_text().splitlines()]
    return SimpleNamespace(root=root, clip=clip_dir, world=world, rows=rows)


def base_argv(clip_dir: Path, world_dir: Path, output_dir: Path, method: str = "tfvl") -> list[str]:
    """Command-line flags of a tiny, fast training run."""
    argv = [
        "--method", method,
        "--model_name_or_path", str(clip_dir),
        "--data_dir", str(world_dir),
        "--output_dir", str(output_dir),
        "--num_frames", "4",
        "--max_text_length", "16",
        "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "8",
        "--learning_rate", "1e-2",
        "--decode_timeout", "0",
        "--report_to", "none",
        "--disable_tqdm", "true",
        "--eval_before_training", "false",
    ]  # fmt: skip
    for key, value in WORLD.items():
        argv += [f"--{key}", str(value)]
    return argv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_processes(script: str, args: list[str], timeout: int = 500) -> subprocess.CompletedProcess:
    """`accelerate launch --multi_gpu --num_processes 2` of examples/<script> on the CPU (ACCELERATE_USE_CPU=1; plain
    `--cpu --num_processes 2` silently runs one process); a failure shows the end of both outputs."""
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(EXAMPLES / script), *args,
    ]  # fmt: skip
    # errors="replace": decord, decoding bytes in-process (decode_timeout 0), logs an unreadable sample's raw bytes
    result = subprocess.run(command, capture_output=True, text=True, errors="replace", env=env, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


class FakeHubApi:
    """Records what `push_to_hub` would upload, instead of the network: `uploads` gets one entry per upload folder
    (`repo_id`, `files` {name: bytes}, `readme` text). Used through `recording_hub_uploads`."""

    uploads: list[dict] = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        from types import SimpleNamespace

        return SimpleNamespace(repo_id=repo_id)

    def hf_hub_download(self, repo_id, filename, **kwargs):  # the repository is new: it holds no README yet
        from huggingface_hub.errors import EntryNotFoundError

        raise EntryNotFoundError(f"{filename} not in {repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        from types import SimpleNamespace

        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        readme = files.get("README.md", b"").decode("utf-8")
        self.uploads.append({"repo_id": repo_id, "files": files, "readme": readme})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/fake")


@contextlib.contextmanager
def recording_hub_uploads():
    """`huggingface_hub.HfApi` replaced by `FakeHubApi` inside the block; yields the list of uploads it records."""
    import huggingface_hub
    import pytest

    FakeHubApi.uploads = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub, "HfApi", FakeHubApi)
        yield FakeHubApi.uploads


def assert_same_metrics(actual: dict, expected: dict, where: tuple = ()) -> None:
    """Nested metric dicts with the same keys and the same values (numbers within 1e-6); `where` names the path."""
    import pytest

    assert set(actual) == set(expected), (where, sorted(actual), sorted(expected))
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_same_metrics(actual[key], value, (*where, key))
        else:
            assert actual[key] == pytest.approx(value, abs=1e-6), (*where, key)
