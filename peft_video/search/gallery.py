"""Contact sheets: a picture of what a query retrieved. The query on top, then one row per hit: rank, score and id on
the left, frames sampled across the video to the right; the ground-truth video, when known, framed in green.

    sheet = contact_sheet("a red circle moves from left to right", index.search(query, k=5))
    sheet.save("results.png")
    worst_queries_gallery(encode_split(...), data["caption"], "worst.png")   # the worst-ranked captions of a split

Frames are decoded through `peft_video.data.decode_frames` (the same decoder chain as training) at evenly spaced
positions, from a file or, for an index built from shards, from the bytes of the `<shard>#<key>` sample read back
from its WebDataset or Parquet shard; a video that cannot be read gets a grey strip saying so instead of failing the
picture.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BACKGROUND = (250, 250, 250)
TEXT = (20, 20, 20)
MUTED = (110, 110, 110)
GROUND_TRUTH = (20, 150, 60)
PLACEHOLDER = (200, 200, 200)


@dataclass(frozen=True)
class _Row:
    rank: int
    score: float | None
    video_id: str
    video: str
    ground_truth: bool
    note: str = ""


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def video_strip(video: str | os.PathLike, frames: int = 6, height: int = 96, backend: str = "auto"):
    """`frames` frames sampled evenly across `video`, side by side at `height` pixels (a PIL image); a grey strip
    naming the problem when the video cannot be decoded. `video` is a file, or a sample of a WebDataset / Parquet
    shard named `<shard>#<key>` (as an index built from shards names it), whose bytes are read from that shard."""
    from PIL import Image

    from ..data import FrameSampling, VideoBytes, VideoDecodeError, decode_frames
    from .shard_sources import shard_member_bytes, split_sample_name

    source: str | os.PathLike | VideoBytes = video
    try:
        if "#" in str(video) and not os.path.exists(video):
            if not split_sample_name(str(video)):  # e.g. `dataset#key` of an in-memory `datasets.Dataset`
                return _placeholder(f"{video}: its bytes live in a datasets dataset, not in a file", frames, height)
            source = VideoBytes(shard_member_bytes(str(video)), str(video))
        decoded = decode_frames(
            source, FrameSampling(num_frames=frames, short_video_policy="repeat"), backend=backend
        ).frames.numpy()
    except VideoDecodeError as err:
        return _placeholder(f"unreadable: {err.reason}", frames, height)
    except (LookupError, OSError) as err:  # the shard is gone, unreachable, or no longer holds the sample
        return _placeholder(f"not read from its shard: {err}", frames, height)
    source_h, source_w = decoded.shape[1:3]
    width = max(1, round(source_w * height / source_h))
    # small videos are enlarged with NEAREST (crisp pixels), large ones shrunk with LANCZOS
    resample = Image.NEAREST if source_h < height else Image.LANCZOS
    tiles = [Image.fromarray(frame).resize((width, height), resample) for frame in decoded]
    strip = Image.new("RGB", (width * len(tiles) + 2 * (len(tiles) - 1), height), BACKGROUND)
    for position, tile in enumerate(tiles):
        strip.paste(tile, (position * (width + 2), 0))
    return strip


def _placeholder(text: str, frames: int, height: int):
    """A grey strip of a video's size saying why its frames are not shown."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (frames * height, height), PLACEHOLDER)
    text = textwrap.shorten(text, width=max(20, frames * height // 8))
    ImageDraw.Draw(strip).text((8, height // 2 - 8), text, fill=TEXT, font=_font(13))
    return strip


def contact_sheet(
    query: str,
    hits: Iterable[Any],
    path: str | os.PathLike | None = None,
    *,
    ground_truth: Iterable[str] | None = None,
    frames: int = 6,
    height: int = 96,
    title: str | None = None,
    backend: str = "auto",
):
    """A contact sheet of `hits` (`SearchHit`s or mappings with `video`, `video_id`, and optionally `rank`, `score`,
    `note`) for `query`; saved as PNG to `path` when given. Returns the PIL image.

    Ground truth: the hits whose `video_id` is in `ground_truth`; by default those whose captions include the query
    (ignoring case), which is how a caption of an annotated collection finds its own video."""
    rows = []
    wanted = {str(v) for v in ground_truth} if ground_truth is not None else None
    for position, hit in enumerate(hits, start=1):
        get = hit.get if isinstance(hit, Mapping) else lambda name, default=None, h=hit: getattr(h, name, default)
        captions = [c.strip().lower() for c in (get("captions") or ())]
        is_truth = str(get("video_id")) in wanted if wanted is not None else query.strip().lower() in captions
        rows.append(
            _Row(
                get("rank") or position,
                get("score"),
                str(get("video_id")),
                str(get("video")),
                is_truth,
                get("note") or "",
            )
        )
    image = _draw(query, rows, title=title, frames=frames, height=height, backend=backend)
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        image.save(path, format="PNG")
    return image


def _draw(query: str, rows: Sequence[_Row], *, title: str | None, frames: int, height: int, backend: str):
    from PIL import Image, ImageDraw

    strips = [video_strip(row.video, frames=frames, height=height, backend=backend) for row in rows]
    label_width, pad = 230, 10
    width = max([label_width + s.width + 3 * pad for s in strips] + [720])
    heading = _font(20)
    wrapped = textwrap.wrap(f"“{query}”", width=max(30, (width - 2 * pad) // 11)) or [""]
    header = pad + 28 * len(wrapped) + (22 if title else 0) + pad
    label_height = 92 if any(row.note for row in rows) else 74  # rank, score, id, ground truth (, note)
    row_height = max(height, label_height) + 2 * pad
    image = Image.new("RGB", (width, header + row_height * len(rows) + pad), BACKGROUND)
    draw = ImageDraw.Draw(image)
    y = pad
    if title:
        draw.text((pad, y), title, fill=MUTED, font=_font(14))
        y += 22
    for line in wrapped:
        draw.text((pad, y), line, fill=TEXT, font=heading)
        y += 28
    for row, strip in zip(rows, strips):
        top = header + rows.index(row) * row_height
        if row.ground_truth:
            draw.rectangle((2, top + 2, width - 3, top + row_height - 3), outline=GROUND_TRUTH, width=4)
        draw.text((pad + 4, top + pad), f"#{row.rank}", fill=TEXT, font=_font(22))
        if row.score is not None:
            draw.text((pad + 70, top + pad + 4), f"score {row.score:.3f}", fill=TEXT, font=_font(16))
        draw.text((pad + 4, top + pad + 34), textwrap.shorten(row.video_id, 28), fill=MUTED, font=_font(14))
        if row.ground_truth:
            _check_mark(draw, pad + 6, top + pad + 60)  # the default font has no ✓ glyph
            draw.text((pad + 26, top + pad + 56), "ground truth", fill=GROUND_TRUTH, font=_font(15))
        if row.note:
            draw.text((pad + 4, top + pad + 76), textwrap.shorten(row.note, 30), fill=MUTED, font=_font(13))
        image.paste(strip, (label_width, top + pad))
    return image


def _check_mark(draw, x: int, y: int) -> None:
    draw.line([(x, y + 6), (x + 5, y + 11), (x + 14, y)], fill=GROUND_TRUTH, width=3)


def worst_queries_gallery(
    encoded: Mapping[str, Any],
    captions: Sequence[str],
    path: str | os.PathLike | None = None,
    *,
    num_queries: int = 4,
    k: int = 5,
    frames: int = 6,
    height: int = 72,
    backend: str = "auto",
):
    """Contact sheets of the `num_queries` captions whose own video ranks worst, stacked into one image (saved as PNG
    to `path` when given); each shows the top `k` videos and, when it is not among them, the ground truth with its
    rank. `encoded` is `peft_video.evaluation.encode_split`'s output (`text_embeds`, `video_embeds`,
    `caption_to_video`, `video_valid`, `index`); `captions` the split's captions in row order. Returns the image
    (`numpy.asarray(image)` for TensorBoard's `add_image(..., dataformats="HWC")`)."""
    from PIL import Image

    text = np.asarray(encoded["text_embeds"], dtype=np.float32)
    videos = np.asarray(encoded["video_embeds"], dtype=np.float32)
    truth = np.asarray(encoded["caption_to_video"])
    valid = np.asarray(encoded.get("video_valid", np.ones(len(videos), bool)), dtype=bool)
    index = encoded["index"]
    similarity = text @ videos.T
    similarity[:, ~valid] = -np.inf
    own = similarity[np.arange(len(text)), truth]
    ranks = 1 + (similarity > own[:, None]).sum(axis=1) + ((similarity == own[:, None]).sum(axis=1) - 1)
    ranks = np.where(valid[truth], ranks, -1)  # captions of undecodable videos are not scored
    order = [int(i) for i in np.argsort(-ranks, kind="stable") if ranks[i] > 0][:num_queries]
    sheets = []
    for caption_row in order:
        top = np.argsort(-similarity[caption_row], kind="stable")[:k]
        hits = [
            {
                "rank": r,
                "score": float(similarity[caption_row, v]),
                "video_id": index.video_ids[v],
                "video": index.videos[v],
            }
            for r, v in enumerate(top, start=1)
        ]
        gt = int(truth[caption_row])
        if gt not in top:
            hits.append(
                {
                    "rank": int(ranks[caption_row]),
                    "score": float(similarity[caption_row, gt]),
                    "video_id": index.video_ids[gt],
                    "video": index.videos[gt],
                    "note": "(its own video)",
                }
            )
        sheets.append(
            contact_sheet(
                captions[caption_row], hits, ground_truth=[index.video_ids[gt]], frames=frames, height=height,
                title=f"caption {caption_row}: own video ranked {int(ranks[caption_row])} of {int(valid.sum())}",
                backend=backend,
            )
        )  # fmt: skip
    if not sheets:
        raise ValueError("no scored caption to show (no decodable video in the split)")
    width = max(s.width for s in sheets)
    image = Image.new("RGB", (width, sum(s.height for s in sheets) + 6 * (len(sheets) - 1)), (180, 180, 180))
    y = 0
    for sheet in sheets:
        image.paste(sheet, (0, y))
        y += sheet.height + 6
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        image.save(path, format="PNG")
    return image
