"""Bring-your-own manifests (CSV/JSONL), Hub datasets with path or Video(decode=False) columns, evaluation maps."""

import json

import datasets
import pytest

from peft_video.data import ManifestError, from_hub_dataset, load_manifest, unique_videos, write_manifest


def test_csv_manifest_resolves_paths_fills_defaults_and_keeps_extra_columns(tmp_path):
    (tmp_path / "clips").mkdir()
    manifest = tmp_path / "train.csv"
    manifest.write_text(
        "video,caption,source\nclips/a.mp4,a dog runs,web\nclips/a.mp4,a dog plays,web\n/abs/b.mp4,a cat,cam\n"
    )
    data = load_manifest(manifest)
    assert isinstance(data, datasets.Dataset)
    assert data["video"][0] == str(tmp_path / "clips" / "a.mp4")
    assert data["video"][2] == "/abs/b.mp4"
    assert data["video_id"] == ["clips/a", "clips/a", "b"]
    assert data["split"] == ["all"] * 3 and data["source"] == ["web", "web", "cam"]


def test_jsonl_manifest_with_splits_and_ids(tmp_path):
    rows = [
        {"video": "a.mp4", "caption": "one", "video_id": "v1", "split": "train", "duration": 3.5},
        {"video": "b.mp4", "caption": "two", "video_id": "v2", "split": "test"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    test = load_manifest(manifest, split="test")
    assert test["video_id"] == ["v2"] and test["duration"] == [None]
    with pytest.raises(ManifestError, match="split='val'"):
        load_manifest(manifest, split="val")


def test_manifest_errors_name_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,text\nx.mp4,hi\n")
    with pytest.raises(ManifestError, match=r"bad\.csv: missing column\(s\) \['video', 'caption'\]"):
        load_manifest(bad)
    empty_video = tmp_path / "empty.csv"
    empty_video.write_text("video,caption\n,hi\n")
    with pytest.raises(ManifestError, match="row 1 has an empty `video`"):
        load_manifest(empty_video)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"video": "a.mp4", "caption": "x"}\n{oops\n')
    with pytest.raises(ManifestError, match="line 2 is not valid JSON"):
        load_manifest(broken)
    missing = tmp_path / "missing.csv"
    missing.write_text("video,caption\nnot_there.mp4,hi\n")
    with pytest.raises(ManifestError, match="1 video file\\(s\\) missing"):
        load_manifest(missing, check_files=True)
    with pytest.raises(FileNotFoundError):
        load_manifest(tmp_path / "nope.csv")


def test_write_manifest_round_trips_with_relative_paths(tmp_path):
    rows = [{"video": str(tmp_path / "v" / "a.mp4"), "caption": "x, with comma", "video_id": "a", "split": "test"}]
    for name in ("out.csv", "out.jsonl"):
        path = write_manifest(rows, tmp_path / name)
        assert "v/a.mp4" in path.read_text() and str(tmp_path) not in path.read_text()
        assert load_manifest(path)["video"] == [rows[0]["video"]]
        assert load_manifest(path)["caption"] == ["x, with comma"]


def test_hub_dataset_with_path_or_undecoded_video_column(tmp_path):
    hub = datasets.Dataset.from_dict({"clip": ["a.mp4", "b.mp4"], "text": ["x", "y"], "id": ["1", "2"]})
    data = from_hub_dataset(hub, video_column="clip", caption_column="text", video_id_column="id", base_dir=tmp_path)
    assert data["video"] == [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")] and data["video_id"] == ["1", "2"]
    undecoded = datasets.Dataset.from_dict({"video": [str(tmp_path / "a.mp4")], "caption": ["x"]}).cast_column(
        "video", datasets.Video(decode=False)
    )
    assert from_hub_dataset(undecoded)["video"] == [str(tmp_path / "a.mp4")]
    decoding = undecoded.cast_column("video", datasets.Video())
    with pytest.raises(ManifestError, match="decode=False"):
        from_hub_dataset(decoding)


def test_unique_videos_maps_each_caption_to_its_video():
    data = datasets.Dataset.from_dict(
        {"video_id": ["a", "b", "a", "c", "b"], "video": list("ABACB"), "caption": list("12345")}
    )
    index = unique_videos(data)
    assert index.video_ids == ["a", "b", "c"] and index.videos == ["A", "B", "C"]
    assert index.caption_to_video == [0, 1, 0, 2, 1]
    assert index.captions_per_video == [[0, 2], [1, 4], [3]]


def test_embedded_video_bytes_are_refused_with_a_clear_message():
    hub = datasets.Dataset.from_dict({"video": [{"path": None, "bytes": b"\x00\x01"}], "caption": ["x"]})
    with pytest.raises(ManifestError, match="embedded bytes"):
        from_hub_dataset(hub)
