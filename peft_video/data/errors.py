"""Errors raised by the data pipeline. Every one names the file it is about."""

from __future__ import annotations

import os


class VideoDecodeError(RuntimeError):
    """A video could not be opened or read. `path` is the file, `reason` the decoder's explanation."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path!r}: {reason}")

    def __reduce__(self):  # keep (path, reason) across process boundaries (DataLoader workers, validate pool)
        return (type(self), (self.path, self.reason))


class PartialVideoError(VideoDecodeError):
    """Only part of a video could be decoded: `decoded_frames` of the `announced_frames` its header announces
    (a truncated file, corrupt sample data). Raised only under the strict policy (`on_error="raise"`, `--strict`);
    by default such a file is kept as a shorter video and reported (see `peft_video.data.decoding.partial_video`)."""

    def __init__(self, path: str | os.PathLike, decoded_frames: int, announced_frames: int, reason: str = ""):
        self.decoded_frames = int(decoded_frames)
        self.announced_frames = int(announced_frames)
        super().__init__(path, reason or partial_reason(decoded_frames, announced_frames))

    def __reduce__(self):
        return (type(self), (self.path, self.decoded_frames, self.announced_frames, self.reason))


def partial_reason(decoded_frames: int, announced_frames: int) -> str:
    """The one wording used everywhere for a partly decodable file."""
    return f"partly decodable: {decoded_frames} of the {announced_frames} frames its header announces could be decoded"


class DecodeTimeoutError(VideoDecodeError):
    """Decoding a video took longer than the configured timeout (a hung native decoder was stopped)."""


class DecoderCrashedError(VideoDecodeError):
    """The process decoding a video died (a native decoder crash); the process was replaced."""


class ManifestError(ValueError):
    """A manifest or annotation file is malformed; the message names the file, row and field."""
