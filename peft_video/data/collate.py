"""Batching: stack clips and masks, tokenize captions, and carry the failed samples' errors to the main process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import default_collate

from .dataset import FailedSample


@dataclass
class VideoTextCollator:
    """Collate `VideoTextDataset` samples into the model's inputs.

    Returns a dict with `pixel_values` float [B, T, 3, H, W], `video_mask` bool [B, T] (True = real frame, real
    frames first), `video_id` and `caption` lists, `video` (paths), and, when a tokenizer is given, `input_ids` /
    `attention_mask` [B, max_text_length] (padded; truncated captions keep their EOT token). Failed samples
    (`on_error="skip"`) are dropped and listed under `errors` as `{"video", "reason"}` dicts; a batch whose samples all
    failed has `batch_size == 0` and no tensors (`DataErrorSummary.track` skips it). Partly decodable videos used as
    shorter videos are listed under `partial_videos` as `{"video", "decoded_frames", "announced_frames"}` dicts.
    Streamed samples (`StreamingVideoTextDataset`) also give `captions`, `meta` (each video's metadata dict or None),
    `key` and `shard` lists, and their failures' entries carry `key`, `shard`, `video_id`, `captions` and `meta`.

    Args:
        tokenizer: A CLIP tokenizer (anything callable like a Hugging Face tokenizer); None leaves text out.
        max_text_length: Token length including SOT and EOT (an adapter's `max_text_length`).
    """

    tokenizer: Any = None
    max_text_length: int = 32
    _eot_id: int | None = field(default=None, init=False, repr=False)

    def __call__(self, samples: list[dict | FailedSample]) -> dict[str, Any]:
        errors = [
            {"video": s.video, "reason": s.reason, **getattr(s, "details", {})}  # a stream's failures say more
            for s in samples
            if isinstance(s, FailedSample)
        ]
        good = [s for s in samples if not isinstance(s, FailedSample)]
        partial = [s["partial"] for s in good if s.get("partial")]
        batch: dict[str, Any] = {"errors": errors, "partial_videos": partial, "batch_size": len(good)}
        if not good:
            return batch
        # default_collate stacks straight into shared memory inside DataLoader workers (one copy fewer per batch).
        batch["pixel_values"] = default_collate([s["pixel_values"] for s in good])
        batch["video_mask"] = default_collate([s["video_mask"] for s in good])
        batch["video_id"] = [s["video_id"] for s in good]
        batch["caption"] = [s["caption"] for s in good]
        batch["video"] = [s["video"] for s in good]
        for name in ("captions", "meta", "key", "shard"):  # streamed samples (StreamingVideoTextDataset)
            if name in good[0]:
                batch[name] = [s[name] for s in good]
        if self.tokenizer is not None:
            batch.update(self.tokenize(batch["caption"]))
        return batch

    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        """Pad/truncate to `max_text_length`; a truncated caption's last token is forced to EOT so that CLIP pools the
        end-of-text state (its pooled text feature) rather than a word."""
        encoded = self.tokenizer(
            list(captions), padding="max_length", truncation=True, max_length=self.max_text_length, return_tensors="pt"
        )
        input_ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
        if input_ids.shape[1] != self.max_text_length:
            raise ValueError(
                f"tokenizer returned length {input_ids.shape[1]}, expected max_text_length={self.max_text_length}"
            )
        eot = self.tokenizer.eos_token_id
        if eot is not None:
            full = attention_mask[:, -1].bool()
            input_ids[full, -1] = eot
        return {"input_ids": input_ids, "attention_mask": attention_mask}
