"""`peft-video index` / `peft-video search`: one process and two (`accelerate launch`, each process writing its own
shards) give the same index; JSON and table output; contact sheets; named errors with exit status 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from search_fixtures import index_with_two_processes

from peft_video.cli import main
from peft_video.search import VideoSearchIndex


def _index_argv(search_assets, out: Path, *extra: str) -> list[str]:
    return [
        "index", str(search_assets.manifest), "--out", str(out), "--adapter", str(search_assets.adapter),
        "--shard-size", "3", "--batch-size", "2", "--timeout", "0", "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def one_process(search_assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "one"
    assert main(_index_argv(search_assets, out)) == 0
    return out


def test_two_processes_build_the_same_index_as_one(search_assets, one_process, tmp_path):
    out = tmp_path / "two"
    result = index_with_two_processes(_index_argv(search_assets, out), port=29531)
    two, one = VideoSearchIndex.open(out), VideoSearchIndex.open(one_process)
    assert two.info["runs"][0]["num_processes"] == 2 and one.info["runs"][0]["num_processes"] == 1
    assert two.metadata["video_id"] == one.metadata["video_id"]
    assert len(set(two.metadata["video_id"])) == len(two) == len(search_assets.rows)  # each video once
    np.testing.assert_allclose(two.embeddings(), one.embeddings(), atol=1e-5)
    assert result.stdout.count("videos (") == 1  # only the main process reports


def test_search_prints_a_table_and_json(search_assets, one_process, capsys):
    query = search_assets.rows[5]["caption"]
    assert main(["search", str(one_process), query, "-k", "3"]) == 0
    table = capsys.readouterr().out
    assert f"query: {query}" in table and "rank   score  video_id" in table and "FAISS Flat" in table
    assert len([line for line in table.splitlines() if line[:4].strip().isdigit()]) == 3
    assert main(["search", str(one_process), query, "-k", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    index = VideoSearchIndex.open(one_process)
    assert [h["video_id"] for h in result["hits"]] == [h.video_id for h in index.search(query, k=3)]
    assert set(result["hits"][0]) == {"rank", "score", "video_id", "video", "duration", "captions", "ground_truth"}
    truth = [h for h in result["hits"] if h["ground_truth"]]
    assert all(query in h["captions"] for h in truth)
    assert main(["search", str(one_process), "--video", "val_00003", "-k", "2", "--json"]) == 0
    assert "val_00003" not in [h["video_id"] for h in json.loads(capsys.readouterr().out)["hits"]]


def test_search_writes_a_contact_sheet(search_assets, one_process, tmp_path, capsys):
    own = search_assets.rows[20]
    out = tmp_path / "sheet.png"
    assert main(["search", str(one_process), own["caption"], "-k", "32", "--gallery", str(out)]) == 0
    assert f"contact sheet written to {out}" in capsys.readouterr().out
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[0] > 32 * 96 and image.shape[1] >= 720  # a row per hit: the caption's own video is among them
    green = (image[..., 1] > 130) & (image[..., 0] < 60) & (image[..., 2] < 100)
    assert green.sum() > 500  # the ground-truth frame


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", "{index}", " "], "the query is empty"),
        (["search", "{missing}", "a red circle"], "is not a peft_video index"),
        (["search", "{index}"], "give a text QUERY"),
        (["index", "--out", "{index}"], "give the SOURCE"),
        (["index", "{manifest}", "--out", "{index}", "--adapter", "{other}", "--timeout", "0"], "adapter_weights"),
        (["index", "{manifest}", "--out", "{new}", "--adapter", "{tmp}", "--timeout", "0"], "adapter_config.json"),
    ],
)
def test_bad_input_is_a_named_error_with_exit_status_2(search_assets, one_process, tmp_path, capsys, argv, message):
    values = {
        "index": one_process, "missing": tmp_path, "manifest": search_assets.manifest,
        "other": search_assets.other_adapter, "new": tmp_path / "new", "tmp": tmp_path,
    }  # fmt: skip
    before = (one_process / "index.json").read_bytes()
    assert main([a.format(**{k: str(v) for k, v in values.items()}) for a in argv]) == 2
    assert message in capsys.readouterr().err
    assert (one_process / "index.json").read_bytes() == before


def test_rebuild_faiss_from_the_command_line(one_process, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(one_process, out)
    for faiss_file in out.glob("faiss-*.index"):
        faiss_file.unlink()
    assert main(["search", str(out), "a red circle"]) == 2
    assert "--rebuild-faiss" in capsys.readouterr().err
    assert main(["index", "--rebuild-faiss", "--out", str(out), "--factory", "HNSW8,Flat"]) == 0
    assert "HNSW8,Flat" in capsys.readouterr().out
    assert main(["search", str(out), "a red circle", "--json"]) == 0
