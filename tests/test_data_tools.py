"""Data tools where data used to be lost or a number silently wrong (issue 11, items 1-6): one policy for partly
decodable files in validate, cache, preprocess and the dataset; one output per preprocessed source; validate per
distinct file; the cache's content fingerprint; native decoder messages kept out of the CLI's output; one default
frame count; installs without decord."""

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from video_fixtures import frame_index_of, write_partly_decodable, write_random_bytes, write_truncated, write_video

from peft_video.cli import main
from peft_video.data import (
    DataErrorSummary,
    FrameCache,
    FrameSampling,
    VideoDecodeError,
    VideoTextCollator,
    VideoTextDataset,
    available_backends,
    build_frame_cache,
    decode_frames,
    load_manifest,
    write_manifest,
)
from peft_video.data.decoding import partial_video
from peft_video.data.errors import PartialVideoError
from peft_video.data.sampling import DEFAULT_NUM_FRAMES

ANNOUNCED = 24


@pytest.fixture(scope="module")
def partial_manifest(tmp_path_factory):
    d = tmp_path_factory.mktemp("partial")
    write_video(d / "good.mp4", num_frames=12)
    write_partly_decodable(d / "broken_tail.mp4", num_frames=ANNOUNCED)
    rows = [
        {"video": "good.mp4", "caption": "a good video", "video_id": "good"},
        {"video": "broken_tail.mp4", "caption": "a damaged video", "video_id": "damaged"},
    ]
    return write_manifest(rows, d / "m.csv")


def _partial_path(manifest: Path) -> str:
    return str(manifest.parent / "broken_tail.mp4")


# -- 3: one policy for partly decodable files ------------------------------------------------------------------------


def test_a_partly_decodable_file_decodes_as_a_shorter_video_that_says_so(partial_manifest):
    path = _partial_path(partial_manifest)
    video = decode_frames(path, FrameSampling(num_frames=4))
    meta = video.metadata
    assert 1 <= meta.num_frames < ANNOUNCED and meta.announced_frames == ANNOUNCED and meta.partial
    # the frames are real ones from the decodable part, spread over it, never zeros
    assert [frame_index_of(f) for f in video.frames.numpy()] == video.indices
    assert max(video.indices) < meta.num_frames and video.mask.all()
    warning = partial_video(path, meta)
    assert path in warning and f"{meta.num_frames} of the {ANNOUNCED} frames" in warning
    with pytest.raises(PartialVideoError, match=f"{meta.num_frames} of the {ANNOUNCED} frames") as info:
        partial_video(path, meta, "raise")
    assert info.value.path == path and info.value.decoded_frames == meta.num_frames
    healthy = decode_frames(str(partial_manifest.parent / "good.mp4"), FrameSampling(num_frames=4)).metadata
    assert not healthy.partial and partial_video("good.mp4", healthy, "raise") is None


def test_validate_names_a_partly_decodable_file_and_strict_makes_it_an_error(partial_manifest, capsys, tmp_path):
    report = tmp_path / "report.json"
    assert main(["validate", str(partial_manifest), "--no-progress", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "partly decodable: 1" in out and "unreadable: 0" in out
    assert f"PARTIAL {_partial_path(partial_manifest)}: partly decodable:" in out
    assert f"of the {ANNOUNCED} frames its header announces" in out
    record = json.loads(report.read_text())
    assert record["partial"] == 1 and record["unreadable"] == 0
    check = next(c for c in record["checks"] if c["video"] == _partial_path(partial_manifest))
    assert check["ok"] and check["announced_frames"] == ANNOUNCED and 1 <= check["num_frames"] < ANNOUNCED

    assert main(["validate", str(partial_manifest), "--no-progress", "--strict"]) == 1
    out = capsys.readouterr().out
    assert "unreadable: 1" in out and "partly decodable: 0" in out
    assert f"UNREADABLE {_partial_path(partial_manifest)}: partly decodable:" in out


def test_cache_keeps_a_partly_decodable_file_with_its_counts_or_fails_it_when_strict(partial_manifest, capsys):
    out_dir = partial_manifest.parent / "cache_keep"
    argv = ["cache", str(partial_manifest), "--num-frames", "4", "--short-side", "16", "--no-progress"]
    assert main([*argv, "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "2 videos cached, 0 failed, 1 partly decodable" in out
    assert f"PARTIAL {_partial_path(partial_manifest)}: partly decodable:" in out
    entry = FrameCache.open(out_dir).entries[_partial_path(partial_manifest)]
    assert entry.status == "ok" and entry.announced_frames == ANNOUNCED and entry.num_frames < ANNOUNCED
    # read back through the dataset, the cached clip follows the same policy as a decoded one
    strict = VideoTextDataset(
        load_manifest(partial_manifest), FrameSampling(num_frames=4, image_size=16), cache=out_dir, on_error="raise"
    )
    with pytest.raises(PartialVideoError):
        strict[1]

    strict_dir = partial_manifest.parent / "cache_strict"
    assert main([*argv, "--out", str(strict_dir), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "1 videos cached, 1 failed" in out and f"FAILED {_partial_path(partial_manifest)}: partly decodable" in out


def test_preprocess_keeps_the_decodable_part_or_fails_it_when_strict(partial_manifest, tmp_path, capsys):
    out_dir = tmp_path / "small"
    assert main(["preprocess", str(partial_manifest), "--out", str(out_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"PARTIAL {_partial_path(partial_manifest)}: partly decodable:" in out
    record = json.loads((out_dir / "preprocess.json").read_text())
    assert list(record["partial"]) == [_partial_path(partial_manifest)] and not record["failed"]
    done = {Path(v["source"]).name: v for v in record["videos"]}["broken_tail.mp4"]
    decodable = decode_frames(_partial_path(partial_manifest), FrameSampling(num_frames=1)).metadata.num_frames
    assert done["frames_announced"] == ANNOUNCED and done["frames_in"] == decodable == done["frames_out"]
    output = decode_frames(done["output"], FrameSampling(num_frames=decodable))
    assert not output.metadata.partial and output.metadata.num_frames == decodable
    assert [frame_index_of(f) for f in output.frames.numpy()] == list(range(decodable))  # the real frames, in order

    strict_dir = tmp_path / "strict"
    assert main(["preprocess", str(partial_manifest), "--out", str(strict_dir), "--no-progress", "--strict"]) == 1
    record = json.loads((strict_dir / "preprocess.json").read_text())
    assert "partly decodable" in record["failed"][_partial_path(partial_manifest)]
    assert not any("broken_tail" in p.name for p in strict_dir.rglob("*.mp4"))  # nothing half-written left


@pytest.mark.parametrize("workers", [0, 2])
def test_dataset_keeps_a_partly_decodable_file_warns_once_and_counts_it(partial_manifest, caplog, workers):
    data = load_manifest(partial_manifest)
    sampling = FrameSampling(num_frames=4, image_size=16)
    dataset = VideoTextDataset(data, sampling, decode_timeout=20)
    with caplog.at_level(logging.WARNING, logger="peft_video.data.dataset"):
        first, second = dataset[1], dataset[1]
    warnings = [r.getMessage() for r in caplog.records if "partly decodable" in r.getMessage()]
    assert len(warnings) == 1 and _partial_path(partial_manifest) in warnings[0]
    assert first["video_mask"].all() and second["partial"]["announced_frames"] == ANNOUNCED
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=VideoTextCollator())
    summary = DataErrorSummary()
    batches = list(summary.track(loader))
    assert batches[0]["batch_size"] == 2 and [p["video"] for p in batches[0]["partial_videos"]] == [
        _partial_path(partial_manifest)
    ]
    decoded, announced = summary.partial[_partial_path(partial_manifest)]
    assert announced == ANNOUNCED and decoded < ANNOUNCED and summary.count == 0
    assert f"{decoded} of the {ANNOUNCED} frames" in str(summary)
    with pytest.raises(PartialVideoError, match="broken_tail.mp4"):
        VideoTextDataset(data, sampling, decode_timeout=20, on_error="raise")[1]


# -- 1: preprocess gives every source its own output ----------------------------------------------------------------


def test_preprocess_writes_every_source_to_its_own_stable_output(tmp_path, capsys):
    d = tmp_path / "data"
    write_video(d / "a" / "x.mp4", num_frames=4)
    write_video(d / "a" / "x.mkv", num_frames=6, container_format="matroska")
    write_video(d / "a" / "x.ts", num_frames=8, container_format="mpegts")
    rows = [
        {"video": f"a/x.{ext}", "caption": f"the {ext} one", "video_id": ext, "num_frames": 999}
        for ext in ("mp4", "mkv", "ts")
    ]
    manifest = write_manifest(rows, d / "m.csv")
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    stranger = out / "a" / "x.ts.mp4"  # a file this run did not write: never overwritten
    stranger.write_bytes(b"not ours")
    assert main(["preprocess", str(manifest), "--out", str(out), "--no-progress"]) == 0
    converted = load_manifest(out / "m.csv")
    outputs = dict(zip(converted["video_id"], converted["video"]))
    assert len(set(outputs.values())) == 3
    assert Path(outputs["mp4"]).relative_to(out).as_posix() == "a/x.mp4"
    assert Path(outputs["mkv"]).relative_to(out).as_posix() == "a/x.mkv.mp4"
    assert Path(outputs["ts"]).name.startswith("x.ts.") and Path(outputs["ts"]) != stranger
    assert stranger.read_bytes() == b"not ours"
    # item 5: the manifest carries the new files' facts, not the sources'
    for video_id, frames in (("mp4", 4), ("mkv", 6), ("ts", 8)):
        row = converted.filter(lambda r, v=video_id: r["video_id"] == v)[0]
        assert int(row["num_frames"]) == frames
        meta = decode_frames(outputs[video_id], FrameSampling(num_frames=frames)).metadata
        assert meta.num_frames == frames and int(row["width"]) == 64 and int(row["height"]) == 48
    # stable: a second run keeps every name
    assert main(["preprocess", str(manifest), "--out", str(out), "--no-progress"]) == 0
    assert dict(zip(*(load_manifest(out / "m.csv")[c] for c in ("video_id", "video")))) == outputs
    capsys.readouterr()


def test_output_names_never_share_a_file_even_case_insensitively(tmp_path):
    from peft_video.data.preprocess import output_names

    base = tmp_path / "data"
    videos = [str(base / name) for name in ("x.mkv", "x.mkv.mp4", "X.MKV", "y.mp4", "../outside/y.mp4")]
    names = output_names(videos, base, tmp_path / "out")
    assert len({n.casefold() for n in names.values()}) == len(videos)
    assert names[str(base / "y.mp4")] == str((tmp_path / "out" / "y.mp4").resolve())
    assert Path(names[str(base / "../outside/y.mp4")]).parent.name == "external"
    assert output_names(videos, base, tmp_path / "out") == names  # deterministic


# -- 2: validate checks every distinct file and reports ids with several files ---------------------------------------


def test_validate_decodes_every_file_and_reports_an_id_given_to_several_files(tmp_path, capsys):
    write_video(tmp_path / "one.mp4", num_frames=8)
    write_random_bytes(tmp_path / "other.mp4")
    write_video(tmp_path / "two.mp4", num_frames=8)
    rows = [
        {"video": "one.mp4", "caption": "x", "video_id": "clip"},
        {"video": "other.mp4", "caption": "y", "video_id": "clip"},  # same id, another (broken) file
        {"video": "two.mp4", "caption": "z", "video_id": "two"},
        {"video": "two.mp4", "caption": "z again", "video_id": "two bis"},  # one file under two ids
    ]
    manifest = write_manifest(rows, tmp_path / "m.csv")
    report = tmp_path / "r.json"
    assert main(["validate", str(manifest), "--no-progress", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "videos: 3" in out and "unreadable: 1" in out and f"UNREADABLE {tmp_path / 'other.mp4'}" in out
    assert "ID WITH SEVERAL FILES 'clip'" in out and str(tmp_path / "one.mp4") in out
    assert f"WARNING {tmp_path / 'two.mp4'} appears under 2 ids" in out
    record = json.loads(report.read_text())
    assert record["conflicting_ids"] == {"clip": [str(tmp_path / "one.mp4"), str(tmp_path / "other.mp4")]}
    # a healthy second file under the same id is still an error with --strict
    write_video(tmp_path / "other.mp4", num_frames=8)
    assert main(["validate", str(manifest), "--no-progress", "--strict"]) == 1
    assert "unreadable: 0" in capsys.readouterr().out


# -- 4: the frame cache notices a changed file with the same size and mtime -------------------------------------------


def test_cache_detects_a_same_size_same_mtime_change(tmp_path):
    sampling = FrameSampling(num_frames=4)
    first = write_video(tmp_path / "v.mp4", num_frames=8)
    original = first.read_bytes()
    changed = bytearray(original)
    middle = original.find(b"mdat") + (original.find(b"moov") - original.find(b"mdat")) // 2
    changed[middle] ^= 0xFF  # one byte of sample data: same size, other content
    cache = build_frame_cache([str(first)], tmp_path / "c", sampling, short_side=16, jobs=1, progress=False)
    stat = first.stat()
    assert str(first) in cache
    first.write_bytes(bytes(changed))  # same size ...
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and the mtime restored (cp -p, rsync -t)
    assert first.stat().st_size == stat.st_size and first.stat().st_mtime_ns == stat.st_mtime_ns
    assert str(first) not in FrameCache.open(tmp_path / "c")  # decoded afresh instead of served stale


# -- 5: native decoder messages stay out of the CLI's output; one default frame count --------------------------------


def test_decoder_messages_do_not_leak_into_the_command_output(tmp_path, capfd):
    write_video(tmp_path / "ok.mp4")
    write_partly_decodable(tmp_path / "damaged.mp4")
    write_truncated(tmp_path / "cut.mp4")
    write_random_bytes(tmp_path / "noise.mp4")
    rows = [{"video": n, "caption": n} for n in ("ok.mp4", "damaged.mp4", "cut.mp4", "noise.mp4")]
    manifest = write_manifest(rows, tmp_path / "m.csv")
    report = tmp_path / "r.json"
    assert main(["validate", str(manifest), "--no-progress", "--backend", "decord", "--report", str(report)]) == 0
    out, err = capfd.readouterr()  # file-descriptor level: what the helper processes print lands here too
    # FFmpeg's and decord's own lines ("[h264 @ 0x55..] error while decoding MB", "[16:31:31] src/...cc:83: ERROR")
    for line in (out + err).splitlines():
        assert not line.startswith("[") and "@ 0x" not in line and "video_reader.cc" not in line, line
    assert "unreadable: 2" in out and "partly decodable: 1" in out
    reasons = {Path(c["video"]).name: c["reason"] for c in json.loads(report.read_text())["checks"]}
    assert "moov atom not found" in reasons["cut.mp4"]  # what FFmpeg said went into the report, with the file


@pytest.mark.skipif("decord" not in available_backends(), reason="decord has no wheel for this platform")
def test_decord_failing_in_process_prints_nothing_not_even_the_bytes_it_was_given(tmp_path, capfd):
    from peft_video.data.decoding import VideoBytes

    write_random_bytes(tmp_path / "noise.mp4")
    sources = [str(tmp_path / "noise.mp4"), VideoBytes(b"\x01binary\xfe" * 40, "shard-0.tar#broken")]
    for source in sources:
        with pytest.raises(VideoDecodeError, match="decord could not open it"):
            decode_frames(source, FrameSampling(num_frames=4), backend="decord")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    print("stderr still works", file=sys.stderr)
    assert capfd.readouterr().err == "stderr still works\n"


def test_validate_and_cache_default_to_the_library_frame_count(tmp_path, capsys):
    from peft_video import TFVLConfig
    from peft_video.config import VideoAdapterConfig

    write_video(tmp_path / "v.mp4", num_frames=16)
    manifest = write_manifest([{"video": "v.mp4", "caption": "x"}], tmp_path / "m.csv")
    report = tmp_path / "r.json"
    assert main(["validate", str(manifest), "--no-progress", "--report", str(report)]) == 0
    assert json.loads(report.read_text())["sampling"]["num_frames"] == DEFAULT_NUM_FRAMES
    assert main(["cache", str(manifest), "--no-progress", "--short-side", "8"]) == 0
    assert FrameCache.open(tmp_path / "m.csv.frames").sampling.num_frames == DEFAULT_NUM_FRAMES
    assert FrameSampling().num_frames == FrameSampling.from_config({}).num_frames == DEFAULT_NUM_FRAMES
    assert VideoAdapterConfig.__dataclass_fields__["num_frames"].default == DEFAULT_NUM_FRAMES
    assert TFVLConfig().num_frames == DEFAULT_NUM_FRAMES
    capsys.readouterr()


# -- 6: decord only where it has wheels; the library works without it -----------------------------------------------


def _decord_requirement():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (the standard library's TOML reader)
    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "decord"]
    assert len(found) == 1, "decord must be one dependency, with an environment marker"
    return found[0]


@pytest.mark.parametrize(
    ("sys_platform", "platform_system", "platform_machine", "installs_decord"),
    [
        ("linux", "Linux", "x86_64", True),  # decord 0.6.0: manylinux2010_x86_64 wheel
        ("win32", "Windows", "AMD64", True),  # win_amd64 wheel
        ("linux", "Linux", "aarch64", False),  # no wheel, no sdist
        ("darwin", "Darwin", "arm64", False),  # no wheel
        ("darwin", "Darwin", "x86_64", False),  # macOS wheels only for CPython 3.6-3.8; we need >= 3.10
    ],
)
def test_decord_is_a_dependency_only_where_it_has_wheels(
    sys_platform, platform_system, platform_machine, installs_decord
):
    requirement = _decord_requirement()
    environment = {
        "sys_platform": sys_platform,
        "platform_system": platform_system,
        "platform_machine": platform_machine,
    }
    assert requirement.marker is not None and requirement.marker.evaluate(environment) is installs_decord


def test_without_decord_the_library_and_the_cli_decode_through_pyav(tmp_path):
    write_video(tmp_path / "v.mp4", num_frames=8)
    manifest = write_manifest([{"video": "v.mp4", "caption": "x"}], tmp_path / "m.csv")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["decord"] = None  # as on a platform where decord is not installed: `import decord` fails
        from peft_video.data import FrameSampling, available_backends, decode_frames
        from peft_video.cli import main
        assert "decord" not in available_backends(), available_backends()
        video = decode_frames({str(tmp_path / "v.mp4")!r}, FrameSampling(num_frames=4))
        assert video.metadata.backend == "pyav" and video.mask.all(), video.metadata
        assert main(["validate", {str(manifest)!r}, "--no-progress", "--strict"]) == 0
        print("decoded with", video.metadata.backend)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "decoded with pyav" in result.stdout and "'pyav': 1" in result.stdout
