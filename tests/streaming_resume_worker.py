"""A training loop's data side, for tests/test_data_streaming.py: stream the shards with 2 DataLoader workers, and
after every batch append its video ids to LOG and save the loader's state to STATE (as a checkpoint would). With
`--kill-after N` the process SIGKILLs itself after N batches (a crash: no cleanup, no final save). Started again
without it, it resumes from STATE and finishes the epoch."""

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("shards", type=Path)
    parser.add_argument("log", type=Path)
    parser.add_argument("state", type=Path)
    parser.add_argument("--kill-after", type=int, default=None)
    args = parser.parse_args()
    dataset = StreamingVideoTextDataset(
        open_shards(args.shards), FrameSampling(num_frames=2, image_size=32), train=True, shuffle_buffer=4, seed=5
    )
    dataset.set_epoch(1)
    loader = StatefulDataLoader(dataset, batch_size=2, num_workers=2, collate_fn=VideoTextCollator())
    if args.state.exists():
        loader.load_state_dict(torch.load(args.state, weights_only=False))
    for step, batch in enumerate(loader, start=1):
        with args.log.open("a") as log:
            log.write(json.dumps(batch["video_id"]) + "\n")
        partial = args.state.with_suffix(".partial")
        torch.save(loader.state_dict(), partial)
        os.replace(partial, args.state)  # a kill never leaves half a state
        if args.kill_after is not None and step == args.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
