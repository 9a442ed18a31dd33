"""Synthetic image classification whose true class distribution p*(y|x) is known, with confusable class pairs.

``C`` classes (even; default 8) come in ``C/2`` pairs of similar classes, the structure that motivates online label
smoothing. Pair ``j`` draws two Gaussian blobs on an axis at angle ``π j / (C/2)`` (plus a random shift and a small
rotation); a visible mixing value ``t ~ U(0, 1)`` sets their brightness, ``(1 − t)`` and ``t``. Within the pair
``p*(2j + 1 | x) = σ((t − ½) / s)`` and ``p*(2j | x) = 1 − p*(2j + 1 | x)``; the other classes have probability 0.
The ambiguity is visible: ``t`` is rendered into the image far above the noise, so p* is the posterior a perfect
model reaches (up to the small image noise).

``"label"`` is drawn from p* for every image (independent label noise, as in a single-label dataset), ``"raters"``
are a panel of consistent raters (rater ``r`` says ``2j + 1`` when ``p*(2j + 1 | x) > u_r``, with a per-rater level
and a small per-image jitter, as the segmentation raters), ``"true_probs"`` is p*.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from numpy.random import Generator, default_rng
from scipy.special import expit

from softlabels.data._raters import panel_styles, rater_level, smooth_field
from softlabels.data.datamodule import SampleDataset, SoftLabelDataModule
from softlabels.data.synthetic_segmentation import floor_of

__all__ = ["SyntheticClassification", "synthetic_classification_datamodule"]

_SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class SyntheticClassification:
    """Generator of a synthetic classification split with known p*; call :meth:`dataset` to build it.

    Args:
        num_classes: even number of classes ``C`` (``C/2`` confusable pairs).
        size: image side in pixels (28–64).
        softness: ``s`` of ``σ((t − ½)/s)``: larger means more ambiguous pairs.
        noise: standard deviation of the white pixel noise.
        num_raters: raters in the panel (``0``: no ``"raters"``).
        rater_levels: the panel's levels in (0, 1) (``None``: ``(r + ½)/R``).
        jitter: weight of the per-image level jitter of each rater, in [0, 1).

    Example:
        >>> ds = SyntheticClassification().dataset(6, seed=0)
        >>> sample = ds[0]
        >>> tuple(sample["image"].shape), sample["label"].shape, tuple(sample["true_probs"].shape)
        ((1, 32, 32), torch.Size([]), (8,))
    """

    num_classes: int = 8
    size: int = 32
    softness: float = 0.05
    noise: float = 0.03
    num_raters: int = 5
    rater_levels: tuple[float, ...] | None = None
    jitter: float = 0.3

    def __post_init__(self) -> None:
        where = "SyntheticClassification"
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"`num_classes` of {where} must be an even int >= 2; got {self.num_classes!r}.")
        if self.num_classes % 2:
            raise ValueError(f"`num_classes` of {where} must be even (classes come in pairs); got {self.num_classes}.")
        if not 28 <= self.size <= 64:
            raise ValueError(f"`size` of {where} must be in [28, 64]; got {self.size!r}.")
        if not (self.softness > 0 and self.noise >= 0 and 0 <= self.jitter < 1 and self.num_raters >= 0):
            raise ValueError(f"{where} needs softness > 0, noise >= 0, jitter in [0, 1), num_raters >= 0.")
        if self.num_raters:
            panel_styles(self.num_raters, self.rater_levels)

    def dataset(self, num_items: int, *, seed: int = 0, split: str = "train", transform: Any = None) -> SampleDataset:
        """Generate ``num_items`` images of ``split`` (a different stream of the same ``seed`` per split).

        Returns:
            A :class:`~softlabels.data.SampleDataset` whose ``info["floor"]`` is what p* scores on these items (see
            :func:`~softlabels.data.synthetic_segmentation.floor_of`: ``nll`` = mean entropy of p*).
        """
        if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
            raise ValueError(f"`num_items` of SyntheticClassification.dataset must be an int >= 1; got {num_items!r}.")
        if split not in _SPLIT_OFFSET:
            raise ValueError(
                f"`split` of SyntheticClassification.dataset must be one of {list(_SPLIT_OFFSET)}; got {split!r}."
            )
        rng = default_rng([seed, _SPLIT_OFFSET[split]])
        styles = panel_styles(self.num_raters, self.rater_levels) if self.num_raters else np.zeros(0)
        samples = [self._item(rng, styles, f"{split}_{i:05d}") for i in range(num_items)]
        info = {
            "task": "classification",
            "num_classes": self.num_classes,
            "spatial_dims": 2,
            "class_names": [f"pair {c // 2} {'ab'[c % 2]}" for c in range(self.num_classes)],
            "description": "synthetic blob pairs; classes 2j and 2j+1 are confusable; p* known by construction",
            "config": asdict(self),
            "seed": seed,
            "split": split,
            "floor": floor_of([torch.stack([s["true_probs"] for s in samples], dim=1)]),
        }
        return SampleDataset(samples, transform, info=info)

    def _item(self, rng: Generator, styles: np.ndarray, case: str) -> dict[str, Any]:
        pairs = self.num_classes // 2
        pair = int(rng.integers(pairs))
        t = float(rng.uniform())
        upper = float(expit((t - 0.5) / self.softness))
        probs = np.zeros(self.num_classes)
        probs[2 * pair], probs[2 * pair + 1] = 1.0 - upper, upper
        image = self._render(rng, pair, t)
        sample: dict[str, Any] = {
            "image": torch.as_tensor(image[None], dtype=torch.float32),
            "label": torch.tensor(2 * pair + int(rng.uniform() < upper)),
            "true_probs": torch.as_tensor(probs, dtype=torch.float32),
            "case": case,
        }
        if len(styles):
            levels = [float(rater_level(z, rng.standard_normal(), self.jitter)) for z in styles]
            sample["raters"] = torch.tensor([2 * pair + int(upper > u) for u in levels])
        return sample

    def _render(self, rng: Generator, pair: int, t: float) -> np.ndarray:
        n = self.size
        angle = math.pi * pair / (self.num_classes // 2) + rng.normal(0.0, 0.05)
        direction = np.array([math.cos(angle), math.sin(angle)])
        centre = np.array([n / 2, n / 2]) + rng.uniform(-0.08, 0.08, size=2) * n
        yy, xx = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")
        spread, offset = 0.09 * n, 0.22 * n
        image = np.full((n, n), 0.1)
        for sign, brightness in ((-1.0, 1.0 - t), (1.0, t)):
            cy, cx = centre + sign * offset * direction
            image += (0.2 + 0.8 * brightness) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * spread**2))
        image += 0.03 * smooth_field(rng, (n, n), 2.0)
        return image + self.noise * rng.standard_normal((n, n))


def synthetic_classification_datamodule(
    config: SyntheticClassification | None = None,
    *,
    num_items: tuple[int, int, int] = (2000, 500, 500),
    seed: int = 0,
    batch_size: int = 64,
    num_workers: int = 0,
) -> SoftLabelDataModule:
    """A :class:`~softlabels.data.SoftLabelDataModule` with train/val/test splits of :class:`SyntheticClassification`.

    Example:
        >>> dm = synthetic_classification_datamodule(num_items=(8, 4, 4), batch_size=4)
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["image"].shape), tuple(batch["label"].shape), tuple(batch["raters"].shape)
        ((4, 1, 32, 32), (4,), (4, 5))
    """
    config = config or SyntheticClassification()
    train, val, test = (
        config.dataset(n, seed=seed, split=split) for n, split in zip(num_items, ("train", "val", "test"), strict=True)
    )
    return SoftLabelDataModule(train, val, test, batch_size=batch_size, num_workers=num_workers, seed=seed)
