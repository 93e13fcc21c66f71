"""peft_video.metrics against a naive reference (Python loops and a full sort), plus its bad-input errors."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from peft_video.metrics import (
    compute_retrieval_metrics,
    dual_softmax,
    flatten_metrics,
    metrics_from_ranks,
    retrieval_ranks,
)

POLICIES = ("pessimistic", "index", "optimistic")


# ----------------------------------------------------------------------------------------------------
# Naive reference: sort every query's candidates completely, then look for the first correct one.
# ----------------------------------------------------------------------------------------------------
def _sort_key(policy: str, score: float, index: int, correct: bool) -> tuple:
    """Descending score; among equal scores the policy decides where correct candidates go."""
    if policy == "pessimistic":
        return (-score, correct)  # False < True: wrong candidates first
    if policy == "optimistic":
        return (-score, not correct)
    return (-score, index)


def _first_correct_position(scores: list[float], correct: list[bool], policy: str) -> int:
    order = sorted(range(len(scores)), key=lambda i: _sort_key(policy, scores[i], i, correct[i]))
    return next(position for position, i in enumerate(order, start=1) if correct[i])


def reference_ranks(sim: torch.Tensor, text_to_video: list[int], policy: str) -> tuple[list[int], list[int]]:
    rows = sim.tolist()
    n_texts, n_videos = len(rows), len(rows[0])
    t2v = [
        _first_correct_position(rows[t], [v == text_to_video[t] for v in range(n_videos)], policy)
        for t in range(n_texts)
    ]
    v2t = []
    for v in range(n_videos):
        correct = [text_to_video[t] == v for t in range(n_texts)]
        if any(correct):
            v2t.append(_first_correct_position([rows[t][v] for t in range(n_texts)], correct, policy))
    return t2v, v2t


def reference_caption_set_ranks(sim: torch.Tensor, text_to_video: list[int], policy: str) -> list[int]:
    """The "clip4clip" video->text protocol, naively: candidates are the captioned videos, each scored against the
    query video by its best caption; the rank is the position of the query's own video."""
    rows = sim.tolist()
    captioned = sorted(set(text_to_video))
    best = {
        (u, v): max(rows[t][v] for t in range(len(rows)) if text_to_video[t] == u)
        for u in captioned
        for v in captioned
    }
    return [
        _first_correct_position([best[(u, v)] for u in captioned], [u == v for u in captioned], policy)
        for v in captioned
    ]


def reference_metrics(ranks: list[int], ks: tuple[int, ...]) -> dict[str, float]:
    out = {f"R@{k}": 100.0 * sum(r <= k for r in ranks) / len(ranks) for k in ks}
    out["MdR"] = float(statistics.median(ranks))
    out["MnR"] = float(statistics.mean(ranks))
    out["num_queries"] = len(ranks)
    return out


def random_case(seed: int, n_videos: int, captions: int, levels: int | None, distractors: int = 0):
    """A similarity matrix and caption map; ``levels`` quantises scores so that ties are frequent."""
    generator = torch.Generator().manual_seed(seed)
    text_to_video = torch.arange(n_videos - distractors).repeat_interleave(captions)
    text_to_video = text_to_video[torch.randperm(text_to_video.numel(), generator=generator)]
    sim = torch.randn(text_to_video.numel(), n_videos, generator=generator)
    # Nudge the correct pairs up so that the ranks spread over 1..n rather than sitting around n/2.
    sim[torch.arange(text_to_video.numel()), text_to_video] += 1.0
    if levels is not None:
        sim = torch.round(sim * levels / 4) / levels
    return sim, text_to_video


CASES = [
    # seed, n_videos, captions per video, tie levels, distractor videos (no caption)
    (0, 9, 1, None, 0),
    (1, 12, 1, 2, 0),
    (2, 7, 3, 2, 0),
    (3, 10, 4, 1, 2),
    (4, 15, 2, None, 3),
    (5, 6, 5, 1, 0),
]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("case", CASES)
def test_ranks_and_metrics_match_naive_reference(case, policy):
    sim, text_to_video = random_case(*case)
    expected_t2v, expected_v2t = reference_ranks(sim, text_to_video.tolist(), policy)
    ranks = retrieval_ranks(sim, text_to_video, tie_policy=policy, chunk_size=4)
    assert ranks.text_to_video.tolist() == expected_t2v
    assert ranks.video_to_text.tolist() == expected_v2t
    ks = (1, 2, 5, 10)
    result = compute_retrieval_metrics(sim, text_to_video, ks=ks, tie_policy=policy, chunk_size=5)
    for direction, expected_ranks in (("text_to_video", expected_t2v), ("video_to_text", expected_v2t)):
        expected = reference_metrics(expected_ranks, ks)
        assert result[direction].keys() == expected.keys()
        for key, value in expected.items():
            assert result[direction][key] == pytest.approx(value, abs=1e-9), (direction, key)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("case", CASES)
def test_clip4clip_video_to_text_protocol_matches_naive_reference(case, policy):
    sim, text_to_video = random_case(*case)
    expected = reference_caption_set_ranks(sim, text_to_video.tolist(), policy)
    for chunk_size in (1, 3, 1024):
        ranks = retrieval_ranks(
            sim, text_to_video, tie_policy=policy, chunk_size=chunk_size, video_to_text_protocol="clip4clip"
        )
        assert ranks.video_to_text.tolist() == expected
        assert ranks.video_ids.tolist() == sorted(set(text_to_video.tolist()))
    result = compute_retrieval_metrics(sim, text_to_video, tie_policy=policy, video_to_text_protocol="clip4clip")
    assert result["video_to_text_protocol"] == "clip4clip"
    assert result["video_to_text"] == pytest.approx(reference_metrics(expected, (1, 5, 10)))
    # text->video does not depend on the video->text protocol
    assert result["text_to_video"] == compute_retrieval_metrics(sim, text_to_video, tie_policy=policy)["text_to_video"]


def test_video_to_text_protocols_differ_only_with_several_captions_per_video():
    sim, text_to_video = random_case(0, 30, 4, None)
    ce = retrieval_ranks(sim, text_to_video).video_to_text
    clip4clip = retrieval_ranks(sim, text_to_video, video_to_text_protocol="clip4clip").video_to_text
    assert (clip4clip <= ce).all() and (clip4clip < ce).any()  # a rival video's other captions no longer count
    square, _ = random_case(1, 12, 1, 2)
    for policy in POLICIES:
        assert torch.equal(
            retrieval_ranks(square, tie_policy=policy).video_to_text,
            retrieval_ranks(square, tie_policy=policy, video_to_text_protocol="clip4clip").video_to_text,
        )
    result = compute_retrieval_metrics(sim, text_to_video)
    assert result["video_to_text_protocol"] == "collaborative_experts"  # the output says which protocol was used
    with pytest.raises(ValueError, match="video_to_text_protocol must be one of"):
        compute_retrieval_metrics(sim, text_to_video, video_to_text_protocol="xpool")


def test_clip4clip_protocol_on_constant_scores_is_chance_with_the_index_policy():
    # CLIP4Clip's and X-Pool's own code give chance level on a constant matrix (R@1 = 100 / n, MnR = (n + 1) / 2 over
    # the n videos); so does this protocol with the "index" tie policy, with 3 captions per video.
    n = 20
    result = compute_retrieval_metrics(
        torch.zeros(3 * n, n),
        torch.arange(n).repeat_interleave(3),
        tie_policy="index",
        video_to_text_protocol="clip4clip",
    )
    for direction in ("text_to_video", "video_to_text"):
        assert result[direction]["R@1"] == pytest.approx(100.0 / n)
        assert result[direction]["MnR"] == pytest.approx((n + 1) / 2)


def test_cases_do_contain_ties_and_policies_disagree():
    # Guards the test above: with quantised scores the three policies must give different ranks somewhere.
    sim, text_to_video = random_case(*CASES[3])
    by_policy = {p: retrieval_ranks(sim, text_to_video, tie_policy=p).text_to_video for p in POLICIES}
    assert (by_policy["pessimistic"] >= by_policy["index"]).all()
    assert (by_policy["index"] >= by_policy["optimistic"]).all()
    assert (by_policy["pessimistic"] > by_policy["optimistic"]).any()


def test_square_matrix_without_map_equals_identity_map():
    sim, _ = random_case(7, 11, 1, 2)
    without = compute_retrieval_metrics(sim)
    with_map = compute_retrieval_metrics(sim, torch.arange(11))
    assert without == with_map


@pytest.mark.parametrize("policy", POLICIES)
def test_chunked_equals_unchunked(policy):
    sim, text_to_video = random_case(11, 23, 3, 2, distractors=4)
    whole = retrieval_ranks(sim, text_to_video, tie_policy=policy, chunk_size=10_000)
    for chunk_size in (1, 2, 7, 64):
        chunked = retrieval_ranks(sim, text_to_video, tie_policy=policy, chunk_size=chunk_size)
        assert torch.equal(chunked.text_to_video, whole.text_to_video)
        assert torch.equal(chunked.video_to_text, whole.video_to_text)
        assert torch.equal(chunked.video_ids, whole.video_ids)


def test_videos_without_captions_are_not_video_to_text_queries():
    sim, text_to_video = random_case(3, 10, 2, None, distractors=3)
    ranks = retrieval_ranks(sim, text_to_video)
    assert ranks.video_ids.tolist() == list(range(7))
    assert compute_retrieval_metrics(sim, text_to_video)["video_to_text"]["num_queries"] == 7
    assert compute_retrieval_metrics(sim, text_to_video)["text_to_video"]["num_queries"] == 14


def test_video_to_text_uses_best_caption_and_ignores_sibling_captions():
    # Video 0 has captions 0 and 1; caption 1 scores best overall, caption 0 worst. Caption 2 belongs to video 1.
    sim = torch.tensor([[0.1, 0.0], [0.9, 0.0], [0.5, 1.0]])
    ranks = retrieval_ranks(sim, [0, 0, 1])
    assert ranks.video_to_text.tolist() == [1, 1]
    # Caption 0 is ranked below a wrong caption for video 0, which only matters in the text->video direction.
    assert ranks.text_to_video.tolist() == [1, 1, 1]
    sim[1, 0] = 0.4  # now the wrong caption 2 (0.5) beats video 0's best caption
    assert retrieval_ranks(sim, [0, 0, 1]).video_to_text.tolist() == [2, 1]


# ----------------------------------------------------------------------------------------------------
# The tie bug of argsort-based recall: a collapsed model must not be rewarded.
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 5, 32])
def test_constant_scores_are_not_rewarded_by_default(n):
    sim = torch.full((n, n), 0.3)
    result = compute_retrieval_metrics(sim)
    for direction in ("text_to_video", "video_to_text"):
        metrics = result[direction]
        chance_r1 = 100.0 / n
        assert metrics["R@1"] <= chance_r1 + 1e-9
        assert metrics["MnR"] >= (n + 1) / 2  # chance level or worse
        assert metrics["MnR"] == n  # pessimistic: the worst rank
    # Multi-caption: constant scores give the worst rank among the wrong captions.
    multi = compute_retrieval_metrics(torch.zeros(6, 3), [0, 0, 1, 1, 2, 2])
    assert multi["text_to_video"]["MnR"] == 3
    assert multi["video_to_text"]["MnR"] == 5
    assert multi["text_to_video"]["R@1"] == 0 and multi["video_to_text"]["R@1"] == 0


def test_constant_scores_index_policy_is_chance_and_optimistic_shows_the_bug():
    n = 20
    sim = torch.zeros(n, n)
    index = compute_retrieval_metrics(sim, tie_policy="index")["text_to_video"]
    assert index["MnR"] == pytest.approx((n + 1) / 2)
    assert index["R@1"] == pytest.approx(100.0 / n)
    # What code that takes the first position among equal scores reports for a collapsed model (e.g. Collaborative
    # Experts' metric before it averaged ties): perfect recall. That is why it is not the default.
    optimistic = compute_retrieval_metrics(sim, tie_policy="optimistic")["text_to_video"]
    assert optimistic["R@1"] == 100.0


def test_low_precision_and_numpy_inputs():
    sim, text_to_video = random_case(2, 7, 3, 2)
    expected = compute_retrieval_metrics(sim, text_to_video)
    assert compute_retrieval_metrics(sim.numpy(), text_to_video.numpy()) == expected
    assert compute_retrieval_metrics(sim.tolist(), text_to_video.tolist()) == expected
    # Quantised scores are exact in float16 and bfloat16, so nothing may change.
    assert compute_retrieval_metrics(sim.half(), text_to_video) == expected
    assert compute_retrieval_metrics(sim.bfloat16(), text_to_video) == expected
    # Integer scores are accepted (exactly representable in float64).
    int_sim = (sim * 4).round().to(torch.int64)
    assert compute_retrieval_metrics(int_sim, text_to_video) == expected


def test_metrics_from_ranks_median_even_and_odd():
    assert metrics_from_ranks(torch.tensor([1, 2, 3, 10]), ks=(1, 3))["MdR"] == 2.5
    out = metrics_from_ranks(torch.tensor([4, 1, 2]), ks=(1, 3))
    assert out == {
        "R@1": pytest.approx(100 / 3),
        "R@3": pytest.approx(200 / 3),
        "MdR": 2.0,
        "MnR": 7 / 3,
        "num_queries": 3,
    }


# ----------------------------------------------------------------------------------------------------
# Dual softmax: reported beside raw numbers, never instead.
# ----------------------------------------------------------------------------------------------------
def test_dual_softmax_matches_loop_reference():
    sim, _ = random_case(9, 5, 2, None)
    temperature = 0.5
    t2v = dual_softmax(sim, temperature=temperature, direction="text_to_video")
    v2t = dual_softmax(sim, temperature=temperature, direction="video_to_text")
    n_texts, n_videos = sim.shape
    for t in range(n_texts):
        for v in range(n_videos):
            column = [math.exp(sim[i, v].item() / temperature) for i in range(n_texts)]
            row = [math.exp(sim[t, j].item() / temperature) for j in range(n_videos)]
            assert t2v[t, v].item() == pytest.approx(sim[t, v].item() * column[t] / sum(column), rel=1e-5)
            assert v2t[t, v].item() == pytest.approx(sim[t, v].item() * row[v] / sum(row), rel=1e-5)


def test_dsl_is_reported_beside_raw_and_changes_a_hub_video():
    # Video 2 is a "hub": every text scores it highest. Raw text->video R@1 is 1/3; the per-video prior demotes it.
    sim = torch.tensor([[0.50, 0.10, 0.55], [0.10, 0.50, 0.55], [0.10, 0.10, 0.56]])
    raw_only = compute_retrieval_metrics(sim)
    both = compute_retrieval_metrics(sim, dsl_temperature=0.01)
    assert both["text_to_video"] == raw_only["text_to_video"]
    assert both["video_to_text"] == raw_only["video_to_text"]
    assert raw_only["text_to_video"]["R@1"] == pytest.approx(100 / 3)
    assert both["dsl"]["text_to_video"]["R@1"] == 100.0
    assert both["dsl"]["temperature"] == 0.01
    assert "dsl" not in raw_only


def test_flatten_metrics():
    sim, _ = random_case(1, 4, 1, None)
    flat = flatten_metrics(compute_retrieval_metrics(sim, ks=(1,), dsl_temperature=1.0))
    assert {"text_to_video/R@1", "video_to_text/MdR", "dsl/text_to_video/MnR", "tie_policy"} <= flat.keys()
    assert all(not isinstance(value, dict) for value in flat.values())


# ----------------------------------------------------------------------------------------------------
# Bad input: clear errors naming the problem.
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("similarity", "text_to_video", "kwargs", "message"),
    [
        (torch.zeros(4), None, {}, "2-D"),
        (torch.zeros(2, 3, 4), None, {}, "got 3-D"),
        (torch.zeros(0, 3), None, {}, "at least one text"),
        (torch.zeros(3, 3, dtype=torch.bool), None, {}, "real scores"),
        (torch.tensor([[0.0, float("nan")], [1.0, 0.0]]), None, {}, "NaN"),
        (torch.zeros(3, 2), None, {}, "must be square"),
        (torch.zeros(3, 2), [0, 1], {}, "2 entries but similarity has 3 texts"),
        (torch.zeros(3, 2), [0, 1, 2], {}, r"text_to_video\[2\] = 2 is out of range"),
        (torch.zeros(3, 2), [0, -1, 1], {}, r"text_to_video\[1\] = -1 is out of range"),
        (torch.zeros(3, 2), [0.0, 1.0, 1.0], {}, "integer video indices"),
        (torch.zeros(3, 2), [[0, 1, 1]], {}, "1-D"),
        (torch.zeros(2, 2), None, {"tie_policy": "random"}, "tie_policy must be one of"),
        (torch.zeros(2, 2), None, {"chunk_size": 0}, "chunk_size must be a positive integer"),
        (torch.zeros(2, 2), None, {"ks": ()}, "at least one cut-off"),
        (torch.zeros(2, 2), None, {"ks": (1, 0)}, "positive integer"),
        (torch.zeros(2, 2), None, {"dsl_temperature": 0.0}, "temperature must be a positive number"),
        ([[1.0, 2.0], [3.0]], None, {}, "2-D numeric matrix"),
    ],
)
def test_bad_input_raises_clear_value_error(similarity, text_to_video, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_retrieval_metrics(similarity, text_to_video, **kwargs)


def test_dual_softmax_bad_input():
    with pytest.raises(ValueError, match="direction must be one of"):
        dual_softmax(torch.zeros(2, 2), temperature=1.0, direction="both")
    with pytest.raises(ValueError, match="finite"):
        dual_softmax(torch.tensor([[0.0, float("inf")], [0.0, 0.0]]), temperature=1.0)


def test_numpy_float_map_rejected():
    with pytest.raises(ValueError, match="integer video indices"):
        retrieval_ranks(np.zeros((2, 2)), np.array([0.0, 1.0]))


def test_ranks_are_counted_not_sorted(monkeypatch):
    # The memory bound relies on never sorting the [n_texts, n_videos] matrix.
    def forbidden(*args, **kwargs):
        raise AssertionError("retrieval_ranks must not sort the similarity matrix")

    for name in ("argsort", "sort", "topk"):
        monkeypatch.setattr(torch, name, forbidden)
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    sim, text_to_video = random_case(5, 6, 5, 1)
    ranks = retrieval_ranks(sim, text_to_video)
    assert ranks.text_to_video.numel() == 30


# ----------------------------------------------------------------------------------------------------
# The `evaluate` metric module in metrics/text_video_retrieval, loaded offline like a user would.
# ----------------------------------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[1]

_EVALUATE_SCRIPT = r"""
import json, socket, sys

def no_network(*args, **kwargs):
    raise OSError("network access attempted while loading the metric offline")

socket.socket.connect = no_network
socket.create_connection = no_network

import evaluate

case = json.loads(sys.argv[1])
results = {}
for name, path in (("relative", "./metrics/text_video_retrieval"), ("absolute", case["absolute_path"])):
    metric = evaluate.load(path)
    results[name] = metric.compute(predictions=case["similarity"], references=case["text_to_video"])
metric = evaluate.load("./metrics/text_video_retrieval")
for row, video in zip(case["similarity"][:5], case["text_to_video"][:5]):
    metric.add(predictions=row, references=video)
metric.add_batch(predictions=case["similarity"][5:], references=case["text_to_video"][5:])
results["batched"] = metric.compute(ks=[1, 3], tie_policy="index", chunk_size=2, dsl_temperature=0.5)
try:
    metric.compute(predictions=[[0.1, 0.2], [0.3]], references=[0, 1])
except ValueError as error:
    results["ragged_error"] = str(error)
print("RESULT" + json.dumps(results))
"""


def test_evaluate_module_loads_offline_and_matches_library(tmp_path):
    sim, text_to_video = random_case(21, 8, 3, 2, distractors=1)
    sim = sim.to(torch.float32)  # what a model produces; float64 storage in the module must not change it
    case = {
        "similarity": sim.tolist(),
        "text_to_video": text_to_video.tolist(),
        "absolute_path": str(REPO_ROOT / "metrics" / "text_video_retrieval"),
    }
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf_home"),  # fresh modules cache: the script is copied there, then imported
        "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
        # peft_video importable whether or not it is pip-installed in this environment
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    completed = subprocess.run(
        [sys.executable, "-c", _EVALUATE_SCRIPT, json.dumps(case)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT"))
    results = json.loads(line[len("RESULT") :])

    expected = json.loads(json.dumps(compute_retrieval_metrics(sim, text_to_video)))
    assert results["relative"] == expected
    assert results["absolute"] == expected
    # The module stores scores as float64 (exact for float32 input); DSL is then computed in float64 too.
    batched = compute_retrieval_metrics(
        sim.double(), text_to_video, ks=(1, 3), tie_policy="index", chunk_size=2, dsl_temperature=0.5
    )
    assert results["batched"] == json.loads(json.dumps(batched))
    assert "dsl" in results["batched"] and results["batched"]["tie_policy"] == "index"
    assert "rows of lengths [1, 2]" in results["ragged_error"]


# -- twin accuracy (a video against its exact reverse) ---------------------------------------------------------------
def test_twin_accuracy_matches_a_naive_count_with_half_credit_for_ties():
    from peft_video.metrics import twin_accuracy

    generator = torch.Generator().manual_seed(0)
    similarity = torch.randint(0, 3, (40, 10), generator=generator).float()  # many ties
    text_to_video = torch.randint(0, 10, (40,), generator=generator)
    video_twin = torch.tensor([1, 0, 3, 2, 5, 4, -1, -1, 9, 8])
    expected, count = 0.0, 0
    for caption in range(40):
        own = int(text_to_video[caption])
        twin = int(video_twin[own])
        if twin < 0:
            continue
        count += 1
        a, b = similarity[caption, own].item(), similarity[caption, twin].item()
        expected += 1.0 if a > b else 0.5 if a == b else 0.0
    result = twin_accuracy(similarity, text_to_video, video_twin)
    assert result["num_queries"] == count
    assert result["accuracy"] == pytest.approx(100 * expected / count)


def test_twin_accuracy_per_kind_matches_a_naive_count_and_reports_its_n():
    from peft_video.metrics import twin_accuracy

    generator = torch.Generator().manual_seed(1)
    similarity = torch.randint(0, 3, (30, 8), generator=generator).float()
    text_to_video = torch.randint(0, 8, (30,), generator=generator)
    video_twin = torch.tensor([1, 0, 3, 2, -1, -1, 7, 6])
    kinds = ["order", "motion", "static"] * 10
    result = twin_accuracy(similarity, text_to_video, video_twin, kinds=kinds)
    for kind in ("order", "motion", "static"):
        wins = []
        for caption in range(30):
            own = int(text_to_video[caption])
            twin = int(video_twin[own])
            if kinds[caption] == kind and twin >= 0:
                a, b = similarity[caption, own].item(), similarity[caption, twin].item()
                wins.append(1.0 if a > b else 0.5 if a == b else 0.0)
        if wins:
            assert result["per_kind"][kind] == {
                "accuracy": pytest.approx(100 * sum(wins) / len(wins)),
                "num_queries": len(wins),
            }
        else:
            assert kind not in result["per_kind"]
    assert sum(v["num_queries"] for v in result["per_kind"].values()) == result["num_queries"]
    with pytest.raises(ValueError, match="one label per caption"):
        twin_accuracy(similarity, text_to_video, video_twin, kinds=kinds[:-1])


def test_twin_accuracy_of_identical_twins_is_exactly_chance():
    """Mean pooling gives a video and its reverse the same embedding: every comparison is a tie, 50 %."""
    from peft_video.metrics import twin_accuracy

    videos = torch.randn(3, 8)
    videos = torch.cat([videos, videos])  # video i and i + 3 are twins with equal embeddings
    texts = torch.randn(6, 8)
    result = twin_accuracy(texts @ videos.t(), torch.arange(6), torch.tensor([3, 4, 5, 0, 1, 2]))
    assert result == {"accuracy": 50.0, "num_queries": 6}
    # the same frames averaged in another order: equal up to float rounding only, still exactly chance
    frames = torch.randn(3, 12, 8, generator=torch.Generator().manual_seed(27))
    videos = torch.nn.functional.normalize(torch.cat([frames.mean(1), frames.flip(1).mean(1)]), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(27)), dim=-1)
    similarity, twins = texts @ videos.t(), torch.tensor([3, 4, 5, 0, 1, 2])
    assert (similarity.diagonal() != similarity[torch.arange(6), twins]).all()  # rounding makes no exact tie here
    assert twin_accuracy(similarity, torch.arange(6), twins)["accuracy"] == 50.0
    flips = twin_accuracy(similarity, torch.arange(6), twins, tolerance=0.0)["accuracy"]
    assert flips == pytest.approx(100 * 2 / 6)  # without the tolerance, rounding decides


@pytest.mark.parametrize(
    "video_twin, message", [(torch.tensor([0, 5]), "outside"), (torch.tensor([1.0, 0.0]), "integer tensor")]
)
def test_twin_accuracy_rejects_bad_twin_maps(video_twin, message):
    from peft_video.metrics import twin_accuracy

    with pytest.raises(ValueError, match=message):
        twin_accuracy(torch.zeros(2, 2), torch.tensor([0, 1]), video_twin)
