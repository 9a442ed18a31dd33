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


def test_frequent_rows_are_the_classes_with_the_most_reference_mass():
    import numpy as np

    from softlabels.metrics.plot import frequent_rows

    g = torch.Generator().manual_seed(3)
    c = 12
    sizes = np.array([5, 1, 9, 9, 0, 2, 7, 3, 9, 4, 6, 8])  # ties 2, 3, 8: the lower class first
    target = torch.cat([torch.full((int(n),), k) for k, n in enumerate(sizes)])
    probs = torch.softmax(torch.randn(len(target), c, generator=g), 1)
    hard = reliability_diagram(probs, target, n_bins=7, mode="classwise")
    order = sorted(range(c), key=lambda k: (-sizes[k], k))
    assert frequent_rows(hard, limit=4) == sorted(order[:4]) == [2, 3, 8, 11]
    assert frequent_rows(hard, limit=12) == frequent_rows(hard, limit=50) == list(range(c))
    soft_target = torch.softmax(3 * torch.randn(60, c, generator=g), 1)
    soft = reliability_diagram(
        torch.softmax(torch.randn(60, c, generator=g), 1), soft_target, n_bins=7, mode="classwise"
    )
    mass = soft_target.double().sum(0).numpy()
    assert frequent_rows(soft, limit=3) == sorted(np.argsort(-mass, kind="stable")[:3].tolist())
    top = reliability_diagram(probs, target, n_bins=7)
    assert frequent_rows(top, limit=1) == [0]
    with pytest.raises(ValueError, match=r"`limit` of frequent_rows must be an int >= 1; got 0"):
        frequent_rows(hard, limit=0)
