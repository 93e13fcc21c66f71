"""The `peft-video` command line on a manifest of healthy and broken videos written by the tests."""

import json

import pytest
from video_fixtures import write_random_bytes, write_truncated, write_video, write_zero_byte

from peft_video.cli import main
from peft_video.data import FrameCache, FrameSampling, VideoTextDataset, load_manifest, write_manifest


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    write_video(d / "videos" / "a.mp4", num_frames=8)
    write_video(d / "videos" / "b.ts", num_frames=12, container_format="mpegts", width=80, height=60)
    write_zero_byte(d / "videos" / "empty.mp4")
    write_random_bytes(d / "videos" / "noise.mkv")
    write_truncated(d / "videos" / "cut.mp4")
    good = [
        {"video": "videos/a.mp4", "caption": "a", "split": "test"},
        {"video": "videos/b.ts", "caption": "b", "split": "test"},
        {"video": "videos/b.ts", "caption": "b again", "split": "test"},
    ]
    bad = good + [
        {"video": "videos/empty.mp4", "caption": "x", "split": "test"},
        {"video": "videos/noise.mkv", "caption": "y", "split": "test"},
        {"video": "videos/cut.mp4", "caption": "z", "split": "test"},
        {"video": "videos/gone.mp4", "caption": "w", "split": "test"},
        {"video": "videos/a.mp4", "caption": " ", "split": "test"},
    ]
    return write_manifest(good, d / "good.csv"), write_manifest(bad, d / "bad.jsonl")


def test_validate_names_every_unreadable_file_and_strict_fails(manifests, capsys, tmp_path):
    good, bad = manifests
    assert main(["validate", str(good), "--strict", "--no-progress", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "videos: 2" in out and "unreadable: 0" in out
    report = tmp_path / "report.json"
    assert main(["validate", str(bad), "--no-progress", "--report", str(report)]) == 0  # not strict: report only
    assert main(["validate", str(bad), "--strict", "--no-progress", "--timeout", "20"]) == 1
    out = capsys.readouterr().out
    for name in ("empty.mp4", "noise.mkv", "cut.mp4", "gone.mp4"):
        assert f"{name}:" in out
    assert "unreadable: 4" in out and "rows with an empty caption: 7" in out
    data = json.loads(report.read_text())
    assert data["videos"] == 6 and data["unreadable"] == 4 and data["empty_caption_rows"] == [7]


def test_cache_command_builds_a_store_the_dataset_uses(manifests, capsys):
    good, _ = manifests
    assert main(["cache", str(good), "--num-frames", "4", "--short-side", "32", "--no-progress"]) == 0
    assert "2 videos cached, 0 failed" in capsys.readouterr().out
    cache_dir = good.with_name(good.name + ".frames")
    cache = FrameCache.open(cache_dir)
    assert cache.sampling == FrameSampling(num_frames=4) and cache.shape == (2, 4, 32, 32, 3)
    dataset = VideoTextDataset(
        load_manifest(good), FrameSampling(num_frames=4, image_size=32), cache=cache_dir, decode_timeout=None
    )
    assert dataset[1]["pixel_values"].shape == (4, 3, 32, 32)


def test_cache_reads_sampling_from_an_adapter_config(manifests, tmp_path, capsys):
    good, _ = manifests
    config = tmp_path / "adapter_config.json"
    config.write_text(
        json.dumps(
            {
                "num_frames": 4,
                "frame_sampling": "chunked_segments",
                "frame_chunk_size": 2,
                "sampling_fps": None,
                "image_size": 32,
                "peft_type": "TFVL",
            }
        )
    )
    out = tmp_path / "c"
    assert (
        main(
            [
                "cache",
                str(good),
                "--adapter-config",
                str(config),
                "--out",
                str(out),
                "--short-side",
                "16",
                "--no-progress",
            ]
        )
        == 0
    )
    assert FrameCache.open(out).sampling.frame_sampling == "chunked_segments"


def test_preprocess_reencodes_and_records_parameters(manifests, tmp_path, capsys):
    _, bad = manifests
    out = tmp_path / "small"
    assert main(["preprocess", str(bad), "--out", str(out), "--fps", "4", "--short-side", "32", "--no-progress"]) == 0
    record = json.loads((out / "preprocess.json").read_text())
    assert record["parameters"] == {"fps": 4.0, "short_side": 32, "codec": "libx264", "crf": 23}
    assert len(record["videos"]) == 2 and len(record["failed"]) == 4
    converted = load_manifest(out / "bad.jsonl")
    assert set(converted["video_id"]) == {"videos/a", "videos/b"}  # ids survive the new paths
    by_source = {v["source"].rsplit("/", 1)[-1]: v for v in record["videos"]}
    assert by_source["a.mp4"]["frames_out"] == 4 and by_source["b.ts"]["height"] == 32
    assert main(["preprocess", str(bad), "--out", str(out), "--strict", "--no-progress"]) == 1


def test_missing_manifest_is_a_clear_error(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.csv")]) == 2
    assert "manifest not found" in capsys.readouterr().err
