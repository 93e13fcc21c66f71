"""What native decoders print. decord's bundled FFmpeg writes its messages (`[h264 @ 0x55...] error while decoding MB
0 0`, `[mov,mp4,...] partial file`) straight to the process's stderr, file descriptor 2, where Python's logging and
`contextlib.redirect_stderr` cannot reach them; in a command's output they are noise without a file name.

- In the isolated helper process (`peft_video.data.isolation`), `NativeStderrCapture` points descriptor 2 at a
  private file; after a failed call the distinct messages are appended to the error's reason, so what matters ends
  up in the report, next to the file it is about, and nothing reaches the terminal.
- In any other process, decord's FFmpeg log is switched off (`quiet_decord`), and the line decord's own C++ logger
  prints when it cannot open a source (`ERROR opening: <the path, or the raw bytes of a video in memory>`, which no
  log level reaches) is dropped by pointing descriptor 2 at /dev/null for the duration of the open
  (`silenced_stderr`): a decoding error is raised as `VideoDecodeError` naming the file either way. PyAV (>= 13)
  keeps FFmpeg's log off by default.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

_DECORD_LEVEL_APPLIED: str | None = None
_CAPTURING = False
_POINTER = re.compile(r" @ 0x[0-9a-fA-F]+\]")
# decord's own log lines ("[16:31:31] src/video/video_reader.cc:83: ERROR opening: ...") repeat the exception that
# already carries the reason; FFmpeg's lines ("[h264 @ 0x...] ...") add to it.
_DECORD_OWN = re.compile(r"^\[\d\d:\d\d:\d\d\] \S+:\d+: ")


def quiet_decord() -> None:
    """Set decord's FFmpeg log level for this process: errors while a capture is active, nothing otherwise."""
    global _DECORD_LEVEL_APPLIED
    wanted = "ERROR" if _CAPTURING else "QUIET"
    if _DECORD_LEVEL_APPLIED == wanted:
        return
    try:
        import decord

        decord.logging.set_level(getattr(decord.logging, wanted))
    except Exception:  # an old decord without `logging`: its messages stay, nothing else changes
        pass
    _DECORD_LEVEL_APPLIED = wanted


def condense(text: str, max_lines: int = 3, limit: int = 300) -> str:
    """The first `max_lines` distinct messages of a native log, pointers removed, on one line."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        line = _POINTER.sub("]", " ".join(line.split()))
        if line and not _DECORD_OWN.match(line):
            seen.setdefault(line, None)
        if len(seen) >= max_lines:
            break
    joined = "; ".join(seen)
    return joined if len(joined) <= limit else joined[: limit - 3] + "..."


class NativeStderrCapture:
    """Redirect this process's file descriptor 2 into a private temporary file (for the helper process only: the
    redirection lasts until the process exits). `clear()` before a call, `text()` after it."""

    def __init__(self):
        global _CAPTURING
        self._file = tempfile.TemporaryFile(mode="w+b")
        os.dup2(self._file.fileno(), 2)
        _CAPTURING = True

    def clear(self) -> None:
        self._file.seek(0)
        self._file.truncate()

    def text(self) -> str:
        """The distinct native messages written since `clear()`, condensed to one line ("" when none)."""
        self._file.flush()
        self._file.seek(0)
        return condense(self._file.read(64 * 1024).decode("utf-8", errors="replace"))


@contextlib.contextmanager
def silenced_stderr():
    """Descriptor 2 points at /dev/null inside the block (outside the isolated helper, whose capture reads it).
    Keep the block short: whatever any thread of the process writes to stderr meanwhile is lost."""
    if _CAPTURING:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
