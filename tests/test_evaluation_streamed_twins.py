"""Twin accuracy, its per-kind figures and the order-sensitive subset on a streamed split: the videos' metadata that
`peft-video shard` stores (`meta`) reaches `encode_stream`'s rows, so a split read from WebDataset or Parquet shards
scores exactly as the same split read from its manifest, also when a video of a twin pair cannot be decoded; shards
without metadata still evaluate, without twin figures."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from shard_fixtures import write_tar
from train_fixtures import assert_same_metrics
from transformers import AutoTokenizer, CLIPModel
from video_fixtures import write_random_bytes

from peft_video.baselines import MeanPoolingCLIP
from peft_video.cli import main as cli_main
from peft_video.data import (
    ClipFrameTransform,
    FrameSampling,
    load_manifest,
    open_shards,
    parquet_samples,
    webdataset_samples,
)  # fmt: skip
from peft_video.evaluation import RetrievalEvaluator, metadata_columns
from peft_video.synthetic import TINY_CLIP_PATH, WorldConfig, write_world

NUM_TEST = 16
FORMATS = ("webdataset", "parquet")


class PositionWeightedCLIP(MeanPoolingCLIP):
    """Frames weighted by their position (earlier ones more): a video and its reverse get different embeddings, so
    twin accuracy is not the 50 % of ties that mean pooling gives."""

    def get_video_features(self, pixel_values, video_mask=None):
        frames = F.normalize(super().get_video_features(pixel_values, video_mask).frame_embeds, dim=-1)
        mask = video_mask.float() if video_mask is not None else torch.ones(frames.shape[:2])
        weights = torch.linspace(1.0, 0.1, frames.shape[1])[None] * mask
        return SimpleNamespace(pooler_output=(frames * weights[..., None]).sum(1) / weights.sum(1, keepdim=True))


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny world (16 test videos, twins of several kinds), the same world with one twin's file corrupted, each
    written as WebDataset and Parquet shards of 3 videos, the committed tiny CLIP (trained on the world: its captions
    tell videos apart, so twin accuracy differs between kinds) and an evaluator that reports twins and the
    order-sensitive subset."""
    root = tmp_path_factory.mktemp("streamed_twins")
    manifest = write_world(root / "world", 2, 2, NUM_TEST, config=WorldConfig(num_frames=4, seed=0))
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    twin = next(r for r in rows if r["split"] == "test" and r["order_pair_id"] and r["kind"] != "order")
    shutil.copytree(root / "world", root / "broken")  # the same world, one twin's file replaced by random bytes
    write_random_bytes(root / "broken" / twin["video"])
    manifests = {"clean": manifest, "broken": root / "broken" / manifest.name}
    for world, path in manifests.items():
        for kind in FORMATS:
            command = ["shard", str(path), "--out", str(root / world / kind), "--format", kind]
            assert cli_main(command + ["--split", "test", "--max-shard-samples", "3", "--no-progress"]) == 0
    model = PositionWeightedCLIP(CLIPModel.from_pretrained(TINY_CLIP_PATH), num_frames=4).eval()
    evaluate = RetrievalEvaluator(
        FrameSampling(num_frames=4, image_size=64), ClipFrameTransform.for_image_size(64),
        AutoTokenizer.from_pretrained(TINY_CLIP_PATH), max_text_length=32, batch_size=4,
        subset_columns=["is_order_sensitive"], twin_column="order_pair_id",
    )  # fmt: skip
    return SimpleNamespace(root=root, manifests=manifests, model=model, evaluate=evaluate, broken_twin=twin)


def _shards(assets, world: str, kind: str):
    return open_shards(assets.root / world / kind)  # written with --split test: the folder holds the test split


SCORED = ("text_to_video", "video_to_text", "twin_accuracy", "subsets", "num_videos", "num_captions", "failed_videos")


@pytest.fixture(scope="module")
def manifest_metrics(assets):
    return {
        world: assets.evaluate(assets.model, load_manifest(path, split="test"))
        for world, path in assets.manifests.items()
    }


@pytest.mark.parametrize("kind", FORMATS)
def test_a_streamed_split_scores_twins_per_kind_and_the_order_subset_as_its_manifest(assets, manifest_metrics, kind):
    expected = manifest_metrics["clean"]
    twins = expected["twin_accuracy"]
    # the split has what the comparison needs: twins of several kinds, each with its n, and an order subset
    assert twins["num_queries"] >= 6 and len(twins["per_kind"]) >= 2
    assert sum(k["num_queries"] for k in twins["per_kind"].values()) == twins["num_queries"]
    assert 0 < expected["subsets"]["is_order_sensitive"]["num_videos"] < NUM_TEST
    # frames weighted by position and captions that tell videos apart: the kinds score differently (misplaced kinds
    # or pair ids in the streamed rows would change a figure, not only an n)
    assert len({k["accuracy"] for k in twins["per_kind"].values()}) > 1

    streamed = assets.evaluate(assets.model, _shards(assets, "clean", kind))
    assert_same_metrics({k: streamed[k] for k in SCORED}, {k: expected[k] for k in SCORED})
    rows = assets.evaluate.last_encoded["rows"]
    by_id = {row["video_id"]: row for row in load_manifest(assets.manifests["clean"], split="test")}
    for row in rows:  # each caption carries its own video's values, with their JSON types
        manifest_row = by_id[row["video_id"]]
        assert (row["kind"], row["order_pair_id"]) == (manifest_row["kind"], manifest_row["order_pair_id"])
        assert row["is_order_sensitive"] is manifest_row["is_order_sensitive"]
    assert rows.features["is_order_sensitive"].dtype == "bool" and rows.features["num_frames"].dtype == "int64"


@pytest.mark.parametrize("kind", FORMATS)
def test_a_failed_video_keeps_its_metadata_in_a_streamed_split(assets, manifest_metrics, kind):
    expected = manifest_metrics["broken"]
    # the corrupted twin: its pair leaves twin accuracy, and it counts as a failure of the order subset
    assert expected["failed_videos"] == 1 and expected["subsets"]["is_order_sensitive"]["failed_videos"] == 1
    clean = manifest_metrics["clean"]["twin_accuracy"]
    assert expected["twin_accuracy"]["num_queries"] == clean["num_queries"] - 2

    streamed = assets.evaluate(assets.model, _shards(assets, "broken", kind))
    assert_same_metrics({k: streamed[k] for k in SCORED}, {k: expected[k] for k in SCORED})
    (failure,) = streamed["data_errors"]["unreadable_videos"]
    broken = assets.broken_twin
    assert failure.endswith(f"#{broken['video_id']}")
    (row,) = [r for r in assets.evaluate.last_encoded["rows"] if r["video_id"] == broken["video_id"]]
    assert row["caption"] == broken["caption"]
    assert (row["kind"], row["order_pair_id"], row["is_order_sensitive"]) == (
        broken["kind"], broken["order_pair_id"], True,
    )  # fmt: skip


def test_shards_without_metadata_evaluate_without_twin_figures(assets, tmp_path):
    """Foreign shards: a tar of mp4 + txt members only, and a Parquet file of bytes and captions without `meta`."""
    test_rows = list(load_manifest(assets.manifests["clean"], split="test"))
    samples = [
        {"__key__": row["video_id"], "mp4": open(row["video"], "rb").read(), "txt": row["caption"].encode()}
        for row in test_rows
    ]
    tar = write_tar(tmp_path / "foreign.tar", samples)
    table = pa.table({
        "key": [s["__key__"] for s in samples], "video": [s["mp4"] for s in samples],
        "captions": [[row["caption"]] for row in test_rows],
    })  # fmt: skip
    pq.write_table(table, tmp_path / "foreign.parquet")
    for stream in (webdataset_samples(str(tar)), parquet_samples(str(tmp_path / "foreign.parquet"))):
        metrics = assets.evaluate(assets.model, stream)
        assert metrics["num_videos"] == metrics["num_captions"] == NUM_TEST
        assert "twin_accuracy" not in metrics and "subsets" not in metrics
        assert assets.evaluate.last_encoded["rows"].column_names == ["video_id", "caption"]


def test_metadata_columns_keep_types_and_fill_missing_fields():
    metas = [{"kind": "order", "n": 1, "flag": True}, None, {"kind": "motion", "mixed": "a"}, {"mixed": 2, "n": 3}]
    columns = metadata_columns(metas)
    assert list(columns) == ["kind", "n", "flag", "mixed"]
    assert columns["kind"] == ["order", None, "motion", None]
    assert columns["n"] == [1, None, None, 3] and columns["flag"] == [True, None, None, None]
    assert columns["mixed"] == [None, None, "a", "2"]  # Arrow holds one type per column: text for mixed values
    assert metadata_columns([{"video_id": "x", "caption": "y", "z": 0}]) == {"z": [0]}
