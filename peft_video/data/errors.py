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


class DecodeTimeoutError(VideoDecodeError):
    """Decoding a video took longer than the configured timeout (a hung native decoder was stopped)."""


class DecoderCrashedError(VideoDecodeError):
    """The process decoding a video died (a native decoder crash); the process was replaced."""


class ManifestError(ValueError):
    """A manifest or annotation file is malformed; the message names the file, row and field."""
