"""A real soft-label dataset: the MNI ICBM152 2009a symmetric template bundled in nilearn's wheel, read offline.

One population template (a nonlinear average of 152 healthy adults; 1 mm, 197×233×189 voxels) with grey- and
white-matter probability maps: real probabilistic tissue targets, not annotator disagreement. It is *one*, exactly
left-right symmetric volume, so its slices and patches are not independent. nilearn is never imported (``pip install
--no-deps nilearn`` is enough). Splits are slabs with gaps (:func:`slab_splits`), never hemispheres. The MNI notice
:data:`MNI152_LICENSE` must be kept with the data and anything derived from it.

References:
    V. S. Fonov, A. C. Evans, K. Botteron, C. R. Almli, R. C. McKinstry, D. L. Collins and the Brain Development
    Cooperative Group, "Unbiased average age-appropriate atlases for pediatric studies", NeuroImage 54(1),
    313-327, 2011. V. S. Fonov, A. C. Evans, R. C. McKinstry, C. R. Almli and D. L. Collins, "Unbiased nonlinear
    average age-appropriate brain templates from birth to adulthood", NeuroImage 47 (Suppl. 1), S102, 2009 (OHBM).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import nibabel as nib
import numpy as np
import torch
from nibabel.filebasedimages import ImageFileError

from softlabels._options import look_up_option
from softlabels.data.datamodule import SampleDataset, SoftLabelDataModule
from softlabels.data.input_pipeline import InputPipeline, area_downsample, voxel_spacing
from softlabels.data.splits import SPLITS, _check_fractions

__all__ = [
    "MNI152_CLASS_NAMES",
    "MNI152_FILES",
    "MNI152_LICENSE",
    "MNI152_REFERENCES",
    "MNI152_SHAPE",
    "MNI152Volumes",
    "load_mni152",
    "mni152_datamodule",
    "mni152_datasets",
    "mni152_soft_target",
    "slab_splits",
]

MNI152_SHAPE: tuple[int, int, int] = (197, 233, 189)  # the bundled grid: 1 mm, RAS, origin (-98, -134, -72) mm

MNI152_FILES: Mapping[str, str] = MappingProxyType(
    {key: f"mni_icbm152_{key}_tal_nlin_sym_09a_converted.nii.gz" for key in ("t1", "gm", "wm")}
)
"""The three file names in nilearn's ``datasets/data`` folder (or a ``root=`` folder), by key."""

MNI152_CLASS_NAMES: Mapping[int, tuple[str, ...]] = MappingProxyType(
    {3: ("other", "grey matter", "white matter"), 4: ("background", "CSF-like", "grey matter", "white matter")}
)
"""The class names of the 3- and 4-class soft targets, in channel order."""

MNI152_LICENSE: str = (
    "Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill "
    "University. Permission to use, copy, modify, and distribute this software and its documentation for any "
    "purpose and without fee is hereby granted, provided that the above copyright notice appear in all copies. The "
    "authors and McGill University make no representations about the suitability of this software for any purpose. "
    'It is provided "as is" without express or implied warranty. The authors are not responsible for any data '
    "loss, equipment damage, property loss, or injury to subjects or patients resulting from the use or misuse of "
    "this software package."
)
"""The MNI ICBM152 2009 notice; it must be kept with the data and with anything derived from it."""

MNI152_REFERENCES: tuple[str, ...] = (
    "V. S. Fonov, A. C. Evans, K. Botteron, C. R. Almli, R. C. McKinstry, D. L. Collins and the Brain Development "
    "Cooperative Group. Unbiased average age-appropriate atlases for pediatric studies. NeuroImage 54(1):313-327, "
    "2011. doi:10.1016/j.neuroimage.2010.07.033",
    "V. S. Fonov, A. C. Evans, R. C. McKinstry, C. R. Almli and D. L. Collins. Unbiased nonlinear average "
    "age-appropriate brain templates from birth to adulthood. NeuroImage 47(Suppl. 1):S102, 2009 (OHBM 2009 "
    "abstract). doi:10.1016/S1053-8119(09)70884-5",
)
"""What to cite when using the template."""

_TOLERANCE = 1e-6  # GM + WM may exceed 1 by this much (float rounding of the uint8 codes) and no more
_AXES: Mapping[str, int] = MappingProxyType({"sagittal": 0, "coronal": 1, "axial": 2})
_MIDLINE = (MNI152_SHAPE[0] - 1) // 2  # x index 98 (0 mm): the template is mirror-symmetric about it
_DEFAULT_SLABS = 10
_WHERE = "mni152_datasets"
Slabs = list[tuple[int, int, str]]


@dataclass(frozen=True)
class MNI152Volumes:
    """The three maps on the ``(x, y, z)`` voxel grid, float64 in [0, 1], as :func:`load_mni152` returns them.

    Args:
        t1: the skull-stripped T1 template (0 outside the brain).
        gm: grey-matter probability.
        wm: white-matter probability.
        affine: the 4×4 voxel-to-world (mm, RAS) matrix.
        paths: the files read, by key (``"t1"``, ``"gm"``, ``"wm"``); empty for hand-made volumes.

    Raises:
        ValueError: maps of different or non-3D shapes, or values outside [0, 1].

    Example:
        >>> vol = MNI152Volumes(t1=np.ones((2, 2, 2)), gm=np.full((2, 2, 2), 0.5), wm=np.zeros((2, 2, 2)))
        >>> vol.gm.shape
        (2, 2, 2)
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    paths: Mapping[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("t1", "gm", "wm"):
            array = getattr(self, key)
            if not isinstance(array, np.ndarray) or array.ndim != 3 or array.shape != self.t1.shape:
                got = getattr(array, "shape", array)
                raise ValueError(f"`{key}` of MNI152Volumes must be a 3D array shaped like `t1`; got {got}.")
            if not (np.all(array >= 0.0) and np.all(array <= 1.0)):
                raise ValueError(f"`{key}` of MNI152Volumes must lie in [0, 1]; got [{array.min()}, {array.max()}].")


def _nilearn_data() -> Path:
    """``<site-packages>/nilearn/datasets/data``, found without importing nilearn."""
    spec = importlib.util.find_spec("nilearn")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModuleNotFoundError(
            "load_mni152: nilearn is not installed; its wheel carries the MNI152 files. Install it without its "
            "dependencies (only its data files are read): `pip install --no-deps nilearn`; or pass `root=` a folder "
            f"with {list(MNI152_FILES.values())}."
        )
    return Path(locations[0]) / "datasets" / "data"


def _read_map(path: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    name = f"load_mni152: the MNI152 {key} file {str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{name} is missing; the folder must hold {list(MNI152_FILES.values())}.")
    try:
        image: Any = nib.load(path)
        dtype, proxy = image.get_data_dtype(), image.dataobj
        values = np.asarray(image.get_fdata(dtype=np.float64))
    except (ImageFileError, OSError, EOFError, ValueError, zlib.error) as err:
        raise ValueError(f"{name} could not be read as NIfTI ({type(err).__name__}: {err}).") from err
    if values.shape != MNI152_SHAPE:
        raise ValueError(f"{name} must be {MNI152_SHAPE}; got shape {values.shape}.")
    unscaled = float(getattr(proxy, "slope", 1.0)) == 1.0 and float(getattr(proxy, "inter", 0.0)) == 0.0
    if dtype == np.uint8 and unscaled:
        return values / 255.0, np.asarray(image.affine)
    if values.min() >= 0.0 and values.max() <= 1.0:
        return values, np.asarray(image.affine)
    raise ValueError(f"{name} must hold uint8 codes 0..255 or values in [0, 1]; got {dtype} in [{values.min()}, …].")


def load_mni152(root: str | os.PathLike[str] | None = None) -> MNI152Volumes:
    """Read the T1, GM and WM maps (offline) and scale them to [0, 1].

    A file stored as uint8 without intensity scaling (the bundled ones: header dtype uint8, codes 0..255) is divided
    by 255; a file whose values already lie in [0, 1] is used as is; anything else is refused.

    Args:
        root: a folder holding the three :data:`MNI152_FILES` (``None``: nilearn's bundled copy).

    Returns:
        The volumes, each ``(197, 233, 189)`` float64.

    Raises:
        ModuleNotFoundError: ``root`` is ``None`` and nilearn is not installed.
        FileNotFoundError: ``root`` or one of the files does not exist (named).
        ValueError: a file is unreadable or corrupt, has the wrong shape or value range, or the affines differ.

    Example:
        >>> vol = load_mni152()
        >>> vol.t1.shape, float(vol.gm.max()), sorted(vol.paths)
        ((197, 233, 189), 1.0, ['gm', 't1', 'wm'])
    """
    if root is not None and not Path(root).is_dir():
        raise FileNotFoundError(f"`root` of load_mni152 must be an existing folder; got {str(root)!r}.")
    folder = _nilearn_data() if root is None else Path(root)
    paths = {key: folder / name for key, name in MNI152_FILES.items()}
    maps = {key: _read_map(path, key) for key, path in paths.items()}
    for key, (_, affine) in maps.items():
        if not np.allclose(affine, maps["t1"][1]):
            raise ValueError(f"load_mni152: the affine of {str(paths[key])!r} differs from the T1's; got {affine}.")
    return MNI152Volumes(maps["t1"][0], maps["gm"][0], maps["wm"][0], maps["t1"][1], MappingProxyType(paths))


def _check_int(name: str, value: object, minimum: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"`{name}` of {where} must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _check_class_options(num_classes: object, brain_threshold: object, where: str) -> tuple[int, float]:
    if isinstance(num_classes, bool) or num_classes not in MNI152_CLASS_NAMES:
        raise ValueError(f"`num_classes` of {where} must be 3 or 4; got {num_classes!r}.")
    ok = isinstance(brain_threshold, int | float) and not isinstance(brain_threshold, bool)
    if not ok or not 0.0 <= brain_threshold < 1.0:  # type: ignore[operator]
        raise ValueError(f"`brain_threshold` of {where} must be a number in [0, 1); got {brain_threshold!r}.")
    return int(num_classes), float(brain_threshold)  # type: ignore[call-overload, arg-type]


def mni152_soft_target(volumes: MNI152Volumes, *, num_classes: int = 3, brain_threshold: float = 0.0) -> np.ndarray:
    """The soft tissue target: a distribution over the classes at every voxel.

    3 classes: ``[1 − GM − WM, GM, WM]``. 4 classes, with the brain mask ``m = T1 > brain_threshold``:
    ``[(1 − m)(1 − GM − WM), m(1 − GM − WM), GM, WM]``, so ``CSF-like = m − GM − WM`` inside the mask; outside it GM/WM
    are kept (they reach 0.498 past the T1's support) and the rest is background: nothing negative, nothing clipped.
    ``GM + WM > 1 + 1e-6`` is an error; a smaller excess is float rounding (``1 − g − w`` is ``-1.1e-16`` at 103
    bundled voxels whose codes sum to 255; ``1 − (g + w)``, used here, at none), and ``1 − GM − WM`` is set to 0 there.

    Args:
        volumes: the maps (:func:`load_mni152`).
        num_classes: 3 or 4 (:data:`MNI152_CLASS_NAMES`).
        brain_threshold: the T1 level of the brain mask (4 classes); 0 keeps the template's own skull-stripped
            support, nilearn's ``load_mni152_brain_mask`` uses 0.2.

    Returns:
        ``(C, *volumes.t1.shape)`` float64 whose channels sum to 1 (within 1e-6) and lie in [0, 1].

    Raises:
        ValueError: a bad option, or ``GM + WM > 1 + 1e-6`` somewhere (count, largest value, voxel and files named).

    Example:
        >>> vol = MNI152Volumes(t1=np.array([[[0.0, 0.8]]]), gm=np.array([[[0.1, 0.5]]]), wm=np.array([[[0.0, 0.3]]]))
        >>> mni152_soft_target(vol, num_classes=4)[:, 0, 0].round(3).tolist()
        [[0.9, 0.0], [0.0, 0.2], [0.1, 0.5], [0.0, 0.3]]
    """
    num_classes, brain_threshold = _check_class_options(num_classes, brain_threshold, "mni152_soft_target")
    other = 1.0 - (volumes.gm + volumes.wm)
    if other.min() < -_TOLERANCE:
        voxel = tuple(int(i) for i in np.unravel_index(int(np.argmin(other)), other.shape))
        raise ValueError(
            f"mni152_soft_target: GM + WM must be <= 1 at every voxel; {int((other < -_TOLERANCE).sum())} voxel(s) "
            f"exceed it by more than {_TOLERANCE}, largest {1.0 - float(other.min())} at voxel {voxel} (files "
            f"{[str(volumes.paths.get(k, '?')) for k in ('gm', 'wm')]})."
        )
    other[other < 0.0] = 0.0  # only float rounding (> -1e-6, checked above) reaches this
    if num_classes == 3:
        return np.stack([other, volumes.gm, volumes.wm])
    mask = volumes.t1 > brain_threshold
    return np.stack([np.where(mask, 0.0, other), np.where(mask, other, 0.0), volumes.gm, volumes.wm])


def _slab_counts(num_slabs: int, fractions: tuple[float, ...]) -> list[int]:
    positive = [f > 0 for f in fractions]
    if num_slabs < sum(positive):
        raise ValueError(
            f"`num_slabs` of slab_splits must be >= the non-empty splits ({sum(positive)}); got {num_slabs}."
        )
    raw = [f * num_slabs for f in fractions]
    counts = [max(int(r), 1) if p else 0 for r, p in zip(raw, positive, strict=True)]
    while sum(counts) > num_slabs:
        counts[max(range(3), key=lambda i: counts[i])] -= 1
    while sum(counts) < num_slabs:
        counts[max(range(3), key=lambda i: (raw[i] - counts[i], -i))] += 1
    return counts


def slab_splits(
    start: int,
    stop: int,
    *,
    num_slabs: int = _DEFAULT_SLABS,
    gap: int = 4,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> Slabs:
    """Cut slices ``[start, stop)`` into consecutive slabs with ``gap`` unused slices between them; assign each.

    The slabs have equal sizes (the first ones one slice more when it does not divide). Each split with a positive
    fraction gets at least one slab, the rest go by the largest remainder of ``fraction · num_slabs``; which slabs
    go where is decided by ranking slab ``k`` by SHA-256 of ``(seed, k)`` (as :func:`~softlabels.data.splits.split_ids`
    does), so it is the same on every machine. Samples of different splits are at least ``gap + 1`` slices apart.

    Args:
        start: first slice.
        stop: one past the last slice.
        num_slabs: number of slabs.
        gap: unused slices between consecutive slabs.
        fractions: ``(train, val, test)`` shares of the slabs.
        seed: changes the assignment.

    Returns:
        ``[(lo, hi, split), ...]`` in slice order: slab ``k`` covers slices ``lo..hi-1``.

    Raises:
        ValueError: bad numbers, or the slabs do not fit.

    Example:
        >>> slab_splits(0, 28, num_slabs=5, gap=2, fractions=(0.6, 0.2, 0.2), seed=0)
        [(0, 4, 'val'), (6, 10, 'train'), (12, 16, 'test'), (18, 22, 'train'), (24, 28, 'train')]
    """
    values = _check_fractions(fractions, "slab_splits")
    num_slabs, gap = _check_int("num_slabs", num_slabs, 1, "slab_splits"), _check_int("gap", gap, 0, "slab_splits")
    usable = stop - start - gap * (num_slabs - 1)
    if usable < num_slabs:
        raise ValueError(
            f"`num_slabs` {num_slabs} with `gap` {gap} do not fit in slices [{start}, {stop}) (slab_splits)."
        )
    base, extra = divmod(usable, num_slabs)
    lows = [start + k * (base + gap) + min(k, extra) for k in range(num_slabs)]
    ranked = sorted(range(num_slabs), key=lambda k: hashlib.sha256(f"{seed}\0slab{k}".encode()).hexdigest())
    names = [name for name, n in zip(SPLITS, _slab_counts(num_slabs, values), strict=True) for _ in range(n)]
    split_of = dict(zip(ranked, names, strict=True))
    return [(lo, lo + base + (k < extra), split_of[k]) for k, lo in enumerate(lows)]


@dataclass(frozen=True)
class _Options:
    num_classes: int
    mode: str
    axis: str
    patch_size: tuple[int, int, int]
    stride: tuple[int, int, int]
    downsample: int
    size_multiple: int | None
    resize: str
    normalize: str
    brain_threshold: float
    min_brain_voxels: int
    num_slabs: int | None
    gap: int
    fractions: tuple[float, ...]
    seed: int


def _check_sizes(name: str, value: object) -> tuple[int, int, int]:
    sizes: Any = (value,) * 3 if isinstance(value, int | np.integer) else value
    ok = isinstance(sizes, Sequence) and len(sizes) == 3
    if not ok or not all(isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 1 for s in sizes):
        raise ValueError(f"`{name}` of {_WHERE} must be an int >= 1 or 3 of them (x, y, z); got {value!r}.")
    return int(sizes[0]), int(sizes[1]), int(sizes[2])


def _check_options(**kw: Any) -> _Options:
    choices = {"mode": ("slices", "patches"), "axis": tuple(_AXES), "resize": ("pad", "crop")}
    for name, allowed in {**choices, "normalize": ("none", "zscore")}.items():
        look_up_option(name, kw[name], allowed, where=_WHERE)
    minima = {"downsample": 1, "size_multiple": 1, "min_brain_voxels": 0, "num_slabs": 1, "gap": 0, "seed": 0}
    for name, minimum in minima.items():
        if kw[name] is not None or name not in ("size_multiple", "num_slabs"):
            _check_int(name, kw[name], minimum, _WHERE)
    if kw["mode"] == "patches" and (kw["axis"] == "sagittal" or kw["size_multiple"] is not None):
        raise ValueError(
            f"3D patches of {_WHERE} take `axis` 'axial' or 'coronal' (left-right slabs would put mirror copies in "
            f"different splits) and no `size_multiple`; got axis={kw['axis']!r}, size_multiple={kw['size_multiple']!r}."
        )
    kw["patch_size"] = _check_sizes("patch_size", kw["patch_size"])
    kw["stride"] = kw["patch_size"] if kw["stride"] is None else _check_sizes("stride", kw["stride"])
    kw["num_classes"], kw["brain_threshold"] = _check_class_options(kw["num_classes"], kw["brain_threshold"], _WHERE)
    kw["fractions"] = _check_fractions(kw["fractions"], _WHERE)
    return _Options(**kw)


def _working_grid(vol: MNI152Volumes, opts: _Options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    soft = mni152_soft_target(vol, num_classes=opts.num_classes, brain_threshold=opts.brain_threshold)
    t1, mask = vol.t1, (vol.t1 > opts.brain_threshold).astype(np.float64)
    if opts.downsample > 1:
        soft = area_downsample(soft, opts.downsample, fill=np.eye(opts.num_classes)[0])
        t1, mask = area_downsample(np.stack([t1, mask]), opts.downsample)
    return t1, soft, mask >= 0.5


def _fit_axis(t1: np.ndarray, soft: np.ndarray, brain: np.ndarray, axis: int, opts: _Options) -> tuple[Any, ...]:
    # pad (centred, with background) or crop (keeping every non-background voxel) `axis` to a multiple
    size, multiple = t1.shape[axis], opts.size_multiple or 1
    if opts.resize == "pad":
        new = -(-size // multiple) * multiple
        widths = [((new - size) // 2, new - size - (new - size) // 2) if a == axis else (0, 0) for a in range(3)]
        soft = np.stack([np.pad(c, widths, constant_values=float(k == 0)) for k, c in enumerate(soft)])
        return np.pad(t1, widths), soft, np.pad(brain, widths), -widths[axis][0]
    new = size // multiple * multiple
    keep = np.nonzero(np.any((soft[0] < 1.0) | (t1 > 0.0), axis=tuple(a for a in range(3) if a != axis)))[0]
    lo, hi = (int(keep[0]), int(keep[-1]) + 1) if keep.size else (0, 0)
    if new == 0 or hi - lo > new:
        raise ValueError(f"`size_multiple` of {_WHERE}: a crop of axis {axis} would cut brain; got {multiple}.")
    offset = min(max((size - new) // 2, hi - new), lo)
    rows = np.arange(offset, offset + new)
    return t1.take(rows, axis), soft.take(rows, axis + 1), brain.take(rows, axis), offset


def _normalise(t1: np.ndarray, brain: np.ndarray, slabs: Slabs, axis: int, opts: _Options) -> Any:
    """Z-score with the mean/std of the brain voxels in the training slabs (``"none"``: unchanged)."""
    if opts.normalize == "none":
        return t1, {}
    rows = [i for lo, hi, split in slabs if split == "train" for i in range(lo, hi)]
    train = np.isin(np.arange(t1.shape[axis]), rows)
    values = t1[brain & np.expand_dims(train, tuple(a for a in range(3) if a != axis))]
    mean, std = float(values.mean()), float(values.std())
    return (t1 - mean) / std, {"normalize_mean": mean, "normalize_std": std}


def _sample(image: torch.Tensor, soft: torch.Tensor, label: torch.Tensor, slab: int, **position: Any) -> dict[str, Any]:
    origin = position.get("origin")  # a patch is named by its corner, a slice by its axis and index (working grid)
    parts = zip("xyz", origin.tolist(), strict=True) if origin is not None else [(position["axis"], position["index"])]
    case = "_".join([f"mni152_slab{slab:02d}", *(f"{a}{o:03d}" for a, o in parts)])
    return dict(image=image, soft_label=soft, label=label, case=case, slab=slab, **position)


def _slabs_over(counts: np.ndarray, minimum: int, opts: _Options) -> Slabs:
    """Slabs over the split axis, from the first to the last slice with ``>= minimum`` brain voxels."""
    valid = np.nonzero(counts >= max(minimum, 1))[0]
    if valid.size == 0:
        raise ValueError(f"`min_brain_voxels` of {_WHERE}: no {opts.axis} slice has {max(minimum, 1)} brain voxels.")
    lo, hi = int(valid[0]), int(valid[-1]) + 1
    depth = opts.patch_size[_AXES[opts.axis]] if opts.mode == "patches" else 1
    num_slabs = opts.num_slabs or max(1, min(_DEFAULT_SLABS, (hi - lo + opts.gap) // (depth + opts.gap)))
    slabs = slab_splits(lo, hi, num_slabs=num_slabs, gap=opts.gap, fractions=opts.fractions, seed=opts.seed)
    if min(b - a for a, b, _ in slabs) < depth:
        raise ValueError(f"`patch_size` of {_WHERE}: {depth} slices do not fit in a slab; use fewer `num_slabs`.")
    return slabs


def _slice_samples(t1: np.ndarray, soft: np.ndarray, brain: np.ndarray, opts: _Options) -> tuple[Any, ...]:
    axis = _AXES[opts.axis]
    counts = brain.sum(axis=tuple(a for a in range(3) if a != axis))
    if axis == 0:  # the right hemisphere's sagittal slices are mirror copies of the left's: keep x <= midline
        counts = counts[: (_MIDLINE + 1) // opts.downsample]
    slabs = _slabs_over(counts, opts.min_brain_voxels, opts)
    offsets = [0, 0, 0]
    for a in (a for a in range(3) if a != axis and opts.size_multiple is not None):
        t1, soft, brain, offsets[a] = _fit_axis(t1, soft, brain, a, opts)
    t1, extra = _normalise(t1, brain, slabs, axis, opts)
    image = torch.from_numpy(np.ascontiguousarray(np.moveaxis(t1, axis, 0), dtype=np.float32))
    target = torch.from_numpy(np.ascontiguousarray(np.moveaxis(soft, axis + 1, 0), dtype=np.float32))
    label = target.argmax(dim=1)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for k, (lo, hi, split) in enumerate(slabs):
        for i in (i for i in range(lo, hi) if counts[i] >= opts.min_brain_voxels):
            samples[split].append(_sample(image[i][None], target[i], label[i][None], k, axis=opts.axis, index=i))
    return samples, slabs, {**extra, "offsets": offsets}


def _patch_samples(t1: np.ndarray, soft: np.ndarray, brain: np.ndarray, opts: _Options) -> tuple[Any, ...]:
    axis, size, stride = _AXES[opts.axis], opts.patch_size, opts.stride
    if any(p > n for p, n in zip(size, brain.shape, strict=True)):
        raise ValueError(f"`patch_size` of {_WHERE} must fit in the grid {brain.shape}; got {size}.")
    slabs = _slabs_over(brain.sum(axis=tuple(a for a in range(3) if a != axis)), 1, opts)
    t1, extra = _normalise(t1, brain, slabs, axis, opts)
    image = torch.from_numpy(t1.astype(np.float32))[None]
    target = torch.from_numpy(soft.astype(np.float32))
    label = target.argmax(dim=0, keepdim=True)
    ranges = [range(0, n - p + 1, s) for n, p, s in zip(brain.shape, size, stride, strict=True)]
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for k, (a, b, split) in enumerate(slabs):
        ranges[axis] = range(a, b - size[axis] + 1, stride[axis])
        for origin in itertools.product(*ranges):
            box = (slice(None), *(slice(o, o + p) for o, p in zip(origin, size, strict=True)))
            if int(brain[box[1:]].sum()) >= opts.min_brain_voxels:
                position = {"axis": opts.axis, "index": origin[axis], "origin": torch.tensor(origin)}
                samples[split].append(_sample(image[box], target[box], label[box], k, **position))
    return samples, slabs, extra


def _info(vol: MNI152Volumes, opts: _Options, slabs: Slabs, extra: dict[str, Any]) -> dict[str, Any]:
    scale = np.diag([opts.downsample] * 3 + [1.0])
    scale[:3, 3] = (opts.downsample - 1) / 2 + np.asarray(extra.get("offsets", [0, 0, 0])) * opts.downsample
    sizes = [s * opts.downsample for s in voxel_spacing(vol.affine)]  # mm
    return {
        "task": "segmentation",
        "num_classes": opts.num_classes,
        "class_names": list(MNI152_CLASS_NAMES[opts.num_classes]),
        "spatial_dims": 2 if opts.mode == "slices" else 3,
        "description": "MNI ICBM152 2009a symmetric template (nilearn's files): one population template, a nonlinear "
        "average of 152 healthy adults; T1 input, real probabilistic tissue maps as targets (not annotator "
        "disagreement); samples of one volume are not independent, the left and right halves are mirror copies.",
        "license": MNI152_LICENSE,
        "references": list(MNI152_REFERENCES),
        "source_files": {key: str(path) for key, path in vol.paths.items()},
        "split_axis": opts.axis,
        "slabs": {name: [(lo, hi) for lo, hi, split in slabs if split == name] for name in SPLITS},
        "config": asdict(opts),
        "affine": (vol.affine @ scale).tolist(),
        "spacing": [s for a, s in enumerate(sizes) if opts.mode == "patches" or a != _AXES[opts.axis]],  # a sample's
        "input_pipeline": _input_pipeline(vol, opts, extra).to_dict(),
        **extra,
    }


def _input_pipeline(vol: MNI152Volumes, opts: _Options, extra: dict[str, Any]) -> InputPipeline:
    """How a new T1 volume is prepared as these samples were (a brain-dependent crop becomes a pad to the multiple)."""
    slices = opts.mode == "slices"
    normalize = (extra["normalize_mean"], extra["normalize_std"]) if "normalize_mean" in extra else None
    return InputPipeline(
        2 if slices else 3, orientation="".join(nib.aff2axcodes(vol.affine)),
        spacing=tuple(s * opts.downsample for s in voxel_spacing(vol.affine)), intensity="max", normalize=normalize,
        size_multiple=opts.size_multiple if slices else None, slice_axis=_AXES[opts.axis] if slices else None,
    )  # fmt: skip


def mni152_datasets(
    volumes: MNI152Volumes | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    num_classes: int = 3,
    mode: Literal["slices", "patches"] = "slices",
    axis: Literal["axial", "coronal", "sagittal"] = "axial",
    patch_size: int | Sequence[int] = 32,
    stride: int | Sequence[int] | None = None,
    downsample: int = 1,
    size_multiple: int | None = None,
    resize: Literal["pad", "crop"] = "pad",
    normalize: Literal["none", "zscore"] = "none",
    brain_threshold: float = 0.0,
    min_brain_voxels: int = 500,
    num_slabs: int | None = None,
    gap: int = 4,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[SampleDataset, SampleDataset, SampleDataset]:
    """Train/val/test :class:`~softlabels.data.datamodule.SampleDataset` s of MNI152 slices or patches, soft targets.

    Soft target (:func:`mni152_soft_target`) and T1 are area-averaged by ``downsample``; the brain is ``T1 >
    brain_threshold`` (a coarse voxel counts when half of it is brain). ``axis`` is cut into slabs over the slices
    holding brain (:func:`slab_splits`); sagittal slices come from x ≤ the midline only (the rest are mirror copies).
    A slice or patch (on the ``stride`` grid, inside one slab) is kept with ``≥ min_brain_voxels`` brain voxels.
    Samples: ``"image"`` ``(1, *spatial)`` float32 (T1 in [0, 1], or z-scored by the training slabs' brain voxels),
    ``"soft_label"`` ``(C, *spatial)`` float32, ``"label"`` ``(1, *spatial)`` int64 (argmax, first class on ties),
    ``"case"`` (slab and position: ``mni152_slab02_axial045``, a patch ``mni152_slab02_x000_y016_z032``), ``"slab"``,
    ``"axis"``, ``"index"`` (slice, or patch start, on the split axis), for patches ``"origin"``; no ``"true_probs"``.
    Tensors are views of shared volumes: transforms must not write in place.

    Args:
        volumes: loaded maps (``None``: :func:`load_mni152` of ``root``).
        root: a folder with the three files (``None``: nilearn's).
        num_classes: 3 or 4 (:data:`MNI152_CLASS_NAMES`).
        mode: ``"slices"`` (2D) or ``"patches"`` (3D).
        axis: slicing and split axis: ``"axial"``, ``"coronal"`` or ``"sagittal"`` (not for patches).
        patch_size: patch size (x, y, z) or one int.
        stride: patch grid step (``None``: ``patch_size``).
        downsample: area-averaging factor (2: 99×117×95 voxels of 2 mm).
        size_multiple: pad/crop slice sides to a multiple of this (``None``: keep).
        resize: ``"pad"`` or ``"crop"``.
        normalize: ``"none"`` or ``"zscore"``.
        brain_threshold: T1 level of the brain mask.
        min_brain_voxels: brain voxels (of the working grid) a slice or patch needs.
        num_slabs: slabs (``None``: 10 for slices; for patches as many as hold a patch, at most 10).
        gap: unused slices between slabs (of the working grid).
        fractions: ``(train, val, test)`` shares of the slabs.
        seed: the slab assignment seed.
        transform: applied on access by all three datasets (set ``train.transform`` for training only).

    Returns:
        ``(train, val, test)``; ``info`` holds ``num_classes``, ``class_names``, ``spatial_dims``, ``description``,
        ``license``, ``references``, ``source_files``, ``slabs`` (every split's ranges), ``config``, ``affine``.

    Raises:
        ValueError: a bad option (named, quoting what came in), both ``volumes`` and ``root``, or an empty split.

    Example:
        >>> train, val, test = mni152_datasets(downsample=4, min_brain_voxels=50, num_slabs=5, gap=1)
        >>> tuple(train[0]["image"].shape), tuple(train[0]["soft_label"].shape), train.info["class_names"]
        ((1, 50, 59), (3, 50, 59), ['other', 'grey matter', 'white matter'])
    """
    opts = _check_options(**{k: v for k, v in locals().items() if k not in ("volumes", "root", "transform")})
    if volumes is not None and root is not None:
        raise ValueError(f"{_WHERE} takes `volumes` or `root`, not both; got root={str(root)!r}.")
    vol = load_mni152(root) if volumes is None else volumes
    t1, soft, brain = _working_grid(vol, opts)
    samples, slabs, extra = (_slice_samples if opts.mode == "slices" else _patch_samples)(t1, soft, brain, opts)
    empty = [name for name, f in zip(SPLITS, opts.fractions, strict=True) if f > 0 and not samples[name]]
    if empty:
        raise ValueError(f"`min_brain_voxels` of {_WHERE}: {empty} got no {opts.mode}; got {opts.min_brain_voxels}.")
    info = _info(vol, opts, slabs, extra)
    train, val, test = (SampleDataset(samples[name], transform, info={**info, "split": name}) for name in SPLITS)
    return train, val, test


def mni152_datamodule(
    volumes: MNI152Volumes | None = None,
    *,
    batch_size: int = 8,
    eval_batch_size: int | None = None,
    num_workers: int = 0,
    loader_seed: int = 0,
    **options: Any,
) -> SoftLabelDataModule:
    """A :class:`~softlabels.data.datamodule.SoftLabelDataModule` over :func:`mni152_datasets` (``options`` go to it).

    Example:
        >>> dm = mni152_datamodule(downsample=4, min_brain_voxels=50, num_slabs=5, gap=1, batch_size=2)
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["image"].shape), tuple(batch["soft_label"].shape), batch["label"].dtype
        ((2, 1, 50, 59), (2, 3, 50, 59), torch.int64)
    """
    loaders: dict[str, Any] = {"batch_size": batch_size, "eval_batch_size": eval_batch_size, "num_workers": num_workers}
    return SoftLabelDataModule(*mni152_datasets(volumes, **options), **loaders, seed=loader_seed)
