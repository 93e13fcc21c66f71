"""Videos held in memory go through the same decoder chain (decord, PyAV fallback, isolated helper) as files, and every
error names the sample they came from."""

import io
import os
import tempfile

import pytest
import torch
from video_fixtures import frame_index_of, write_random_bytes, write_resolution_change, write_truncated, write_video

from peft_video.data import FrameSampling, IsolatedDecoder, VideoDecodeError, decode_frames
from peft_video.data import isolation as isolation_module
from peft_video.data.decoding import DecordReader, PyAVReader, VideoBytes, as_video_source, sample_name


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("bytes") / "clip.mp4", num_frames=12)


def test_every_reader_opens_bytes_and_returns_the_requested_frames(video):
    for reader in (DecordReader(), PyAVReader()):
        meta = reader.open(VideoBytes(video.read_bytes(), "shard.tar#k1"))
        assert meta.num_frames == 12
        assert [frame_index_of(f) for f in reader.get_frames([9, 2, 2]).numpy()] == [9, 2, 2]
        reader.close()


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_bytes_decode_to_the_same_frames_as_the_file(video, backend):
    sampling = FrameSampling(num_frames=4)
    from_file = decode_frames(video, sampling, backend=backend, fallback=False)
    for source in (video.read_bytes(), bytearray(video.read_bytes()), io.BytesIO(video.read_bytes())):
        from_bytes = decode_frames(source, sampling, backend=backend, fallback=False, name="s.tar#a")
        assert from_bytes.indices == from_file.indices
        assert torch.equal(from_bytes.frames, from_file.frames)
        assert from_bytes.metadata.backend == backend


def test_decord_failure_on_bytes_falls_back_to_pyav(tmp_path):
    # decord 0.6.0 cannot follow a resolution change mid-stream, from a file or from memory; PyAV can.
    data = write_resolution_change(tmp_path / "change.ts").read_bytes()
    with pytest.raises(VideoDecodeError, match="decord"):
        decode_frames(data, FrameSampling(num_frames=4), backend="decord", fallback=False)
    assert decode_frames(data, FrameSampling(num_frames=4)).metadata.backend == "pyav"


@pytest.mark.parametrize("kind", ["random", "truncated", "empty"])
def test_bad_bytes_raise_an_error_naming_the_sample(tmp_path, kind):
    if kind == "random":
        data = write_random_bytes(tmp_path / "x").read_bytes()
    elif kind == "truncated":
        data = write_truncated(tmp_path / "x.mp4", keep_fraction=0.3).read_bytes()
    else:
        data = b""
    name = sample_name("data/shard-00003.tar", "clip_17")
    with pytest.raises(VideoDecodeError) as info:
        decode_frames(data, FrameSampling(num_frames=4), name=name)
    assert info.value.path == "data/shard-00003.tar#clip_17"
    assert "data/shard-00003.tar#clip_17" in str(info.value) and info.value.reason


def test_sources_are_normalised():
    assert as_video_source("a.mp4") == "a.mp4"
    from_bytes = as_video_source(memoryview(b"xy"), "s#k")
    assert isinstance(from_bytes, VideoBytes) and (from_bytes.data, from_bytes.name) == (b"xy", "s#k")
    named = as_video_source(VideoBytes(b"xy", "old"), "new")
    assert (named.name, named.data) == ("new", b"xy")
    with pytest.raises(TypeError, match="expected a path, bytes"):
        as_video_source(12)
    assert sample_name("s.tar", "") == "s.tar"


def test_isolated_decoder_takes_bytes_through_the_pipe_and_names_failures(video, tmp_path):
    decoder = IsolatedDecoder(timeout=30)
    sampling = FrameSampling(num_frames=4)
    isolated = decoder.decode(VideoBytes(video.read_bytes(), "s.tar#ok"), sampling)
    assert torch.equal(isolated.frames, decode_frames(video, sampling).frames)
    with pytest.raises(VideoDecodeError) as info:
        decoder.decode(VideoBytes(write_random_bytes(tmp_path / "r").read_bytes(), "s.tar#bad"), sampling)
    assert info.value.path == "s.tar#bad"
    decoder.close()


def test_large_bytes_go_through_a_temporary_file_that_is_removed(video, tmp_path, monkeypatch):
    monkeypatch.setattr(isolation_module, "PIPE_BYTES_LIMIT", 100)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where NamedTemporaryFile writes
    made = []
    real = tempfile.NamedTemporaryFile
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", lambda **kw: made.append(kw) or real(**kw))
    decoder = IsolatedDecoder(timeout=30)
    sampling = FrameSampling(num_frames=4)
    assert torch.equal(
        decoder.decode(VideoBytes(video.read_bytes(), "s.tar#big"), sampling).frames,
        decode_frames(video, sampling).frames,
    )
    with pytest.raises(VideoDecodeError) as info:
        decoder.decode(VideoBytes(write_random_bytes(tmp_path / "r").read_bytes(), "s.tar#broken"), sampling)
    assert info.value.path == "s.tar#broken"  # not the temporary file's name
    assert len(made) == 2
    assert [name for name in os.listdir(tmp_path) if name.startswith("peft-video-")] == []
    decoder.close()
