"""peft_video.checkpointing on folders written here (no training): a seal names every way a file can be damaged, `last`
falls back past a damaged or unsealed checkpoint, rotation never removes the only complete one nor one being
written, a checkpoint of another run setting is refused with the differences named, and a resumed run's logs drop
what it will write again. (train.py's own use of them: tests/test_train_safety.py, tests/test_train.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from peft_video.checkpointing import (
    SEAL_FILE,
    checkpoint_folders,
    checkpoint_problems,
    find_checkpoint,
    keep_log_lines,
    load_stream_state,
    refuse_another_run,
    rotate_checkpoints,
    seal_checkpoint,
    start_output_dir,
)


def write_checkpoint(output_dir: Path, step: int, sealed: bool = True) -> Path:
    folder = output_dir / "checkpoints" / f"checkpoint_{step}"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (folder / "sub" / "optimizer.bin").write_bytes(b"state" * 10)
    if sealed:
        seal_checkpoint(folder)
    return folder


def test_a_sealed_checkpoint_has_no_problem_and_each_damage_is_named(tmp_path):
    folder = write_checkpoint(tmp_path, 1)
    record = json.loads((folder / SEAL_FILE).read_text())["files"]
    assert set(record) == {"model.safetensors", "sub/optimizer.bin"}
    assert checkpoint_problems(folder) == []

    weights = folder / "model.safetensors"
    weights.write_bytes(bytes(1024))  # same size, zeroed
    assert checkpoint_problems(folder) == [
        "model.safetensors differs from what was saved (SHA-256 mismatch: overwritten or zeroed?)"
    ]
    weights.write_bytes(b"cut")
    assert checkpoint_problems(folder) == ["model.safetensors has 3 bytes, 1024 when saved (truncated?)"]
    (folder / "sub" / "optimizer.bin").unlink()
    assert "sub/optimizer.bin is missing" in checkpoint_problems(folder)
    (folder / SEAL_FILE).write_text("{not json")
    assert checkpoint_problems(folder)[0].startswith(f"{SEAL_FILE} is unreadable")
    (folder / SEAL_FILE).unlink()
    assert checkpoint_problems(folder)[0].startswith(f"incomplete: no {SEAL_FILE}")
    assert checkpoint_problems(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'} is not a folder"]


def test_last_falls_back_past_damaged_and_unsealed_checkpoints_with_a_warning(tmp_path):
    write_checkpoint(tmp_path, 2)
    damaged = write_checkpoint(tmp_path, 10)
    (damaged / "model.safetensors").write_bytes(b"x")
    write_checkpoint(tmp_path, 12, sealed=False)
    assert [p.name for p in checkpoint_folders(tmp_path)] == ["checkpoint_2", "checkpoint_10", "checkpoint_12"]
    with pytest.warns(UserWarning, match=r"checkpoint_12 is not usable \(incomplete.*checkpoint_10 is not usable"):
        assert find_checkpoint(tmp_path, "last").name == "checkpoint_2"
    with pytest.raises(ValueError, match=r"cannot resume from .*checkpoint_10: model.safetensors has 1 bytes"):
        find_checkpoint(tmp_path, str(damaged))
    with pytest.raises(FileExistsError, match="resume_from_checkpoint last or start afresh"):
        find_checkpoint(tmp_path, None)
    assert find_checkpoint(tmp_path, None, overwrite_output_dir=True) is None
    with pytest.raises(FileNotFoundError, match="holds no complete, intact checkpoint"):
        find_checkpoint(tmp_path / "empty", "last")


def test_rotation_keeps_the_newest_complete_ones_and_a_checkpoint_being_written(tmp_path):
    for step in (1, 3):
        write_checkpoint(tmp_path, step)
    write_checkpoint(tmp_path, 2, sealed=False)  # interrupted long ago: older than the newest complete one
    write_checkpoint(tmp_path, 5)
    write_checkpoint(tmp_path, 6, sealed=False)  # newer than every complete one: being written
    rotate_checkpoints(tmp_path, None)
    assert len(checkpoint_folders(tmp_path)) == 5
    rotate_checkpoints(tmp_path, 2)
    assert [p.name for p in checkpoint_folders(tmp_path)] == ["checkpoint_3", "checkpoint_5", "checkpoint_6"]
    rotate_checkpoints(tmp_path, 1)
    assert [p.name for p in checkpoint_folders(tmp_path)] == ["checkpoint_5", "checkpoint_6"]


class _State:
    def __init__(self, identity):
        self.identity = identity

    def state_dict(self):
        return {"identity": self.identity, "step": 3}


def test_a_checkpoint_of_another_run_setting_is_refused_naming_the_differences(tmp_path):
    from accelerate import PartialState
    from accelerate.checkpointing import save_custom_state

    PartialState()  # accelerate's checkpoint helpers log through it
    identity = {"method": "tfvl", "seed": 1, "adapter_config": {"num_frames": 4, "r": 8}}
    save_custom_state(_State(identity), str(tmp_path), index=1)
    refuse_another_run(tmp_path, identity, index=1)  # the same setting: no error
    other = {"method": "dgl", "seed": 1, "adapter_config": {"num_frames": 8, "r": 8}}
    with pytest.raises(ValueError, match=r"method: checkpoint 'tfvl' vs this run 'dgl'; adapter_config.num_frames: "):
        refuse_another_run(tmp_path, other, index=1)


def test_a_missing_or_foreign_stream_state_is_named(tmp_path):
    class Loader:
        def load_state_dict(self, state):
            raise ValueError("another world size")

    with pytest.raises(FileNotFoundError, match="has no stream_rank1.pt"):
        load_stream_state(tmp_path, Loader(), rank=1)
    torch.save({"loader": {}, "epoch": 2, "batches": 5}, tmp_path / "stream_rank0.pt")
    with pytest.raises(ValueError, match="cannot resume the stream from .*stream_rank0.pt: another world size"):
        load_stream_state(tmp_path, Loader(), rank=0)
    Loader.load_state_dict = lambda self, state: None
    assert load_stream_state(tmp_path, Loader(), rank=0) == {"epoch": 2, "batches": 5}


def test_start_output_dir_clears_a_fresh_run_and_trims_a_resumed_one(tmp_path):
    log = tmp_path / "train_log.jsonl"
    for step in (2, 4):
        write_checkpoint(tmp_path, step)
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 6)))
    (tmp_path / "best_adapter").mkdir()
    start_output_dir(tmp_path, tmp_path / "checkpoints" / "checkpoint_2", 2, fresh_removes=("best_adapter",),
                     logs=(log.name,))  # fmt: skip
    assert [p.name for p in checkpoint_folders(tmp_path)] == ["checkpoint_2"]
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2]
    assert (tmp_path / "best_adapter").is_dir()
    start_output_dir(tmp_path, None, 0, fresh_removes=("best_adapter",), logs=(log.name,))
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    keep_log_lines(tmp_path / "absent.jsonl", 3)  # nothing to trim: no error
