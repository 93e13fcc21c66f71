"""Frame index sampling: the strategies adapters record, short-video policies, and FrameSampling validation."""

from types import SimpleNamespace

import pytest
import torch

from peft_video.data import FrameSampling, sample_frame_indices


def test_segments_evaluation_takes_segment_centres():
    indices, mask = sample_frame_indices(120, 30.0, FrameSampling(num_frames=12))
    assert indices == [5 + 10 * i for i in range(12)]
    assert mask.all() and mask.shape == (12,)


def test_segments_training_draws_one_frame_inside_each_segment():
    sampling = FrameSampling(num_frames=4)
    seen = set()
    for seed in range(30):
        generator = torch.Generator().manual_seed(seed)
        indices, _ = sample_frame_indices(40, 30.0, sampling, train=True, generator=generator)
        for segment, index in enumerate(indices):
            assert 10 * segment <= index < 10 * (segment + 1)
        seen.add(tuple(indices))
    assert len(seen) > 1  # random, not the centres every time


def test_chunked_segments_is_chunk_major_and_each_chunk_spans_the_video():
    sampling = FrameSampling(num_frames=6, frame_sampling="chunked_segments", frame_chunk_size=3)
    indices, mask = sample_frame_indices(90, 30.0, sampling)
    # 3 segments of 30 frames, k=2 chunks: chunk 0 at 1/3 of each segment, chunk 1 at 2/3.
    assert indices == [10, 40, 70, 20, 50, 80]
    assert mask.all()
    train, _ = sample_frame_indices(90, 30.0, sampling, train=True, generator=torch.Generator().manual_seed(0))
    for position, index in enumerate(train):
        segment = position % 3
        assert 30 * segment <= index < 30 * (segment + 1)


def test_fps_sampling_takes_first_frames_at_the_rate():
    sampling = FrameSampling(num_frames=4, frame_sampling="fps", sampling_fps=2.0)
    indices, mask = sample_frame_indices(300, 30.0, sampling)
    assert indices == [0, 15, 30, 45] and mask.all()
    train, _ = sample_frame_indices(300, 30.0, sampling, train=True, generator=torch.Generator().manual_seed(1))
    assert all(0 <= t - e < 15 for t, e in zip(train, indices))


def test_short_video_pad_policy_keeps_real_frames_first_and_masks_the_rest():
    indices, mask = sample_frame_indices(3, 30.0, FrameSampling(num_frames=8, short_video_policy="pad"))
    assert indices == [0, 1, 2]
    assert mask.tolist() == [True] * 3 + [False] * 5


@pytest.mark.parametrize("strategy", ["segments", "chunked_segments", "fps"])
def test_short_video_repeat_policy_fills_every_slot_with_real_frames(strategy):
    sampling = FrameSampling(
        num_frames=8, frame_sampling=strategy, frame_chunk_size=4, sampling_fps=30.0, short_video_policy="repeat"
    )
    indices, mask = sample_frame_indices(3, 30.0, sampling)
    assert len(indices) == 8 and mask.all()
    assert set(indices) == {0, 1, 2}


def test_fps_sampling_pads_when_video_is_too_short_for_t_frames():
    sampling = FrameSampling(num_frames=4, frame_sampling="fps", sampling_fps=1.0)
    indices, mask = sample_frame_indices(60, 30.0, sampling)  # a 2-second clip at 1 fps: 2 frames
    assert indices == [0, 30] and mask.tolist() == [True, True, False, False]


def test_fps_sampling_needs_the_video_frame_rate():
    with pytest.raises(ValueError, match="frame rate"):
        sample_frame_indices(60, 0.0, FrameSampling(num_frames=4, frame_sampling="fps", sampling_fps=1.0))


def test_from_config_reads_adapter_config_fields_and_rejects_bad_values():
    config = SimpleNamespace(
        num_frames=8, frame_sampling="chunked_segments", sampling_fps=None, frame_chunk_size=4, image_size=224
    )
    sampling = FrameSampling.from_config(config, short_video_policy="repeat")
    assert sampling == FrameSampling(8, "chunked_segments", None, 4, 224, "repeat")
    assert FrameSampling.from_config(sampling.to_dict()) == sampling
    with pytest.raises(ValueError, match="frame_chunk_size"):
        FrameSampling(num_frames=6, frame_sampling="chunked_segments", frame_chunk_size=4)
    with pytest.raises(ValueError, match="frame_sampling"):
        FrameSampling(frame_sampling="uniform")
    with pytest.raises(ValueError, match="short_video_policy"):
        FrameSampling(short_video_policy="loop")


def test_from_config_reads_a_real_adapter_config():
    from peft_video.config import VideoAdapterConfig

    config = VideoAdapterConfig(num_frames=8, frame_sampling="chunked_segments", frame_chunk_size=4, image_size=224)
    sampling = FrameSampling.from_config(config)
    assert (sampling.num_frames, sampling.frame_sampling, sampling.frame_chunk_size, sampling.image_size) == (
        8,
        "chunked_segments",
        4,
        224,
    )
    assert sampling.short_video_policy == "pad"
