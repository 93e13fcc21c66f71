"""Decoders on healthy and hostile files written by PyAV: fallback, error messages naming the file, frame identity."""

import faulthandler
import os
import signal
import time

import numpy as np
import pytest
import torch
from video_fixtures import BROKEN, HEALTHY, frame_index_of, write_video, write_video_library

from peft_video.data import (
    DecoderCrashedError,
    DecodeTimeoutError,
    DecordReader,
    FrameSampling,
    IsolatedDecoder,
    PyAVReader,
    VideoDecodeError,
    VideoReader,
    available_backends,
    decode_frames,
    decode_many,
)
from peft_video.data import decoding as decoding_module

# decord is installed only where it has wheels (Linux x86_64, Windows); elsewhere PyAV decodes and these tests of
# decord itself do not apply (tests/test_data_tools.py checks the library without decord).
requires_decord = pytest.mark.skipif("decord" not in available_backends(), reason="decord is not installed here")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return write_video_library(tmp_path_factory.mktemp("videos"))


@requires_decord
def test_readers_follow_the_protocol_and_return_the_requested_frames(library):
    for reader in (DecordReader(), PyAVReader()):
        assert isinstance(reader, VideoReader)
        meta = reader.open(str(library["h264"]))
        assert meta.num_frames == 8 and meta.fps == pytest.approx(8.0)
        frames = reader.get_frames([6, 1, 1])
        assert frames.dtype == torch.uint8 and frames.shape == (3, 48, 64, 3)
        assert [frame_index_of(f) for f in frames.numpy()] == [6, 1, 1]
        reader.close()


@pytest.mark.parametrize("name", HEALTHY)
def test_every_healthy_fixture_decodes_with_the_right_frames(library, name):
    if name not in library:
        pytest.skip(f"{name} encoder not in this PyAV build")
    video = decode_frames(library[name], FrameSampling(num_frames=4, short_video_policy="pad"))
    assert video.frames.dtype == torch.uint8 and video.frames.shape[0] == 4 and video.frames.shape[-1] == 3
    real = video.frames[video.mask].numpy()
    if name != "tiny_1x1":  # a 1x1 frame is one chroma-subsampled pixel: its level is not exact
        assert [frame_index_of(f) for f in real] == video.indices


@requires_decord
def test_decord_failures_fall_back_to_pyav(library):
    # decord 0.6.0 cannot read 1x1 frames nor a mid-stream resolution change; PyAV can.
    for name in ("tiny_1x1", "resolution_change"):
        with pytest.raises(VideoDecodeError):
            decode_frames(library[name], FrameSampling(num_frames=4), backend="decord", fallback=False)
        assert decode_frames(library[name], FrameSampling(num_frames=4)).metadata.backend == "pyav"


def test_resolution_change_is_scaled_to_the_first_frame_size(library):
    video = decode_frames(library["resolution_change"], FrameSampling(num_frames=8), backend="pyav")
    assert video.frames.shape == (8, 48, 64, 3)
    assert [frame_index_of(f) for f in video.frames.numpy()] == list(range(8))


def test_pyav_applies_rotation_metadata(tmp_path):
    import av

    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:8] = 200  # a bright top band; rotated 90 degrees counter-clockwise it becomes the left band
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(90)
        for _ in range(2):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    video = decode_frames(path, FrameSampling(num_frames=2))
    assert video.frames.shape == (2, 64, 48, 3)
    assert video.frames[0, :, :4].float().mean() > 150 and video.frames[0, :, -8:].float().mean() < 50


def test_pyav_stream_with_fewer_frames_than_claimed_is_resampled(library, monkeypatch):
    original = PyAVReader.open

    def overclaiming_open(self, path):
        meta = original(self, path)
        self._meta = type(meta)(meta.num_frames * 3, meta.fps, meta.width, meta.height, meta.duration, meta.backend)
        return self._meta

    monkeypatch.setattr(PyAVReader, "open", overclaiming_open)
    video = decode_frames(library["h264"], FrameSampling(num_frames=4), backend="pyav", fallback=False)
    assert video.metadata.num_frames == 8
    assert [frame_index_of(f) for f in video.frames.numpy()] == video.indices == [1, 3, 5, 7]


@pytest.mark.parametrize("name", BROKEN)
def test_broken_files_raise_an_error_naming_the_file(library, name):
    with pytest.raises(VideoDecodeError) as info:
        decode_frames(library[name], FrameSampling(num_frames=4))
    assert str(library[name]) in str(info.value)
    assert info.value.path == str(library[name]) and info.value.reason


def test_audio_only_reason_says_there_is_no_video_stream(library):
    with pytest.raises(VideoDecodeError, match="no video stream"):
        decode_frames(library["audio_only"], FrameSampling(num_frames=4))


@requires_decord
def test_backend_selection_rejects_unknown_names():
    assert available_backends()[:2] == ["decord", "pyav"]
    with pytest.raises(ValueError, match="unknown video backend"):
        decode_frames(__file__, FrameSampling(), backend="opencv")


def _hang_or_crash(path, sampling, **kwargs):
    name = os.path.basename(str(path))
    if name.startswith("hang"):
        time.sleep(60)
    if name.startswith("crash"):
        faulthandler.disable()  # this crash is intended: keep pytest's fault handler from printing a traceback
        os.kill(os.getpid(), signal.SIGSEGV)
    return _real_decode(path, sampling, **kwargs)


_real_decode = decoding_module.decode_frames


def test_isolated_decoder_contains_hangs_and_crashes(library, monkeypatch, tmp_path):
    monkeypatch.setattr(decoding_module, "decode_frames", _hang_or_crash)  # inherited by the forked helper
    hang, crash = write_video(tmp_path / "hang.mp4"), write_video(tmp_path / "crash.mp4")
    decoder = IsolatedDecoder(timeout=1.0)
    sampling = FrameSampling(num_frames=4)
    assert decoder.decode(str(library["h264"]), sampling).frames.shape == (4, 48, 64, 3)
    start = time.monotonic()
    with pytest.raises(DecodeTimeoutError, match="hang.mp4"):
        decoder.decode(str(hang), sampling)
    assert time.monotonic() - start < 10
    with pytest.raises(DecoderCrashedError, match="crash.mp4"):
        decoder.decode(str(crash), sampling)
    # The decoder recovers: a fresh helper process serves the next file.
    assert decoder.decode(str(library["h264"]), sampling).mask.all()
    decoder.close()


def test_decode_many_reports_every_file_once(library):
    names = ["h264", "zero_byte", "missing", "mpeg4"]
    results = dict(decode_many([str(library[n]) for n in names], FrameSampling(num_frames=2), jobs=2, timeout=20))
    assert sorted(results) == [0, 1, 2, 3]
    assert not isinstance(results[0], Exception) and not isinstance(results[3], Exception)
    assert isinstance(results[1], VideoDecodeError) and isinstance(results[2], VideoDecodeError)


def test_oversized_frames_are_refused_before_decoding(library):
    with pytest.raises(VideoDecodeError, match=r"frame size 64x48 exceeds max_frame_pixels=1000"):
        decode_frames(library["h264"], FrameSampling(num_frames=2), max_frame_pixels=1000)
    assert decode_frames(library["h264"], FrameSampling(num_frames=2), max_frame_pixels=None).mask.all()
