"""Checking a dataset before training: decode every distinct video (isolated, with a timeout) and report.

`validate_dataset` is what `peft-video validate` runs. Each video is decoded at the evaluation positions of the given
sampling in a helper process (`IsolatedDecoder`): a hung decoder is killed after `timeout` seconds and a crashed one
replaced, and both are reported against the file like any other unreadable video.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import VideoDecodeError
from .isolation import decode_many
from .manifest import unique_videos
from .sampling import FrameSampling


@dataclass
class VideoCheck:
    """Outcome for one video file."""

    video: str
    ok: bool
    reason: str = ""
    backend: str = ""
    num_frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    padded_frames: int = 0


@dataclass
class ValidationReport:
    """Outcome for a dataset: one `VideoCheck` per distinct video, plus caption rows that are empty."""

    rows: int
    checks: list[VideoCheck] = field(default_factory=list)
    empty_caption_rows: list[int] = field(default_factory=list)
    sampling: dict[str, Any] = field(default_factory=dict)

    @property
    def unreadable(self) -> list[VideoCheck]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.unreadable and not self.empty_caption_rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "videos": len(self.checks),
            "unreadable": len(self.unreadable),
            "empty_caption_rows": self.empty_caption_rows,
            "sampling": self.sampling,
            "checks": [asdict(c) for c in self.checks],
        }

    def summary(self) -> str:
        """Human-readable summary naming every unreadable file."""
        readable = [c for c in self.checks if c.ok]
        backends = Counter(c.backend for c in readable)
        lines = [
            f"rows: {self.rows}   videos: {len(self.checks)}   readable: {len(readable)}   "
            f"unreadable: {len(self.unreadable)}   empty captions: {len(self.empty_caption_rows)}",
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
) -> ValidationReport:
    """Decode every distinct video of `data` (a dataset with `video`, `caption`, `video_id` columns)."""
    from tqdm.auto import tqdm

    sampling = sampling or FrameSampling(num_frames=8)
    captions = list(data["caption"])
    empty = [i for i, c in enumerate(captions) if not isinstance(c, str) or not c.strip()]
    videos = list(dict.fromkeys(unique_videos(data).videos))
    report = ValidationReport(rows=len(captions), empty_caption_rows=empty, sampling=sampling.to_dict())
    checks: list[VideoCheck | None] = [None] * len(videos)
    with tqdm(total=len(videos), desc="validating", unit="video", disable=not progress) as bar:
        for index, result in decode_many(videos, sampling, jobs=jobs, timeout=timeout, backend=backend):
            if isinstance(result, VideoDecodeError):
                checks[index] = VideoCheck(videos[index], False, result.reason)
            else:
                meta = result.metadata
                checks[index] = VideoCheck(
                    videos[index],
                    True,
                    backend=meta.backend,
                    num_frames=meta.num_frames,
                    fps=meta.fps,
                    width=int(result.frames.shape[2]),
                    height=int(result.frames.shape[1]),
                    padded_frames=int((~result.mask).sum()) or max(0, sampling.num_frames - meta.num_frames),
                )
            bar.update(1)
    report.checks = [c for c in checks if c is not None]
    return report
