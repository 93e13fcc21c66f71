"""Contact sheets: a row per hit with the frames of its video, the ground truth framed, unreadable videos shown as
such; the worst-ranked-queries gallery that evaluation will write, from `encode_split`'s output."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from video_fixtures import write_random_bytes, write_video

from peft_video.search.gallery import contact_sheet, video_strip, worst_queries_gallery


def _green(image) -> int:
    pixels = np.asarray(image.convert("RGB")).astype(int)
    return int(((pixels[..., 1] > 130) & (pixels[..., 0] < 60) & (pixels[..., 2] < 100)).sum())


def test_rows_frames_ground_truth_and_unreadable_videos(tmp_path):
    good = write_video(tmp_path / "good.mp4", num_frames=12, width=64, height=48, pattern="moving")
    broken = write_random_bytes(tmp_path / "broken.mp4")
    strip = video_strip(good, frames=5, height=60)
    assert strip.height == 60 and strip.width == 5 * 80 + 4 * 2  # 64x48 scaled to height 60, 2-px gaps
    hits = [
        {"rank": 1, "score": 0.9, "video_id": "good", "video": str(good)},
        {"rank": 2, "score": 0.5, "video_id": "broken", "video": str(broken)},
    ]
    plain = contact_sheet("a query", hits, frames=5, height=60)
    marked = contact_sheet("a query", hits, tmp_path / "sheet.png", ground_truth=["good"], frames=5, height=60)
    assert Image.open(tmp_path / "sheet.png").size == marked.size == plain.size
    assert plain.height >= 2 * 80 and _green(marked) > _green(plain) + 200
    # the unreadable video's row is a grey strip, not an exception
    row = np.asarray(marked.convert("RGB"))[marked.height - 50, 240:520]
    assert (np.abs(row.astype(int) - 200) < 3).all(axis=-1).mean() > 0.5


def test_worst_queries_gallery_from_an_encode_split_result(search_assets):
    from peft import PeftModel
    from transformers import AutoTokenizer, CLIPModel

    from peft_video.data import ClipFrameTransform, FrameSampling, load_manifest
    from peft_video.evaluation import encode_split

    data = load_manifest(search_assets.manifest, split="test")
    model = PeftModel.from_pretrained(CLIPModel.from_pretrained(search_assets.clip), search_assets.adapter).eval()
    encoded = encode_split(
        model, data, sampling=FrameSampling(num_frames=4), transform=ClipFrameTransform.for_image_size(32),
        tokenizer=AutoTokenizer.from_pretrained(search_assets.clip), max_text_length=16,
    )  # fmt: skip
    image = worst_queries_gallery(encoded, data["caption"], None, num_queries=3, k=2, frames=4, height=48)
    similarity = encoded["text_embeds"] @ encoded["video_embeds"].T
    own = similarity[torch.arange(len(data)), encoded["caption_to_video"]]
    worst_rank = int((similarity >= own[:, None]).sum(1).max())
    assert worst_rank > 2  # a random adapter: some caption's own video is outside the top 2 ...
    three_sheets = image.height
    one = worst_queries_gallery(encoded, data["caption"], None, num_queries=1, k=2, frames=4, height=48)
    assert one.height * 2.5 < three_sheets  # ... and each of the 3 sheets then shows 3 rows (top 2 + its own video)
    assert _green(one) > 300  # its own video, framed
