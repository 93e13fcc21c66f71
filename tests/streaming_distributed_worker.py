"""One process of `accelerate launch --multi_gpu --num_processes 2` for tests/test_data_streaming_distributed.py.

Streams the offline world's training shards with 2 DataLoader workers per process and writes, per process, the video
ids it received: epoch 0 whole; epoch 1 in two parts, the second by a fresh dataset and loader restored from the
first one's state (a restart); and a pass over 3 shards only (not a multiple of the 2 processes: datasets then gives
each process every second sample of every shard)."""

import json
import sys
from pathlib import Path

from accelerate import Accelerator
from torchdata.stateful_dataloader import StatefulDataLoader

from peft_video.data import FrameSampling, VideoTextCollator
from peft_video.data.shards import open_shards, shard_index, webdataset_samples
from peft_video.data.streaming import StreamingVideoTextDataset

SAMPLING = FrameSampling(num_frames=4, image_size=32)


def loader_for(samples, accelerator, epoch, **options):
    dataset = StreamingVideoTextDataset(
        samples, SAMPLING, rank=accelerator.process_index, world_size=accelerator.num_processes, **options
    )
    dataset.set_epoch(epoch)
    return StatefulDataLoader(dataset, batch_size=2, num_workers=2, collate_fn=VideoTextCollator())


def main(shards: Path, out: Path) -> None:
    accelerator = Accelerator()
    assert accelerator.num_processes == 2, f"expected 2 processes, got {accelerator.num_processes}"
    train = {"train": True, "shuffle_buffer": 4, "seed": 11}
    record = {"rank": accelerator.process_index, "errors": []}

    def ids(batches):
        found = []
        for batch in batches:
            record["errors"] += batch["errors"]
            found += batch.get("video_id", [])
        return found

    record["epoch0"] = ids(loader_for(open_shards(shards), accelerator, 0, **train))
    first = loader_for(open_shards(shards), accelerator, 1, **train)
    iterator = iter(first)
    record["epoch1_before_restart"] = ids(next(iterator) for _ in range(2))
    state = first.state_dict()
    del iterator, first
    restarted = loader_for(open_shards(shards), accelerator, 0, **train)  # the state says epoch 1
    restarted.load_state_dict(state)
    record["epoch1_after_restart"] = ids(restarted)
    three = [str(shards / s["name"]) for s in shard_index(shards)["shards"][:3]]
    record["three_shards"] = ids(loader_for(webdataset_samples(three), accelerator, 0))
    (out / f"rank{accelerator.process_index}.json").write_text(json.dumps(record))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
