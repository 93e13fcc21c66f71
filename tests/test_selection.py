"""ModelSelection: any reported metric or a stated weighted combination, from a nested metrics dict, with clear
errors for unknown names."""

from __future__ import annotations

import math

import pytest

from peft_video.selection import ModelSelection, numeric_metrics

METRICS = {
    "text_to_video": {"R@1": 40.0, "R@5": 80.0, "MnR": 3.5},
    "video_to_text": {"R@1": 38.0, "MnR": 4.0},
    "num_videos": 64,
    "tie_policy": "pessimistic",
    "subsets": {"is_order_sensitive": {"text_to_video": {"R@1": 30.0, "MnR": 5.0}}},
    "twin_accuracy": {"accuracy": 70.0, "num_queries": 48, "per_kind": {"motion": {"accuracy": 90.0, "n": 12}}},
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("text_to_video/R@1", 40.0),
        ("twin_accuracy", 70.0),
        ("twin_accuracy/per_kind/motion", 90.0),
        ("order/text_to_video/R@1", 30.0),
        ("is_order_sensitive/text_to_video/R@1", 30.0),
        ("subsets/is_order_sensitive/text_to_video/R@1", 30.0),
        ("0.5*twin_accuracy + 0.5*order/text_to_video/R@1", 50.0),
        ("text_to_video/R@1 - 2*text_to_video/MnR", 33.0),
        ("1e-1 * num_videos", 6.4),
        ({"twin_accuracy": 0.25, "text_to_video/R@5": 0.75}, 77.5),
    ],
)
def test_values_of_names_and_combinations(spec, expected):
    assert ModelSelection.parse(spec).value(METRICS) == pytest.approx(expected)


def test_rank_metrics_alone_are_minimised_everything_else_maximised():
    assert not ModelSelection.parse("text_to_video/MnR").greater_is_better
    assert ModelSelection.parse("text_to_video/R@1").greater_is_better
    assert ModelSelection.parse("R@1 - 0.1*MnR").greater_is_better
    mnr = ModelSelection.parse("video_to_text/MnR")
    assert mnr.is_better(3.0, 4.0) and not mnr.is_better(4.0, 4.0) and mnr.is_better(9.0, None)
    r1 = ModelSelection.parse("text_to_video/R@1")
    assert r1.is_better(41.0, 40.0) and not r1.is_better(40.0, 40.0)


def test_unknown_names_are_refused_with_the_available_ones():
    with pytest.raises(ValueError, match=r"\['text_to_video/R@10'\].*did you mean 'text_to_video/R@1'.*available:"):
        ModelSelection.parse("text_to_video/R@10").value(METRICS)
    with pytest.raises(ValueError, match="twin_acc"):
        ModelSelection.parse("0.5*twin_acc + 0.5*text_to_video/R@1").value(METRICS)
    with pytest.raises(ValueError, match="tie_policy"):  # not numeric: not a metric
        ModelSelection.parse("tie_policy").value(METRICS)


def test_malformed_specs_and_nan_are_refused():
    for spec in ("", "0.5*", "a b", "0.5 twin_accuracy", "a + a"):
        with pytest.raises(ValueError):
            ModelSelection.parse(spec)
    nan = {"twin_accuracy": {"accuracy": math.nan, "num_queries": 0}}
    with pytest.raises(ValueError, match="NaN"):
        ModelSelection.parse("twin_accuracy").value(nan)


def test_spec_round_trips_through_its_text():
    for spec in ("text_to_video/R@1", "0.5*twin_accuracy + 0.5*order/text_to_video/R@1", "-text_to_video/MnR"):
        parsed = ModelSelection.parse(spec)
        assert ModelSelection.parse(str(parsed)) == parsed
    assert str(ModelSelection.parse("0.5*a - 2*b")) == "0.5*a - 2*b"


def test_numeric_metrics_lists_paths_of_numbers_only():
    names = numeric_metrics(METRICS)
    assert names["subsets/is_order_sensitive/text_to_video/R@1"] == 30.0
    assert "tie_policy" not in names and "twin_accuracy/num_queries" in names
