"""A training loop's data side, for tests/test_data_streaming.py: stream the shards with 2 DataLoader workers, and
after every batch append its video ids to LOG and save the loader's state to STATE (as a checkpoint would). With
`--kill-after N` the process SIGKILLs itself after N batches (a crash: no cleanup, no final save). `run` without it
resumes from STATE and finishes the epoch."""

import argparse
import json
import os
import signal
from pathlib import Path

import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from peft_video.data import FrameSampling, VideoTextCollator
from peft_video.data.shards import open_shards
from peft_video.data.streaming import StreamingVideoTextDataset


def run(shards: Path, log: Path, state: Path, kill_after: int | None = None) -> None:
    """Stream one epoch, logging each batch's video ids and saving the loader state after it."""
    dataset = StreamingVideoTextDataset(
        open_shards(shards), FrameSampling(num_frames=2, image_size=32), train=True, shuffle_buffer=4, seed=5
    )
    dataset.set_epoch(1)
    loader = StatefulDataLoader(dataset, batch_size=2, num_workers=2, collate_fn=VideoTextCollator())
    if state.exists():
        loader.load_state_dict(torch.load(state, weights_only=False))
    for step, batch in enumerate(loader, start=1):
        with log.open("a") as handle:
            handle.write(json.dumps(batch["video_id"]) + "\n")
        partial = state.with_suffix(".partial")
        torch.save(loader.state_dict(), partial)
        os.replace(partial, state)  # a kill never leaves half a state
        if kill_after is not None and step == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("shards", type=Path)
    parser.add_argument("log", type=Path)
    parser.add_argument("state", type=Path)
    parser.add_argument("--kill-after", type=int, default=None)
    args = parser.parse_args()
    run(args.shards, args.log, args.state, args.kill_after)
