"""The index: embeddings equal to the model's on the dataset path, metadata, exact and approximate FAISS search,
incremental adds without re-encoding, resumption after a kill, unreadable files, refusal to mix models, corrupt
folders, and the search API's bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from search_fixtures import FAST, kill_build_after_two_shards
from video_fixtures import write_random_bytes, write_video

import peft_video
from peft_video.data import VideoTextCollator, VideoTextDataset, first_caption_per_video, load_manifest
from peft_video.search import (
    IndexCorruptError,
    IndexMismatchError,
    VideoSearchIndex,
    VideoTextEncoder,
    build_index,
    rebuild_faiss,
)
from peft_video.search.ann import EXACT_LIMIT, auto_factory


@pytest.fixture(scope="module")
def encoder(search_assets):
    return VideoTextEncoder.load(adapter=search_assets.adapter)


@pytest.fixture(scope="module")
def built(search_assets, encoder, tmp_path_factory):
    directory = tmp_path_factory.mktemp("index") / "idx"
    report = build_index(search_assets.manifest, directory, encoder=encoder, shard_size=5, **FAST)
    return directory, report


def test_embeddings_and_metadata_match_the_model_on_the_dataset_path(search_assets, encoder, built):
    directory, report = built
    data = load_manifest(search_assets.manifest)
    assert report.num_videos == report.added == len(search_assets.rows) and not report.failed
    index = VideoSearchIndex.open(directory, encoder=encoder)
    # the model on the training/evaluation dataset output, without the index
    rows = first_caption_per_video(data)
    dataset = VideoTextDataset(rows, encoder.processor.sampling, encoder.processor.transform, decode_timeout=None)
    batch = VideoTextCollator()([dataset[i] for i in range(len(dataset))])
    expected = encoder.encode_pixels(batch["pixel_values"], batch["video_mask"])
    assert index.metadata["video_id"] == batch["video_id"]  # manifest order, each video once
    np.testing.assert_allclose(index.embeddings(), expected, atol=1e-5)
    first = index.metadata[0]
    assert first["video"] == rows[0]["video"] and Path(first["video"]).is_absolute()
    assert first["captions"] == [rows[0]["caption"]] and first["duration"] == pytest.approx(0.5)
    info = json.loads((directory / "index.json").read_text())
    identity = info["identity"]
    assert identity["adapter"] == str(search_assets.adapter) and identity["base_model"] == str(search_assets.clip)
    assert identity["method"] == "tfvl" and identity["sampling"]["num_frames"] == 4
    assert len(identity["adapter_weights"]) == 64 and identity["embedding_dim"] == 16
    assert info["peft_video_version"] == peft_video.__version__ and info["factory"] == "Flat"
    assert [s["rows"] for s in info["shards"]] == [5] * 6 + [2]


def test_text_search_is_exact_inner_product_with_the_index_adapter(search_assets, built):
    directory, _ = built
    index = VideoSearchIndex.open(directory)  # the encoder comes from index.json
    query = search_assets.rows[3]["caption"]
    hits = index.search(query, k=5)
    scores = index.embeddings() @ index.encoder.encode_text([query])[0]
    assert [h.video_id for h in hits] == [index.metadata["video_id"][i] for i in np.argsort(-scores)[:5]]
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:5], atol=1e-5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert len(index.search([query, "a blue square"], k=2)) == 2


def test_video_queries_by_id_and_by_file(search_assets, built):
    directory, _ = built
    index = VideoSearchIndex.open(directory)
    target = index.metadata[7]
    by_id = index.search_video(target["video_id"], k=4)
    assert target["video_id"] not in [h.video_id for h in by_id] and [h.rank for h in by_id] == [1, 2, 3, 4]
    by_file = index.search_video(target["video"], k=5)
    assert by_file[0].video_id == target["video_id"] and by_file[0].score == pytest.approx(1.0, abs=1e-4)
    # the neighbours the stored embedding has: the same scores, each its hit's true score (hits of equal score, e.g.
    # identical clips, may come in either order)
    np.testing.assert_allclose([h.score for h in by_file[1:]], [h.score for h in by_id], atol=1e-5)
    true = index.embeddings() @ index.embeddings()[7]
    ids = list(index.metadata["video_id"])
    assert all(abs(true[ids.index(h.video_id)] - h.score) < 1e-5 for h in by_file[1:])


def test_bad_queries_are_named(built, caplog):
    directory, _ = built
    index = VideoSearchIndex.open(directory)
    with pytest.raises(ValueError, match="the query is empty"):
        index.search("   ")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search("a red circle", k=0)
    with caplog.at_level("WARNING"):
        hits = index.search("a red circle", k=500)
    assert len(hits) == len(index) and "k=500 exceeds the 32 videos" in caplog.text
    with pytest.raises(FileNotFoundError, match="neither a video_id of index"):
        index.search_video("no_such_video")


def test_incremental_add_encodes_only_new_videos(search_assets, encoder, tmp_path, built):
    directory = tmp_path / "idx"
    written = []
    first = build_index(
        search_assets.manifest, directory, encoder=encoder, split="test", shard_size=3,
        on_shard_written=written.append, **FAST,
    )  # fmt: skip
    assert first.num_videos == len(search_assets.test_ids) == first.added
    old_shards = {p.name: p.stat().st_mtime_ns for p in (directory / "shards").iterdir()}
    old = VideoSearchIndex.open(directory).embeddings()
    written.clear()
    second = build_index(
        search_assets.manifest, directory, encoder=encoder, shard_size=3, on_shard_written=written.append, **FAST
    )
    assert second.already_indexed == len(search_assets.test_ids)
    assert second.added == len(search_assets.rows) - len(search_assets.test_ids)
    assert all(name.startswith("run0002") for name in written)  # nothing of the first run encoded again
    assert {n: (directory / "shards" / n).stat().st_mtime_ns for n in old_shards} == old_shards
    index = VideoSearchIndex.open(directory)
    np.testing.assert_array_equal(index.embeddings(range(len(old))), old)
    assert sorted(index.metadata["video_id"]) == sorted(VideoSearchIndex.open(built[0]).metadata["video_id"])
    assert [r["run"] for r in index.info["runs"]] == ["run0001", "run0002"]
    third = build_index(search_assets.manifest, directory, encoder=encoder, **FAST)  # nothing new: nothing done
    assert third.added == 0 and len(list(directory.glob("faiss-*.index"))) == 1


def test_a_killed_build_resumes_without_redoing_written_shards(search_assets, built, tmp_path):
    directory = tmp_path / "idx"
    kill_build_after_two_shards(search_assets.manifest, directory, search_assets.adapter, shard_size=4)
    with pytest.raises(IndexCorruptError, match="first build did not finish"):
        VideoSearchIndex.open(directory)
    survivors = {p.name: p.stat().st_mtime_ns for p in (directory / "shards").iterdir()}
    assert sorted(survivors) == ["run0001-00000", "run0001-00001"]
    written = []
    report = build_index(
        search_assets.manifest, directory, adapter=search_assets.adapter, shard_size=4,
        on_shard_written=written.append, **FAST,
    )  # fmt: skip
    assert report.resumed_shards == 2 and "run0001-00000" not in written and "run0001-00001" not in written
    assert {n: (directory / "shards" / n).stat().st_mtime_ns for n in survivors} == survivors
    resumed, clean = VideoSearchIndex.open(directory), VideoSearchIndex.open(built[0])
    assert resumed.metadata["video_id"] == clean.metadata["video_id"]
    np.testing.assert_allclose(resumed.embeddings(), clean.embeddings(), atol=1e-6)
    assert not list((directory / "runs").glob("*.json"))  # the finished plan is gone


def test_unreadable_videos_are_skipped_reported_and_retried(search_assets, encoder, tmp_path):
    folder = tmp_path / "videos"
    write_video(folder / "good.mp4", num_frames=6)
    write_video(folder / "sub" / "also_good.avi", codec="mpeg4", num_frames=6)
    write_random_bytes(folder / "broken.mp4")
    (folder / "notes.txt").write_text("not a video")
    directory = tmp_path / "idx"
    report = build_index(folder, directory, encoder=encoder, **FAST)
    assert report.num_videos == 2 and list(report.failed) == [str(folder / "broken.mp4")]
    assert "broken.mp4" in str(report) and "UNREADABLE" in str(report)
    info = json.loads((directory / "index.json").read_text())
    assert (
        list(info["failed"]) == [str(folder / "broken.mp4")] and info["failed"][str(folder / "broken.mp4")]["reason"]
    )
    assert sorted(VideoSearchIndex.open(directory).metadata["video_id"]) == ["good", "sub/also_good"]
    write_video(folder / "broken.mp4", num_frames=6)  # repaired: the next call indexes it
    again = build_index(folder, directory, encoder=encoder, **FAST)
    assert again.added == 1 and not again.failed and again.num_videos == 3
    assert not json.loads((directory / "index.json").read_text())["failed"]


def test_refuses_to_mix_adapters_base_models_or_sampling(search_assets, encoder, tmp_path):
    directory = tmp_path / "idx"
    build_index(search_assets.manifest, directory, encoder=encoder, split="val", **FAST)
    before = (directory / "index.json").read_bytes()
    with pytest.raises(IndexMismatchError, match="adapter_weights"):
        build_index(search_assets.manifest, directory, adapter=search_assets.other_adapter, **FAST)
    with pytest.raises(IndexMismatchError, match=r"sampling: index has .*'num_frames': 4.*'num_frames': 6"):
        build_index(search_assets.manifest, directory, base_model=search_assets.clip, num_frames=6, **FAST)
    with pytest.raises(IndexMismatchError, match="adapter_weights"):
        VideoSearchIndex.open(directory, encoder=VideoTextEncoder.load(adapter=search_assets.other_adapter))
    assert (directory / "index.json").read_bytes() == before  # nothing of the index was touched
    assert len(VideoSearchIndex.open(directory)) == 8


def test_corrupt_folders_are_named_and_the_faiss_file_rebuilt_without_reencoding(search_assets, built, tmp_path):
    directory = tmp_path / "idx"
    shutil.copytree(built[0], directory)
    expected = [h.video_id for h in VideoSearchIndex.open(directory).search_video("train_00003", k=5)]
    faiss_file = next(directory.glob("faiss-*.index"))
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    with pytest.raises(IndexCorruptError, match=r"cannot be read by FAISS.*--rebuild-faiss"):
        VideoSearchIndex.open(directory)
    faiss_file.unlink()
    with pytest.raises(IndexCorruptError, match=rf"{faiss_file.name} named in .* is missing"):
        VideoSearchIndex.open(directory)
    rebuild_faiss(directory)
    assert [h.video_id for h in VideoSearchIndex.open(directory).search_video("train_00003", k=5)] == expected

    shutil.rmtree(directory / "shards" / "run0001-00002")
    with pytest.raises(IndexCorruptError, match="run0001-00002 named in .* is missing"):
        VideoSearchIndex.open(directory)
    (directory / "index.json").write_text("{not json")
    with pytest.raises(IndexCorruptError, match="index.json is not valid JSON"):
        VideoSearchIndex.open(directory)
    with pytest.raises(IndexCorruptError, match="is not a peft_video index"):
        VideoSearchIndex.open(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoSearchIndex.open(tmp_path / "nowhere")


def test_approximate_indexes_by_factory_string_and_by_size(search_assets, encoder, built, tmp_path):
    assert auto_factory(EXACT_LIMIT) == ("Flat", "")
    factory, params = auto_factory(1_000_000)
    assert factory == "IVF4096,Flat" and params.startswith("nprobe=")
    exact = VideoSearchIndex.open(built[0])
    queries = exact.embeddings(range(0, 32, 4)) + 0.01
    truth = [[h.video_id for h in hits] for hits in exact.search_vectors(queries, k=5)]
    for factory, params in (("IVF4,Flat", "nprobe=4"), ("IVF4_HNSW8,Flat", "nprobe=4"), ("HNSW8,Flat", "efSearch=64")):
        directory = tmp_path / factory.replace(",", "_")
        shutil.copytree(built[0], directory)
        rebuild_faiss(directory, factory, params)
        approximate = VideoSearchIndex.open(directory)
        assert approximate.info["factory"] == factory and approximate.info["search_params"] == params
        got = [[h.video_id for h in hits] for hits in approximate.search_vectors(queries, k=5)]
        assert got == truth, factory  # every cell probed / a wide beam on 32 vectors: exact
    with pytest.raises(ValueError, match="cannot build an index from the factory string"):
        build_index(search_assets.manifest, tmp_path / "bad", encoder=encoder, factory="NoSuchIndex", **FAST)
    assert not (tmp_path / "bad" / "index.json").exists()


def test_datasets_and_path_lists_as_sources(search_assets, encoder, tmp_path):
    import datasets

    test_rows = [r for r in search_assets.rows if r["split"] == "test"]
    videos = [str(search_assets.manifest.parent / r["video"]) for r in test_rows]
    hub_like = datasets.Dataset.from_dict(
        {"clip": videos, "text": [r["caption"] for r in test_rows], "vid": [r["video_id"] for r in test_rows]}
    ).cast_column("clip", datasets.Video(decode=False))
    from peft_video.search import collect_videos

    records = collect_videos(hub_like, video_column="clip", caption_column="text", video_id_column="vid").records
    assert [r.video_id for r in records] == search_assets.test_ids and records[0].captions == (
        test_rows[0]["caption"],
    )
    report = build_index(videos, tmp_path / "idx", encoder=encoder, **FAST)
    assert report.num_videos == len(videos)
    with pytest.raises(ValueError, match="names two different files"):
        collect_videos(datasets.Dataset.from_dict({"video": videos[:2], "video_id": ["same", "same"]}))
    with pytest.raises(FileNotFoundError, match="no video files"):
        collect_videos(tmp_path / "idx" / "runs")


def test_zero_shot_index_in_bfloat16(search_assets, tmp_path):
    report = build_index(
        search_assets.manifest, tmp_path / "idx", base_model=search_assets.clip, num_frames=4, split="test",
        dtype="bfloat16", **FAST,
    )  # fmt: skip
    index = VideoSearchIndex.open(tmp_path / "idx")
    assert report.num_videos == 8 and index.identity["method"] == "zero_shot" and index.identity["adapter"] is None
    assert index.encoder.identity["dtype"] == "bfloat16"
    hits = index.search(search_assets.rows[-1]["caption"], k=3)
    assert len(hits) == 3 and all(np.isfinite(h.score) for h in hits)
    assert torch.isfinite(torch.tensor(index.embeddings())).all()
    assert os.path.getsize(next((tmp_path / "idx").glob("faiss-*.index"))) > 8 * 16 * 4


def test_encoder_loads_through_the_scripts_loader_and_names_what_is_missing(search_assets, encoder, tmp_path):
    from peft_video.loading import load_trained_model

    # one loader: the encoder's model is what examples/evaluate.py loads (same weights, same outputs)
    loaded = load_trained_model(str(search_assets.adapter)).model.eval()
    pixels, mask = torch.rand(2, 4, 3, 32, 32), torch.ones(2, 4, dtype=torch.bool)
    with torch.no_grad():
        expected = loaded.get_video_features(pixel_values=pixels, video_mask=mask).pooler_output
    np.testing.assert_allclose(
        encoder.encode_pixels(pixels, mask), torch.nn.functional.normalize(expected, dim=-1).numpy(), atol=1e-6
    )
    assert VideoTextEncoder.load(adapter=search_assets.adapter, dtype="bfloat16").model.get_base_model().dtype == (
        torch.bfloat16
    )
    with pytest.raises(ValueError, match="give an adapter"):
        VideoTextEncoder.load()
    with pytest.raises(ValueError, match="dtype must be one of"):
        VideoTextEncoder.load(adapter=search_assets.adapter, dtype="int8")
    with pytest.raises(FileNotFoundError, match="holds neither adapter_config.json"):
        VideoTextEncoder.load(adapter=tmp_path)
    with pytest.raises(OSError, match="neither a local folder with adapter_config.json nor a reachable Hub"):
        VideoTextEncoder.load(adapter="someone/no-such-adapter")
    moved = tmp_path / "moved_adapter"
    shutil.copytree(search_assets.adapter, moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone" / "clip")
    (moved / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(OSError, match=r"the base model of adapter .* cannot be found: .*gone/clip"):
        VideoTextEncoder.load(adapter=moved)
    assert (
        VideoTextEncoder.load(adapter=moved, base_model=search_assets.clip).identity["adapter_weights"]
        == (encoder.identity["adapter_weights"])
    )
    with pytest.raises(OSError, match=r"base model '.*nowhere' cannot be loaded as a CLIPModel"):
        VideoTextEncoder.load(base_model=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="fine-tuned CLIPModel folder, not an adapter"):
        VideoTextEncoder.load(adapter=search_assets.clip)
