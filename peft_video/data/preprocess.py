"""Re-encoding videos to a fixed frame rate and short side (what `peft-video preprocess` runs per file).

Decoding a 1080p source to feed a 224-pixel model wastes most of the data loader's time; re-encoding once to, say,
short side 256 and the sampling rate makes every later epoch cheaper. Frames are chosen by timestamp (the first frame
at or after each output tick), scaled with the aspect ratio kept (even sides, as H.264 4:2:0 needs), rotated to display
orientation like the decoders do, and written to a temporary file renamed on success, so an interrupted run never
leaves a truncated video that looks finished.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

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
) -> dict[str, Any]:
    """Re-encode `source` into `destination` (H.264 MP4 by default). Returns what was done, for the record."""
    import av

    destination_path = Path(destination)
    destination_path.parent.mkdir(parents=True, exist_ok=True)
    partial = destination_path.with_name(destination_path.name + ".partial" + destination_path.suffix)
    frames_in = frames_out = 0
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
            size = None
            with av.open(str(partial), "w", format="mp4") as output:
                for frame in container.decode(stream):
                    frames_in += 1
                    # Time since the first frame; a missing or backwards timestamp (a spliced stream) continues
                    # from the previous frame at the source rate.
                    step = 1.0 / (source_fps or out_fps)
                    t = frame.time
                    if t is None or (last_time is not None and t <= last_time):
                        t = (last_time + step) if last_time is not None else 0.0
                    last_time = t
                    if start_time is None:
                        start_time = t
                    t -= start_time
                    if frames_out and t + 1e-6 < next_time:
                        continue
                    image = frame.to_ndarray(format="rgb24")
                    rotation = getattr(frame, "rotation", 0) or 0
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
                if writer is None:
                    raise VideoDecodeError(source, "no decodable frames")
                for packet in writer.encode():
                    output.mux(packet)
    except VideoDecodeError:
        partial.unlink(missing_ok=True)
        raise
    except Exception as err:
        partial.unlink(missing_ok=True)
        raise VideoDecodeError(source, f"re-encoding failed after {frames_in} frames: {err}") from err
    os.replace(partial, destination_path)
    return {
        "source": source,
        "output": str(destination_path),
        "frames_in": frames_in,
        "frames_out": frames_out,
        "width": size[0],
        "height": size[1],
        "fps": out_fps,
    }
