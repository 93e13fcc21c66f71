"""`evaluate` metric module for text-video retrieval, a thin wrapper of ``peft_video.metrics``.

Load it from a checkout, offline::

    metric = evaluate.load("./metrics/text_video_retrieval")   # or the absolute path of this folder

``evaluate`` copies this script into its modules cache before importing it, so it must not import files beside it;
everything comes from the installed ``peft_video`` package.
"""

from __future__ import annotations

import datasets
import evaluate
import torch

from peft_video.metrics import DEFAULT_CHUNK_SIZE, DEFAULT_KS, compute_retrieval_metrics

_DESCRIPTION = """\
Text-video retrieval metrics in both directions: text->video and video->text recall at K (R@K, percent), median rank
(MdR) and mean rank (MnR). One row per caption: `predictions` is that caption's similarity with every video of the
gallery (all rows the same length), `references` the index of the caption's video. Several captions may share a video.
Text->video ranks each caption's video among all videos; video->text ranks, for each video that has a caption, the
best-ranked of its own captions among all captions (`video_to_text_protocol="collaborative_experts"`, default) or
its caption set, scored by its best caption, among the videos' caption sets (`"clip4clip"`: what CLIP4Clip, X-Pool
and the papers reporting MSVD, MSR-VTT-full and VATEX use). Ties between the ground truth and a wrong candidate
count against the ground truth by default (`tie_policy="pessimistic"`), so a model with constant scores is never
rewarded.
Dual-softmax numbers (`dsl_temperature`) are added beside the raw ones under "dsl", never in their place.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of rows, one per caption; row i holds the similarity of caption i with each video (higher = more
        similar). Stored as float64, so float32/float16 scores keep their exact values (no new ties).
    references: list of int, the video index (column) that caption i describes.
    ks: cut-offs of R@K. Default (1, 5, 10).
    tie_policy: "pessimistic" (default), "index" (stable-sort order) or "optimistic" (reproduces argsort-style code
        that rewards ties; never report it).
    chunk_size: caption rows (and video columns) compared at once; bounds memory. Default 1024.
    dsl_temperature: if set, also report dual-softmax metrics with softmax(similarity / dsl_temperature) as prior.
    video_to_text_protocol: "collaborative_experts" (default) or "clip4clip" (see the description).
Returns:
    {"text_to_video": {"R@1", "R@5", "R@10", "MdR", "MnR", "num_queries"}, "video_to_text": {...},
     "tie_policy": str, "video_to_text_protocol": str} and, with dsl_temperature, "dsl": {"text_to_video": {...},
     "video_to_text": {...}, "temperature": float}.
Examples:
    >>> metric = evaluate.load("./metrics/text_video_retrieval")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], references=[0, 1, 0], ks=[1])
    {'text_to_video': {'R@1': 100.0, 'MdR': 1.0, 'MnR': 1.0, 'num_queries': 3}, 'video_to_text': {'R@1': 100.0, \
'MdR': 1.0, 'MnR': 1.0, 'num_queries': 2}, 'tie_policy': 'pessimistic', 'video_to_text_protocol': \
'collaborative_experts'}
"""

_CITATION = """\
@misc{peft_video_retrieval_metrics,
  title = {peft_video text-video retrieval metrics},
  note = {Protocol and tie policy: docs/metrics.md of the peft_video repository}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TextVideoRetrieval(evaluate.Metric):
    """R@K, MdR and MnR for text->video and video->text retrieval from caption-by-video similarities."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://github.com/huggingface/peft"],
        )

    def _compute(
        self,
        predictions,
        references,
        ks=DEFAULT_KS,
        tie_policy="pessimistic",
        chunk_size=DEFAULT_CHUNK_SIZE,
        dsl_temperature=None,
        video_to_text_protocol="collaborative_experts",
    ) -> dict:
        try:
            similarity = torch.tensor(predictions, dtype=torch.float64)
        except (TypeError, ValueError) as error:
            lengths = sorted({len(row) for row in predictions})
            raise ValueError(
                "every predictions row must hold one score per video of the same gallery; got rows of lengths "
                f"{lengths}"
            ) from error
        return compute_retrieval_metrics(
            similarity,
            torch.tensor(references, dtype=torch.long),
            ks=tuple(ks),
            tie_policy=tie_policy,
            chunk_size=chunk_size,
            dsl_temperature=dsl_temperature,
            video_to_text_protocol=video_to_text_protocol,
        )
