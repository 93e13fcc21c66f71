"""Checking a dataset before training: decode every distinct video file (isolated, with a timeout) and report.

`validate_dataset` is what `peft-video validate` runs. Each distinct file of the `video` column is decoded at the
evaluation positions of the given sampling in a helper process (`IsolatedDecoder`): a hung decoder is killed after
`timeout` seconds and a crashed one replaced, and both are reported against the file like any other unreadable video.

Besides unreadable files the report names:
- partly decodable files (fewer frames decode than the header announces), with decoded vs announced frames. The
  library's one policy (`decoding.partial_video`): by default they are usable as shorter videos and listed as
  warnings; with `strict=True` they are unreadable;
- a `video_id` given to rows with different files: evaluation treats one id as one video, so captions of the other
  files would be scored against the wrong video (an error);
- one file under several ids: the same video twice in the gallery, so a caption ties with its twin (a warning);
- rows with an empty caption.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .decoding import partial_video
from .errors import PartialVideoError, VideoDecodeError
from .isolation import decode_many
from .manifest import conflicting_video_ids, shared_video_files
from .sampling import FrameSampling


@dataclass
class VideoCheck:
    """Outcome for one video file. `num_frames` frames could be decoded; `announced_frames` is what the file's header
    announces (larger for a partly decodable file)."""

    video: str
    ok: bool
    reason: str = ""
    backend: str = ""
    num_frames: int = 0
    announced_frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    padded_frames: int = 0
    warning: str = ""

    @property
    def partial(self) -> bool:
        return self.ok and self.announced_frames > self.num_frames


@dataclass
class ValidationReport:
    """Outcome for a dataset: one `VideoCheck` per distinct file, ids pointing at several files, files under several
    ids, and caption rows that are empty."""

    rows: int
    checks: list[VideoCheck] = field(default_factory=list)
    empty_caption_rows: list[int] = field(default_factory=list)
    sampling: dict[str, Any] = field(default_factory=dict)
    conflicting_ids: dict[str, list[str]] = field(default_factory=dict)
    shared_files: dict[str, list[str]] = field(default_factory=dict)
    strict: bool = False

    @property
    def unreadable(self) -> list[VideoCheck]:
        return [c for c in self.checks if not c.ok]

    @property
    def partial(self) -> list[VideoCheck]:
        """Partly decodable files kept as shorter videos (with `strict`, they are unreadable instead)."""
        return [c for c in self.checks if c.partial]

    @property
    def ok(self) -> bool:
        return not self.unreadable and not self.empty_caption_rows and not self.conflicting_ids

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "videos": len(self.checks),
            "unreadable": len(self.unreadable),
            "partial": len(self.partial),
            "empty_caption_rows": self.empty_caption_rows,
            "conflicting_ids": self.conflicting_ids,
            "shared_files": self.shared_files,
            "strict": self.strict,
            "sampling": self.sampling,
            "checks": [asdict(c) for c in self.checks],
        }

    def summary(self) -> str:
        """Human-readable summary naming every unreadable and partly decodable file and every conflicting id."""
        readable = [c for c in self.checks if c.ok]
        backends = Counter(c.backend for c in readable)
        lines = [
            f"rows: {self.rows}   videos: {len(self.checks)}   readable: {len(readable)}   "
            f"unreadable: {len(self.unreadable)}   partly decodable: {len(self.partial)}   "
            f"empty captions: {len(self.empty_caption_rows)}   ids with several files: {len(self.conflicting_ids)}",
        ]
        if readable:
            frames = sorted(c.num_frames for c in readable)
            lines.append(
                f"decoded with: {dict(backends)}   frames per video: min {frames[0]}, "
                f"median {frames[len(frames) // 2]}, max {frames[-1]}"
            )
            short = sum(c.padded_frames > 0 for c in readable)
            if short:
                frames_wanted = self.sampling.get("num_frames")
                lines.append(f"videos with fewer than {frames_wanted} usable frames (padded/repeated): {short}")
        if self.empty_caption_rows:
            shown = ", ".join(str(r) for r in self.empty_caption_rows[:20])
            lines.append(f"rows with an empty caption: {shown}{' ...' if len(self.empty_caption_rows) > 20 else ''}")
        for video_id, files in self.conflicting_ids.items():
            lines.append(
                f"ID WITH SEVERAL FILES {video_id!r}: {', '.join(files)} (evaluation would score captions of all of "
                "them against one video; give each file its own video_id)"
            )
        for video, ids in self.shared_files.items():
            lines.append(f"WARNING {video} appears under {len(ids)} ids ({', '.join(ids)}): it competes with itself")
        for check in self.partial:
            lines.append(f"PARTIAL {check.warning}")
        for check in self.unreadable:
            lines.append(f"UNREADABLE {check.video}: {check.reason}")
        return "\n".join(lines)


def validate_dataset(
    data: Any,
    sampling: FrameSampling | None = None,
    *,
    jobs: int = 2,
    timeout: float = 30.0,
    backend: str = "auto",
    progress: bool = True,
    strict: bool = False,
) -> ValidationReport:
    """Decode every distinct video file of `data` (a dataset with `video`, `caption`, `video_id` columns).

    `sampling` defaults to `FrameSampling()` (the library's default frame count). `strict=True` applies the strict
    partial-video policy: a partly decodable file is unreadable instead of a shorter video.
    """
    from tqdm.auto import tqdm

    sampling = sampling or FrameSampling()
    captions = list(data["caption"])
    empty = [i for i, c in enumerate(captions) if not isinstance(c, str) or not c.strip()]
    videos = list(dict.fromkeys(data["video"]))
    report = ValidationReport(
        rows=len(captions),
        empty_caption_rows=empty,
        sampling=sampling.to_dict(),
        conflicting_ids=conflicting_video_ids(data),
        shared_files=shared_video_files(data),
        strict=strict,
    )
    checks: list[VideoCheck | None] = [None] * len(videos)
    with tqdm(total=len(videos), desc="validating", unit="video", disable=not progress) as bar:
        for index, result in decode_many(videos, sampling, jobs=jobs, timeout=timeout, backend=backend):
            checks[index] = _check(videos[index], result, sampling, strict)
            bar.update(1)
    report.checks = [c for c in checks if c is not None]
    return report


def _check(video: str, result: Any, sampling: FrameSampling, strict: bool) -> VideoCheck:
    if isinstance(result, VideoDecodeError):
        return VideoCheck(video, False, result.reason)
    meta = result.metadata
    try:
        warning = partial_video(video, meta, "raise" if strict else "keep")
    except PartialVideoError as err:
        return VideoCheck(video, False, err.reason, meta.backend, meta.num_frames, meta.announced_frames, meta.fps)
    return VideoCheck(
        video,
        True,
        backend=meta.backend,
        num_frames=meta.num_frames,
        announced_frames=meta.announced_frames,
        fps=meta.fps,
        width=int(result.frames.shape[2]),
        height=int(result.frames.shape[1]),
        padded_frames=int((~result.mask).sum()) or max(0, sampling.num_frames - meta.num_frames),
        warning=warning or "",
    )
