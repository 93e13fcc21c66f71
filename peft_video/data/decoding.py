"""Video decoding behind one small interface: decord (default), PyAV (fallback), torchcodec (when installed).

A `VideoReader` is opened on one file at a time, inside the process that reads it (DataLoader workers open their own
readers; readers are never pickled open). `decode_frames` is the entry point the datasets use: it samples frame indices
from the file's metadata, reads them, and falls back to the next backend when one fails.

Decoder behaviour measured on this project's fixtures (decord 0.6.0, PyAV 18) and what this module does about it:

- decord's bundled FFmpeg cannot open AV1, fails on some MPEG-TS and 1x1 files, and fails (or returns 4-channel,
  wrongly sized frames) on videos with rotation metadata or a resolution change mid-stream. Every decord result is
  shape-checked and any failure falls back to PyAV.
- decord errors often do not name the file, and some files open fine and fail only when frames are read: every error
  is re-raised as `VideoDecodeError(path, reason)`, and the fallback covers reading as well as opening.
- PyAV is opened with `metadata_errors="replace"` (non-UTF-8 tags otherwise raise `UnicodeDecodeError`) and with
  `thread_type="SLICE"` (AUTO or FRAME threading can hang on corrupt input).
- PyAV may deliver fewer frames than the stream header claims (a truncated file, corrupt sample data): the reader
  raises `ShortVideoError` carrying the count it could decode, and `decode_frames` samples again from that count. The
  result records both numbers (`VideoMetadata.announced_frames`); `partial_video` is the one policy every consumer
  (validate, cache, preprocess, `VideoTextDataset`) applies to such a file: keep it as a shorter video and name it in
  a warning (default), or treat it as an error (strict).
- decord's bundled FFmpeg prints its messages to stderr, where they would leak into a command's output without a
  file name: it is silenced here, and captured into the error's reason in the isolated helper (`native_log`).
- Resolution can change mid-stream: PyAV frames are scaled to the size of the first decoded frame.
- Rotation: PyAV does not apply the display matrix; this reader does (`np.rot90` by `frame.rotation`), so frames come
  out in display orientation, as players show them. Only rotations by multiples of 90 degrees are applied.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from . import native_log
from .errors import PartialVideoError, VideoDecodeError, partial_reason
from .sampling import FrameSampling, sample_frame_indices

BACKENDS = ("decord", "pyav", "torchcodec")


@dataclass(frozen=True)
class VideoMetadata:
    """What a reader knows about a video after opening it (before decoding frames).

    `num_frames` may be an estimate (PyAV without a frame count in the header: duration x fps); `width`/`height` are
    0 when the backend learns them only by decoding (decord). After `decode_frames`, `num_frames` is the number of
    frames that could be decoded and `announced_frames` the number the file's header announces; the file is *partly
    decodable* (`partial`) when the first is smaller (0 = not known / not checked).
    """

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float
    backend: str
    announced_frames: int = 0

    @property
    def partial(self) -> bool:
        """True when fewer frames could be decoded than the header announces."""
        return self.announced_frames > self.num_frames


@dataclass(frozen=True, eq=False)
class VideoBytes:
    """A video held in memory: a WebDataset member, a Parquet cell, a `datasets` `Video(decode=False)` value whose
    `bytes` are set. It goes through the same decoders as a file. `name` stands for the video in every error; for a
    sample of a shard it is `<shard>#<key>` (`sample_name`)."""

    data: bytes
    name: str = "<bytes>"

    def __repr__(self) -> str:
        return f"VideoBytes({self.name!r}, {len(self.data)} bytes)"


VideoSource = str | os.PathLike | VideoBytes
"""What the decoders accept: a path, or a video in memory."""


def sample_name(shard: str, key: str) -> str:
    """How a sample of a shard is named in errors and `FailedSample.video`: `<shard>#<key>` (the shard alone when
    the key is unknown, e.g. a shard that cannot be opened)."""
    return f"{shard}#{key}" if key else shard


def as_video_source(video: Any, name: str | None = None) -> str | VideoBytes:
    """A path (str or PathLike) as `str`; bytes, bytearray, memoryview or a readable binary file object as
    `VideoBytes` named `name`; a `VideoBytes` as it is (renamed when `name` is given)."""
    if isinstance(video, VideoBytes):
        return video if name is None else VideoBytes(video.data, name)
    if isinstance(video, (str, os.PathLike)):
        return str(video)
    if isinstance(video, (bytes, bytearray, memoryview)):
        return VideoBytes(bytes(video), name or "<bytes>")
    if hasattr(video, "read"):
        return VideoBytes(video.read(), name or str(getattr(video, "name", "<file object>")))
    raise TypeError(f"expected a path, bytes or a binary file object for a video, got {type(video).__name__}")


def source_name(source: str | VideoBytes) -> str:
    """The path, or the name of a video in memory (for errors)."""
    return source.name if isinstance(source, VideoBytes) else str(source)


def _openable(source: str | VideoBytes) -> Any:
    """What decord, PyAV and torchcodec open: the path, or a fresh in-memory file over the bytes."""
    return io.BytesIO(source.data) if isinstance(source, VideoBytes) else str(source)


@runtime_checkable
class VideoReader(Protocol):
    """One decoder backend. `open` (a path or `VideoBytes`) then any number of `get_frames`, then `close`."""

    backend: str

    def open(self, path: str | VideoBytes) -> VideoMetadata: ...

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 frames [len(indices), H, W, 3] in RGB, in the order of `indices` (which may repeat)."""
        ...

    def close(self) -> None: ...


class ShortVideoError(VideoDecodeError):
    """The stream ended before a requested frame; `actual_num_frames` is the number that could be decoded."""

    def __init__(self, path: str, reason: str, actual_num_frames: int = 0):
        self.actual_num_frames = actual_num_frames
        super().__init__(path, reason)

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.actual_num_frames))


def _check_frames(path: str, frames: np.ndarray, count: int, backend: str) -> np.ndarray:
    if frames.ndim != 4 or frames.shape[0] != count or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VideoDecodeError(
            path,
            f"{backend} returned frames {tuple(frames.shape)} {frames.dtype}; expected ({count}, H, W, 3) uint8",
        )
    if frames.shape[1] < 1 or frames.shape[2] < 1:
        raise VideoDecodeError(path, f"{backend} returned empty frames of shape {tuple(frames.shape)}")
    return frames


class DecordReader:
    """decord's `VideoReader` (fast random access). `num_threads=1` by default: parallelism comes from workers."""

    backend = "decord"

    def __init__(self, num_threads: int = 1):
        self.num_threads = num_threads
        self._reader = None
        self._path = ""

    def open(self, path: str | VideoBytes) -> VideoMetadata:
        import decord

        native_log.quiet_decord()
        self._path = source_name(path)
        try:
            with native_log.silenced_stderr():  # decord's logger prints the source (raw bytes, too) on failure
                self._reader = decord.VideoReader(_openable(path), ctx=decord.cpu(0), num_threads=self.num_threads)
            num_frames = len(self._reader)
            fps = float(self._reader.get_avg_fps())
        except Exception as err:  # decord raises DECORDError / RuntimeError without the file name
            raise VideoDecodeError(self._path, f"decord could not open it: {_short(err)}") from err
        if num_frames < 1:
            raise VideoDecodeError(self._path, "decord found no video frames")
        fps = fps if fps > 0 and np.isfinite(fps) else 0.0
        return VideoMetadata(num_frames, fps, 0, 0, num_frames / fps if fps else 0.0, self.backend)

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        if self._reader is None:
            raise RuntimeError("DecordReader.get_frames called before open()")
        try:
            frames = self._reader.get_batch(list(indices)).asnumpy()
        except Exception as err:
            raise VideoDecodeError(self._path, f"decord could not read frames {list(indices)}: {_short(err)}") from err
        return torch.from_numpy(_check_frames(self._path, frames, len(indices), self.backend))

    def close(self) -> None:
        self._reader = None


class PyAVReader:
    """PyAV (FFmpeg bindings): decodes sequentially from the start, converting only the requested frames to RGB."""

    backend = "pyav"

    def __init__(self, thread_type: str = "SLICE"):
        self.thread_type = thread_type
        self._path = ""
        self._source: str | VideoBytes = ""
        self._meta: VideoMetadata | None = None

    def open(self, path: str | VideoBytes) -> VideoMetadata:
        import av

        self._path, self._source = source_name(path), path
        try:
            with av.open(_openable(path), metadata_errors="replace") as container:
                if not container.streams.video:
                    kinds = sorted({s.type for s in container.streams}) or ["none"]
                    raise VideoDecodeError(self._path, f"no video stream (streams found: {', '.join(kinds)})")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                fps = float(rate) if rate else 0.0
                if stream.duration is not None and stream.time_base is not None:
                    duration = float(stream.duration * stream.time_base)
                elif container.duration is not None:
                    duration = container.duration / 1_000_000
                else:
                    duration = 0.0
                width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
                num_frames = int(stream.frames or 0)
                if num_frames <= 0:
                    # No count in the header (MPEG-TS, WebM): count packets, which needs no decoding and, unlike
                    # duration x fps, is not fooled by timestamp gaps.
                    num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        except VideoDecodeError:
            raise
        except Exception as err:
            raise VideoDecodeError(self._path, f"PyAV could not open it: {_short(err)}") from err
        if num_frames <= 0:
            raise VideoDecodeError(self._path, "PyAV found no video frames")
        self._meta = VideoMetadata(
            num_frames, fps, width, height, duration or (num_frames / fps if fps else 0.0), self.backend
        )
        return self._meta

    def _iter_frames(self):
        import av

        with av.open(_openable(self._source), metadata_errors="replace") as container:
            stream = container.streams.video[0]
            stream.thread_type = self.thread_type
            yield from container.decode(stream)

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        if self._meta is None:
            raise RuntimeError("PyAVReader.get_frames called before open()")
        wanted = sorted(set(int(i) for i in indices))
        if not wanted:
            return torch.empty(0, 1, 1, 3, dtype=torch.uint8)
        last = wanted[-1]
        pending = set(wanted)
        found: dict[int, np.ndarray] = {}
        size: tuple[int, int] | None = None
        decoded = 0
        try:
            for position, frame in enumerate(self._iter_frames()):
                decoded = position + 1
                if position in pending:
                    if size is None:
                        size = (frame.width, frame.height)
                    if (frame.width, frame.height) != size:  # resolution changed mid-stream
                        frame = frame.reformat(width=size[0], height=size[1])
                    array = frame.to_ndarray(format="rgb24")
                    rotation = getattr(frame, "rotation", 0) or 0
                    if rotation % 90 == 0 and rotation % 360:
                        array = np.ascontiguousarray(np.rot90(array, k=rotation // 90))
                    found[position] = array
                    pending.discard(position)
                if position >= last:
                    break
        except Exception as err:
            # Decoding broke part-way (corrupt data): a shorter video, like a stream that ends early, whether or not
            # a requested frame was reached. The last frame out before the error is not trusted (the decoder
            # conceals the damage in it).
            usable = max(decoded - 1, 0)
            if not usable:
                raise VideoDecodeError(self._path, f"PyAV could not decode it: {_short(err)}") from err
            raise ShortVideoError(
                self._path, f"decoding stopped after {decoded} frames: {_short(err)}", usable
            ) from err
        if pending:
            raise ShortVideoError(
                self._path, f"stream has {decoded} decodable frames, header claimed {self._meta.num_frames}", decoded
            )
        frames = np.stack([found[i] for i in indices])
        return torch.from_numpy(_check_frames(self._path, frames, len(indices), self.backend))

    def close(self) -> None:
        self._meta = None


class TorchCodecReader:
    """torchcodec's `VideoDecoder`, used only when torchcodec is importable (it is optional)."""

    backend = "torchcodec"

    def __init__(self):
        self._decoder = None
        self._path = ""

    def open(self, path: str | VideoBytes) -> VideoMetadata:
        from torchcodec.decoders import VideoDecoder

        self._path = source_name(path)
        try:
            source = path.data if isinstance(path, VideoBytes) else self._path
            self._decoder = VideoDecoder(source, dimension_order="NHWC", seek_mode="exact")
            meta = self._decoder.metadata
            num_frames = int(meta.num_frames or 0)
            fps = float(meta.average_fps or 0.0)
        except Exception as err:
            raise VideoDecodeError(self._path, f"torchcodec could not open it: {_short(err)}") from err
        if num_frames < 1:
            raise VideoDecodeError(self._path, "torchcodec found no video frames")
        return VideoMetadata(
            num_frames,
            fps,
            int(meta.width or 0),
            int(meta.height or 0),
            float(meta.duration_seconds or 0.0),
            self.backend,
        )

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        try:
            frames = self._decoder.get_frames_at(indices=list(indices)).data
        except Exception as err:
            raise VideoDecodeError(self._path, f"torchcodec could not read frames: {_short(err)}") from err
        return torch.from_numpy(_check_frames(self._path, frames.numpy(), len(indices), self.backend))

    def close(self) -> None:
        self._decoder = None


_DECORD_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ")


def _short(err: BaseException, limit: int = 300) -> str:
    text = _DECORD_PREFIX.sub("", " ".join(str(err).split())) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def available_backends() -> list[str]:
    """Backends importable in this environment, in preference order."""
    found = []
    for name, module in (("decord", "decord"), ("pyav", "av"), ("torchcodec", "torchcodec")):
        try:
            installed = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or deliberately hidden installation counts as absent
            installed = False
        if installed:
            found.append(name)
    return found


def make_reader(backend: str) -> VideoReader:
    """A fresh (unopened) reader for `backend` ("decord", "pyav" or "torchcodec")."""
    if backend == "decord":
        return DecordReader()
    if backend == "pyav":
        return PyAVReader()
    if backend == "torchcodec":
        return TorchCodecReader()
    raise ValueError(f"unknown video backend {backend!r}; expected one of {BACKENDS}")


def backend_chain(backend: str = "auto") -> list[str]:
    """Backends to try in order. "auto" is decord, then PyAV, then torchcodec, whichever are installed; a named
    backend is tried first and the other installed ones serve as fallbacks."""
    installed = available_backends()
    if backend == "auto":
        chain = installed
    elif backend in BACKENDS:
        if backend not in installed:
            raise ValueError(f"video backend {backend!r} is not installed (installed: {installed})")
        chain = [backend] + [b for b in installed if b != backend]
    else:
        raise ValueError(f"unknown video backend {backend!r}; expected 'auto' or one of {BACKENDS}")
    if not chain:
        raise ImportError("no video backend installed: install av (PyAV), or decord where it has wheels")
    return chain


DEFAULT_MAX_FRAME_PIXELS = 4096 * 2304
"""Frame-size limit of `decode_frames` (a little above 4K UHD, 3840 x 2160)."""


def _check_frame_size(path: str | VideoBytes, max_frame_pixels: int) -> None:
    """Refuse oversized frames using the header only (PyAV; skipped when PyAV is absent or cannot parse the file,
    in which case the decoders report the file themselves)."""
    try:
        import av

        with av.open(_openable(path), metadata_errors="replace") as container:
            if not container.streams.video:
                return
            context = container.streams.video[0].codec_context
            width, height = int(context.width or 0), int(context.height or 0)
    except Exception:
        return
    if width * height > max_frame_pixels:
        raise VideoDecodeError(
            source_name(path),
            f"frame size {width}x{height} exceeds max_frame_pixels={max_frame_pixels}; re-encode it smaller, "
            "e.g. `peft-video preprocess MANIFEST --out DIR --short-side 256`",
        )


@dataclass(frozen=True)
class DecodedVideo:
    """Frames sampled from one video. `frames` uint8 [T, H, W, 3]; `mask` bool [T] (True = real frame, first)."""

    frames: torch.Tensor
    mask: torch.Tensor
    indices: list[int]
    metadata: VideoMetadata


def decode_frames(
    path: VideoSource | bytes,
    sampling: FrameSampling,
    *,
    train: bool = False,
    generator: torch.Generator | None = None,
    backend: str = "auto",
    fallback: bool = True,
    max_frame_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
    name: str | None = None,
) -> DecodedVideo:
    """Open `path`, sample `sampling.num_frames` indices and decode them, falling back across backends.

    `path` may also be a video in memory (`VideoBytes`, bytes, or a binary file object), decoded by the same chain
    without touching the disk; `name` then names it in errors (e.g. `sample_name(shard, key)`).

    Videos whose frames exceed `max_frame_pixels` (width x height, from the container header) are refused before any
    frame is decoded: T frames of an 8K video would take gigabytes in a worker. None disables the check.
    Raises `VideoDecodeError` naming the file and every backend's reason when no backend can decode it. A partly
    decodable file is returned as the shorter video it is, with `metadata.announced_frames` >
    `metadata.num_frames`; callers apply `partial_video` to it.
    """
    source = as_video_source(path, name)
    path = source_name(source)
    if isinstance(source, VideoBytes):
        if not source.data:
            raise VideoDecodeError(path, "video bytes are empty (0 bytes)")
    elif not os.path.isfile(path):
        raise VideoDecodeError(path, "file not found" if not os.path.exists(path) else "not a regular file")
    elif os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")
    if max_frame_pixels is not None:
        _check_frame_size(source, max_frame_pixels)
    chain = backend_chain(backend)
    if not fallback:
        chain = chain[:1]
    reasons = []
    for name in chain:
        reader = make_reader(name)
        try:
            meta = reader.open(source)
            indices, mask = sample_frame_indices(meta.num_frames, meta.fps, sampling, train=train, generator=generator)
            try:
                frames = reader.get_frames(indices)
                meta = dataclasses.replace(meta, announced_frames=meta.num_frames)
            except ShortVideoError as short:
                if short.actual_num_frames < 1:
                    raise
                meta = VideoMetadata(
                    short.actual_num_frames,
                    meta.fps,
                    meta.width,
                    meta.height,
                    short.actual_num_frames / meta.fps if meta.fps else 0.0,
                    meta.backend,
                    announced_frames=meta.num_frames,
                )
                indices, mask = sample_frame_indices(
                    meta.num_frames, meta.fps, sampling, train=train, generator=generator
                )
                frames = reader.get_frames(indices)
            frames = _pad_frames(frames, sampling.num_frames)  # "pad" policy: zero frames after the real ones
            return DecodedVideo(frames, mask, list(indices), meta)
        except VideoDecodeError as err:
            reasons.append(err.reason)
        except Exception as err:  # a backend bug must not escape without the file name
            reasons.append(f"{name}: {type(err).__name__}: {_short(err)}")
        finally:
            reader.close()
    raise VideoDecodeError(path, "; ".join(reasons))


PARTIAL_VIDEO_POLICIES = ("keep", "raise")


def partial_video(path: str | os.PathLike, metadata: VideoMetadata, policy: str = "keep") -> str | None:
    """The one policy for partly decodable files (fewer frames decoded than the header announces).

    Returns None for a complete file. For a partial one: with `policy="keep"` (the default everywhere) returns the
    warning to show, naming the file with decoded vs announced frames, and the caller uses the shorter video; with
    `policy="raise"` (`on_error="raise"`, `--strict`) raises `PartialVideoError`.
    """
    if policy not in PARTIAL_VIDEO_POLICIES:
        raise ValueError(f"partial-video policy must be one of {PARTIAL_VIDEO_POLICIES}, got {policy!r}")
    if not metadata.partial:
        return None
    if policy == "raise":
        raise PartialVideoError(path, metadata.num_frames, metadata.announced_frames)
    return f"{path}: {partial_reason(metadata.num_frames, metadata.announced_frames)}; used as a shorter video"


def _pad_frames(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Append zero frames (masked out by the caller) up to `num_frames`."""
    missing = num_frames - frames.shape[0]
    if missing <= 0:
        return frames
    pad = torch.zeros((missing, *frames.shape[1:]), dtype=frames.dtype)
    return torch.cat([frames, pad])
