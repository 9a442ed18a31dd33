"""Simulated raters with exact marginals and per-rater consistency, shared by the synthetic datasets.

A rater is a level field ``u(x) = Φ(√(1 − β²)·z_r + β·g(x))``: ``z_r ~ N(0, 1)`` is drawn once per rater and kept for
every image (the rater's *style*: ``z_r > 0`` under-segments, ``z_r < 0`` over-segments), ``g`` is a smooth
standardised Gaussian field drawn per image (boundary *jitter*, weight ``β``). For every ``x``, over the population
of raters ``√(1 − β²)·z + β·g(x) ~ N(0, 1)``, so ``u(x)`` is uniform and a rater who marks ``x`` when
``p*(x) > u(x)`` marks it with probability exactly ``p*(x)`` (``docs/data/synthetic.md``, Raters). A finite panel is a
biased sample of that population, as in real data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.random import Generator
from scipy.ndimage import gaussian_filter
from scipy.special import ndtr, ndtri


def smooth_field(rng: Generator, shape: Sequence[int], sigma: float) -> np.ndarray:
    """A smooth Gaussian random field: white noise blurred by ``sigma`` voxels, standardised (float64)."""
    noise = rng.standard_normal(tuple(shape))
    field = gaussian_filter(noise, sigma=sigma, mode="reflect") if sigma > 0 else noise
    std = float(field.std())
    return (field - field.mean()) / (std if std > 0 else 1.0)


def panel_styles(num_raters: int, levels: Sequence[float] | None) -> np.ndarray:
    """Style scores ``z_r`` of a panel: ``Φ⁻¹`` of the given levels in (0, 1), or of ``(r + ½)/R`` (evenly spread)."""
    if levels is None:
        levels = [(r + 0.5) / num_raters for r in range(num_raters)]
    values = np.asarray(levels, dtype=np.float64)
    if values.shape != (num_raters,) or not bool(np.all((values > 0) & (values < 1))):
        raise ValueError(f"`rater_levels` must hold {num_raters} levels in (0, 1), one per rater; got {levels!r}.")
    return ndtri(values)


def rater_level(style: float, jitter_field: np.ndarray | float, beta: float) -> np.ndarray:
    """The level field ``u = Φ(√(1 − β²)·z + β·g)`` of one rater on one image (uniform over the rater population)."""
    return ndtr(np.sqrt(1.0 - beta**2) * style + beta * np.asarray(jitter_field))
