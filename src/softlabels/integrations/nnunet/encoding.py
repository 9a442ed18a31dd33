r"""Soft labels in nnU-Net's integer label maps: the "foreground levels" encoding, its decoding and downsampling.

nnU-Net v2 reads one integer label map per case and resamples, augments and crops it as labels; it cannot carry a
float soft target. For a **binary** task the soft foreground ``q ∈ [0, 1]`` is carried as an ordinal level

.. math::

    v = \operatorname{round}(q \cdot L) \in \{0, \dots, L\}, \qquad \hat q = v / L.

* **raters** (``kind="rater_bits"``, ``source="raters"``): ``R ≤ 8`` binary rater maps as one bit each,
  ``v = Σ_r 2^r · y_r`` (:func:`encode_raters`), decoded back to every rater's map (:func:`decode_raters`), so every
  rater recipe (mean, SVLS of the mean, Dice-weighted, majority) sees the raters themselves; the soft foreground is
  ``popcount(v) / R``, the rater mean, bit for bit.
* **confidence** (``source="confidence"``): a binary label ``l`` and the annotator's confidence ``c`` in it give
  ``q = c`` where ``l = 1`` and ``q = 1 − c`` where ``l = 0``; ``L = levels`` (default 10), rounded half up, so
  ``|v/L − q| ≤ 1/(2L)`` (:func:`encode_confidence`). Decoding back to a label and a confidence, for the confidence
  recipes: ``label = q̂ > 0.5`` and ``confidence = q̂`` if ``label`` else ``1 − q̂``. The soft target is kept, the
  pair is not always: a label-1 voxel with ``c ≤ 0.5`` (or a label-0 voxel with ``c < 0.5``) comes back as the other
  label with confidence ``1 − c`` (``≥ 0.5``) — the same soft foreground ``q``, a different (label, confidence).
* **hard labels** (``source="labels"``): the plain label map, any number of classes (``kind="labels"``).

A **multi-class** task with several raters is refused: one integer per voxel cannot hold a distribution over
``C > 2`` classes without a code exponential in ``C`` (the number of rater-count compositions).

**Plain nnUNetTrainer on an encoded dataset.** :meth:`LabelEncoding.dataset_labels` declares nested regions
"at least ``k`` of ``L``" for ``k = 1..L`` (levels ``{k, …, L}``; for rater bits, the codes with at least ``k`` bits
set): nnU-Net's region-based training then learns ``P(q ≥ k/L)`` per ``k`` with a sigmoid per region (an ordinal
model), and its inference writes ``regions_class_order[k]`` where the ``k``-th region is predicted (the (rater-)median
level; for rater bits the code ``2^k − 1``, which lies in exactly the regions ``1..k``). The mean of the ``L`` region
maps is the soft foreground ``q`` (:func:`decode_regions`), and the mean of the region *probabilities* is its
expectation.

**What nnU-Net's resampling does.** nnU-Net resamples a label map per label (one-hot, linear, threshold 0.5) and
augments it by nearest neighbour: a voxel always keeps one of the original levels (never a blend of two), so after a
spacing change the soft values are those of the nearby original voxels, quantised on the same grid ``{0, 1/L, …, 1}``;
boundaries move as for any label map. Deep-supervision targets should be downsampled from the decoded soft target by
area averaging (:func:`downsample_soft`), not by nearest neighbour as nnU-Net does for labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LabelEncoding",
    "decode_foreground",
    "decode_raters",
    "decode_regions",
    "downsample_soft",
    "encode_confidence",
    "encode_raters",
]

_KINDS = ("rater_bits", "foreground_levels", "labels")
_SOURCES = {"rater_bits": ("raters",), "foreground_levels": ("confidence",), "labels": ("labels",)}
MAX_LEVEL = 255  # label maps are written as uint8
MAX_RATERS = 8  # one bit per rater in a uint8 label map


@dataclass(frozen=True)
class LabelEncoding:
    """How a dataset's nnU-Net label maps encode its targets (stored in ``dataset.json`` as ``softlabels_encoding``).

    ``kind="rater_bits"``: ``L = R ≤ 8`` binary raters, one bit each (``num_classes = 2``).
    ``kind="foreground_levels"``: a binary task's soft foreground as the level ``v = round(q·L)``, decoded as
    ``q = v / L`` (``num_classes = 2``). ``kind="labels"``: plain hard labels ``0..C−1`` (``levels = C − 1``).

    Args:
        kind: ``"rater_bits"``, ``"foreground_levels"`` or ``"labels"``.
        levels: ``L``: raters (``1..8``), levels (``1..255``), or ``num_classes − 1``.
        source: ``"raters"`` (bits), ``"confidence"`` (levels), ``"labels"`` (labels).
        num_classes: ``C`` (2 for levels).
        class_names: one name per class, background first (default ``("background", "foreground")`` /
            ``("background", "class_1", …)``).

    Example:
        >>> enc = LabelEncoding("foreground_levels", 3, "confidence")
        >>> enc.dataset_labels()
        ({'background': 0, 'at_least_1_of_3': [1, 2, 3], 'at_least_2_of_3': [2, 3], 'at_least_3_of_3': 3}, [1, 2, 3])
        >>> LabelEncoding("rater_bits", 2, "raters").dataset_labels()
        ({'background': 0, 'at_least_1_of_2': [1, 2, 3], 'at_least_2_of_2': 3}, [1, 3])
        >>> LabelEncoding.from_dict(enc.to_dict()) == enc
        True
    """

    kind: str
    levels: int
    source: str
    num_classes: int = 2
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = "LabelEncoding"
        if self.kind not in _KINDS:
            raise ValueError(f"`kind` of {where} must be one of {list(_KINDS)}; got {self.kind!r}.")
        if self.source not in _SOURCES[self.kind]:
            raise ValueError(f"`source` of {where} {self.kind!r} must be one of {list(_SOURCES[self.kind])}; "
                             f"got {self.source!r}.")  # fmt: skip
        for name, low, high in (("levels", 1, MAX_LEVEL), ("num_classes", 2, MAX_LEVEL + 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"`{name}` of {where} must be an int in [{low}, {high}]; got {value!r}.")
        if self.kind != "labels" and self.num_classes != 2:
            raise ValueError(f"{where} {self.kind!r} is for binary tasks: num_classes=2; got {self.num_classes}.")
        if self.kind == "rater_bits" and self.levels > MAX_RATERS:
            raise ValueError(f"`levels` of {where} 'rater_bits' (the raters) must be at most {MAX_RATERS}; "
                             f"got {self.levels}.")  # fmt: skip
        if self.kind == "labels" and self.levels != self.num_classes - 1:
            raise ValueError(
                f"{where} 'labels' needs levels = num_classes - 1; got num_classes={self.num_classes}, "
                f"levels={self.levels}."
            )
        names = tuple(self.class_names) or _default_names(self.kind, self.num_classes)
        if (
            len(names) != self.num_classes
            or not all(isinstance(n, str) and n for n in names)
            or names[0] != "background"
        ):
            raise ValueError(
                f"`class_names` of {where} must be {self.num_classes} non-empty strings starting with 'background'; "
                f"got {self.class_names!r}."
            )
        if len(set(names)) != len(names):
            raise ValueError(f"`class_names` of {where} must be distinct; got {self.class_names!r}.")
        object.__setattr__(self, "class_names", names)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, read back by :meth:`from_dict`.

        Example:
            >>> LabelEncoding("labels", 2, "labels", 3).to_dict()["class_names"]
            ['background', 'class_1', 'class_2']
        """
        return {
            "kind": self.kind, "levels": self.levels, "source": self.source, "num_classes": self.num_classes,
            "class_names": list(self.class_names),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "the stored label encoding") -> LabelEncoding:
        """The encoding of :meth:`to_dict` output; a missing or unknown key or a bad value is one ``ValueError``.

        Example:
            >>> LabelEncoding.from_dict({"kind": "rater_bits", "levels": 4, "source": "raters"}).levels
            4
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} must be a JSON object; got {type(data).__name__}.")
        known = set(cls.__dataclass_fields__)
        unknown, missing = sorted(set(data) - known), sorted({"kind", "levels", "source"} - set(data))
        if unknown or missing:
            raise ValueError(f"{where}: unknown key(s) {unknown}, missing key(s) {missing}; valid: {sorted(known)}.")
        values = dict(data)
        if "class_names" in values:
            if not isinstance(values["class_names"], list | tuple):
                raise ValueError(f"{where}: `class_names` must be a list; got {values['class_names']!r}.")
            values["class_names"] = tuple(values["class_names"])
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from err

    def dataset_labels(self) -> tuple[dict[str, int | list[int]], list[int] | None]:
        """nnU-Net's ``labels`` and ``regions_class_order`` for ``dataset.json``.

        Levels with ``L ≥ 2``: ``{"background": 0, "at_least_k_of_L": [k, …, L] …}`` (the last region, one value, an
        int) and ``regions_class_order = [1, …, L]``. Rater bits with ``R ≥ 2``: region ``k`` holds the codes with at
        least ``k`` bits set, ``regions_class_order = [2^k − 1]``. ``L = 1``: ``{"background": 0, "foreground": 1}``,
        no regions. Labels: ``{"background": 0, name_c: c}``, no regions.

        Example:
            >>> LabelEncoding("rater_bits", 1, "raters").dataset_labels()
            ({'background': 0, 'foreground': 1}, None)
        """
        if self.kind == "labels" or self.levels == 1:
            return {name: c for c, name in enumerate(self.class_names)}, None
        top = self.levels
        bits = self.kind == "rater_bits"
        codes = range(1, 2**top) if bits else range(1, top + 1)
        count = (lambda code: bin(code).count("1")) if bits else (lambda level: level)
        labels: dict[str, int | list[int]] = {"background": 0}
        for k in range(1, top + 1):
            region = [code for code in codes if count(code) >= k]
            labels[f"at_least_{k}_of_{top}"] = region if len(region) > 1 else region[0]
        order = [2**k - 1 for k in range(1, top + 1)] if bits else list(range(1, top + 1))
        return labels, order


def _default_names(kind: str, num_classes: int) -> tuple[str, ...]:
    if kind != "labels":
        return ("background", "foreground")
    return ("background", *(f"class_{c}" for c in range(1, num_classes)))


def encode_raters(raters: np.ndarray) -> np.ndarray:
    """The code map of binary rater maps: ``v = Σ_r 2^r · y_r``, one bit per rater (``R ≤ 8``, so uint8).

    Shapes: ``(R, *spatial)`` integer or bool in ``{0, 1}`` → ``(*spatial)`` uint8 in ``0..2^R − 1``; exact, so
    :func:`decode_raters` gives the raters back and ``popcount(v) / R`` is the rater mean (QUBIQ, MICCAI 2020/2021).

    Raises:
        TypeError: not an integer/bool NumPy array.
        ValueError: no raters, more than 8, or a value other than 0/1 (multi-class raters cannot be encoded).

    Example:
        >>> encode_raters(np.array([[1, 0, 1], [1, 0, 0], [1, 1, 0]])).tolist()
        [7, 4, 1]
    """
    if not isinstance(raters, np.ndarray) or not (raters.dtype == bool or np.issubdtype(raters.dtype, np.integer)):
        raise TypeError(f"`raters` of encode_raters must be an integer NumPy array; got {_describe(raters)}.")
    if raters.ndim < 2 or not 1 <= raters.shape[0] <= MAX_RATERS:
        raise ValueError(f"`raters` of encode_raters must be (R, *spatial) with 1 <= R <= {MAX_RATERS} (one bit per "
                         f"rater in a uint8 map); got shape {raters.shape}.")  # fmt: skip
    if raters.size and (raters.min() < 0 or raters.max() > 1):
        bad = raters.max() if raters.max() > 1 else raters.min()
        raise ValueError(
            f"`raters` of encode_raters must be binary (0/1) maps; got value {int(bad)} (a multi-class task with "
            "several raters cannot be held in one integer map per voxel)."
        )
    weights = (1 << np.arange(raters.shape[0], dtype=np.int64)).reshape(-1, *([1] * (raters.ndim - 1)))
    return (raters.astype(np.int64) * weights).sum(axis=0).astype(np.uint8)


def decode_raters(code_map: Tensor, raters: int) -> Tensor:
    """The rater maps ``(N, R, *spatial)`` (int64, 0/1) of a code map of :func:`encode_raters`: bit ``r``, rater ``r``.

    Shapes: ``(N, 1, *spatial)`` or ``(N, *spatial)`` integer (nnU-Net's target layout taken as for
    :func:`decode_foreground`) → ``(N, R, *spatial)``.

    Raises:
        TypeError: not an integer tensor.
        ValueError: ``raters`` not in 1..8, a code outside ``0..2^R − 1``, or fewer than 2 spatial axes.

    Example:
        >>> decode_raters(torch.tensor([[[7, 4, 1]]]), 3)[0, :, 0].tolist()
        [[1, 0, 1], [1, 0, 0], [1, 1, 0]]
    """
    where = "decode_raters"
    if isinstance(raters, bool) or not isinstance(raters, int) or not 1 <= raters <= MAX_RATERS:
        raise ValueError(f"`raters` of {where} must be an int in [1, {MAX_RATERS}]; got {raters!r}.")
    v = _integer_map(code_map, "code_map", where, 2**raters - 1)
    bits = torch.arange(raters, device=v.device)
    return (v.unsqueeze(1) >> bits.view(1, -1, *([1] * (v.ndim - 1)))) & 1


def encode_confidence(label: np.ndarray, confidence: np.ndarray, levels: int = 10) -> np.ndarray:
    """The level map of a binary label and the annotator's confidence in it: ``v = ⌊q·L + ½⌋``, ``q = c`` or ``1 − c``.

    ``q = c`` where ``label = 1`` and ``1 − c`` where ``label = 0`` (the soft foreground, as in Label Uncertainty for
    Ultrasound Segmentation, arXiv 2508.15635, 2025); ``|v/L − q| ≤ 1/(2L)``. Shapes: ``(*spatial)`` twice →
    ``(*spatial)`` uint8 in ``0..L``.

    Raises:
        TypeError: not NumPy arrays, an integer-free label or a non-float confidence.
        ValueError: shapes differ, labels other than 0/1, confidence outside [0, 1], ``levels`` outside 1..255.

    Example:
        >>> encode_confidence(np.array([1, 1, 0, 0]), np.array([0.9, 0.5, 0.8, 1.0]), levels=10).tolist()
        [9, 5, 2, 0]
    """
    where = "encode_confidence"
    if isinstance(levels, bool) or not isinstance(levels, int | np.integer) or not 1 <= levels <= MAX_LEVEL:
        raise ValueError(f"`levels` of {where} must be an int in [1, {MAX_LEVEL}]; got {levels!r}.")
    if not isinstance(label, np.ndarray) or not (label.dtype == bool or np.issubdtype(label.dtype, np.integer)):
        raise TypeError(f"`label` of {where} must be an integer NumPy array; got {_describe(label)}.")
    if not isinstance(confidence, np.ndarray) or not np.issubdtype(confidence.dtype, np.floating):
        raise TypeError(f"`confidence` of {where} must be a float NumPy array; got {_describe(confidence)}.")
    if label.shape != confidence.shape:
        raise ValueError(
            f"`confidence` of {where} must have the shape of `label` {label.shape}; got {confidence.shape}."
        )
    if label.size and (label.min() < 0 or label.max() > 1):
        raise ValueError(f"`label` of {where} must be binary (0/1); got values in [{label.min()}, {label.max()}].")
    outside = ~((confidence >= 0) & (confidence <= 1))
    if outside.any():
        raise ValueError(f"`confidence` of {where} must lie in [0, 1]; got {confidence[outside].flat[0]}.")
    conf = confidence.astype(np.float64)
    q = np.where(label.astype(bool), conf, 1.0 - conf)
    return np.clip(np.floor(q * levels + 0.5), 0, levels).astype(np.uint8)


def decode_foreground(levels_map: Tensor, levels: int) -> Tensor:
    """The soft target ``(1 − v/L, v/L)`` of a level map, float32, each channel correctly rounded from the exact ratio.

    Shapes: ``(N, 1, *spatial)`` or ``(N, *spatial)`` integer (a 4D/5D map whose axis 1 has size 1 is taken as
    ``(N, 1, *spatial)``, nnU-Net's target layout) → ``(N, 2, *spatial)``. For the confidence recipes, the decoded
    label is ``q > 0.5`` and its confidence ``max(q, 1 − q)``.

    Raises:
        TypeError: not an integer tensor.
        ValueError: ``levels`` not in 1..255, a value outside ``0..L``, or fewer than 2 spatial axes.

    Example:
        >>> soft = decode_foreground(torch.tensor([[[0, 1, 3]]]), 3)
        >>> torch.equal(soft[0, 1], torch.tensor([[0, 1, 3]]) / 3), soft.sum(1).tolist()
        (True, [[[1.0, 1.0, 1.0]]])
    """
    where = "decode_foreground"
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= MAX_LEVEL:
        raise ValueError(f"`levels` of {where} must be an int in [1, {MAX_LEVEL}]; got {levels!r}.")
    v = _integer_map(levels_map, "levels_map", where, levels)
    return (torch.stack([levels - v, v], dim=1).double() / levels).float()


def _integer_map(value: Tensor, name: str, where: str, top: int) -> Tensor:
    """``value`` as ``(N, *spatial)`` int64 in ``0..top`` (an axis 1 of size 1 in a 4D/5D map dropped), or raise."""
    if not isinstance(value, Tensor) or value.is_floating_point() or value.is_complex():
        raise TypeError(f"`{name}` of {where} must be an integer torch.Tensor; got {_describe(value)}.")
    v = value[:, 0] if value.ndim in (4, 5) and value.shape[1] == 1 else value
    if v.ndim not in (3, 4):
        raise ValueError(f"`{name}` of {where} must be (N, [1,] *spatial) with 2 or 3 spatial axes; "
                         f"got shape {tuple(value.shape)}.")  # fmt: skip
    v = v.to(torch.int64)
    if v.numel() and (int(v.min()) < 0 or int(v.max()) > top):
        raise ValueError(f"`{name}` of {where} must hold values in [0, {top}]; "
                         f"got values in [{int(v.min())}, {int(v.max())}].")  # fmt: skip
    return v


def decode_regions(region_maps: Tensor) -> Tensor:
    """The soft target of nnU-Net's region maps ``[v ≥ k]``, ``k = 1..L``: foreground ``(1/L) Σ_k [v ≥ k] = v / L``.

    Shapes: ``(N, L, *spatial)`` in ``{0, 1}`` (any dtype) → ``(N, 2, *spatial)`` float32, equal to
    :func:`decode_foreground` of the level map the regions came from.

    Raises:
        TypeError: not a tensor.
        ValueError: fewer than 2 spatial axes or a value other than 0/1.

    Example:
        >>> v = torch.tensor([[[0, 2, 3]]])
        >>> regions = torch.stack([v >= k for k in (1, 2, 3)], dim=1)
        >>> torch.equal(decode_regions(regions), decode_foreground(v, 3))
        True
    """
    where = "decode_regions"
    if not isinstance(region_maps, Tensor):
        raise TypeError(f"`region_maps` of {where} must be a torch.Tensor; got {_describe(region_maps)}.")
    if region_maps.ndim not in (4, 5) or region_maps.shape[1] < 1:
        raise ValueError(f"`region_maps` of {where} must be (N, L, *spatial) with 2 or 3 spatial axes; "
                         f"got shape {tuple(region_maps.shape)}.")  # fmt: skip
    binary = (region_maps == 0) | (region_maps == 1)
    if not bool(binary.all()):
        raise ValueError(
            f"`region_maps` of {where} must hold 0/1 values; got {region_maps[~binary].flatten()[0].item()}."
        )
    top = region_maps.shape[1]
    v = region_maps.to(torch.int64).sum(dim=1)
    return (torch.stack([top - v, v], dim=1).double() / top).float()


def downsample_soft(soft: Tensor, shape: Sequence[int]) -> Tensor:
    """Area-average a soft target to a smaller grid (deep supervision): probabilities stay on the simplex.

    Each output voxel is the mean of the input voxels its cell covers (``adaptive_avg_pool``; for integer factors
    exactly the block mean), so class sums of 1 stay 1 up to rounding. Shapes: ``(N, C, *spatial)`` float →
    ``(N, C, *shape)`` with ``shape[i] ≤ spatial[i]``.

    Raises:
        TypeError: not a floating tensor.
        ValueError: ``shape`` of the wrong length, not positive, or larger than the input.

    Example:
        >>> soft = decode_foreground(torch.tensor([[[0, 2], [1, 1]]]), 2)
        >>> downsample_soft(soft, (1, 1))[0, :, 0, 0].tolist()
        [0.5, 0.5]
    """
    where = "downsample_soft"
    if not isinstance(soft, Tensor) or not soft.is_floating_point():
        raise TypeError(f"`soft` of {where} must be a floating torch.Tensor; got {_describe(soft)}.")
    if soft.ndim not in (3, 4, 5):
        raise ValueError(f"`soft` of {where} must be (N, C, *spatial) with 1-3 spatial axes; got {tuple(soft.shape)}.")
    size = tuple(int(s) for s in shape)
    spatial = tuple(soft.shape[2:])
    if len(size) != len(spatial) or any(s < 1 or s > n for s, n in zip(size, spatial, strict=True)):
        raise ValueError(
            f"`shape` of {where} must give {len(spatial)} sizes in [1, {list(spatial)}]; got {tuple(shape)}."
        )
    if size == spatial:
        return soft
    pool = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[len(spatial) - 1]
    return pool(soft, size)  # type: ignore[operator, arg-type]


def _describe(x: object) -> str:
    if isinstance(x, np.ndarray | Tensor):
        return f"{type(x).__name__} of dtype {x.dtype}"
    return type(x).__name__
