"""Re-encoding videos to a fixed frame rate and short side: what `peft-video preprocess` runs.

Decoding a 1080p source to feed a 224-pixel model wastes most of the data loader's time; re-encoding once to, say,
short side 256 and the sampling rate makes every later epoch cheaper. Frames are chosen by timestamp (the first frame
at or after each output tick), scaled with the aspect ratio kept (even sides, as H.264 4:2:0 needs), rotated to display
orientation like the decoders do, and written to a temporary file renamed on success, so an interrupted run never
leaves a truncated video that looks finished.

`preprocess_dataset` does it for a whole manifest:
- every distinct source file gets its own output (`output_names`): its path relative to the manifest's folder, with
  the source's extension kept in the name when it is not `.mp4` (`a/x.mkv` -> `a/x.mkv.mp4`, `a/x.mp4` -> `a/x.mp4`),
  so the name is stable and two sources never share an output; names that would still collide (case-insensitive
  file systems, `x.mkv` beside `x.mkv.mp4`) and files in the output folder that another source wrote get a short hash
  of the source path. An existing file is overwritten only when the record says it came from the same source;
- partly decodable sources follow the library's one policy (`decoding.partial_video`): the frames that decode are
  re-encoded into a shorter video and the file is named in the record's warnings (default), or it is a failure
  (`strict`);
- the new manifest keeps every row's columns and `video_id`, and carries the *new* files' facts (`num_frames`,
  `fps`, `width`, `height`, `duration`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .decoding import PyAVReader, VideoMetadata, partial_video
from .errors import VideoDecodeError


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def output_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) with the shortest side scaled to `short_side` (None keeps the size), both even."""
    if short_side is None:
        return _even(width), _even(height)
    scale = short_side / min(width, height)
    return _even(width * scale), _even(height * scale)


def reencode_video(
    source: str,
    destination: str,
    fps: float | None = None,
    short_side: int | None = None,
    codec: str = "libx264",
    crf: int = 23,
    partial: str = "keep",
) -> dict[str, Any]:
    """Re-encode `source` into `destination` (H.264 MP4 by default). Returns what was done, for the record.

    A source that stops decoding before the frame count its header announces is partly decodable: with
    `partial="keep"` the frames decoded before the damage are written and the record carries the policy's `warning`;
    with `partial="raise"` nothing is written and `PartialVideoError` is raised. As in `PyAVReader`, the last frame
    returned before a decoding error is not trusted (the decoder conceals the damage in it) and is left out.
    """
    import av

    if partial not in ("keep", "raise"):
        raise ValueError(f"partial must be 'keep' or 'raise', got {partial!r}")
    announced = PyAVReader().open(source).num_frames  # header count (or packets), as the decoders see it
    destination_path = Path(destination)
    destination_path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = destination_path.with_name(destination_path.name + ".partial" + destination_path.suffix)
    frames_in = frames_out = 0
    size = None
    damage = ""
    try:
        with av.open(source, metadata_errors="replace") as container:
            if not container.streams.video:
                raise VideoDecodeError(source, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            rate = stream.average_rate or stream.guessed_rate
            source_fps = float(rate) if rate else 0.0
            out_fps = float(fps or source_fps or 30.0)
            tick = 1.0 / out_fps
            next_time = 0.0
            last_time = start_time = None
            writer = None
            with av.open(str(partial_path), "w", format="mp4") as output:
                decoded = container.decode(stream)
                pending = None  # a frame is written only once the next one decoded (or the stream ended cleanly)
                while True:
                    try:
                        frame = next(decoded)
                    except StopIteration:
                        frame = None
                    except Exception as err:  # damaged data: keep what decoded before it, minus the last frame
                        damage = str(err)
                        pending = None
                        break
                    if pending is not None:
                        frames_in += 1
                        # Time since the first frame; a missing or backwards timestamp (a spliced stream) continues
                        # from the previous frame at the source rate.
                        step = 1.0 / (source_fps or out_fps)
                        t = pending.time
                        if t is None or (last_time is not None and t <= last_time):
                            t = (last_time + step) if last_time is not None else 0.0
                        last_time = t
                        if start_time is None:
                            start_time = t
                        t -= start_time
                        if not frames_out or t + 1e-6 >= next_time:
                            image = pending.to_ndarray(format="rgb24")
                            rotation = getattr(pending, "rotation", 0) or 0
                            if rotation % 90 == 0 and rotation % 360:
                                image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))
                            if writer is None:
                                size = output_size(image.shape[1], image.shape[0], short_side)
                                writer = output.add_stream(codec, rate=Fraction(out_fps).limit_denominator(1001))
                                writer.width, writer.height = size
                                writer.pix_fmt = "yuv420p"
                                if codec == "libx264":
                                    writer.options = {"crf": str(crf), "preset": "veryfast"}
                            out_frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
                                width=size[0], height=size[1], format="yuv420p"
                            )
                            out_frame.pts = None  # let the encoder number frames at the output rate
                            for packet in writer.encode(out_frame):
                                output.mux(packet)
                            frames_out += 1
                            next_time = frames_out * tick
                    if frame is None:
                        break
                    pending = frame
                if writer is None:
                    reason = f"no decodable frames ({damage})" if damage else "no decodable frames"
                    raise VideoDecodeError(source, reason)
                if frames_in < announced:
                    partial_video(source, _decoded_metadata(frames_in, announced), partial)  # raises when strict
                for packet in writer.encode():
                    output.mux(packet)
    except VideoDecodeError:
        partial_path.unlink(missing_ok=True)
        raise
    except Exception as err:
        partial_path.unlink(missing_ok=True)
        raise VideoDecodeError(source, f"re-encoding failed after {frames_in} frames: {err}") from err
    os.replace(partial_path, destination_path)
    record = {
        "source": source,
        "output": str(destination_path),
        "frames_in": frames_in,
        "frames_announced": announced,
        "frames_out": frames_out,
        "width": size[0],
        "height": size[1],
        "fps": out_fps,
    }
    warning = partial_video(source, _decoded_metadata(frames_in, announced))
    if warning:
        record["warning"] = warning + (f" (decoding stopped: {damage})" if damage else "")
    return record


def _decoded_metadata(decoded: int, announced: int) -> VideoMetadata:
    return VideoMetadata(decoded, 0.0, 0, 0, 0.0, "pyav", announced_frames=announced)


RECORD_FILE = "preprocess.json"


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def output_names(
    videos: list[str], base_dir: str | os.PathLike, out_dir: str | os.PathLike, written: dict[str, str] | None = None
) -> dict[str, str]:
    """Destination (absolute path) of every source video, distinct for distinct sources.

    `base_dir`: the manifest's folder (sources under it keep their relative path; others go to `external/`);
    `written`: output path relative to `out_dir` -> source, from earlier runs (`preprocess.json`). A source keeps the
    name an earlier run gave it; a name that two sources would share, or that a file of another source (or of
    unknown origin) already occupies, gets a short hash of the source path.
    """
    base, out = Path(base_dir).resolve(), Path(out_dir).resolve()
    written = dict(written or {})
    earlier = {source: name for name, source in written.items()}
    owner = {name.casefold(): source for name, source in written.items()}
    names = {video: str(out / earlier[video]) for video in videos if video in earlier}
    wanted: dict[str, str] = {}
    for video in videos:
        if video in names:
            continue
        try:
            relative = Path(video).resolve().relative_to(base)
        except ValueError:  # outside the manifest's folder: keep the name, prefixed to stay unique
            relative = Path("external") / f"{_short_hash(video)}_{Path(video).name}"
        name = relative.as_posix()
        wanted[video] = name if relative.suffix.lower() == ".mp4" else name + ".mp4"
    claims: dict[str, int] = {}
    for name in wanted.values():
        claims[name.casefold()] = claims.get(name.casefold(), 0) + 1
    for video, name in wanted.items():
        occupied = owner.get(name.casefold(), video) != video or (
            name.casefold() not in owner and (out / name).exists()
        )
        if claims[name.casefold()] > 1 or occupied:
            name = f"{name[: -len('.mp4')]}.{_short_hash(video)}.mp4"
        names[video] = str(out / name)
    return names


@dataclass
class PreprocessReport:
    """What `preprocess_dataset` did: per source its record (`reencode_video`'s), failures with reasons, the new
    manifest's rows, and the warnings for partly decodable sources."""

    parameters: dict[str, Any]
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def partial(self) -> dict[str, str]:
        return {source: r["warning"] for source, r in self.videos.items() if r.get("warning")}


# Facts about a file that a manifest may carry; a re-encoded file gets its own.
def _new_file_facts(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "num_frames": record["frames_out"],
        "fps": record["fps"],
        "width": record["width"],
        "height": record["height"],
        "duration": record["frames_out"] / record["fps"] if record["fps"] else 0.0,
    }


def preprocess_dataset(
    data: Any,
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    fps: float | None = None,
    short_side: int | None = None,
    codec: str = "libx264",
    crf: int = 23,
    strict: bool = False,
    jobs: int = 2,
    timeout: float = 600.0,
    backend: str = "auto",
    progress: bool = True,
) -> PreprocessReport:
    """Re-encode every distinct video of `data` (loaded from `manifest`) into `out_dir`, each in an isolated helper
    process with a timeout; write the new manifest (same name, in `out_dir`) and `preprocess.json` (parameters, one
    record per video, failures, and the output -> source map that keeps names stable across runs)."""
    from tqdm.auto import tqdm

    from .isolation import IsolatedCall, run_many
    from .manifest import write_manifest

    manifest, out = Path(manifest), Path(out_dir).resolve()
    record_path = out / RECORD_FILE
    earlier = json.loads(record_path.read_text()) if record_path.is_file() else {}
    written: dict[str, str] = dict(earlier.get("outputs", {}))
    videos = list(dict.fromkeys(data["video"]))
    destinations = output_names(videos, manifest.parent, out, written)
    report = PreprocessReport({"fps": fps, "short_side": short_side, "codec": codec, "crf": crf})
    policy = "raise" if strict else "keep"

    def work(decoder, video):
        arguments = (video, destinations[video], fps, short_side, codec, crf, policy)
        return decoder.call(IsolatedCall(video, reencode_video, arguments))

    with tqdm(total=len(videos), desc="re-encoding", unit="video", disable=not progress) as bar:
        for index, result in run_many(videos, work, jobs=jobs, timeout=timeout, backend=backend):
            if isinstance(result, VideoDecodeError):
                report.failed[videos[index]] = result.reason
            else:
                report.videos[videos[index]] = result
                written[Path(result["output"]).relative_to(out).as_posix()] = videos[index]
            bar.update(1)
    for row in data:
        done = report.videos.get(row["video"])
        if done is not None:
            report.rows.append({**row, **_new_file_facts(done), "video": done["output"]})
    manifest_out = out / manifest.name
    if report.rows:
        write_manifest(report.rows, manifest_out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "source_manifest": str(manifest.resolve()),
        "manifest": str(manifest_out),
        "parameters": report.parameters,
        "strict": strict,
        "videos": list(report.videos.values()),
        "partial": report.partial,
        "failed": report.failed,
        "outputs": written,
    }
    tmp = record_path.with_name(record_path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(record_path)
    return report
