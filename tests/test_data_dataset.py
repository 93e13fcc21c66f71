"""VideoTextDataset end to end: DataLoader workers, on_error skip/raise with a summary, contained hangs, the cache."""

import os
import time

import pytest
import torch
from video_fixtures import frame_index_of, write_random_bytes, write_video, write_zero_byte

from peft_video.data import (
    ClipFrameTransform,
    DataErrorSummary,
    FrameCache,
    FrameSampling,
    VideoDecodeError,
    VideoTextCollator,
    VideoTextDataset,
    build_frame_cache,
    default_cache_dir,
    load_manifest,
    write_manifest,
)
from peft_video.data import decoding as decoding_module

SAMPLING = FrameSampling(num_frames=4, image_size=32)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    write_video(d / "a.mp4", num_frames=8)
    write_video(d / "b.mp4", num_frames=2, width=40, height=40)  # shorter than T: padded
    write_video(d / "c.avi", codec="mpeg4", num_frames=12)
    write_zero_byte(d / "empty.mp4")
    write_random_bytes(d / "noise.mp4")
    rows = [
        {"video": "a.mp4", "caption": "first", "video_id": "a"},
        {"video": "b.mp4", "caption": "second", "video_id": "b"},
        {"video": "empty.mp4", "caption": "broken", "video_id": "empty"},
        {"video": "c.avi", "caption": "third", "video_id": "c"},
        {"video": "noise.mp4", "caption": "noise", "video_id": "noise"},
        {"video": "a.mp4", "caption": "", "video_id": "a"},  # empty caption
    ]
    return write_manifest(rows, d / "manifest.csv")


def _loader(dataset, workers=0, batch_size=3):
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=VideoTextCollator()
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_drops_bad_samples_and_the_summary_names_them(manifest, workers):
    dataset = VideoTextDataset(load_manifest(manifest), SAMPLING, decode_timeout=20)
    summary = DataErrorSummary()
    batches = list(summary.track(_loader(dataset, workers)))
    ids = [vid for batch in batches for vid in batch["video_id"]]
    assert ids == ["a", "b", "c"]
    for batch in batches:
        assert batch["pixel_values"].shape[1:] == (4, 3, 32, 32)
        assert batch["pixel_values"].dtype == torch.float32 and batch["video_mask"].dtype == torch.bool
    mask_b = batches[0]["video_mask"][1]
    assert mask_b.tolist() == [True, True, False, False]
    assert torch.count_nonzero(batches[0]["pixel_values"][1, 2:]) == 0  # padded frames are exact zeros
    assert summary.count == 3 and len(summary.failures) == 3
    assert "empty caption" in summary.failures[str(manifest.parent / "a.mp4")]
    assert "0 bytes" in summary.failures[str(manifest.parent / "empty.mp4")]
    assert "noise.mp4" in str(summary)


def test_raise_names_the_file(manifest):
    dataset = VideoTextDataset(load_manifest(manifest), SAMPLING, on_error="raise", decode_timeout=None)
    with pytest.raises(VideoDecodeError, match="empty.mp4"):
        list(_loader(dataset, workers=0, batch_size=6))


def test_frames_are_the_sampled_ones_and_in_order(manifest):
    dataset = VideoTextDataset(load_manifest(manifest), SAMPLING, ClipFrameTransform(64, 64), decode_timeout=None)
    item = dataset[3]  # c.avi, 12 frames, segment centres 1, 4, 7, 10
    assert item["frame_indices"] == [1, 4, 7, 10]
    unnormalised = item["pixel_values"] * torch.tensor(ClipFrameTransform().std).view(3, 1, 1) * 255
    unnormalised += torch.tensor(ClipFrameTransform().mean).view(3, 1, 1) * 255
    assert [frame_index_of(f.permute(1, 2, 0).numpy()) for f in unnormalised] == [1, 4, 7, 10]


def _hang_on_b(path, sampling, **kwargs):
    if os.path.basename(str(path)) == "b.mp4":
        time.sleep(120)
    return _real(path, sampling, **kwargs)


_real = decoding_module.decode_frames


def test_a_hanging_decoder_in_a_worker_costs_one_sample_not_the_pool(manifest, monkeypatch):
    monkeypatch.setattr(decoding_module, "decode_frames", _hang_on_b)
    dataset = VideoTextDataset(load_manifest(manifest), SAMPLING, decode_timeout=1.5)
    summary = DataErrorSummary()
    start = time.monotonic()
    ids = [vid for batch in summary.track(_loader(dataset, workers=2)) for vid in batch["video_id"]]
    assert time.monotonic() - start < 30
    assert ids == ["a", "c"]
    assert "no result after 1.5 s" in summary.failures[str(manifest.parent / "b.mp4")]


def test_frame_cache_serves_the_same_clips_without_decoding(manifest, monkeypatch):
    data = load_manifest(manifest)
    cache = build_frame_cache(
        data["video"], default_cache_dir(manifest), SAMPLING, short_side=32, jobs=2, progress=False
    )
    assert cache.summary() == {"videos": 5, "ok": 3, "failed": 2, "partial": 0}
    assert os.path.getsize(cache.directory / "frames.u8") == 5 * 4 * 32 * 32 * 3
    decoded = VideoTextDataset(data, SAMPLING, decode_timeout=None)
    cached = VideoTextDataset(data, SAMPLING, decode_timeout=None, cache=FrameCache.open(default_cache_dir(manifest)))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the frame cache holds the video")

    monkeypatch.setattr("peft_video.data.dataset.decode_frames", no_decoding)
    for index in (0, 1, 3):
        assert cached[index]["video_mask"].tolist() == ([True, True, False, False] if index == 1 else [True] * 4)
    monkeypatch.undo()
    for index in (0, 1, 3):
        assert torch.allclose(decoded[index]["pixel_values"], cached[index]["pixel_values"], atol=0.2)
    failed = cached[2]
    assert "0 bytes" in failed.reason and "frame cache" in failed.reason


def test_cache_refuses_a_different_sampling_and_ignores_changed_files(manifest, tmp_path):
    video = write_video(tmp_path / "x.mp4", num_frames=8)
    cache = build_frame_cache([str(video)], tmp_path / "cache", SAMPLING, short_side=32, jobs=1, progress=False)
    with pytest.raises(ValueError, match="was built with sampling"):
        cache.check_sampling(FrameSampling(num_frames=8))
    assert str(video) in cache
    write_video(video, num_frames=6)
    os.utime(video, ns=(1, 1))
    assert str(video) not in cache  # stale entries are decoded afresh


def test_from_manifest_finds_the_cache_beside_the_manifest(tmp_path):
    write_video(tmp_path / "v.mp4", num_frames=8)
    manifest = write_manifest([{"video": "v.mp4", "caption": "x"}], tmp_path / "m.csv")
    assert VideoTextDataset.from_manifest(manifest, SAMPLING).cache is None
    build_frame_cache(
        [str(tmp_path / "v.mp4")], default_cache_dir(manifest), SAMPLING, short_side=32, jobs=1, progress=False
    )
    dataset = VideoTextDataset.from_manifest(manifest, SAMPLING, decode_timeout=None)
    assert dataset.cache is not None and str(tmp_path / "v.mp4") in dataset.cache
    assert VideoTextDataset.from_manifest(manifest, FrameSampling(num_frames=8)).cache is None  # other sampling


def test_uint8_batches_normalised_later_equal_normalised_batches(manifest):
    data = load_manifest(manifest).select([0, 1])
    as_float = VideoTextDataset(data, SAMPLING, decode_timeout=None)
    as_uint8 = VideoTextDataset(data, SAMPLING, decode_timeout=None, normalize=False)
    collate = VideoTextCollator()
    expected = collate([as_float[0], as_float[1]])
    raw = collate([as_uint8[0], as_uint8[1]])
    assert raw["pixel_values"].dtype == torch.uint8
    normalised = as_uint8.transform.normalize_batch(raw["pixel_values"], raw["video_mask"])
    assert torch.allclose(normalised, expected["pixel_values"], atol=1e-5)
    assert torch.count_nonzero(normalised[1, 2:]) == 0  # b.mp4 has 2 real frames; padding stays zero


def test_repeat_policy_end_to_end_and_reproducible_training_jitter(manifest):
    data = load_manifest(manifest)
    repeat = VideoTextDataset(
        data, FrameSampling(num_frames=4, image_size=32, short_video_policy="repeat"), decode_timeout=None
    )
    item = repeat[1]  # b.mp4: 2 frames spread over 4 real slots
    assert item["video_mask"].all() and item["frame_indices"] == [0, 0, 1, 1]
    train = VideoTextDataset(data, SAMPLING, train=True, decode_timeout=20)
    draws = []
    for _ in range(2):
        torch.manual_seed(123)
        draws.append([train[3]["frame_indices"] for _ in range(3)])
    assert draws[0] == draws[1]  # the isolated decoder's seed comes from torch's RNG in the calling process
    assert len({tuple(d) for d in draws[0]}) > 1
