"""Indexing a collection that lives in shards (WebDataset tars, Parquet files, a `peft-video shard` folder, a
`datasets` dataset holding bytes) without exploding it to disk: the same embeddings as from the files the shards were
written from, one index shard per input shard, resumption after a kill, incremental adds of new shards, broken
samples named `shard#key`, and pictures of shard-sourced hits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from search_fixtures import FAST
from shard_fixtures import add_member, caption_json
from video_fixtures import write_video

from peft_video.data import load_manifest
from peft_video.data.shard_writer import write_shards
from peft_video.search import VideoSearchIndex, VideoTextEncoder, build_index

SPLIT = "test"


@pytest.fixture(scope="module")
def encoder(search_assets):
    return VideoTextEncoder.load(adapter=search_assets.adapter)


@pytest.fixture(scope="module")
def shards(search_assets, tmp_path_factory):
    """The test split written as WebDataset and as Parquet shards of 3 videos (3 shards each), and the split of
    the whole world into one folder per split."""
    root = tmp_path_factory.mktemp("shards")
    data = load_manifest(search_assets.manifest, split=SPLIT)
    write_shards(data, root / "wds", format="webdataset", max_shard_samples=3)
    write_shards(data, root / "parquet", format="parquet", max_shard_samples=3)
    return root


@pytest.fixture(scope="module")
def from_files(search_assets, encoder, tmp_path_factory):
    directory = tmp_path_factory.mktemp("files") / "idx"
    build_index(search_assets.manifest, directory, encoder=encoder, split=SPLIT, **FAST)
    return VideoSearchIndex.open(directory, encoder=encoder)


def _by_id(index: VideoSearchIndex) -> dict[str, np.ndarray]:
    return dict(zip(index.metadata["video_id"], index.embeddings()))


@pytest.mark.parametrize("kind", ["wds", "parquet"])
def test_shards_give_the_embeddings_of_the_files_they_were_written_from(search_assets, encoder, shards, from_files,
                                                                        kind, tmp_path):  # fmt: skip
    directory = tmp_path / "idx"
    written = []
    report = build_index(shards / kind, directory, encoder=encoder, on_shard_written=written.append, **FAST)
    index = VideoSearchIndex.open(directory, encoder=encoder)
    assert report.num_videos == report.added == len(search_assets.test_ids) and report.input_shards == 3
    assert sorted(index.metadata["video_id"]) == sorted(search_assets.test_ids)
    expected, got = _by_id(from_files), _by_id(index)
    for video_id in search_assets.test_ids:
        np.testing.assert_allclose(got[video_id], expected[video_id], atol=1e-5)
    suffix = "tar" if kind == "wds" else "parquet"
    inputs = [str((shards / kind / f"shard-0000{k}.{suffix}").resolve()) for k in range(3)]
    assert written == [f"run0001-0000{k}-shard-0000{k}" for k in range(3)]  # one index shard per input shard
    info = json.loads((directory / "index.json").read_text())
    assert [s["input_shard"] for s in info["shards"]] == inputs and all(s["complete"] for s in info["shards"])
    assert info["runs"][0]["reader"]["format"] == ("webdataset" if kind == "wds" else "parquet")
    first = index.metadata[0]
    shard, key = first["video"].rsplit("#", 1)
    assert shard == inputs[0] and key  # "<shard url>#<key>"
    files = {r["video_id"]: r for r in from_files.metadata}
    assert first["captions"] == files[first["video_id"]]["captions"]
    assert first["duration"] == pytest.approx(files[first["video_id"]]["duration"])
    hits = index.search(first["captions"][0], k=3)
    assert [h.video_id for h in hits] == [h.video_id for h in from_files.search(first["captions"][0], k=3)]
