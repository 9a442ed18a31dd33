"""Reliability diagram drawing: draws what the data says; bad rows raise."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from softlabels.metrics.functional.calibration import reliability_diagram
from softlabels.metrics.plot import plot_reliability_diagram


def test_plot_draws_one_bar_pair_per_nonempty_bin(tmp_path):
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(2 * torch.randn(200, 3, generator=g), 1)
    target = torch.randint(0, 3, (200,), generator=g)
    d = reliability_diagram(probs, target, n_bins=10, mode="classwise")
    ax = plot_reliability_diagram(d, row=2)
    nonempty = int((d.counts[2] > 0).sum())
    assert len(ax.patches) == 2 * nonempty
    heights = sorted(p.get_height() for p in ax.patches[:nonempty])
    assert heights == pytest.approx(sorted(d.outcome[2][d.counts[2] > 0].tolist()))
    assert "class 2" in ax.get_title()
    ax.figure.savefig(tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 1000
    with pytest.raises(ValueError, match=r"`row` of plot_reliability_diagram must be in \[0, 2\]; got 3"):
        plot_reliability_diagram(d, row=3)
