"""Reading users' prediction and reference files, one case at a time: NIfTI, nnU-Net ``.npz`` and PNG label maps.

File conventions (every array ends up in one spatial order, NIfTI's voxel-index order ``(x, y[, z])``):

* **Probability maps** (``--probs``, ``--ref-probs``): a NIfTI ``.nii``/``.nii.gz`` volume with the classes on the
  **last** axis, ``(x, y, z, C)`` (a 2D map is stored as ``(x, y, 1, C)``; ITK's vector layout ``(x, y, z, 1, C)`` is
  accepted too), or a 3D ``(x, y, z)`` volume holding the foreground probability of a binary task (``C = 1``).
  Or an nnU-Net ``--save_probabilities`` file ``<case>.npz`` with the key ``probabilities`` shaped ``(C, z, y, x)``
  (its spatial axes are reversed on reading; the ``.pkl`` beside it gives its geometry, nested softlabels regions
  are decoded to ``(1 − p, p)``: :mod:`softlabels.data.nnunet_files`). When a folder holds ``<case>.npz`` and
  ``<case>.nii.gz`` (nnU-Net writes both: the probabilities and the segmentation), the ``.npz`` is used.
  Half-precision maps must sum to 1 within the 16-bit tolerance (1e-2); they are read as float32 and divided by their
  sum over the classes (float16 rounding alone breaks the 1e-4 sum tolerance of float32 inputs).
* **Label maps** (``--labels``, rater folders): NIfTI or single-channel PNG of integer labels. A PNG image
  ``(rows, columns)`` is transposed to ``(x, y)`` to match the NIfTI and nnU-Net orders.
* Trailing spatial axes of size 1 are dropped (down to 2 spatial axes), so a 2D slice stored as ``(x, y, 1)`` meets
  a 2D PNG label map. Voxel spacing comes from the NIfTI header zooms or an ``.npz``'s ``.pkl`` (none for PNG).

**Geometry** (NIfTI; an ``.npz`` with its ``.pkl``). When the prediction and a reference file (label map, rater map,
soft map) both have an affine, the reference is brought onto the **prediction's voxel grid**: the affines (their
first three, spatial, axes; the prediction's class axis is not spatial) say how the reference's axes are permuted and
flipped relative to the prediction's (``nibabel.orientations.io_orientation``/``ornt_transform``), the reference is
transposed and flipped accordingly, and the two grids must then be the same: voxel sizes, axis directions and origin
agree within 1e-3 mm + 1e-4 × the value (directions within 1e-3), else the case is refused naming the files.
Resampling is never done. Voxel sizes along axes of size 1 (a 2D slice stored as ``(x, y, 1)``) are not compared.
The spacing used (HD95) is then the prediction's. When the prediction has no affine (``.npz`` without ``.pkl``), the
rater maps of a case are brought onto the grid of its first NIfTI rater map by the same rules. PNG files and ``.npz``
without ``.pkl`` have no affine: their arrays are taken in the order above and only their shapes are compared.

Cases are matched by file name stem (the name without ``.nii.gz``, ``.nii``, ``.npz`` or ``.png``). Every file of a
folder named like a case file must be a readable file: a broken symbolic link, a link loop or a folder named
``case.nii.gz`` is an error naming it (so a case never silently vanishes), as is a broken link among rater folders.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, cast

import numpy as np
import torch
from torch import Tensor

from softlabels._options import look_up_option
from softlabels.data.nnunet_files import check_prediction_folder, nnunet_prediction

_HALF_SUM_TOLERANCE = 1e-2  # the metrics' tolerance on class sums of 16-bit probabilities
GEOMETRY_ATOL_MM, GEOMETRY_RTOL, DIRECTION_ATOL = 1e-3, 1e-4, 1e-3  # two grids agree within these

ReferenceKind = Literal["labels", "raters", "ref_probs"]
REFERENCE_KINDS: tuple[str, ...] = ("labels", "raters", "ref_probs")
PROBS_SUFFIXES: tuple[str, ...] = (".npz", ".nii.gz", ".nii")
LABEL_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".png")
_ALL_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".npz", ".png")
_SHOWN = 5  # names listed in an error message


class CaseFiles(NamedTuple):
    """The files of one case: its name, its probability map and its reference file(s) (one per rater for raters)."""

    name: str
    probs: Path
    reference: tuple[Path, ...]


@dataclass(frozen=True)
class Case:
    """One loaded case: ``probs (1, C, *spatial)`` float32, ``target`` ``(1, *spatial)`` int64 or soft float32.

    ``spacing`` is the voxel size from the NIfTI header (the prediction's, else the reference's), ``None`` if unknown.
    """

    name: str
    probs: Tensor
    target: Tensor
    spacing: tuple[float, ...] | None


def case_stem(path: Path | str) -> str | None:
    """The case name of a file (its name without a known suffix), or ``None`` for other files.

    Example:
        >>> case_stem("preds/case_001.nii.gz"), case_stem("case_001.npz"), case_stem("case_001.pkl")
        ('case_001', 'case_001', None)
    """
    name = Path(path).name
    if name.startswith("."):
        return None
    for suffix in _ALL_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _suffix(path: Path) -> str:
    return next(s for s in _ALL_SUFFIXES if path.name.lower().endswith(s))


def _check_folder(folder: Path, what: str) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"the {what} folder {str(folder)!r} does not exist.")
    if not folder.is_dir():
        raise FileNotFoundError(f"the {what} folder {str(folder)!r} is not a directory.")
    return folder


def _entries(folder: Path, what: str) -> Iterator[Path]:
    """The entries of ``folder``, sorted; an unreadable folder is a one-line error."""
    try:
        return iter(sorted(folder.iterdir()))
    except OSError as err:
        raise ValueError(f"cannot list the {what} folder {str(folder)!r}: {err.strerror or err}.") from err


def _unreadable(path: Path) -> str | None:
    """Why the entry ``path`` cannot be read as a file (a broken link, a link loop, a folder), or ``None``."""
    if path.is_file():
        return None
    if path.is_symlink():
        try:
            path.stat()
        except OSError as err:
            if err.errno == errno.ELOOP:
                return "is a symbolic link loop"
            return f"is a broken symbolic link (to {os.readlink(path)!r})"
    return "is a folder, not a file" if path.is_dir() else "is not a regular file"


def index_folder(folder: Path | str, suffixes: Sequence[str], *, what: str) -> dict[str, Path]:
    """Map case name → file for the files of ``folder`` with one of ``suffixes`` (earlier suffixes win).

    Args:
        folder: the directory to list (not recursive).
        suffixes: accepted suffixes in order of preference (``.npz`` before ``.nii.gz`` for nnU-Net folders).
        what: what the folder holds, quoted in errors (e.g. ``"--probs"``).

    Returns:
        ``{case name: path}``, sorted by name.

    Raises:
        FileNotFoundError: ``folder`` does not exist or is not a directory.
        ValueError: no matching file, one case given twice with equally preferred suffixes (``.nii``, ``.nii.gz``), or
            an entry named like a case file that is not a readable file (broken symbolic link, link loop, folder).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for name in ("a.npz", "a.nii.gz", "a.pkl", "b.npz"):
        ...         _ = (Path(tmp) / name).write_bytes(b"")
        ...     sorted((k, v.name) for k, v in index_folder(tmp, PROBS_SUFFIXES, what="--probs").items())
        [('a', 'a.npz'), ('b', 'b.npz')]
    """
    folder = _check_folder(Path(folder), what)
    rank = {".nii": suffixes.index(".nii.gz")} if ".nii.gz" in suffixes and ".nii" in suffixes else {}
    found: dict[str, Path] = {}
    for path in _entries(folder, what):
        stem = case_stem(path)
        if stem is None or _suffix(path) not in suffixes:
            continue
        problem = _unreadable(path)
        if problem is not None:
            raise ValueError(
                f"{str(path)!r} in the {what} folder {problem}; every case file must be read: fix or remove it."
            )
        if stem in found:
            old, new = (rank.get(s, suffixes.index(s)) for s in (_suffix(found[stem]), _suffix(path)))
            if old == new:
                raise ValueError(f"case {stem!r} has two files in the {what} folder: {found[stem].name}, {path.name}.")
            if new > old:
                continue
        found[stem] = path
    if not found:
        raise ValueError(f"no {' / '.join(suffixes)} files in the {what} folder {str(folder)!r}.")
    return dict(sorted(found.items()))


def _few(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in sorted(names)[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _match(probs: dict[str, Path], reference: dict[str, Path], what: str) -> None:
    """Raise unless both folders hold the same case names."""
    no_ref = [n for n in probs if n not in reference]
    no_probs = [n for n in reference if n not in probs]
    if no_ref or no_probs:
        parts = []
        if no_ref:
            parts.append(f"{len(no_ref)} prediction(s) without a reference in {what}: {_few(no_ref)}")
        if no_probs:
            parts.append(f"{len(no_probs)} reference(s) in {what} without a prediction in --probs: {_few(no_probs)}")
        raise ValueError("cases are matched by file name stem; " + "; ".join(parts) + ".")


def list_cases(probs_dir: Path | str, reference_dir: Path | str, *, kind: ReferenceKind) -> list[CaseFiles]:
    """Pair each probability map with its reference file(s) by file name stem.

    Args:
        probs_dir: folder of probability maps (NIfTI or nnU-Net ``.npz``).
        reference_dir: folder of label maps (``kind="labels"``), of soft probability maps (``"ref_probs"``), or of
            one sub-folder per rater, each with one label map per case (``"raters"``).
        kind: ``"labels"``, ``"raters"`` or ``"ref_probs"``.

    Returns:
        The cases sorted by name; ``reference`` has one path per rater (sub-folders sorted by name), else one.

    Raises:
        FileNotFoundError: a folder does not exist.
        ValueError: no files, no rater sub-folder, or unmatched cases (a few names are listed).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for name in ("p/a.npz", "p/b.npz", "l/a.png", "l/b.nii.gz"):
        ...         (Path(tmp) / name).parent.mkdir(exist_ok=True)
        ...         _ = (Path(tmp) / name).write_bytes(b"")
        ...     [(c.name, c.reference[0].name) for c in list_cases(f"{tmp}/p", f"{tmp}/l", kind="labels")]
        [('a', 'a.png'), ('b', 'b.nii.gz')]
    """
    kind = look_up_option("kind", kind, REFERENCE_KINDS, where="list_cases")  # type: ignore[assignment]
    probs = index_folder(probs_dir, PROBS_SUFFIXES, what="--probs")
    check_prediction_folder(probs_dir, probs)  # nnU-Net's segmentations are not probabilities
    flag = "--" + kind.replace("_", "-")
    if kind != "raters":
        ref = index_folder(reference_dir, PROBS_SUFFIXES if kind == "ref_probs" else LABEL_SUFFIXES, what=flag)
        _match(probs, ref, f"{flag} {str(reference_dir)!r}")
        return [CaseFiles(n, p, (ref[n],)) for n, p in probs.items()]
    root = _check_folder(Path(reference_dir), flag)
    rater_dirs = []
    for entry in (e for e in _entries(root, flag) if not e.name.startswith(".")):
        if entry.is_symlink() and not entry.exists():
            problem = _unreadable(entry)
            raise ValueError(f"{str(entry)!r} in the --raters folder {problem}; each rater sub-folder must be read.")
        if entry.is_dir():
            rater_dirs.append(entry)
    if not rater_dirs:
        raise ValueError(f"the --raters folder {str(root)!r} must hold one sub-folder per rater; found none.")
    raters = [index_folder(d, LABEL_SUFFIXES, what=f"--raters sub-folder {d.name!r}") for d in rater_dirs]
    for d, rater in zip(rater_dirs, raters, strict=True):
        _match(probs, rater, f"rater folder {str(d)!r}")
    return [CaseFiles(n, p, tuple(r[n] for r in raters)) for n, p in probs.items()]


def _squeeze_trailing(array: np.ndarray, lead: int) -> np.ndarray:
    """Drop trailing spatial axes of size 1 while more than 2 spatial axes remain (``lead`` leading non-spatial)."""
    while array.ndim - lead > 2 and array.shape[-1] == 1:
        array = array[..., 0]
    return array


class _Volume(NamedTuple):
    """A map as read, before trailing axes of size 1 are dropped: ``lead`` class axes, then the spatial axes."""

    array: np.ndarray
    spacing: tuple[float, ...] | None
    affine: np.ndarray | None  # NIfTI only: 4×4, voxel (first three spatial axes) → world (mm)
    path: Path
    lead: int

    def finish(self) -> tuple[np.ndarray, tuple[float, ...] | None]:
        """The array without trailing spatial axes of size 1, and the spacing of the axes left."""
        array = _squeeze_trailing(self.array, self.lead)
        return np.ascontiguousarray(array), None if self.spacing is None else self.spacing[: array.ndim - self.lead]


def _load_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        array = np.asanyarray(image.dataobj)  # type: ignore[attr-defined]
        zooms = tuple(float(z) for z in image.header.get_zooms())  # type: ignore[attr-defined]
        affine = np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]
    except Exception as err:
        raise ValueError(f"cannot read the NIfTI file {str(path)!r}: {type(err).__name__}: {err}") from err
    return np.asarray(array), zooms, affine


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    array, zooms, _ = _load_nifti(path)
    return array, zooms


def _read_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            if "probabilities" not in keys:
                raise ValueError(f"has no key 'probabilities' (nnU-Net --save_probabilities); keys: {keys}")
            array = npz["probabilities"]
    except Exception as err:
        raise ValueError(f"cannot read the npz file {str(path)!r}: {type(err).__name__}: {err}") from err
    return np.asarray(array)


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except Exception as err:
        raise ValueError(f"cannot read the PNG file {str(path)!r}: {type(err).__name__}: {err}") from err
    if array.ndim != 2:
        raise ValueError(f"the label PNG {str(path)!r} must have one channel; got an image of shape {array.shape}.")
    return array.T


def _load_probs(path: Path) -> _Volume:
    """A probability map as float32 ``(C, *spatial)`` (16-bit maps divided by their sum), with its geometry."""
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None
    if _suffix(path) == ".npz":
        array = _read_npz(path)
        if array.ndim not in (3, 4):
            raise ValueError(f"`probabilities` in {str(path)!r} must be (C, z, y, x) or (C, y, x); got {array.shape}.")
        array = np.moveaxis(array, range(1, array.ndim), range(array.ndim - 1, 0, -1))
        array, spacing, affine = nnunet_prediction(path, array)  # the .pkl's geometry; regions decoded
    else:
        array, zooms, affine = _load_nifti(path)
        if array.ndim == 5 and array.shape[3] == 1:
            array = array[:, :, :, 0]
        if array.ndim not in (3, 4):
            raise ValueError(
                f"the NIfTI probability map {str(path)!r} must be (x, y, z, C) or (x, y, z); got shape {array.shape}."
            )
        array = np.moveaxis(array, -1, 0) if array.ndim == 4 else array[None]
        spacing = zooms[:3]
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"the probability map {str(path)!r} must hold floats; got dtype {array.dtype}.")
    half = array.dtype.itemsize < 4
    array = array.astype(np.float32)
    if half and array.shape[0] > 1:
        total = array.sum(0, keepdims=True)
        tol = _HALF_SUM_TOLERANCE
        deviation = float(np.nanmax(np.abs(total - 1.0))) if np.isfinite(total).all() else float("inf")
        if deviation > tol:
            raise ValueError(
                f"the half-precision probability map {str(path)!r} must sum to 1 over the classes within {tol:g}; "
                f"got a maximum deviation of {deviation:.3g}."
            )
        array = array / total
    return _Volume(array, spacing, affine, path, 1)


def read_probs(path: Path | str) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Read a probability map as float32 ``(C, *spatial)`` and its spacing (``.npz``: from its ``.pkl``, or ``None``).

    Args:
        path: a ``.nii``/``.nii.gz`` ``(x, y, z, C)`` or ``(x, y, z)`` (binary) map, or an nnU-Net ``.npz``.

    Returns:
        ``(probs, spacing)``.

    Raises:
        ValueError: unreadable or corrupt file (named), wrong number of axes or non-floating data.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     np.savez(f"{tmp}/a.npz", probabilities=np.full((3, 4, 5, 6), 1 / 3, dtype=np.float32))
        ...     probs, spacing = read_probs(f"{tmp}/a.npz")
        >>> probs.shape, probs.dtype, spacing
        ((3, 6, 5, 4), dtype('float32'), None)
    """
    return _load_probs(Path(path)).finish()


def _load_labels(path: Path) -> _Volume:
    """An integer label map as int64 ``(*spatial)``, with its geometry."""
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None
    if _suffix(path) == ".png":
        array = _read_png(path)
    elif _suffix(path) in (".nii", ".nii.gz"):
        array, spacing, affine = _load_nifti(path)
    else:
        raise ValueError(f"a label map must be a .nii, .nii.gz or .png file; got {str(path)!r}.")
    if array.ndim < 2:
        raise ValueError(f"the label map {str(path)!r} must have 2 or 3 spatial axes; got shape {array.shape}.")
    if np.issubdtype(array.dtype, np.floating):
        if not (np.isfinite(array).all() and (array == np.round(array)).all()):
            raise ValueError(f"the label map {str(path)!r} must hold integer labels; got non-integer values.")
    elif not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        raise ValueError(f"the label map {str(path)!r} must hold integer labels; got dtype {array.dtype}.")
    return _Volume(array.astype(np.int64), spacing, affine, path, 0)


def read_label_map(path: Path | str) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Read an integer label map as int64 ``(*spatial)`` and its voxel spacing (``None`` for PNG).

    Args:
        path: a ``.nii``/``.nii.gz`` or single-channel ``.png`` of integer labels.

    Returns:
        ``(labels, spacing)``.

    Raises:
        ValueError: unreadable or corrupt file, or values that are not integers (the file is named).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     Image.fromarray(np.array([[0, 1, 2]], dtype=np.uint8)).save(f"{tmp}/a.png")
        ...     labels, spacing = read_label_map(f"{tmp}/a.png")
        >>> labels.tolist(), spacing
        ([[0], [1], [2]], None)
    """
    return _load_labels(Path(path)).finish()


def _grid_shape(volume: _Volume) -> tuple[int, int, int]:
    """The first three spatial sizes (a 2D NIfTI ``(x, y)`` is ``(x, y, 1)``)."""
    x, y, *rest = volume.array.shape[volume.lead :]
    return x, y, rest[0] if rest else 1


def _vec(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in np.asarray(values).reshape(-1)) + ")"


def _compare_grids(case: str, ref: _Volume, affine: np.ndarray, anchor: _Volume, roles: tuple[str, str]) -> None:
    """Raise unless ``affine`` (``ref``'s, after reorientation) places the voxels of ``anchor``'s grid alike."""
    anchor_affine = cast(np.ndarray, anchor.affine)  # callers pass NIfTI volumes only
    zooms, anchor_zooms = (np.linalg.norm(a[:3, :3], axis=0) for a in (affine, anchor_affine))
    names = f"{roles[0]} {str(ref.path)!r} and {roles[1]} {str(anchor.path)!r}"
    tol = f"allowed: 1e-3 mm + 1e-4 × the value; values in {roles[1]}'s axis order"
    sized = np.array(_grid_shape(anchor)) > 1
    if not np.isclose(zooms, anchor_zooms, rtol=GEOMETRY_RTOL, atol=GEOMETRY_ATOL_MM)[sized].all():
        raise ValueError(
            f"case {case!r}: {names} have different voxel sizes, {_vec(zooms)} mm and {_vec(anchor_zooms)} mm "
            f"({tol}); resample one onto the other's grid."
        )
    if _grid_shape(anchor) != _grid_shape(ref):
        return  # the shape mismatch is reported by load_case
    directions = affine[:3, :3] / np.where(zooms > 0, zooms, 1.0)
    anchor_directions = anchor_affine[:3, :3] / np.where(anchor_zooms > 0, anchor_zooms, 1.0)
    if not np.allclose(directions, anchor_directions, rtol=0.0, atol=DIRECTION_ATOL):
        raise ValueError(
            f"case {case!r}: the voxel axes of {names} point in different directions (not only permuted or flipped): "
            f"direction cosines {_vec(directions)} and {_vec(anchor_directions)}; resample one onto the other's grid."
        )
    if not np.allclose(affine[:3, 3], anchor_affine[:3, 3], rtol=GEOMETRY_RTOL, atol=GEOMETRY_ATOL_MM):
        raise ValueError(
            f"case {case!r}: {names} have different origins (world position of the first voxel), "
            f"{_vec(affine[:3, 3])} mm and {_vec(anchor_affine[:3, 3])} mm ({tol}); they cover different regions."
        )


def _onto(case: str, ref: _Volume, anchor: _Volume, roles: tuple[str, str]) -> _Volume:
    """``ref`` transposed and flipped onto the voxel grid of ``anchor`` (both NIfTI); raise if the grids differ.

    ``roles`` names the two files in messages, e.g. ``("the reference", "the prediction")``.
    """
    import nibabel.orientations as nio

    ref_affine, anchor_affine = cast(np.ndarray, ref.affine), cast(np.ndarray, anchor.affine)  # both NIfTI
    try:
        transform = nio.ornt_transform(nio.io_orientation(ref_affine), nio.io_orientation(anchor_affine))
    except Exception as err:
        raise ValueError(
            f"case {case!r}: cannot match the axes of {roles[0]} {str(ref.path)!r} to {roles[1]} {str(anchor.path)!r}: "
            f"{type(err).__name__}: {err} (affines {_vec(ref_affine)} and {_vec(anchor_affine)})."
        ) from err
    array = ref.array.reshape(ref.array.shape[: ref.lead] + _grid_shape(ref) + ref.array.shape[ref.lead + 3 :])
    spatial_first = np.moveaxis(array, list(range(ref.lead)), list(range(-ref.lead, 0))) if ref.lead else array
    moved = nio.apply_orientation(spatial_first, transform)
    array = np.moveaxis(moved, list(range(-ref.lead, 0)), list(range(ref.lead))) if ref.lead else moved
    affine = ref_affine @ nio.inv_ornt_aff(transform, _grid_shape(ref))
    oriented = _Volume(np.ascontiguousarray(array), anchor.spacing, affine, ref.path, ref.lead)
    _compare_grids(case, oriented, affine, anchor, roles)
    return oriented


def _soft_from_raters(case: str, paths: Sequence[Path], prediction: _Volume) -> _Volume:
    """Rater mean of one-hot maps ``(C, *spatial)`` float32 (``C = 1``: the fraction of raters saying foreground).

    Every NIfTI rater map is brought onto the prediction's grid (no affine: the first NIfTI rater's).
    """
    num_channels = prediction.array.shape[0]
    anchor = prediction if prediction.affine is not None else None
    roles = ("the rater map", "the prediction" if anchor is not None else "the first rater map")
    total: np.ndarray | None = None
    spacing: tuple[float, ...] | None = None
    n_labels = max(num_channels, 2)
    for path in paths:
        volume = _load_labels(path)
        if volume.affine is not None:
            volume = volume if anchor is None else _onto(case, volume, anchor, roles)
            anchor = anchor or volume
        labels, sp = volume.finish()
        spacing = spacing or sp
        if labels.size and (labels.min() < 0 or labels.max() >= n_labels):
            raise ValueError(
                f"the rater label map {str(path)!r} must hold labels in [0, {n_labels - 1}]; "
                f"got min {labels.min()}, max {labels.max()}."
            )
        if total is not None and labels.shape != total.shape[1:]:
            raise ValueError(
                f"the rater label map {str(path)!r} has shape {labels.shape}; the other raters {total.shape[1:]}."
            )
        onehot = (labels[None] == np.arange(n_labels).reshape(-1, *([1] * labels.ndim))).astype(np.float64)
        onehot = onehot[1:] if num_channels == 1 else onehot
        total = onehot if total is None else total + onehot
    if total is None:
        raise ValueError("a soft reference from raters needs at least one rater label map.")
    return _Volume((total / len(paths)).astype(np.float32), spacing, None, paths[0], 1)


def _check_probs(name: str, path: Path, probs: np.ndarray, num_classes: int | None) -> None:
    """Raise if ``probs`` holds NaN/inf or has not ``num_classes`` channels (the case and file are named)."""
    if not np.isfinite(probs).all():
        n_bad = int((~np.isfinite(probs)).sum())
        raise ValueError(f"case {name!r}: the probability map {str(path)!r} holds {n_bad} NaN/inf value(s).")
    if num_classes is not None and probs.shape[0] != num_classes:
        raise ValueError(
            f"case {name!r}: the probability map {str(path)!r} has {probs.shape[0]} class channel(s); "
            f"expected num_classes={num_classes}."
        )


def _reference(case: CaseFiles, kind: str, prediction: _Volume) -> _Volume:
    """The case's reference, on the prediction's grid when both are NIfTI."""
    if kind == "raters":
        return _soft_from_raters(case.name, case.reference, prediction)
    ref = _load_labels(case.reference[0]) if kind == "labels" else _load_probs(case.reference[0])
    if ref.affine is None or prediction.affine is None:
        return ref
    return _onto(case.name, ref, prediction, ("the reference", "the prediction"))


def load_case(case: CaseFiles, *, kind: ReferenceKind, num_classes: int | None = None) -> Case:
    """Read one case into tensors: ``probs (1, C, *spatial)`` float32 and its reference.

    The reference is a label map ``(1, *spatial)`` int64 (``kind="labels"``), or a soft target ``(1, C, *spatial)``
    float32: the rater mean of one-hot maps (``"raters"``) or a probability map (``"ref_probs"``). NIfTI references
    are brought onto the prediction's voxel grid (see the module's notes on geometry).

    Args:
        case: the files, from :func:`list_cases`.
        kind: ``"labels"``, ``"raters"`` or ``"ref_probs"``.
        num_classes: expected channels ``C`` of ``probs`` (``None``: any).

    Returns:
        The loaded :class:`Case`; its ``spacing`` is the prediction's (NIfTI), else the reference's, else ``None``.

    Raises:
        ValueError: unreadable file, NaN/inf probabilities, wrong channel count, a shape mismatch between the
            prediction and the reference, or NIfTI grids that differ by more than axis order and flips (the case
            and the files are named).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     np.savez(f"{tmp}/a.npz", probabilities=np.full((2, 1, 3, 4), 0.5, dtype=np.float32))
        ...     np.savez(f"{tmp}/b.npz", probabilities=np.full((2, 1, 3, 4), 0.5, dtype=np.float32))
        ...     loaded = load_case(CaseFiles("a", Path(f"{tmp}/a.npz"), (Path(f"{tmp}/b.npz"),)), kind="ref_probs")
        >>> tuple(loaded.probs.shape), tuple(loaded.target.shape)
        ((1, 2, 4, 3), (1, 2, 4, 3))
    """
    prediction = _load_probs(case.probs)
    probs, probs_spacing = prediction.finish()
    _check_probs(case.name, case.probs, probs, num_classes)
    target, spacing = _reference(case, kind, prediction).finish()
    if kind == "ref_probs":
        _check_probs(case.name, case.reference[0], target, probs.shape[0])
    expected = probs.shape[1:] if kind == "labels" else probs.shape
    if target.shape != expected:
        ref_spatial = target.shape if kind == "labels" else target.shape[1:]
        raise ValueError(
            f"case {case.name!r}: shape mismatch: the prediction {case.probs.name} has spatial shape "
            f"{probs.shape[1:]} but the reference {', '.join(p.name for p in case.reference)} has {ref_spatial} "
            "(spatial axes in (x, y, z) order, the reference's matched to the prediction's by the NIfTI affines)."
        )
    spacing = probs_spacing if prediction.affine is not None else spacing or probs_spacing
    return Case(case.name, torch.from_numpy(probs)[None], torch.from_numpy(target)[None], spacing)


def example_folder() -> Path:
    """The example shipped with the package: ``probs/``, ``labels/`` and ``raters/rater{1,2,3}/`` (4 cases).

    Four 32×32×16 volumes (voxel size 1×1×2 mm) with 3 classes (background, an outer and a nested inner ellipsoid),
    generated by ``scripts/make_example.py``. Score against ``labels/`` (hard reference) or ``raters/`` (soft).

    Example:
        >>> sorted(p.name for p in example_folder().iterdir() if p.is_dir())
        ['labels', 'probs', 'raters']
    """
    from importlib.resources import files

    root = files("softlabels.data").joinpath("examples", "score")
    if not isinstance(root, Path) or not root.is_dir():
        raise FileNotFoundError(f"the example shipped with softlabels was not found at {root}; reinstall the package.")
    return root
