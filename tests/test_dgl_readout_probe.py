"""The DGL readout probe: its cosine and per-direction losses on hand-built inputs, and a tiny run's table."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from train_fixtures import REPO

from peft_video.losses import symmetric_infonce


def load_probe():
    path = REPO / "benchmarks" / "dgl_readout_probe.py"
    spec = importlib.util.spec_from_file_location("benchmark_dgl_readout_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mean_pairwise_cosine_leaves_out_each_video_with_itself_and_ignores_norms():
    probe = load_probe()
    # cosines of the three pairs: 0, 1/sqrt(2), 1/sqrt(2); the lengths of the rows do not matter
    embeddings = torch.tensor([[3.0, 0.0], [0.0, 0.5], [2.0, 2.0]])
    assert probe.mean_pairwise_cosine(embeddings) == pytest.approx(math.sqrt(2) / 3, abs=1e-6)
    assert probe.mean_pairwise_cosine(torch.tensor([[1.0, 2.0]] * 4)) == pytest.approx(1.0, abs=1e-6)
    assert probe.mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-1.0, abs=1e-6)


def test_directional_losses_keep_the_two_directions_apart_and_average_to_the_training_loss():
    probe = load_probe()
    # both captions prefer video 0: caption 1 is wrong (text→video ~ 5), each video scores both captions alike
    # (video→text = ln 2)
    logits = torch.tensor([[10.0, 0.0], [10.0, 0.0]])
    losses = probe.directional_losses(logits)
    assert losses["text→video"] == pytest.approx((10 + 2 * math.log1p(math.exp(-10))) / 2, rel=1e-5)
    assert losses["video→text"] == pytest.approx(math.log(2), rel=1e-5)
    assert losses["mean"] == pytest.approx(symmetric_infonce(logits).item(), rel=1e-6)


def test_a_tiny_run_writes_every_readout_row(tmp_path):
    probe = load_probe()
    out = tmp_path / "probe.md"
    probe.main(["--world", "64", "32", "--batch_size", "8", "--num_val", "16", "--out", str(out)])
    table = out.read_text()
    assert "--world 64 32`" in table and "ln 8 = 2.08" in table
    rows = {}
    for label, _, _ in probe.READOUTS:
        line = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
        rows[label] = [float(cell) for cell in line.strip("| ").split(" | ")[1:]]
    for label, (cosine, t2v, v2t, mean, r1) in rows.items():
        assert -1 <= cosine <= 1 and t2v > 0 and v2t > 0 and 0 <= r1 <= 100, label
        assert mean == pytest.approx((t2v + v2t) / 2, abs=0.006), label  # two-decimal cells
    # the reference readout starts as nearly one vector for every video; the frame-CLS readout does not
    cosines = [cells[0] for cells in rows.values()]
    assert cosines[0] > 0.9 > cosines[1] > cosines[2]
