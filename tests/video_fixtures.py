"""Writers for tiny test videos, healthy and broken, made with PyAV so that no test needs a download.

Healthy videos (`write_video`, in `peft_video.testing` so that benchmarks use it too) encode their frame index in the
brightness of every pixel (`frame_level(i)`), so a test can tell which frames a decoder returned with
`frame_index_of(frame)`, even after lossy compression.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

from peft_video.testing import frame_index_of, frame_level, write_video  # noqa: F401  (the tests' writers)


def write_audio_only(path: str | os.PathLike, seconds: float = 0.5, rate: int = 16000) -> Path:
    """An .mp4 (AAC) with an audio stream and no video stream."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        samples = int(seconds * rate)
        chunk = 1024
        t = 0
        while t < samples:
            n = min(chunk, samples - t)
            tone = (0.2 * np.sin(2 * np.pi * 440 * (np.arange(t, t + n) / rate))).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(tone[None, :], format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = t
            for packet in stream.encode(frame):
                container.mux(packet)
            t += n
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_zero_byte(path: str | os.PathLike) -> Path:
    path = Path(path)
    path.write_bytes(b"")
    return path


def write_random_bytes(path: str | os.PathLike, size: int = 4096, seed: int = 0) -> Path:
    path = Path(path)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8).tobytes())
    return path


def write_truncated(path: str | os.PathLike, keep_fraction: float = 0.5, **video_kwargs) -> Path:
    """A healthy video cut to its first `keep_fraction` of bytes (an interrupted download)."""
    path = Path(path)
    write_video(path, **video_kwargs)
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep_fraction))])
    return path


def write_partly_decodable(path: str | os.PathLike, num_frames: int = 24, **video_kwargs) -> Path:
    """A healthy .mp4 whose sample data is zeroed from the middle of its `mdat` box on: the header (moov, at the end)
    still announces `num_frames` frames, but decoding breaks part-way (corrupt sample data, as after a bad copy)."""
    path = Path(path)
    write_video(path, num_frames=num_frames, **video_kwargs)
    data = bytearray(path.read_bytes())
    mdat, moov = data.find(b"mdat"), data.find(b"moov")
    if not 0 < mdat < moov:
        raise RuntimeError("expected an mp4 with mdat before moov; cannot build a partly decodable fixture")
    start = mdat + 4 + (moov - 8 - mdat - 4) // 2
    data[start : moov - 4] = bytes(moov - 4 - start)
    path.write_bytes(bytes(data))
    return path


def write_resolution_change(path: str | os.PathLike, sizes=((64, 48), (48, 32)), frames_each: int = 4) -> Path:
    """An MPEG-TS whose resolution changes mid-stream (TS segments concatenate byte-wise, as in HLS recordings).

    Frame indices continue across the segments, so `frame_index_of` still identifies every frame.
    """
    path = Path(path)
    parts = []
    for k, (w, h) in enumerate(sizes):
        part = path.with_name(f"{path.stem}.part{k}.ts")
        frames = [np.full((h, w, 3), frame_level(k * frames_each + i), dtype=np.uint8) for i in range(frames_each)]
        write_video(part, frames=frames, width=w, height=h, container_format="mpegts")
        parts.append(part)
    path.write_bytes(b"".join(p.read_bytes() for p in parts))
    for p in parts:
        p.unlink()
    return path


def write_non_utf8_metadata(path: str | os.PathLike, **video_kwargs) -> Path:
    """An .mp4 whose title tag holds bytes that are not UTF-8 (patched in place, same length, so boxes stay valid)."""
    path = Path(path)
    marker = "MARKERTITLE"
    write_video(path, metadata={"title": marker}, **video_kwargs)
    data = path.read_bytes()
    if marker.encode() not in data:
        raise RuntimeError("metadata marker not found in the written file; cannot build a non-UTF-8 fixture")
    path.write_bytes(data.replace(marker.encode(), b"\xff\xfe\xfa" + b"X" * (len(marker) - 3)))
    return path


def codec_available(codec: str) -> bool:
    """Whether this PyAV build can encode with `codec`."""
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        return False
    return True


def write_video_library(directory: str | os.PathLike) -> dict[str, Path]:
    """One file of every kind the data tests exercise, keyed by a short name (healthy ones first)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "h264": write_video(d / "h264.mp4"),
        "mpeg4": write_video(d / "mpeg4.avi", codec="mpeg4"),
        "mpegts": write_video(d / "clip.ts", container_format="mpegts"),
        "odd_size": write_video(d / "odd.mp4", width=33, height=17, pix_fmt="yuv444p"),
        "one_frame": write_video(d / "one.mp4", num_frames=1),
        "tiny_1x1": write_video(d / "tiny.mp4", width=1, height=1, pix_fmt="yuv444p"),
        "resolution_change": write_resolution_change(d / "reschange.ts"),
        "non_utf8_metadata": write_non_utf8_metadata(d / "nonutf8.mp4"),
        "audio_only": write_audio_only(d / "audio.mp4"),
        "zero_byte": write_zero_byte(d / "zero.mp4"),
        "random_bytes": write_random_bytes(d / "random.mp4"),
        "truncated": write_truncated(d / "truncated.mp4"),
        "missing": d / "missing.mp4",
    }
    if codec_available("libvpx-vp9"):
        files["vp9"] = write_video(d / "vp9.webm", codec="libvpx-vp9")
    return files


HEALTHY = (
    "h264",
    "mpeg4",
    "mpegts",
    "odd_size",
    "one_frame",
    "tiny_1x1",
    "resolution_change",
    "non_utf8_metadata",
    "vp9",
)
BROKEN = ("audio_only", "zero_byte", "random_bytes", "truncated", "missing")
