"""Model selection on any reported metric, or on a stated weighted combination of them.

A training script evaluates on validation data and keeps the best step; what "best" means is a spec:

    ModelSelection.parse("text_to_video/R@1")                      # one metric
    ModelSelection.parse("twin_accuracy")                          # a metric reported with its n: its value
    ModelSelection.parse("order/text_to_video/R@1")                # a subset's metric ("order" = is_order_sensitive)
    ModelSelection.parse("0.5*twin_accuracy + 0.5*order/text_to_video/R@1")   # a weighted sum
    ModelSelection.parse({"twin_accuracy": 0.5, "text_to_video/R@1": 0.5})   # the same as a mapping

    selection.value(validation_metrics)     # a float; unknown names raise, listing the names that exist
    selection.is_better(new, best)          # single rank metrics (MnR, MdR) are minimised, everything else maximised

Names are paths in the nested metrics dict of `peft_video.evaluation.split_metrics` joined by "/", with two
shorthands: a metric reported as `{"accuracy": ..., "num_queries": ...}` (twin accuracy) may be named without its
`/accuracy`, and `<subset>/...` stands for `subsets/<subset>/...` (`order` for the offline world's
`is_order_sensitive`).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .metrics import DEFAULT_KS, flatten_metrics

SUBSET_ALIASES: dict[str, str] = {"order": "is_order_sensitive"}
"""Short subset names accepted in specs: `order/text_to_video/R@1` = `subsets/is_order_sensitive/text_to_video/R@1`."""

LOWER_IS_BETTER = ("MdR", "MnR")
_RETRIEVAL_NAME = re.compile(r"(?:text_to_video|video_to_text)/(?:R@(?P<k>\d+)|MdR|MnR)")
_TWIN_NAME = re.compile(r"twin_accuracy(?:/accuracy|/per_kind/[^/]+/accuracy|/per_kind/[^/]+)?")
_TERM = re.compile(r"\s*([+-])?\s*(?:(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)\s*\*\s*)?([A-Za-z_][\w@./]*)\s*")


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Every numeric leaf of a (nested) metrics dict, by its "/"-joined path."""
    flat = flatten_metrics(metrics)
    return {k: float(v) for k, v in flat.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _candidates(name: str) -> list[str]:
    """The paths a name in a spec may stand for, in order of preference."""
    paths = [name]
    head, _, rest = name.partition("/")
    if rest:
        paths.append(f"subsets/{SUBSET_ALIASES.get(head, head)}/{rest}")
    return [p for path in paths for p in (path, f"{path}/accuracy")]


@dataclass(frozen=True)
class ModelSelection:
    """A selection criterion: a weighted sum of named metrics (one metric with weight 1 in the common case).

    Args:
        terms: (weight, name) pairs.
        greater_is_better: True unless the spec is a single rank metric (MnR, MdR). A combination is always
            maximised: give rank metrics a negative weight.
    """

    terms: tuple[tuple[float, str], ...]
    greater_is_better: bool = True

    @classmethod
    def parse(cls, spec: str | Mapping[str, float] | ModelSelection) -> ModelSelection:
        """A spec string (`"name"`, `"0.5*a + 0.5*b"`, `"a - 0.1*b"`) or a {name: weight} mapping."""
        if isinstance(spec, ModelSelection):
            return spec
        if isinstance(spec, Mapping):
            terms = tuple((float(weight), str(name)) for name, weight in spec.items())
        elif isinstance(spec, str):
            terms = cls._parse_string(spec)
        else:
            raise TypeError(f"a model-selection spec is a string or a {{name: weight}} mapping, got {type(spec)}")
        if not terms:
            raise ValueError(f"empty model-selection spec {spec!r}")
        names = [name for _, name in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"model-selection spec {spec!r} names a metric twice")
        single = len(terms) == 1 and terms[0][0] > 0
        lower = single and names[0].rsplit("/", 1)[-1] in LOWER_IS_BETTER
        return cls(terms, greater_is_better=not lower)

    @staticmethod
    def _parse_string(spec: str) -> tuple[tuple[float, str], ...]:
        terms, position = [], 0
        while position < len(spec):
            match = _TERM.match(spec, position)
            if match is None or match.end() == position or (terms and match.group(1) is None):
                raise ValueError(
                    f"cannot read the model-selection spec {spec!r} at {spec[position:]!r}; write a metric name "
                    "(e.g. 'text_to_video/R@1') or a weighted sum such as '0.5*twin_accuracy + 0.5*text_to_video/R@1'"
                )
            sign = -1.0 if match.group(1) == "-" else 1.0
            weight = float(match.group(2)) if match.group(2) else 1.0
            terms.append((sign * weight, match.group(3)))
            position = match.end()
        return tuple(terms)

    def check(
        self,
        *,
        subset_columns: Sequence[str] = (),
        twin_column: str | None = None,
        columns: Sequence[str] | None = None,
        ks: Sequence[int] = DEFAULT_KS,
    ) -> None:
        """Before any training: raise a ValueError unless every name of the spec is one that an evaluation with these
        settings reports (`peft_video.evaluation.split_metrics`): `<direction>/<metric>` (`text_to_video` or
        `video_to_text`; `R@K` with K in `ks`, `MdR` or `MnR`), the same under `subsets/<column>/` or `<column>/`
        (a column of `subset_columns`; `order` for `is_order_sensitive`), or `twin_accuracy[/per_kind/<kind>]` (needs
        a `twin_column`). With the split's `columns`, the column a name needs must be one of them."""
        for _, name in self.terms:
            _check_name(name, subset_columns=subset_columns, twin_column=twin_column, columns=columns, ks=ks)

    def resolve(self, metrics: Mapping[str, Any]) -> dict[str, str]:
        """Name in the spec -> path in `metrics`; raises a ValueError listing the available names for unknown ones."""
        available = numeric_metrics(metrics)
        resolved, unknown = {}, []
        for _, name in self.terms:
            path = next((p for p in _candidates(name) if p in available), None)
            if path is None:
                unknown.append(name)
            else:
                resolved[name] = path
        if unknown:
            hints = {n: difflib.get_close_matches(n, list(available), n=1) for n in unknown}
            hint_text = "; ".join(f"{n!r}: did you mean {h[0]!r}?" for n, h in hints.items() if h)
            raise ValueError(
                f"model selection names metric(s) {unknown} that the evaluation does not report"
                + (f" ({hint_text})" if hint_text else "")
                + f"; available: {sorted(available)}"
            )
        return resolved

    def value(self, metrics: Mapping[str, Any]) -> float:
        """The criterion on one evaluation's (nested) metrics dict."""
        available = numeric_metrics(metrics)
        resolved = self.resolve(metrics)
        total = 0.0
        for weight, name in self.terms:
            value = available[resolved[name]]
            if math.isnan(value):
                raise ValueError(
                    f"model selection needs {resolved[name]!r}, which is NaN in this evaluation (nothing to score, "
                    "e.g. no twin pairs in the validation split)"
                )
            total += weight * value
        return total

    def is_better(self, new: float, best: float | None) -> bool:
        """Whether `new` beats `best` (None: nothing yet). Ties keep the earlier step."""
        if best is None:
            return True
        return new > best if self.greater_is_better else new < best

    def __str__(self) -> str:
        text = ""
        for index, (weight, name) in enumerate(self.terms):
            term = name if abs(weight) == 1 else f"{abs(weight):g}*{name}"
            sign = "-" if weight < 0 else "+"
            text += (term if sign == "+" else f"-{term}") if index == 0 else f" {sign} {term}"
        return text


def _check_name(
    name: str, *, subset_columns: Sequence[str], twin_column: str | None, columns: Sequence[str] | None, ks
) -> None:
    if _TWIN_NAME.fullmatch(name):
        column, setting = twin_column, "twin_column"
        if column is None:
            raise ValueError(f"model selection on {name!r} needs a twin_column (rows sharing a value there are twins)")
    else:
        explicit = name.startswith("subsets/")
        head, _, rest = name.removeprefix("subsets/").partition("/")
        if explicit or head in subset_columns:
            column = head
        else:
            column = SUBSET_ALIASES.get(head, head)
        column = column if _RETRIEVAL_NAME.fullmatch(rest) else None
        metric = _RETRIEVAL_NAME.fullmatch(rest if column else name)
        if metric is None or (metric["k"] is not None and int(metric["k"]) not in ks):
            raise ValueError(
                f"model selection names {name!r}; a name looks like 'text_to_video/R@1', 'video_to_text/MnR', "
                "'subsets/<column>/text_to_video/R@5', 'order/text_to_video/R@1' or 'twin_accuracy' "
                f"(K in {tuple(ks)})"
            )
        setting = "subset_columns"
        if column is not None and column not in subset_columns:
            raise ValueError(f"model selection on {name!r} needs {column!r} in subset_columns {list(subset_columns)}")
    if column is not None and columns is not None and column not in columns:
        raise ValueError(
            f"model selection on {name!r} needs the column {column!r} ({setting}); the split has {list(columns)}"
        )
