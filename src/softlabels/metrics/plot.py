"""Drawing reliability diagrams; computing them is ``softlabels.metrics.functional.calibration.reliability_diagram``.

matplotlib is imported here only, inside the function, so importing :mod:`softlabels.metrics` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from softlabels.metrics.functional.calibration import ReliabilityDiagram

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def plot_reliability_diagram(
    diagram: ReliabilityDiagram,
    *,
    ax: Axes | None = None,
    row: int = 0,
    title: str | None = None,
    show_counts: bool = True,
) -> Axes:
    """Draw one row of a reliability diagram: mean outcome per bin against the bin, the gap to the diagonal, counts.

    Blue bars show the mean outcome (accuracy, or target frequency for soft targets) of each non-empty bin; red hatched
    outlines span the gap between it and the bin's mean confidence; a black step line (right axis, log scale) shows
    the share of samples per bin when ``show_counts``.

    Args:
        diagram: the data, from ``reliability_diagram(...)`` or ``CalibrationError.reliability_diagram()``.
        ax: the axes to draw into (a new figure if ``None``).
        row: which row (class for classwise diagrams; 0 for top-label/marginal).
        title: axes title; by default the mode (and class).
        show_counts: draw the sample share per bin.

    Returns:
        The axes drawn into.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from softlabels.metrics.functional.calibration import reliability_diagram
        >>> d = reliability_diagram(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 0]), n_bins=5)
        >>> ax = plot_reliability_diagram(d)
        >>> ax.get_xlabel()
        'confidence'
    """
    import matplotlib.pyplot as plt

    if not 0 <= row < diagram.counts.shape[0]:
        raise ValueError(f"`row` of plot_reliability_diagram must be in [0, {diagram.counts.shape[0] - 1}]; got {row}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    edges = diagram.bin_edges.detach().cpu().numpy()
    centers, widths = (edges[:-1] + edges[1:]) / 2, edges[1:] - edges[:-1]
    counts = diagram.counts[row].detach().cpu()
    nonempty = (counts > 0).numpy()
    conf = torch.nan_to_num(diagram.confidence[row].detach().cpu()).numpy()
    outc = torch.nan_to_num(diagram.outcome[row].detach().cpu()).numpy()
    width = widths[nonempty] * 0.9
    ax.bar(centers[nonempty], outc[nonempty], width=width, color="#4C72B0", edgecolor="white", label="outcome")
    low, gap = np.minimum(conf, outc)[nonempty], np.abs(conf - outc)[nonempty]
    ax.bar(
        centers[nonempty],
        gap,
        bottom=low,
        width=width,
        facecolor="none",
        edgecolor="#C44E52",
        hatch="///",
        linewidth=0.8,
        label="gap to mean confidence",
    )
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="outcome (accuracy / target frequency)")
    if show_counts and int(counts.sum()) > 0:
        twin = ax.twinx()
        share = counts.double() / counts.sum()
        twin.step(
            edges,
            np.append(share.numpy(), share.numpy()[-1]),
            where="post",
            color="black",
            linewidth=0.8,
            alpha=0.6,
            label="share of samples",
        )
        twin.set_yscale("log")
        twin.set_ylabel("share of samples (log)")
    mode = diagram.mode.replace("_", "-")
    name = mode if not diagram.classes else f"{mode}, class {diagram.classes[row]}"
    ax.set_title(title if title is not None else name)
    ax.legend(loc="upper left", fontsize="small")
    return ax


def frequent_rows(diagram: ReliabilityDiagram, *, limit: int) -> list[int]:
    r"""The rows worth drawing when a diagram has too many: the ``limit`` rows with the most reference mass.

    The reference mass of a row is :math:`\sum_b \bar o_b n_b`, its mean outcome times its count summed over the
    bins: for a classwise diagram, the number of voxels labelled with the class (hard targets) or the class's total
    target probability (soft targets). Ties go to the lower row. Every row is kept when there are at most ``limit``.

    Args:
        diagram: the data, e.g. ``CalibrationError(mode="classwise").reliability_diagram()``.
        limit: the most rows to return, ``>= 1``.

    Returns:
        Row indices in increasing order.

    Raises:
        ValueError: ``limit`` is not an int ``>= 1``.

    Example:
        >>> from softlabels.metrics.functional.calibration import reliability_diagram
        >>> probs = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
        >>> d = reliability_diagram(probs, torch.tensor([1, 1, 1, 2]), n_bins=5, mode="classwise")
        >>> frequent_rows(d, limit=2)
        [1, 2]
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"`limit` of frequent_rows must be an int >= 1; got {limit!r}.")
    rows = diagram.counts.shape[0]
    if rows <= limit:
        return list(range(rows))
    mass = (torch.nan_to_num(diagram.outcome.detach().cpu().double()) * diagram.counts.detach().cpu()).sum(1)
    order = sorted(range(rows), key=lambda r: (-float(mass[r]), r))
    return sorted(order[:limit])
