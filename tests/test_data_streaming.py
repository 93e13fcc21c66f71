"""`StreamingVideoTextDataset`: each sample once per epoch across DataLoader workers, per-epoch shuffling, captions,
bad samples named under `on_error`, and exact resume with torchdata's `StatefulDataLoader` (also after a SIGKILL)."""

import json
import os
import pickle
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from shard_fixtures import caption_json, write_tar, write_video_manifest
from torchdata.stateful_dataloader import StatefulDataLoader
from video_fixtures import write_random_bytes

from peft_video.data import DataErrorSummary, FrameSampling, VideoDecodeError, VideoTextCollator, load_manifest
from peft_video.data.shard_writer import write_shards
from peft_video.data.shards import open_shards, webdataset_samples
from peft_video.data.streaming import StreamingVideoTextDataset

HERE = Path(__file__).parent
SAMPLING = FrameSampling(num_frames=3, image_size=32)
ALL = [f"v{i}" for i in range(12)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """12 videos (v4 with three captions) in 4 WebDataset shards of 3, plus one shard with broken samples."""
    root = tmp_path_factory.mktemp("stream")
    manifest = write_video_manifest(root, count=12, extra_captions={4: ["four b", "four c"]})
    write_shards(load_manifest(manifest), root / "train", max_shard_samples=3)
    video = (root / "videos" / "v0.mp4").read_bytes()
    bad = write_tar(
        root / "bad.tar",
        [
            {"__key__": "not_video", "mp4": write_random_bytes(root / "noise").read_bytes(), "txt": b"noise"},
            {"__key__": "no_caption", "mp4": video},
            {"__key__": "fine", "mp4": video, "json": caption_json("a fine one")},
        ],
    )
    return root / "train", bad


def _dataset(shards, **kwargs):
    directory, bad = shards
    urls = sorted(str(p) for p in directory.glob("*.tar"))
    if kwargs.pop("with_bad", False):
        urls.append(str(bad))
    options = {"decode_timeout": None, "shuffle_buffer": 4, "train": True, "seed": 0}
    options.update(kwargs)
    return StreamingVideoTextDataset(webdataset_samples(urls), SAMPLING, **options)


def _names(batch):
    return [*batch.get("video_id", []), *(e["video"] for e in batch["errors"])]


def _epoch(dataset, epoch, workers=0, loader=StatefulDataLoader):
    dataset.set_epoch(epoch)
    batches = loader(dataset, batch_size=2, num_workers=workers, collate_fn=VideoTextCollator())
    return [_names(b) for b in batches]


def test_each_sample_once_per_epoch_across_workers_and_bad_samples_named(shards):
    dataset = _dataset(shards, with_bad=True, decode_timeout=30.0)
    dataset.set_epoch(0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=VideoTextCollator())
    summary = DataErrorSummary()
    seen = Counter()
    errors = {}
    for batch in loader:
        summary.record(batch["errors"])
        errors.update({error["key"]: error for error in batch["errors"]})
        if not batch["batch_size"]:
            continue
        assert batch["pixel_values"].shape == (batch["batch_size"], 3, 3, 32, 32)
        assert batch["video_mask"].all()
        assert [key == video_id for key, video_id in zip(batch["key"], batch["video_id"])] == [True] * len(
            batch["key"]
        )
        assert all(isinstance(captions, list) and captions for captions in batch["captions"])
        seen.update(batch["video_id"])
    assert seen == Counter(ALL + ["fine"])
    bad = str(shards[1])
    # a failed sample keeps its captions: an evaluation counts them as misses
    assert {k: (e["shard"], e["video_id"], e["captions"]) for k, e in errors.items()} == {
        "not_video": (bad, "not_video", ["noise"]),
        "no_caption": (bad, "no_caption", []),
    }
    assert set(summary.failures) == {f"{bad}#not_video", f"{bad}#no_caption"}
    assert summary.failures[f"{bad}#no_caption"].startswith("no caption")
    assert "could not open it" in summary.failures[f"{bad}#not_video"]


def test_on_error_raise_names_shard_and_key(shards):
    dataset = _dataset(shards, with_bad=True, on_error="raise", shuffle_buffer=0)
    with pytest.raises(VideoDecodeError) as info:
        list(dataset)
    assert info.value.path == f"{shards[1]}#not_video"


def test_shuffle_is_seeded_per_epoch_and_evaluation_keeps_shard_order(shards):
    dataset = _dataset(shards)
    orders = {epoch: sum(_epoch(dataset, epoch), []) for epoch in (0, 1)}
    assert sorted(orders[0]) == sorted(orders[1]) == sorted(ALL)
    assert orders[0] != orders[1]
    assert sum(_epoch(_dataset(shards), 1), []) == orders[1]  # same seed, same epoch: same order
    assert sum(_epoch(_dataset(shards, seed=1), 1), []) != orders[1]
    evaluation = _dataset(shards, train=False, shuffle_buffer=0)
    assert sum(_epoch(evaluation, 3), []) == [row["video_id"] for row in open_shards(shards[0])]


def test_training_draws_a_caption_per_epoch_evaluation_takes_the_first(shards):
    row = next(r for r in open_shards(shards[0]) if r["video_id"] == "v4")
    train = _dataset(shards, shuffle_buffer=0)
    drawn = [(item["caption"], item["frame_indices"]) for item in (train.load(row, epoch) for epoch in range(12))]
    assert {caption for caption, _ in drawn} == {"video 4", "four b", "four c"}
    assert len({tuple(indices) for _, indices in drawn}) > 1  # frame jitter changes with the epoch too
    again = _dataset(shards, shuffle_buffer=0, seed=0)
    assert [(i["caption"], i["frame_indices"]) for i in (again.load(row, e) for e in range(12))] == drawn
    train.set_epoch(9)  # the iteration uses the same draw as `load` for its epoch
    (item,) = [item for item in train if item["video_id"] == "v4"]
    assert item["captions"] == ["video 4", "four b", "four c"]
    assert (item["caption"], item["frame_indices"]) == drawn[9]
    evaluation = _dataset(shards, train=False, shuffle_buffer=0)
    assert {evaluation.load(row, epoch)["caption"] for epoch in range(3)} == {"video 4"}


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly_where_the_loader_stopped(shards, workers):
    full = _epoch(_dataset(shards, with_bad=True), 2, workers)
    for cut in (1, 4, len(full) - 1, len(full)):
        dataset = _dataset(shards, with_bad=True)
        dataset.set_epoch(2)
        loader = StatefulDataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=VideoTextCollator())
        iterator = iter(loader)
        got = [_names(next(iterator)) for _ in range(cut)]
        state = pickle.loads(pickle.dumps(loader.state_dict()))  # as it would be saved with a checkpoint
        del iterator, loader
        fresh = _dataset(shards, with_bad=True)  # a new process: the state carries the epoch
        loader = StatefulDataLoader(fresh, batch_size=2, num_workers=workers, collate_fn=VideoTextCollator())
        loader.load_state_dict(state)
        got += [_names(b) for b in loader]
        assert got == full, f"cut after {cut} batches"
    # after a finished epoch, the next one is whole again
    assert sorted(sum(_epoch(fresh, 3, workers), [])) == sorted(sum(full, []))


def test_resume_refuses_a_differently_configured_dataset(shards):
    state = _dataset(shards).state_dict()
    with pytest.raises(ValueError, match=r"shuffle_buffer=4 \(now 8\)"):
        _dataset(shards, shuffle_buffer=8).load_state_dict(state)
    with pytest.raises(ValueError, match=r"rank=0 \(now 1\), world_size=1 \(now 2\)"):
        _dataset(shards, rank=1, world_size=2).load_state_dict(state)


def test_a_killed_run_resumes_without_repeating_or_skipping(shards, tmp_path):
    log, state = tmp_path / "seen.jsonl", tmp_path / "loader_state.pt"
    command = [sys.executable, str(HERE / "streaming_resume_worker.py"), str(shards[0]), str(log), str(state)]
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([*command, "--kill-after", "3"], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    first = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(first) == 3
    from streaming_resume_worker import run

    run(shards[0], log, state)  # a new process (this one) resumes from the state the killed one saved
    seen = [key for batch in map(json.loads, log.read_text().splitlines()) for key in batch]
    assert Counter(seen) == Counter(ALL)
