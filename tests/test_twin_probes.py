"""The twin probes benchmark: probes see order where mean pooling cannot, and the table reports every kind with n."""

from __future__ import annotations

import importlib.util

import torch
from train_fixtures import REPO


def load_probes():
    spec = importlib.util.spec_from_file_location("benchmark_twin_probes", REPO / "benchmarks" / "twin_probes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_probe_is_order_sensitive_and_antisymmetric_in_the_twins():
    probes = load_probes()
    frames = torch.nn.functional.normalize(torch.randn(4, 5, 8), dim=-1)
    frames[1] = frames[0].flip(0)  # videos 0 and 1 are twins
    embeddings = {"frames": frames, "texts": torch.randn(4, 8)}
    pairs = torch.tensor([[0, 1]])
    for probe in probes.PROBES:
        model = probes.Probe(probe, num_frames=5, dim=8)
        if probe != "MLP":
            torch.nn.init.normal_(model.K)
        assert not torch.allclose(model.features(frames[:1]), model.features(frames[1:2])), probe
        # each caption keeps its margin when the pair is listed the other way round
        torch.testing.assert_close(model.margins(embeddings, pairs.flip(1)), model.margins(embeddings, pairs).flip(1))
        # giving each caption the other video negates its margin: a probe cannot prefer both videos
        exchanged = {"frames": frames[[1, 0, 2, 3]], "texts": embeddings["texts"]}
        torch.testing.assert_close(model.margins(exchanged, pairs), -model.margins(embeddings, pairs))


def test_table_on_a_tiny_world(tmp_path):
    probes = load_probes()
    out = tmp_path / "probes.md"
    probes.main(["--world", "96", "16", "64", "--steps", "3", "--out", str(out)])
    table = out.read_text()
    for probe in probes.PROBES:
        assert f"| {probe} |" in table
    assert "colour (n=" in table and "motion (n=" in table
