"""The two segmentation folder layouts: finding each case's files, checking their headers, reading a sample.

* **generic** (:func:`index_generic`): ``images/<case>``, and optionally ``labels/<case>``, ``raters/<rater>/<case>``,
  ``probs/<case>``, ``confidence/<case>``; cases matched by file name stem, and every folder present must hold
  exactly the cases of ``images/`` (a few names of each unmatched side are listed).
* **QUBIQ** (:func:`softlabels.data.folder_qubiq.index_qubiq`): ``<case>/image.nii.gz`` and
  ``<case>/task<TT>_seg<RR>.nii.gz``, one binary map per rater ``RR`` of task ``TT``.

:func:`check_case` reads only headers: the spatial shapes of the image and of every map must agree (after dropping
trailing axes of size 1), rater maps must share one shape, NIfTI voxel sizes must agree within a relative 1e-3, and a
soft map must have ``num_classes`` channels (or one, the foreground of a binary task). :func:`load_sample` reads
the values (checked by :mod:`softlabels.data.folder_checks`) into a sample dict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softlabels.data.folder_checks import (
    FileHeader,
    ImageLayout,
    image_layout,
    is_nifti,
    read_confidence,
    read_header,
    read_image,
    read_labels,
    read_soft_label,
    squeeze_shape,
)
from softlabels.data.prediction_files import LABEL_SUFFIXES, _check_folder, _few, case_stem

__all__ = ["SegmentationCase", "check_case", "index_generic", "load_sample"]

_NIFTI = (".nii.gz", ".nii")
_SPACING_RTOL = 1e-3  # relative tolerance between the voxel sizes of an image and its maps


@dataclass(frozen=True)
class SegmentationCase:
    """The files of one segmentation case: its name, image and optional label, rater, soft and confidence maps.

    Example:
        >>> SegmentationCase("a", Path("images/a.png"), label=Path("labels/a.png")).raters
        ()
    """

    name: str
    image: Path
    label: Path | None = None
    raters: tuple[Path, ...] = ()
    probs: Path | None = None
    confidence: Path | None = None


def map_shape(header: FileHeader, what: str) -> tuple[int, ...]:
    """The spatial shape of a label, rater or confidence map from its header (``what`` names it in errors)."""
    if header.is_png:
        if len(header.shape) != 2:
            raise ValueError(
                f"the {what} PNG {str(header.path)!r} must have one channel; got mode {header.mode!r} "
                f"with {header.shape[2]} bands."
            )
        return header.shape
    shape = squeeze_shape(header.shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"the {what} {str(header.path)!r} must have 2 or 3 spatial axes; got shape {header.shape}.")
    return shape


def probs_shape(header: FileHeader) -> tuple[int, tuple[int, ...]]:
    """``(C, spatial shape)`` of a soft map from its header, by the rules of ``read_probs``."""
    shape = header.shape
    if header.is_png:
        raise ValueError(
            f"the soft map {str(header.path)!r} must be a NIfTI file (x, y, z, C); PNG is not accepted (8-bit "
            "values cannot sum to 1 within 1e-4)."
        )
    if len(shape) == 5 and shape[3] == 1:
        shape = shape[:3] + shape[4:]
    if len(shape) == 4:
        return shape[3], squeeze_shape(shape[:3])
    if len(shape) == 3:
        return 1, squeeze_shape(shape)
    raise ValueError(f"the soft map {str(header.path)!r} must be (x, y, z, C) or (x, y, z); got shape {header.shape}.")


def check_spacing(header: FileHeader, other: FileHeader, spatial_dims: int, case: str) -> None:
    """Raise if two NIfTI files' voxel sizes differ by more than 0.1 % (relative) on a spatial axis."""
    if header.spacing is None or other.spacing is None:
        return
    a, b = np.asarray(header.spacing[:spatial_dims]), np.asarray(other.spacing[:spatial_dims])
    if a.shape != b.shape or np.any(np.abs(a - b) > _SPACING_RTOL * np.maximum(np.abs(a), np.abs(b))):
        raise ValueError(
            f"case {case!r}: spacing mismatch: the image {str(header.path)!r} has voxel size "
            f"{tuple(a.tolist())} but {str(other.path)!r} has {tuple(b.tolist())} (relative tolerance "
            f"{_SPACING_RTOL:g})."
        )


def _index(folder: Path, suffixes: Sequence[str], what: str) -> dict[str, Path]:
    """Case name → file of ``folder`` (one file per case: two files of one stem are an error)."""
    folder = _check_folder(folder, what)
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem = case_stem(path)
        if stem is None or not path.is_file() or not path.name.lower().endswith(tuple(suffixes)):
            continue
        if stem in found:
            raise ValueError(f"case {stem!r} has two files in the {what} folder: {found[stem].name}, {path.name}.")
        found[stem] = path
    if not found:
        raise ValueError(f"no {' / '.join(suffixes)} files in the {what} folder {str(folder)!r}.")
    return found


def _match(images: dict[str, Path], other: dict[str, Path], folder: Path) -> None:
    no_file = [images[n].name for n in images if n not in other]
    no_image = [other[n].name for n in other if n not in images]
    parts = []
    if no_file:
        parts.append(f"{len(no_file)} image(s) without a file in {str(folder)!r}: {_few(no_file)}")
    if no_image:
        parts.append(f"{len(no_image)} file(s) in {str(folder)!r} without an image in images/: {_few(no_image)}")
    if parts:
        raise ValueError("cases are matched by file name stem; " + "; ".join(parts) + ".")


def index_generic(root: Path | str) -> tuple[list[SegmentationCase], list[str]]:
    """Find the cases of a generic-layout folder and match their files by stem (headers are not read).

    Args:
        root: the folder holding ``images/`` and optionally ``labels/``, ``raters/``, ``probs/``, ``confidence/``.

    Returns:
        ``(cases sorted by name, rater folder names in sorted order)``.

    Raises:
        FileNotFoundError: no ``images/`` folder.
        ValueError: an empty folder, a rater folder without sub-folders, two files of one case in a folder, or
            unmatched cases (up to 5 file names of each side are listed).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for name in ("images/a.png", "images/b.png", "raters/r1/a.png", "raters/r1/b.png"):
        ...         Path(tmp, name).parent.mkdir(parents=True, exist_ok=True)
        ...         _ = Path(tmp, name).write_bytes(b"")
        ...     cases, raters = index_generic(tmp)
        >>> [c.name for c in cases], [c.raters[0].name for c in cases], raters
        (['a', 'b'], ['a.png', 'b.png'], ['r1'])
    """
    root = Path(root)
    images = _index(root / "images", LABEL_SUFFIXES, "images")
    found: dict[str, dict[str, Path]] = {}
    for name, suffixes in (("labels", LABEL_SUFFIXES), ("probs", _NIFTI), ("confidence", LABEL_SUFFIXES)):
        if (root / name).is_dir():
            found[name] = _index(root / name, suffixes, name)
            _match(images, found[name], root / name)
    rater_names: list[str] = []
    raters: list[dict[str, Path]] = []
    if (root / "raters").is_dir():
        dirs = sorted(d for d in (root / "raters").iterdir() if d.is_dir() and not d.name.startswith("."))
        if not dirs:
            raise ValueError(
                f"the raters folder {str(root / 'raters')!r} must hold one sub-folder per rater; found none."
            )
        for d in dirs:
            raters.append(_index(d, LABEL_SUFFIXES, f"raters/{d.name}"))
            _match(images, raters[-1], d)
        rater_names = [d.name for d in dirs]
    cases = [
        SegmentationCase(
            n,
            images[n],
            found.get("labels", {}).get(n),
            tuple(r[n] for r in raters),
            found.get("probs", {}).get(n),
            found.get("confidence", {}).get(n),
        )
        for n in sorted(images)
    ]
    return cases, rater_names


def check_case(case: SegmentationCase, num_classes: int) -> ImageLayout:
    """Read the headers of one case's files (not their voxels) and check that they fit together.

    Args:
        case: the case's files.
        num_classes: the number of classes (a soft map has this many channels, or 1 for a binary task).

    Returns:
        The image's :class:`~softlabels.data.folder_checks.ImageLayout` (channels, spatial shape).

    Raises:
        ValueError: a corrupt header, rater maps of different shapes, an image/map shape mismatch, a voxel size
            mismatch beyond the relative 1e-3, or a wrong number of soft-map channels (the files are named).

    Example:
        >>> import tempfile
        >>> import nibabel as nib
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for name in ("image", "label"):
        ...         nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.eye(4)), f"{tmp}/{name}.nii.gz")
        ...     layout = check_case(SegmentationCase("a", Path(tmp, "image.nii.gz"), Path(tmp, "label.nii.gz")), 2)
        >>> layout.channels, layout.spatial
        (1, (4, 5, 6))
    """
    image_header = read_header(case.image)
    maps = []
    for what, path in [("label map", case.label), *(("rater map", p) for p in case.raters)]:
        if path is not None:
            header = read_header(path)
            maps.append((what, header, map_shape(header, what)))
    raters = [m for m in maps if m[0] == "rater map"]
    for _, header, shape in raters[1:]:
        if shape != raters[0][2]:
            raise ValueError(
                f"case {case.name!r}: the rater maps differ in shape: {str(raters[0][1].path)!r} has "
                f"{raters[0][2]}, {str(header.path)!r} has {shape}."
            )
    if case.confidence is not None:
        header = read_header(case.confidence)
        maps.append(("confidence map", header, map_shape(header, "confidence map")))
    if case.probs is not None:
        header = read_header(case.probs)
        channels, shape = probs_shape(header)
        if channels != num_classes and not (channels == 1 and num_classes == 2):
            raise ValueError(
                f"the soft map {str(case.probs)!r} has {channels} class channel(s); expected num_classes={num_classes}."
            )
        maps.append(("soft map", header, shape))
    layout = image_layout(image_header, maps[0][2] if maps else None)
    for what, header, shape in maps:
        if shape != layout.spatial:
            raise ValueError(
                f"case {case.name!r}: shape mismatch: the image {str(case.image)!r} has spatial shape "
                f"{layout.spatial} but the {what} {str(header.path)!r} has {shape} (axes in (x, y[, z]) order)."
            )
        check_spacing(image_header, header, len(layout.spatial), case.name)
    return layout


def check_consistent(cases: Sequence[SegmentationCase], layouts: Mapping[str, ImageLayout]) -> None:
    """Raise unless every image has one format, one channel count and one number of spatial axes (batchable)."""
    first = cases[0]
    for case in cases[1:]:
        a, b = layouts[first.name], layouts[case.name]
        for what, x, y in (
            ("format (all NIfTI or all PNG)", is_nifti(first.image), is_nifti(case.image)),
            ("number of channels", a.channels, b.channels),
            ("number of spatial axes", len(a.spatial), len(b.spatial)),
        ):
            if x != y:
                raise ValueError(
                    f"the images must share one {what}: {str(first.image)!r} and {str(case.image)!r} differ "
                    f"({x!r} vs {y!r})."
                )


def _fit(array: np.ndarray, path: Path, spatial: tuple[int, ...]) -> np.ndarray:
    if array.shape[array.ndim - len(spatial) :] != spatial:
        raise ValueError(f"the file {str(path)!r} has shape {array.shape}, not {spatial} as when the folder was read.")
    return array


def load_sample(
    case: SegmentationCase, layout: ImageLayout, *, num_classes: int, qubiq: bool = False
) -> dict[str, Any]:
    """Read one case's files into a sample dict, checking their values (errors name the file).

    Keys: ``"image"`` ``(C_in, *spatial)`` float32, ``"case"``, and when present ``"label"`` ``(1, *spatial)`` and
    ``"raters"`` ``(R, *spatial)`` int64, ``"soft_label"`` ``(C, *spatial)`` and ``"confidence"`` ``(1, *spatial)``
    float32, ``"affine"`` ``(4, 4)`` and ``"spacing"`` ``(spatial_dims,)`` float64 (NIfTI images). With ``qubiq``,
    ``"soft_label"`` is the rater mean ``(1 − m, m)`` and ``"label"`` the strict majority ``votes ≥ ⌊R/2⌋ + 1``.

    Args:
        case: the case's files.
        layout: the image layout from :func:`check_case`.
        num_classes: the number of classes.
        qubiq: derive ``"soft_label"`` and ``"label"`` from binary rater maps.

    Returns:
        The sample.

    Raises:
        ValueError: unreadable files or bad values (non-integer or out-of-range labels, a soft map that is not a
            distribution, confidence outside [0, 1], NaN/inf in the image), naming the file.

    Example:
        >>> import tempfile
        >>> import nibabel as nib
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for r, value in enumerate((1, 1, 0)):
        ...         nib.save(nib.Nifti1Image(np.full((2, 2, 1), value, np.uint8), np.eye(4)), f"{tmp}/r{r}.nii.gz")
        ...     raters = tuple(Path(tmp, f"r{r}.nii.gz") for r in range(3))
        ...     case = SegmentationCase("a", raters[0], raters=raters)
        ...     sample = load_sample(case, check_case(case, 2), num_classes=2, qubiq=True)
        >>> sample["label"].tolist(), sample["soft_label"][:, 0, 0].tolist(), tuple(sample["spacing"].tolist())
        ([[[1, 1], [1, 1]]], [0.3333333432674408, 0.6666666865348816], (1.0, 1.0))
    """
    image, header = read_image(case.image, reference=layout.spatial)
    spatial = layout.spatial
    sample: dict[str, Any] = {"image": torch.from_numpy(_fit(image, case.image, spatial)), "case": case.name}
    if header.affine is not None and header.spacing is not None:
        sample["affine"] = torch.from_numpy(header.affine)
        sample["spacing"] = torch.tensor(header.spacing[: len(spatial)], dtype=torch.float64)
    if case.label is not None:
        sample["label"] = torch.from_numpy(_fit(read_labels(case.label, num_classes), case.label, spatial)[None])
    if case.raters:
        maps = [_fit(read_labels(p, num_classes, what="rater map"), p, spatial) for p in case.raters]
        sample["raters"] = torch.from_numpy(np.stack(maps))
    if case.probs is not None:
        sample["soft_label"] = torch.from_numpy(_fit(read_soft_label(case.probs, num_classes), case.probs, spatial))
    if case.confidence is not None:
        sample["confidence"] = torch.from_numpy(_fit(read_confidence(case.confidence), case.confidence, spatial)[None])
    if qubiq:
        votes = sample["raters"].sum(0)
        n_raters = len(case.raters)
        sample["soft_label"] = (torch.stack([n_raters - votes, votes]).double() / n_raters).float()
        sample["label"] = (votes >= n_raters // 2 + 1).long()[None]
    return sample
