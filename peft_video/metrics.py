"""Text-video retrieval metrics: R@K, median rank (MdR) and mean rank (MnR) in both directions.

Everything starts from a similarity matrix ``similarity[n_texts, n_videos]`` (higher = more similar) and, for datasets
with several captions per video, ``text_to_video[n_texts]``: the index of the video each caption describes.

Protocol (multi-caption datasets such as MSVD, or MSR-VTT's full 20 captions per video):

* **text→video**: every caption is a query; its rank is the position of its one ground-truth video among all
  ``n_videos`` videos.
* **video→text**: every video that has at least one caption is a query. Two protocols are in use, chosen with
  ``video_to_text_protocol``:

  - ``"collaborative_experts"`` (default; Collaborative Experts, VSE): the rank is the position of the *best-ranked*
    of the video's own captions among all ``n_texts`` captions (the first correct hit). Other captions of the same
    video are never counted against it, but every caption of every other video competes.
  - ``"clip4clip"`` (CLIP4Clip, X-Pool, CLIP2Video, DGL and the other CLIP4Clip-derived code): the candidates are
    *videos' caption sets*. Each captioned video ``u`` scores ``max_{c of u} similarity[c, v]`` against the query
    video ``v`` (its best caption), and the rank is the position of ``v``'s own set among the ``n`` captioned videos.
    A video's rank is never worse than under ``"collaborative_experts"``, and the two agree when every video has one
    caption. Papers that report MSVD, MSR-VTT-full or VATEX video→text numbers use this one.

  Videos without any caption (pure distractors) are not queries; they still compete as candidates in text→video.

Without ``text_to_video`` the matrix must be square and text ``i`` describes video ``i``.

Ties: a rank is ``1 + (number of wrong candidates placed before the ground truth)``. Candidates that score strictly
higher always come first. What happens to candidates that score *exactly the same* as the ground truth is the
``tie_policy``:

* ``"pessimistic"`` (default): every tied wrong candidate is placed before the ground truth. A model that gives every
  pair the same score (a collapsed model) therefore gets the worst possible rank, never a perfect one.
* ``"index"``: ties are broken by candidate index, as a stable sort would (lower index first). Deterministic and
  unbiased on average; a constant-score model gets chance level (mean rank ``(n + 1) / 2``).
* ``"optimistic"``: every tied wrong candidate is placed after the ground truth. This reproduces code that takes the
  first position among equal scores (Collaborative Experts' metric before it averaged ties); a constant-score model
  gets R@1 = 100 %. Provided only to reproduce numbers of such code; never report it as a result. (CLIP4Clip's and
  X-Pool's code give chance level on a constant matrix, as ``"index"`` does.)

Ranks are computed by counting, not by sorting: a chunk of ``chunk_size`` query rows is compared against the ground
truth scores at a time, so memory stays at ``chunk_size x gallery`` booleans however large the gallery.

Dual softmax (DSL, :func:`dual_softmax`) rescales the similarity with a prior computed over *all test queries at once*.
It is a transductive trick: it needs the whole query set in advance, so its numbers do not describe a search engine
that answers one query at a time. :func:`compute_retrieval_metrics` reports it only beside the raw scores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

TiePolicy = Literal["pessimistic", "index", "optimistic"]
TIE_POLICIES: tuple[str, ...] = ("pessimistic", "index", "optimistic")
DIRECTIONS: tuple[str, ...] = ("text_to_video", "video_to_text")
VideoToTextProtocol = Literal["collaborative_experts", "clip4clip"]
VIDEO_TO_TEXT_PROTOCOLS: tuple[str, ...] = ("collaborative_experts", "clip4clip")
DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
DEFAULT_CHUNK_SIZE = 1024


@dataclass(frozen=True)
class RetrievalRanks:
    """1-based rank of the ground truth for every query of each direction.

    Args:
        text_to_video: ``[n_texts]`` rank of each caption's video among all videos.
        video_to_text: ``[n_queried_videos]`` rank of each captioned video under the video→text protocol.
        video_ids: ``[n_queried_videos]`` the video index each entry of ``video_to_text`` belongs to (videos without a
            caption are left out).
    """

    text_to_video: torch.Tensor
    video_to_text: torch.Tensor
    video_ids: torch.Tensor


def _as_similarity(similarity: Any) -> torch.Tensor:
    """Validate ``similarity`` and return it as a floating-point tensor (on its own device)."""
    if not isinstance(similarity, torch.Tensor):
        try:
            similarity = torch.as_tensor(similarity)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"similarity must be a 2-D numeric matrix [n_texts, n_videos]; got {error}") from error
    if similarity.dim() != 2:
        raise ValueError(
            f"similarity must be a 2-D matrix [n_texts, n_videos]; got {similarity.dim()}-D with shape "
            f"{tuple(similarity.shape)}"
        )
    if similarity.shape[0] == 0 or similarity.shape[1] == 0:
        raise ValueError(f"similarity must have at least one text and one video; got shape {tuple(similarity.shape)}")
    if similarity.dtype == torch.bool or similarity.is_complex():
        raise ValueError(f"similarity must hold real scores; got dtype {similarity.dtype}")
    if not similarity.is_floating_point():
        # float64 holds every integer score up to 2**53 exactly, so no new ties are created.
        similarity = similarity.to(torch.float64)
    if torch.isnan(similarity).any():
        rows, cols = torch.nonzero(torch.isnan(similarity), as_tuple=True)
        raise ValueError(
            f"similarity contains {rows.numel()} NaN score(s) (first at text {rows[0].item()}, video "
            f"{cols[0].item()}); NaN cannot be ranked"
        )
    return similarity


def _as_text_to_video(text_to_video: Any, n_texts: int, n_videos: int, device: torch.device) -> torch.Tensor:
    """Validate the caption -> video map (or build the identity map for a square matrix)."""
    if text_to_video is None:
        if n_texts != n_videos:
            raise ValueError(
                f"similarity has shape ({n_texts}, {n_videos}) but no text_to_video map was given; without it the "
                "matrix must be square (text i describes video i). Pass text_to_video[n_texts] for multi-caption data."
            )
        return torch.arange(n_texts, device=device)
    mapping = text_to_video if isinstance(text_to_video, torch.Tensor) else torch.as_tensor(text_to_video)
    if mapping.dim() != 1:
        raise ValueError(f"text_to_video must be 1-D [n_texts]; got shape {tuple(mapping.shape)}")
    if mapping.numel() != n_texts:
        raise ValueError(
            f"text_to_video has {mapping.numel()} entries but similarity has {n_texts} texts (rows); they must match"
        )
    if mapping.dtype == torch.bool or mapping.is_floating_point() or mapping.is_complex():
        raise ValueError(f"text_to_video must hold integer video indices; got dtype {mapping.dtype}")
    mapping = mapping.to(device=device, dtype=torch.long)
    bad = (mapping < 0) | (mapping >= n_videos)
    if bad.any():
        first = int(torch.nonzero(bad)[0].item())
        raise ValueError(
            f"text_to_video[{first}] = {int(mapping[first].item())} is out of range: similarity has {n_videos} videos "
            f"(columns), so indices must lie in [0, {n_videos - 1}]"
        )
    return mapping


def _check_tie_policy(tie_policy: str) -> None:
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {TIE_POLICIES}; got {tie_policy!r}")


def _check_protocol(protocol: str) -> None:
    if protocol not in VIDEO_TO_TEXT_PROTOCOLS:
        raise ValueError(f"video_to_text_protocol must be one of {VIDEO_TO_TEXT_PROTOCOLS}; got {protocol!r}")


def _check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")


def _text_to_video_ranks(
    similarity: torch.Tensor, mapping: torch.Tensor, tie_policy: str, chunk_size: int
) -> torch.Tensor:
    n_texts, n_videos = similarity.shape
    video_index = torch.arange(n_videos, device=similarity.device).unsqueeze(0)
    ranks = torch.empty(n_texts, dtype=torch.long, device=similarity.device)
    for start in range(0, n_texts, chunk_size):
        rows = similarity[start : start + chunk_size]
        gt = mapping[start : start + chunk_size].unsqueeze(1)
        gt_score = rows.gather(1, gt)
        # A caption has exactly one correct video, so no mask of wrong candidates is needed: the ground truth itself
        # is the one ">=" hit that is not "before" it.
        if tie_policy == "pessimistic":
            chunk_ranks = (rows >= gt_score).sum(dim=1)
        elif tie_policy == "optimistic":
            chunk_ranks = 1 + (rows > gt_score).sum(dim=1)
        else:
            tied_lower = (rows == gt_score) & (video_index < gt)
            chunk_ranks = 1 + (rows > gt_score).sum(dim=1) + tied_lower.sum(dim=1)
        ranks[start : start + chunk_size] = chunk_ranks
    return ranks


def _video_to_text_ranks(
    similarity: torch.Tensor, mapping: torch.Tensor, tie_policy: str, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n_texts, n_videos = similarity.shape
    device = similarity.device
    text_index = torch.arange(n_texts, device=device)
    # Per video: the best score among its own captions (m), how many of its captions reach m, and the lowest caption
    # index that reaches it (t*). The first correct hit in the ranked list is t* under every tie policy.
    own_score = similarity.gather(1, mapping.unsqueeze(1)).squeeze(1)
    best_score = torch.full((n_videos,), -math.inf, dtype=similarity.dtype, device=device)
    best_score = best_score.scatter_reduce(0, mapping, own_score, reduce="amax", include_self=True)
    reaches_best = own_score == best_score[mapping]
    captions_at_best = torch.bincount(mapping[reaches_best], minlength=n_videos)
    first_best_text = torch.full((n_videos,), n_texts, dtype=torch.long, device=device)
    first_best_text = first_best_text.scatter_reduce(
        0, mapping[reaches_best], text_index[reaches_best], reduce="amin", include_self=True
    )

    # Counting over all captions and subtracting the correct ones avoids a [n_texts, chunk] mask of wrong captions:
    # no correct caption scores above m, and none with score m has an index below t*.
    ranks = torch.empty(n_videos, dtype=torch.long, device=device)
    text_column = text_index.unsqueeze(1)
    for start in range(0, n_videos, chunk_size):
        columns = similarity[:, start : start + chunk_size]  # a view, no copy
        best = best_score[start : start + chunk_size].unsqueeze(0)
        if tie_policy == "pessimistic":
            before = (columns >= best).sum(dim=0) - captions_at_best[start : start + chunk_size]
        elif tie_policy == "optimistic":
            before = (columns > best).sum(dim=0)
        else:
            tied_lower = (columns == best) & (text_column < first_best_text[start : start + chunk_size].unsqueeze(0))
            before = (columns > best).sum(dim=0) + tied_lower.sum(dim=0)
        ranks[start : start + chunk_size] = 1 + before
    has_caption = torch.bincount(mapping, minlength=n_videos) > 0
    video_ids = torch.nonzero(has_caption).squeeze(1)
    return ranks[video_ids], video_ids


def _video_to_caption_set_ranks(
    similarity: torch.Tensor, mapping: torch.Tensor, tie_policy: str, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``"clip4clip"`` protocol: rank of a video's own caption set among the captioned videos' sets, each set
    scored by its best caption."""
    n_texts, n_videos = similarity.shape
    device = similarity.device
    has_caption = torch.bincount(mapping, minlength=n_videos) > 0
    video_index = torch.arange(n_videos, device=device)
    ranks = torch.empty(n_videos, dtype=torch.long, device=device)
    for start in range(0, n_videos, chunk_size):
        columns = similarity[:, start : start + chunk_size]
        width = columns.shape[1]
        # best[u, j]: the best score any caption of video u gets against query video start + j ([n_videos, width]).
        best = torch.full((n_videos, width), -math.inf, dtype=similarity.dtype, device=device)
        best = best.scatter_reduce(0, mapping.unsqueeze(1).expand(-1, width), columns, reduce="amax")
        queries = video_index[start : start + width]
        own = best[queries, torch.arange(width, device=device)].unsqueeze(0)
        rivals = has_caption.unsqueeze(1) & (video_index.unsqueeze(1) != queries.unsqueeze(0))
        before = rivals & (best > own)
        if tie_policy == "pessimistic":
            before |= rivals & (best == own)
        elif tie_policy == "index":
            before |= rivals & (best == own) & (video_index.unsqueeze(1) < queries.unsqueeze(0))
        ranks[start : start + width] = 1 + before.sum(dim=0)
    video_ids = torch.nonzero(has_caption).squeeze(1)
    return ranks[video_ids], video_ids


def retrieval_ranks(
    similarity: Any,
    text_to_video: Any = None,
    *,
    tie_policy: TiePolicy = "pessimistic",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    video_to_text_protocol: VideoToTextProtocol = "collaborative_experts",
) -> RetrievalRanks:
    """1-based ranks of the ground truth in both directions (see the module docstring for protocols and ties).

    Args:
        similarity: ``[n_texts, n_videos]`` scores (tensor, array or nested list); higher = more similar. Compared in
            its own dtype and on its own device.
        text_to_video: ``[n_texts]`` integer video index of each caption. ``None``: square matrix, text ``i`` <-> video
            ``i``.
        tie_policy: ``"pessimistic"`` (default), ``"index"`` or ``"optimistic"``.
        chunk_size: number of query rows compared at once; peak extra memory is a few ``chunk_size x gallery`` boolean
            masks.
        video_to_text_protocol: ``"collaborative_experts"`` (default: a video's best caption among all captions) or
            ``"clip4clip"`` (a video's caption set, scored by its best caption, among the videos' caption sets).

    Returns:
        :class:`RetrievalRanks` with CPU ``int64`` tensors.
    """
    _check_tie_policy(tie_policy)
    _check_chunk_size(chunk_size)
    _check_protocol(video_to_text_protocol)
    sim = _as_similarity(similarity)
    mapping = _as_text_to_video(text_to_video, sim.shape[0], sim.shape[1], sim.device)
    t2v = _text_to_video_ranks(sim, mapping, tie_policy, chunk_size)
    if video_to_text_protocol == "collaborative_experts":
        v2t, video_ids = _video_to_text_ranks(sim, mapping, tie_policy, chunk_size)
    else:
        v2t, video_ids = _video_to_caption_set_ranks(sim, mapping, tie_policy, chunk_size)
    return RetrievalRanks(text_to_video=t2v.cpu(), video_to_text=v2t.cpu(), video_ids=video_ids.cpu())


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks must name at least one cut-off K for R@K; got an empty sequence")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"every K in ks must be a positive integer; got {k!r} in {ks}")
    return ks


def metrics_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """R@K (percent of queries whose ground truth is within the top K), MdR and MnR from 1-based ranks.

    MdR is the usual median (the mean of the two middle ranks for an even number of queries), as ``numpy.median``.
    ``num_queries`` is reported too, so an aggregate is never read without its denominator.
    """
    ks = _check_ks(ks)
    if ranks.dim() != 1 or ranks.numel() == 0:
        raise ValueError(f"ranks must be a non-empty 1-D tensor; got shape {tuple(ranks.shape)}")
    ranks = ranks.to(torch.float64)
    result = {f"R@{k}": 100.0 * (ranks <= k).to(torch.float64).mean().item() for k in ks}
    ordered = torch.sort(ranks).values
    middle = (ordered.numel() - 1) // 2
    result["MdR"] = ((ordered[middle] + ordered[ordered.numel() // 2]) / 2).item()
    result["MnR"] = ranks.mean().item()
    result["num_queries"] = int(ranks.numel())
    return result


def dual_softmax(
    similarity: Any, *, temperature: float, direction: Literal["text_to_video", "video_to_text"] = "text_to_video"
) -> torch.Tensor:
    """Dual-softmax inference re-scoring (DSL): the similarity times a softmax prior taken over the *queries*.

    For ``"text_to_video"`` (rank videos for each caption) every score is multiplied by the softmax over all captions
    of that video's column; for ``"video_to_text"`` by the softmax over all videos of that caption's row. A candidate
    that matches many queries equally well is thereby pushed down.

    Caveat: the prior uses every test query at once, which a real search engine answering one query never has. Report
    DSL numbers beside raw ones, never instead (:func:`compute_retrieval_metrics` does so with ``dsl_temperature``).

    Args:
        similarity: ``[n_texts, n_videos]`` scores.
        temperature: softmax temperature, in the units of ``similarity`` (the prior is ``softmax(similarity /
            temperature)``). Typical: ``0.01`` for cosine similarities, ``1.0`` for CLIP logits already multiplied by
            ``logit_scale = 100``. Required, because a wrong scale silently changes the numbers.
        direction: which retrieval direction the re-scored matrix is for.

    Returns:
        A new ``[n_texts, n_videos]`` tensor (same dtype as the input, float64 for integer input).
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number; got {temperature!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}; got {direction!r}")
    sim = _as_similarity(similarity)
    if not torch.isfinite(sim).all():
        raise ValueError("dual_softmax needs finite scores; similarity contains +-inf")
    query_axis = 0 if direction == "text_to_video" else 1
    return sim * torch.softmax(sim / temperature, dim=query_axis)


def compute_retrieval_metrics(
    similarity: Any,
    text_to_video: Any = None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    tie_policy: TiePolicy = "pessimistic",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    dsl_temperature: float | None = None,
    video_to_text_protocol: VideoToTextProtocol = "collaborative_experts",
) -> dict[str, Any]:
    """Text→video and video→text R@K, MdR and MnR (protocols and tie policy in the module docstring).

    Args:
        similarity: ``[n_texts, n_videos]`` scores, higher = more similar.
        text_to_video: ``[n_texts]`` video index of each caption; ``None`` for a square one-caption-per-video matrix.
        ks: the K of every R@K.
        tie_policy: ``"pessimistic"`` (default: ties count against the ground truth), ``"index"`` or ``"optimistic"``.
        chunk_size: query rows compared at once (memory bound).
        dsl_temperature: if given, dual-softmax numbers (see :func:`dual_softmax`) are added under ``"dsl"``, beside
            the raw ones.
        video_to_text_protocol: ``"collaborative_experts"`` (default) or ``"clip4clip"``; the one the papers of a
            public benchmark report is `peft_video.data.PUBLIC_DATASETS[name].video_to_text_protocol`.

    Returns:
        ``{"text_to_video": {"R@1": .., "R@5": .., "R@10": .., "MdR": .., "MnR": .., "num_queries": ..},
        "video_to_text": {...}, "tie_policy": .., "video_to_text_protocol": ..}`` plus ``"dsl": {"text_to_video":
        {...}, "video_to_text": {...}, "temperature": ..}`` when ``dsl_temperature`` is set. R@K are percentages.

    Example:
        >>> sim = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
        >>> out = compute_retrieval_metrics(sim, text_to_video=[0, 1, 0], ks=(1,))
        >>> out["text_to_video"]["R@1"], out["video_to_text"]["R@1"]
        (100.0, 100.0)
    """
    ks = _check_ks(ks)
    protocol = {"tie_policy": tie_policy, "chunk_size": chunk_size, "video_to_text_protocol": video_to_text_protocol}
    ranks = retrieval_ranks(similarity, text_to_video, **protocol)
    result: dict[str, Any] = {
        "text_to_video": metrics_from_ranks(ranks.text_to_video, ks),
        "video_to_text": metrics_from_ranks(ranks.video_to_text, ks),
        "tie_policy": tie_policy,
        "video_to_text_protocol": video_to_text_protocol,
    }
    if dsl_temperature is not None:
        dsl: dict[str, Any] = {}
        for direction in DIRECTIONS:
            rescored = dual_softmax(similarity, temperature=dsl_temperature, direction=direction)
            direction_ranks = retrieval_ranks(rescored, text_to_video, **protocol)
            dsl[direction] = metrics_from_ranks(getattr(direction_ranks, direction), ks)
        dsl["temperature"] = float(dsl_temperature)
        result["dsl"] = dsl
    return result


def twin_accuracy(
    similarity: Any,
    text_to_video: Any,
    video_twin: Any,
    kinds: Sequence[Any] | None = None,
    tolerance: float = 1e-6,
) -> dict[str, Any]:
    """How often a caption scores its own video above that video's twin (e.g. the same frames reversed).

    `similarity` [n_texts, n_videos]; `text_to_video` [n_texts] the video of each caption; `video_twin` [n_videos] the
    index of each video's twin, or -1 for none. Captions whose video has no twin are not scored. A tie counts one
    half, so a model that cannot tell twins apart (mean pooling over frames, for reversed twins) is at 50 % up to
    noise. Scores within `tolerance` of each other tie: the mean of the same frames summed in another order differs
    by float rounding only (up to ~2e-7 in float32 cosines), which would otherwise turn ties into coin flips (for
    cosine similarities; scale `tolerance` with the scores). Returns `{"accuracy": percent, "num_queries": n}`; with
    `kinds` (one label per caption, e.g. the offline world's `order`/`motion`/`colour`/`size`), also
    `"per_kind": {kind: {"accuracy", "num_queries"}}` over the scored captions of each kind, so that every figure comes
    with its n.
    """
    similarity = _as_similarity(similarity)
    n_texts, n_videos = similarity.shape
    own = _as_text_to_video(text_to_video, n_texts, n_videos, similarity.device)
    twins = torch.as_tensor(video_twin, device=similarity.device)
    if twins.shape != (n_videos,) or twins.dtype.is_floating_point:
        raise ValueError(f"video_twin must be an integer tensor of shape ({n_videos},), got {tuple(twins.shape)}.")
    if ((twins < -1) | (twins >= n_videos)).any():
        raise ValueError(f"video_twin holds indices outside [-1, {n_videos - 1}].")
    if kinds is not None and len(kinds) != n_texts:
        raise ValueError(f"kinds must hold one label per caption ({n_texts}), got {len(kinds)}.")
    twin = twins[own]
    scored = (twin >= 0).nonzero().flatten()
    if scored.numel() == 0:
        result: dict[str, Any] = {"accuracy": float("nan"), "num_queries": 0}
        return result if kinds is None else {**result, "per_kind": {}}
    own_score = similarity[scored, own[scored]]
    twin_score = similarity[scored, twin[scored]]
    tie = (own_score - twin_score).abs() <= tolerance
    wins = ((own_score > twin_score) & ~tie).double() + 0.5 * tie.double()
    result = {"accuracy": 100.0 * wins.mean().item(), "num_queries": int(scored.numel())}
    if kinds is not None:
        labels = [kinds[i] for i in scored.tolist()]
        result["per_kind"] = {}
        for kind in sorted(set(labels), key=str):
            mask = torch.tensor([label == kind for label in labels], device=wins.device)
            result["per_kind"][kind] = {"accuracy": 100.0 * wins[mask].mean().item(), "num_queries": int(mask.sum())}
    return result


def flatten_metrics(metrics: Mapping[str, Any], separator: str = "/") -> dict[str, Any]:
    """Flatten the nested result of :func:`compute_retrieval_metrics` for trackers: ``{"text_to_video/R@1": ..}``."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            for inner_key, inner_value in flatten_metrics(value, separator).items():
                flat[f"{key}{separator}{inner_key}"] = inner_value
        else:
            flat[key] = value
    return flat
