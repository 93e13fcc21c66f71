"""`transformers.Trainer` with peft_video: a collator Trainer takes as it is, and retrieval metrics through its
evaluation (`examples/train.py`, on Accelerate, stays the main path: it encodes each video once and skips bad files).

    metrics = RetrievalMetrics(validation_rows)
    trainer = Trainer(
        model=get_peft_model(clip, TFVLConfig(num_frames=12)),
        args=TrainingArguments("out", eval_strategy="epoch", metric_for_best_model="text_to_video/R@1", ...),
        train_dataset=VideoTextDataset(train_rows, sampling, transform, train=True),
        eval_dataset=VideoTextDataset(validation_rows, sampling, transform),
        data_collator=VideoTextTrainerCollator(tokenizer, max_text_length=32),
        compute_metrics=metrics,
        preprocess_logits_for_metrics=metrics.keep_embeddings,
    )

Why `VideoTextCollator` alone does not do: its batches carry bookkeeping (`errors`, `caption`, `video_id`, ...) that
the model's forward refuses, and no `return_loss=True`, without which a CLIP-style model returns no loss to Trainer.
(The samples reach the collator whole: a `VideoTextSample` is not a dict of columns for Trainer to prune by the base
CLIPModel's forward, which names neither `video_mask` nor `caption`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .data import VideoTextCollator
from .evaluation import split_metrics
from .metrics import flatten_metrics

MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "video_mask")


@dataclass
class VideoTextTrainerCollator(VideoTextCollator):
    """`VideoTextCollator` for `transformers.Trainer`: the model's inputs and `return_loss=True`, nothing else.

    Samples that failed to load (`VideoTextDataset(on_error="skip")`) are logged by the dataset and left out of their
    batch (Trainer cannot skip a batch: one whose samples all failed is an error naming the files).
    """

    def __call__(self, samples: list) -> dict[str, Any]:
        batch = super().__call__(samples)
        if not batch["batch_size"]:
            raise RuntimeError(f"every sample of a batch failed to load: {[e['video'] for e in batch['errors']]}")
        return {**{key: batch[key] for key in MODEL_INPUTS}, "return_loss": True}


class RetrievalMetrics:
    """`compute_metrics` for `transformers.Trainer`: the retrieval metrics of an evaluation split from the embeddings
    Trainer gathered, as `split_metrics` computes them for `examples/evaluate.py`, flattened to `text_to_video/R@1`,
    `video_to_text/MnR`, ... (Trainer logs them as `eval_text_to_video/R@1`; `metric_for_best_model` names them without
    the prefix). Pass `keep_embeddings` as `preprocess_logits_for_metrics`.

    Args:
        rows: the evaluation split (a `datasets.Dataset` of manifest rows, the eval dataset's rows in order).
        subset_columns, twin_column, tie_policy, dsl_temperature: as `split_metrics`.

    Trainer scores one (video, caption) row at a time: a video with several captions is encoded once per caption (the
    first row's embedding is used), and every row must load (a missing row would misalign rows and predictions: that
    is an error, not a wrong number).
    """

    def __init__(
        self,
        rows: Any,
        *,
        subset_columns: Sequence[str] = (),
        twin_column: str | None = None,
        tie_policy: str = "pessimistic",
        dsl_temperature: float | None = None,
    ):
        from .data import unique_videos

        self.rows = rows
        self.options = {
            "subset_columns": subset_columns, "twin_column": twin_column, "tie_policy": tie_policy,
            "dsl_temperature": dsl_temperature,
        }  # fmt: skip
        self.caption_to_video = torch.tensor(unique_videos(rows).caption_to_video, dtype=torch.long)
        first_rows = {}
        for row, video in enumerate(self.caption_to_video.tolist()):
            first_rows.setdefault(video, row)
        self.first_row_of_video = torch.tensor([first_rows[v] for v in range(len(first_rows))], dtype=torch.long)

    @staticmethod
    def keep_embeddings(logits: Any, labels: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`preprocess_logits_for_metrics`: of a batch's outputs, keep only the caption and video embeddings."""
        # Trainer passes the output's values but the loss, in `VideoTextRetrievalOutput`'s field order; its matrices
        # are logits_per_text, logits_per_video, text_embeds, video_embeds (the losses are scalars).
        matrices = [t for t in logits if isinstance(t, torch.Tensor) and t.ndim == 2]
        if len(matrices) < 4:
            raise ValueError(
                f"expected a VideoTextRetrievalOutput's logits and embeddings, got {len(matrices)} matrices"
            )
        return matrices[2], matrices[3]

    def __call__(self, prediction: Any) -> dict[str, float]:
        text_embeds, video_embeds = (torch.as_tensor(p, dtype=torch.float32) for p in prediction.predictions)
        if len(text_embeds) != len(self.rows):
            raise ValueError(
                f"Trainer returned {len(text_embeds)} predictions for {len(self.rows)} evaluation rows: rows that "
                "failed to load were dropped, so rows and predictions no longer line up. Fix or remove the files "
                "(`peft-video validate`), or evaluate with examples/evaluate.py, which leaves them out by name."
            )
        encoded = {
            "text_embeds": text_embeds,
            "video_embeds": video_embeds[self.first_row_of_video],
            "caption_to_video": self.caption_to_video,
            "video_valid": torch.ones(len(self.first_row_of_video), dtype=torch.bool),
        }
        metrics = split_metrics(encoded, self.rows, **self.options)
        return {
            name: float(value) for name, value in flatten_metrics(metrics).items() if isinstance(value, (int, float))
        }
