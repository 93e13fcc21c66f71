"""The offline world written as shards with `peft-video shard`, streamed by 2 processes x 2 DataLoader workers: every
sample reaches exactly one process once per epoch, also across a restart from the loaders' saved state, and when the
shard count is not a multiple of the process count."""

import json
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

from peft_video.cli import main as cli_main
from peft_video.data.shards import open_shards, shard_index
from peft_video.synthetic import write_world

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_two_workers_read_each_sample_once_per_epoch(tmp_path):
    manifest = write_world(tmp_path / "world", num_train=20, num_val=2, num_test=2)
    shards = tmp_path / "shards"
    code = cli_main(
        ["shard", str(manifest), "--split", "train", "--out", str(shards), "--max-shard-samples", "2",
         "--shuffle-seed", "0", "--no-progress"]
    )  # fmt: skip
    assert code == 0 and len(shard_index(shards)["shards"]) == 10
    every = Counter(row["video_id"] for row in open_shards(shards))
    assert len(every) == 20 and set(every.values()) == {1}
    three = Counter(row["video_id"] for row in list(open_shards(shards))[:6])

    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(HERE / "streaming_distributed_worker.py"), str(shards), str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["errors"] for r in ranks] == [[], []]
    for rank in ranks:
        assert rank["epoch0"] and rank["epoch1_before_restart"] and rank["epoch1_after_restart"]
    assert Counter(ranks[0]["epoch0"] + ranks[1]["epoch0"]) == every
    assert not set(ranks[0]["epoch0"]) & set(ranks[1]["epoch0"])
    epoch1 = [r["epoch1_before_restart"] + r["epoch1_after_restart"] for r in ranks]
    assert Counter(epoch1[0] + epoch1[1]) == every
    assert epoch1[0] != ranks[0]["epoch0"]  # a new order in a new epoch
    assert Counter(ranks[0]["three_shards"] + ranks[1]["three_shards"]) == three
    assert ranks[0]["three_shards"] and ranks[1]["three_shards"]
