"""Synthetic 2D/3D segmentation whose true per-voxel label distribution p*(y|x) is known by construction.

Each image holds 1–3 structures (ellipses / ellipsoids, random size, orientation and class). A structure's
membership ``m(x)`` falls from 1 to 0 across its boundary over a width ``2w`` (a smoothstep in the approximate
signed distance), and **the image shows exactly that profile**: intensity ``= background + ℓ_c·m(x) + texture +
noise`` — the ambiguity is the visible partial-volume blur, not noise the network cannot see. Supports are kept
disjoint, so ``p*_c(x) = Σ_{structures of class c} m(x)`` and ``p*_0 = 1 − Σ m`` exactly.

Raters (``_raters``): rater ``r`` marks ``x`` with the structure's class when ``1 − p*_0(x) > u_r(x)``; over the
rater population that happens with probability ``1 − p*_0(x)``, so the stored p* is the rater distribution as well
as the Bayes-optimal prediction. A panel of ``R`` consistent raters (default 5: levels 0.1, 0.3, 0.5, 0.7, 0.9,
i.e. systematic over- to under-segmentation, plus smooth boundary jitter) gives ``"raters"``; the median rater is
``"label"`` (the single-annotator baseline) and ``"confidence"`` is the true probability of its label,
``p*_{label(x)}(x)``. Because p* is known, ``info["floor"]`` stores what a perfect model reaches on the split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from numpy.random import Generator, default_rng

from softlabels.data._raters import panel_styles, rater_level, smooth_field
from softlabels.data.datamodule import SampleDataset, SoftLabelDataModule

__all__ = ["SyntheticSegmentation", "floor_of", "synthetic_segmentation_datamodule"]

_BACKGROUND = 0.2
_SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class SyntheticSegmentation:
    """Generator of a synthetic segmentation split with known truth; call :meth:`dataset` to build it.

    Args:
        shape: spatial size, 2 or 3 axes (e.g. ``(64, 64)``, ``(128, 128)``, ``(32, 32, 32)``).
        num_classes: classes including background (structure ``j`` gets class ``1 + j mod (C − 1)``).
        structures: min and max number of structures per image.
        radius: min and max semi-axis, as a fraction of the smallest image side.
        blur: min and max boundary half-width ``w`` in voxels (membership goes 1 → 0 over ``2w``).
        contrast: intensity step of the highest class (class ``c`` has ``contrast · c / (C − 1)``).
        noise: standard deviation of the white noise added to the image.
        texture: amplitude of a smooth background texture field.
        num_raters: raters in the panel.
        rater_levels: the panel's levels in (0, 1) (``None``: ``(r + ½)/R``).
        jitter: weight ``β`` in [0, 1) of the per-image smooth boundary jitter of every rater.
        jitter_smoothness: smoothness (Gaussian σ, voxels) of the jitter fields.
        confidence_levels: quantise the confidence to this many steps (``None``: continuous).

    Example:
        >>> ds = SyntheticSegmentation(shape=(32, 32)).dataset(4, seed=0)
        >>> sample = ds[0]
        >>> tuple(sample["image"].shape), tuple(sample["raters"].shape), tuple(sample["true_probs"].shape)
        ((1, 32, 32), (5, 32, 32), (2, 32, 32))
        >>> ds.info["floor"]["ece"]
        0.0
    """

    shape: tuple[int, ...] = (64, 64)
    num_classes: int = 2
    structures: tuple[int, int] = (1, 3)
    radius: tuple[float, float] = (0.1, 0.22)
    blur: tuple[float, float] = (0.75, 3.0)
    contrast: float = 0.6
    noise: float = 0.03
    texture: float = 0.05
    num_raters: int = 5
    rater_levels: tuple[float, ...] | None = None
    jitter: float = 0.3
    jitter_smoothness: float = 4.0
    confidence_levels: int | None = None

    def __post_init__(self) -> None:
        _check_config(self)

    def dataset(self, num_cases: int, *, seed: int = 0, split: str = "train", transform: Any = None) -> SampleDataset:
        """Generate ``num_cases`` cases of ``split`` (a different stream of the same ``seed`` per split).

        Args:
            num_cases: number of images.
            seed: the seed; the same seed and split give the same data.
            split: ``"train"``, ``"val"`` or ``"test"``.
            transform: an optional (MONAI) transform applied on access.

        Returns:
            A :class:`~softlabels.data.SampleDataset`; ``info`` holds the configuration, the class names and
            ``"floor"``: ``ece`` (0), ``nll`` (mean entropy of p*, the Bayes NLL), ``brier`` (0, against the soft
            reference p*), ``bayes_brier`` (``1 − Σ_c p*_c²``, the expected Brier against labels drawn from p*),
            each over all voxels and, with the suffix ``_band``, over the ambiguous voxels (``max_c p*_c < 0.98``).
        """
        if isinstance(num_cases, bool) or not isinstance(num_cases, int) or num_cases < 1:
            raise ValueError(f"`num_cases` of SyntheticSegmentation.dataset must be an int >= 1; got {num_cases!r}.")
        _check_split(split, "SyntheticSegmentation.dataset")
        styles = panel_styles(self.num_raters, self.rater_levels)
        samples = [
            self._case(default_rng([seed, _SPLIT_OFFSET[split], i]), styles, f"{split}_{i:04d}")
            for i in range(num_cases)
        ]
        info = {
            "task": "segmentation",
            "num_classes": self.num_classes,
            "spatial_dims": len(self.shape),
            "class_names": ["background"] + [f"structure {c}" for c in range(1, self.num_classes)],
            "description": "synthetic structures with visible partial-volume boundaries; p* known by construction",
            "config": asdict(self),
            "seed": seed,
            "split": split,
            "floor": floor_of([s["true_probs"] for s in samples]),
        }
        return SampleDataset(samples, transform, info=info)

    def sample(self, index: int, *, seed: int = 0, split: str = "train") -> dict[str, Any]:
        """Case ``index`` of ``split``, generated alone: equal to ``dataset(n, seed=seed, split=split)[index]``.

        Lets a large 3D split be generated on access (one case in memory at a time) instead of all at once.

        Example:
            >>> gen = SyntheticSegmentation(shape=(8, 8))
            >>> one = gen.sample(2, seed=1, split="val")
            >>> torch.equal(one["image"], gen.dataset(3, seed=1, split="val")[2]["image"])
            True
        """
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"`index` of SyntheticSegmentation.sample must be an int >= 0; got {index!r}.")
        _check_split(split, "SyntheticSegmentation.sample")
        styles = panel_styles(self.num_raters, self.rater_levels)
        return self._case(default_rng([seed, _SPLIT_OFFSET[split], index]), styles, f"{split}_{index:04d}")

    def _case(self, rng: Generator, styles: np.ndarray, case: str) -> dict[str, Any]:
        members, classes = _structures(self, rng)
        probs = np.zeros((self.num_classes, *self.shape))
        for membership, cls in zip(members, classes, strict=True):
            probs[cls] += membership
        foreground = probs[1:].sum(0)
        probs[0] = 1.0 - foreground
        fg_class = np.zeros(self.shape, dtype=np.int64)
        for membership, cls in zip(members, classes, strict=True):
            fg_class[membership > 0] = cls
        raters = np.stack([self._rater(rng, style, foreground, fg_class) for style in styles])
        label = raters[len(styles) // 2]
        image = self._image(rng, probs)
        confidence = np.take_along_axis(probs, label[None], axis=0)[0]
        if self.confidence_levels:
            confidence = np.round(confidence * self.confidence_levels) / self.confidence_levels
        return {
            "image": torch.as_tensor(image[None], dtype=torch.float32),
            "label": torch.as_tensor(label[None]),
            "raters": torch.as_tensor(raters),
            "confidence": torch.as_tensor(confidence[None], dtype=torch.float32),
            "true_probs": torch.as_tensor(probs, dtype=torch.float32),
            "case": case,
        }

    def _rater(self, rng: Generator, style: float, foreground: np.ndarray, fg_class: np.ndarray) -> np.ndarray:
        jitter = smooth_field(rng, self.shape, self.jitter_smoothness) if self.jitter > 0 else 0.0
        level = rater_level(style, jitter, self.jitter)
        return np.where(foreground > level, fg_class, 0)

    def _image(self, rng: Generator, probs: np.ndarray) -> np.ndarray:
        steps = np.arange(self.num_classes) * (self.contrast / max(self.num_classes - 1, 1))
        image = _BACKGROUND + np.tensordot(steps, probs, axes=1)
        if self.texture > 0:
            image = image + self.texture * smooth_field(rng, self.shape, 3.0)
        return image + self.noise * rng.standard_normal(self.shape)


def _check_split(split: str, where: str) -> None:
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"`split` of {where} must be one of {list(_SPLIT_OFFSET)}; got {split!r}.")


def _check_config(cfg: SyntheticSegmentation) -> None:
    where = "SyntheticSegmentation"
    if not isinstance(cfg.shape, tuple) or len(cfg.shape) not in (2, 3) or min(cfg.shape) < 8:
        raise ValueError(f"`shape` of {where} must be a tuple of 2 or 3 sizes >= 8; got {cfg.shape!r}.")
    if isinstance(cfg.num_classes, bool) or not isinstance(cfg.num_classes, int) or cfg.num_classes < 2:
        raise ValueError(f"`num_classes` of {where} must be an int >= 2; got {cfg.num_classes!r}.")
    lo, hi = cfg.structures
    if not (1 <= lo <= hi <= 8):
        raise ValueError(
            f"`structures` of {where} must be (min, max) with 1 <= min <= max <= 8; got {cfg.structures!r}."
        )
    for name in ("radius", "blur"):
        a, b = getattr(cfg, name)
        if not (0 < a <= b):
            raise ValueError(f"`{name}` of {where} must be (min, max) with 0 < min <= max; got {(a, b)!r}.")
    if not 0 <= cfg.jitter < 1:
        raise ValueError(f"`jitter` of {where} must be in [0, 1); got {cfg.jitter!r}.")
    if cfg.num_raters < 1:
        raise ValueError(f"`num_raters` of {where} must be >= 1; got {cfg.num_raters!r}.")
    if min(cfg.noise, cfg.texture, cfg.contrast) < 0:
        raise ValueError(f"`noise`, `texture` and `contrast` of {where} must be >= 0.")
    panel_styles(cfg.num_raters, cfg.rater_levels)


def _rotation(rng: Generator, dims: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dims, dims)))
    return q * np.sign(np.diag(r))


def _membership(grid: np.ndarray, centre: np.ndarray, axes: np.ndarray, rot: np.ndarray, width: float) -> np.ndarray:
    """Smoothstep of the first-order signed distance to the ellipsoid ``‖diag(1/a) Rᵀ (x − c)‖ = 1``."""
    local = np.tensordot(rot.T, grid - centre.reshape(-1, *([1] * (grid.ndim - 1))), axes=1)
    scaled = local / axes.reshape(-1, *([1] * (grid.ndim - 1)))
    rho = np.sqrt((scaled**2).sum(0))
    gradient = np.tensordot(rot, scaled / axes.reshape(-1, *([1] * (grid.ndim - 1))), axes=1)
    norm = np.sqrt((gradient**2).sum(0))
    distance = np.where(norm > 1e-12, (rho - 1.0) * rho / np.maximum(norm, 1e-12), -float(axes.min()))
    t = np.clip(0.5 - distance / (2.0 * width), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _structures(cfg: SyntheticSegmentation, rng: Generator) -> tuple[list[np.ndarray], list[int]]:
    """Memberships with disjoint supports (a candidate touching an earlier support is redrawn) and their classes."""
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in cfg.shape], indexing="ij"))
    side, size = min(cfg.shape), np.asarray(cfg.shape, dtype=np.float64)
    count = int(rng.integers(cfg.structures[0], cfg.structures[1] + 1))
    occupied = np.zeros(cfg.shape, dtype=bool)
    members, classes = [], []
    for j in range(count):
        for _attempt in range(50):
            axes = rng.uniform(*cfg.radius, size=len(cfg.shape)) * side
            width = float(rng.uniform(*cfg.blur))
            margin = np.minimum(float(axes.max()) + width, size / 2 - 1)
            centre = rng.uniform(margin, size - 1 - margin)
            membership = _membership(grid, centre, axes, _rotation(rng, len(cfg.shape)), width)
            support = membership > 0
            if not bool((support & occupied).any()):
                occupied |= support
                members.append(membership)
                classes.append(1 + j % (cfg.num_classes - 1))
                break
    return members, classes


def floor_of(true_probs: Sequence[torch.Tensor], band: float = 0.98) -> dict[str, float]:
    """What a perfect model (predicting p*) scores on these cases, as plain numbers.

    ``ece`` and ``brier`` (against the soft reference p*) are 0; ``nll`` is the mean entropy ``−Σ_c p* log p*`` (the
    NLL of p* against p*, i.e. the Bayes NLL); ``bayes_brier`` is ``1 − Σ_c p*²``, the expected Brier score of p*
    against labels drawn from p*. ``*_band`` are the same over the ambiguous voxels ``max_c p* < band``.

    Example:
        >>> floor_of([torch.tensor([[[0.5, 1.0]], [[0.5, 0.0]]])])["bayes_brier"]
        0.25
    """
    probs = torch.cat([p.double().reshape(p.shape[0], -1) for p in true_probs], dim=1)
    entropy = -torch.xlogy(probs, probs).sum(0)
    bayes_brier = 1.0 - probs.square().sum(0)
    ambiguous = probs.amax(0) < band
    out = {"ece": 0.0, "brier": 0.0, "nll": float(entropy.mean()), "bayes_brier": float(bayes_brier.mean())}
    out["ambiguous_fraction"] = float(ambiguous.double().mean())
    out["nll_band"] = float(entropy[ambiguous].mean()) if bool(ambiguous.any()) else math.nan
    out["bayes_brier_band"] = float(bayes_brier[ambiguous].mean()) if bool(ambiguous.any()) else math.nan
    return out


def synthetic_segmentation_datamodule(
    config: SyntheticSegmentation | None = None,
    *,
    num_cases: tuple[int, int, int] = (200, 50, 50),
    seed: int = 0,
    batch_size: int = 8,
    num_workers: int = 0,
) -> SoftLabelDataModule:
    """A :class:`~softlabels.data.SoftLabelDataModule` with train/val/test splits of :class:`SyntheticSegmentation`.

    Example:
        >>> dm = synthetic_segmentation_datamodule(SyntheticSegmentation(shape=(16, 16)), num_cases=(4, 2, 2))
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["raters"].shape), dm.info["num_classes"]
        ((4, 5, 16, 16), 2)
    """
    config = config or SyntheticSegmentation()
    train, val, test = (
        config.dataset(n, seed=seed, split=split) for n, split in zip(num_cases, ("train", "val", "test"), strict=True)
    )
    return SoftLabelDataModule(train, val, test, batch_size=batch_size, num_workers=num_workers, seed=seed)
