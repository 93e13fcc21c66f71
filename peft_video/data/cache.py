"""A frame cache: videos decoded once into one memory-mapped uint8 array that datasets read instead of decoding.

What is stored: for every video, the T frames at the *evaluation* positions of the `FrameSampling` the cache was
built with (segment centres, chunk points or the first T at the fixed fps), resized so the shortest side is
`short_side` and centre-cropped to `short_side` x `short_side` (CLIP's own resize and crop, so nothing CLIP would
see is lost when `short_side` equals the model's input size). Videos shorter than T follow the sampling's
short-video policy and their mask is stored. Videos that failed to decode are stored as failures with their
reason, so a loader reports them without retrying. Partly decodable videos follow the library's one policy
(`decoding.partial_video`): stored as the shorter video they are, with decoded and announced frame counts, and named
in the build's warnings (default), or stored as failures (`partial="raise"`, `peft-video cache --strict`).

Consequence for training: a dataset reading from the cache sees the same frames every epoch (no random position
inside each segment). Use it for evaluation, for fast experiments, or accept the missing temporal jitter.

Layout of a cache directory:
- `frames.u8`: raw uint8 array [N, T, S, S, 3] (a `numpy.memmap`);
- `cache.json`: format version, the `FrameSampling`, `short_side`, shape, and one entry per video (path, row, status,
  reason, mask, decoded and announced frame counts, and the source's size, mtime and content fingerprint).

A cached clip is served only while its source is unchanged: same size and mtime (checked on every access), and the
same content fingerprint (size plus a SHA-1 of the first and last MiB; checked once per file and process). The
fingerprint catches a file replaced by one of the same size with its mtime preserved (`cp -p`, `rsync -t`, a restored
backup); a changed file is decoded afresh instead of served stale.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .decoding import DecodedVideo, VideoMetadata, partial_video
from .errors import PartialVideoError, VideoDecodeError
from .sampling import FrameSampling
from .transforms import ClipFrameTransform

CACHE_FORMAT = "peft_video.frame_cache"
CACHE_VERSION = 2  # 2: content fingerprint and announced frame count per entry
FRAMES_FILE = "frames.u8"
INDEX_FILE = "cache.json"

logger = logging.getLogger(__name__)


def default_cache_dir(manifest: str | os.PathLike) -> Path:
    """Where `peft-video cache MANIFEST` puts the cache by default: `<manifest>.frames/` beside the manifest."""
    manifest = Path(manifest)
    return manifest.with_name(manifest.name + ".frames")


def manifest_frame_cache(manifest: str | os.PathLike, sampling: FrameSampling) -> FrameCache | None:
    """The frame cache that `peft-video cache` wrote beside `manifest` (`<manifest>.frames/`) when there is one built
    with `sampling`; None otherwise (a cache built with other sampling is reported and left unused)."""
    directory = default_cache_dir(manifest)
    if not (directory / INDEX_FILE).is_file():
        return None
    found = FrameCache.open(directory)
    try:
        found.check_sampling(sampling)
    except ValueError as err:
        logger.warning("not using the frame cache beside the manifest: %s", err)
        return None
    logger.info("using the frame cache at %s", directory)
    return found


FINGERPRINT_CHUNK = 1 << 20


def _stat_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def content_fingerprint(path: str | os.PathLike, chunk: int = FINGERPRINT_CHUNK) -> str | None:
    """A cheap content fingerprint: the size and a SHA-1 of the first and last `chunk` bytes (the whole file when it
    is smaller than two chunks). None when the file cannot be read."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            digest = hashlib.sha1(str(size).encode())
            digest.update(handle.read(chunk))
            if size > chunk:
                handle.seek(max(chunk, size - chunk))
                digest.update(handle.read(chunk))
    except OSError:
        return None
    return f"{size}:{digest.hexdigest()}"


@dataclass
class _Entry:
    row: int
    status: str
    reason: str
    mask: list[bool]
    indices: list[int]
    size: int | None
    mtime_ns: int | None
    fingerprint: str | None
    num_frames: int
    announced_frames: int
    fps: float


class FrameCache:
    """Read side of a frame cache. `path in cache` is True for videos stored and unchanged since caching."""

    def __init__(self, directory: str | os.PathLike, info: dict[str, Any]):
        self.directory = Path(directory)
        self.info = info
        self.sampling = FrameSampling(**info["sampling"])
        self.short_side = int(info["short_side"])
        self.shape = tuple(info["shape"])
        self.entries = {e["video"]: _Entry(**{k: v for k, v in e.items() if k != "video"}) for e in info["videos"]}
        self._frames: np.memmap | None = None
        self._unchanged: dict[str, bool] = {}  # content fingerprint verdicts of this process

    @classmethod
    def open(cls, directory: str | os.PathLike) -> FrameCache:
        """Open a cache directory written by `build_frame_cache` (or `peft-video cache`)."""
        directory = Path(directory)
        index = directory / INDEX_FILE
        if not index.is_file():
            raise FileNotFoundError(
                f"no frame cache at {directory} (missing {INDEX_FILE}); build one with `peft-video cache MANIFEST`"
            )
        info = json.loads(index.read_text())
        if info.get("format") != CACHE_FORMAT or info.get("version") != CACHE_VERSION:
            raise ValueError(
                f"{index} is not a version-{CACHE_VERSION} {CACHE_FORMAT} file "
                f"(format={info.get('format')!r}, version={info.get('version')!r}); rebuild it with "
                "`peft-video cache MANIFEST`"
            )
        return cls(directory, info)

    def __getstate__(self):  # reopen the memmap lazily in each DataLoader worker
        state = dict(self.__dict__)
        state["_frames"] = None
        state["_unchanged"] = {}
        return state

    @property
    def frames(self) -> np.memmap:
        if self._frames is None:
            self._frames = np.memmap(self.directory / FRAMES_FILE, dtype=np.uint8, mode="r", shape=self.shape)
        return self._frames

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, path: object) -> bool:
        """True when `path` is cached and its source is unchanged (size, mtime, then content fingerprint)."""
        path = str(path)
        entry = self.entries.get(path)
        if entry is None:
            return False
        if _stat_key(path) != (entry.size, entry.mtime_ns):
            return False
        if path not in self._unchanged:
            self._unchanged[path] = content_fingerprint(path) == entry.fingerprint
        return self._unchanged[path]

    def check_sampling(self, sampling: FrameSampling) -> None:
        """Raise ValueError when `sampling` differs from the cache's (image size excepted: the transform resizes)."""
        ours = {k: v for k, v in self.sampling.to_dict().items() if k != "image_size"}
        theirs = {k: v for k, v in sampling.to_dict().items() if k != "image_size"}
        if ours != theirs:
            raise ValueError(
                f"frame cache {self.directory} was built with sampling {ours}; the dataset asks for "
                f"{theirs}. Rebuild it with `peft-video cache` or drop the cache."
            )

    def read(self, path: str) -> DecodedVideo:
        """The cached clip of `path`; raises `VideoDecodeError` for a video cached as a failure."""
        entry = self.entries[str(path)]
        if entry.status != "ok":
            raise VideoDecodeError(path, f"{entry.reason} (recorded in frame cache {self.directory})")
        frames = torch.from_numpy(np.array(self.frames[entry.row]))
        meta = self.read_metadata(path)
        return DecodedVideo(frames, torch.tensor(entry.mask, dtype=torch.bool), entry.indices, meta)

    def summary(self) -> dict[str, int]:
        """Counts: `videos`, `ok` (cached), `failed`, and `partial` (cached as shorter, partly decodable videos)."""
        ok = sum(e.status == "ok" for e in self.entries.values())
        partial = sum(e.status == "ok" and e.announced_frames > e.num_frames for e in self.entries.values())
        return {"videos": len(self.entries), "ok": ok, "failed": len(self.entries) - ok, "partial": partial}

    def partial_videos(self) -> dict[str, str]:
        """Each cached, partly decodable video with the policy's warning (decoded vs announced frames)."""
        return {
            video: partial_video(video, self.read_metadata(video))
            for video, entry in self.entries.items()
            if entry.status == "ok" and entry.announced_frames > entry.num_frames
        }

    def read_metadata(self, path: str) -> VideoMetadata:
        """What the cache recorded about `path` when it decoded it."""
        entry = self.entries[str(path)]
        return VideoMetadata(
            entry.num_frames,
            entry.fps,
            self.short_side,
            self.short_side,
            entry.num_frames / entry.fps if entry.fps else 0.0,
            "cache",
            announced_frames=entry.announced_frames,
        )


def build_frame_cache(
    videos: Iterable[str],
    directory: str | os.PathLike,
    sampling: FrameSampling,
    *,
    short_side: int = 224,
    jobs: int = 2,
    timeout: float = 60.0,
    backend: str = "auto",
    progress: bool = True,
    partial: str = "keep",
) -> FrameCache:
    """Decode each distinct video once (isolated helper processes, per-video timeout) into a cache at `directory`.

    `partial`: what to do with a partly decodable video (`decoding.partial_video`): "keep" stores the shorter video
    and logs a warning naming it (`FrameCache.partial_videos()` lists them), "raise" records it as a failure."""
    from .isolation import decode_many

    videos = list(dict.fromkeys(str(v) for v in videos))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shape = (len(videos), sampling.num_frames, short_side, short_side, 3)
    store = np.memmap(directory / FRAMES_FILE, dtype=np.uint8, mode="w+", shape=shape) if videos else None
    resize = ClipFrameTransform(shortest_edge=short_side, crop_size=short_side)
    entries: list[dict[str, Any]] = [{} for _ in videos]
    # The source's identity is taken before decoding: a file that changes meanwhile no longer matches its entry.
    identities = [(_stat_key(v) or (None, None), content_fingerprint(v)) for v in videos]
    bar = _progress(len(videos), "caching frames", progress)
    for row, result in decode_many(videos, sampling, jobs=jobs, timeout=timeout, backend=backend):
        (size, mtime_ns), fingerprint = identities[row]
        entry = {"video": videos[row], "row": row, "size": size, "mtime_ns": mtime_ns, "fingerprint": fingerprint}
        if not isinstance(result, VideoDecodeError):
            try:
                warning = partial_video(videos[row], result.metadata, partial)
            except PartialVideoError as err:
                result = err
            else:
                if warning is not None:
                    logger.warning("%s", warning)
        if isinstance(result, VideoDecodeError):
            entry.update(
                status="error", reason=result.reason, mask=[], indices=[], num_frames=0, announced_frames=0, fps=0.0
            )
        else:
            store[row] = resize.resize_and_crop(result.frames).permute(0, 2, 3, 1).numpy()
            entry.update(
                status="ok",
                reason="",
                mask=result.mask.tolist(),
                indices=list(result.indices),
                num_frames=result.metadata.num_frames,
                announced_frames=result.metadata.announced_frames,
                fps=result.metadata.fps,
            )
        entries[row] = entry
        bar.update(1)
    bar.close()
    if store is not None:
        store.flush()
        del store
    else:
        (directory / FRAMES_FILE).write_bytes(b"")
    info = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "sampling": sampling.to_dict(),
        "short_side": short_side,
        "shape": list(shape),
        "stored": "frames at the evaluation positions of `sampling`, shortest side resized to short_side, "
        "centre-cropped square, uint8 RGB [N, T, S, S, 3]",
        "videos": entries,
    }
    tmp = directory / (INDEX_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(directory / INDEX_FILE)
    return FrameCache(directory, info)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="video", disable=not enabled)
