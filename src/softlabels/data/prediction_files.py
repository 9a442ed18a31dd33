"""Reading users' prediction and reference files, one case at a time: NIfTI, nnU-Net ``.npz`` and PNG label maps.

File conventions (every array ends up in one spatial order, NIfTI's voxel-index order ``(x, y[, z])``):

* **Probability maps** (``--probs``, ``--ref-probs``): a NIfTI ``.nii``/``.nii.gz`` volume with the classes on the
  **last** axis, ``(x, y, z, C)`` (a 2D map is stored as ``(x, y, 1, C)``; ITK's vector layout ``(x, y, z, 1, C)`` is
  accepted too), or a 3D ``(x, y, z)`` volume holding the foreground probability of a binary task (``C = 1``).
  Or an nnU-Net ``--save_probabilities`` file ``<case>.npz`` with the key ``probabilities`` shaped ``(C, z, y, x)``
  (its spatial axes are reversed on reading; the ``.pkl`` beside it is ignored). When a folder holds ``<case>.npz``
  and ``<case>.nii.gz`` (nnU-Net writes both: the probabilities and the segmentation), the ``.npz`` is used.
  Half-precision maps must sum to 1 within the 16-bit tolerance (1e-2); they are read as float32 and divided by their
  sum over the classes (float16 rounding alone breaks the 1e-4 sum tolerance of float32 inputs).
* **Label maps** (``--labels``, rater folders): NIfTI or single-channel PNG of integer labels. A PNG image
  ``(rows, columns)`` is transposed to ``(x, y)`` to match the NIfTI and nnU-Net orders.
* Trailing spatial axes of size 1 are dropped (down to 2 spatial axes), so a 2D slice stored as ``(x, y, 1)`` meets
  a 2D PNG label map. Voxel spacing comes from the NIfTI header zooms (none for ``.npz``/PNG).

Cases are matched by file name stem (the name without ``.nii.gz``, ``.nii``, ``.npz`` or ``.png``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from softlabels._options import look_up_option

_HALF_SUM_TOLERANCE = 1e-2  # the metrics' tolerance on class sums of 16-bit probabilities

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

    ``spacing`` is the voxel size from the NIfTI header (reference first, then prediction), ``None`` if unknown.
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
        ValueError: no matching file, or one case given twice with equally preferred suffixes (``.nii``, ``.nii.gz``).

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
    for path in sorted(folder.iterdir()):
        stem = case_stem(path)
        if stem is None or not path.is_file() or _suffix(path) not in suffixes:
            continue
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
    flag = "--" + kind.replace("_", "-")
    if kind != "raters":
        ref = index_folder(reference_dir, PROBS_SUFFIXES if kind == "ref_probs" else LABEL_SUFFIXES, what=flag)
        _match(probs, ref, f"{flag} {str(reference_dir)!r}")
        return [CaseFiles(n, p, (ref[n],)) for n, p in probs.items()]
    root = _check_folder(Path(reference_dir), flag)
    rater_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
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


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        array = np.asanyarray(image.dataobj)  # type: ignore[attr-defined]
        zooms = tuple(float(z) for z in image.header.get_zooms())  # type: ignore[attr-defined]
    except Exception as err:
        raise ValueError(f"cannot read the NIfTI file {str(path)!r}: {type(err).__name__}: {err}") from err
    return np.asarray(array), zooms


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


def read_probs(path: Path | str) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Read a probability map as float32 ``(C, *spatial)`` and its voxel spacing (``None`` for ``.npz``).

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
    path = Path(path)
    spacing: tuple[float, ...] | None = None
    if _suffix(path) == ".npz":
        array = _read_npz(path)
        if array.ndim not in (3, 4):
            raise ValueError(f"`probabilities` in {str(path)!r} must be (C, z, y, x) or (C, y, x); got {array.shape}.")
        array = np.moveaxis(array, range(1, array.ndim), range(array.ndim - 1, 0, -1))
    else:
        array, zooms = _read_nifti(path)
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
    array = _squeeze_trailing(array.astype(np.float32), lead=1)
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
    return np.ascontiguousarray(array), None if spacing is None else spacing[: array.ndim - 1]


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
    path = Path(path)
    spacing: tuple[float, ...] | None = None
    if _suffix(path) == ".png":
        array = _read_png(path)
    elif _suffix(path) in (".nii", ".nii.gz"):
        array, zooms = _read_nifti(path)
        spacing = zooms
    else:
        raise ValueError(f"a label map must be a .nii, .nii.gz or .png file; got {str(path)!r}.")
    if array.ndim < 2:
        raise ValueError(f"the label map {str(path)!r} must have 2 or 3 spatial axes; got shape {array.shape}.")
    if np.issubdtype(array.dtype, np.floating):
        if not (np.isfinite(array).all() and (array == np.round(array)).all()):
            raise ValueError(f"the label map {str(path)!r} must hold integer labels; got non-integer values.")
    elif not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        raise ValueError(f"the label map {str(path)!r} must hold integer labels; got dtype {array.dtype}.")
    array = _squeeze_trailing(array.astype(np.int64), lead=0)
    return np.ascontiguousarray(array), None if spacing is None else spacing[: array.ndim]


def _soft_from_raters(paths: Sequence[Path], num_channels: int) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Rater mean of one-hot maps ``(C, *spatial)`` float32 (``C = 1``: the fraction of raters saying foreground)."""
    total: np.ndarray | None = None
    spacing: tuple[float, ...] | None = None
    n_labels = max(num_channels, 2)
    for path in paths:
        labels, sp = read_label_map(path)
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
    return (total / len(paths)).astype(np.float32), spacing


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


def load_case(case: CaseFiles, *, kind: ReferenceKind, num_classes: int | None = None) -> Case:
    """Read one case into tensors: ``probs (1, C, *spatial)`` float32 and its reference.

    The reference is a label map ``(1, *spatial)`` int64 (``kind="labels"``), or a soft target ``(1, C, *spatial)``
    float32: the rater mean of one-hot maps (``"raters"``) or a probability map (``"ref_probs"``).

    Args:
        case: the files, from :func:`list_cases`.
        kind: ``"labels"``, ``"raters"`` or ``"ref_probs"``.
        num_classes: expected channels ``C`` of ``probs`` (``None``: any).

    Returns:
        The loaded :class:`Case`.

    Raises:
        ValueError: unreadable file, NaN/inf probabilities, wrong channel count or a shape mismatch between the
            prediction and the reference (the case is named).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     np.savez(f"{tmp}/a.npz", probabilities=np.full((2, 1, 3, 4), 0.5, dtype=np.float32))
        ...     np.savez(f"{tmp}/b.npz", probabilities=np.full((2, 1, 3, 4), 0.5, dtype=np.float32))
        ...     loaded = load_case(CaseFiles("a", Path(f"{tmp}/a.npz"), (Path(f"{tmp}/b.npz"),)), kind="ref_probs")
        >>> tuple(loaded.probs.shape), tuple(loaded.target.shape)
        ((1, 2, 4, 3), (1, 2, 4, 3))
    """
    probs, probs_spacing = read_probs(case.probs)
    _check_probs(case.name, case.probs, probs, num_classes)
    if kind == "labels":
        target, spacing = read_label_map(case.reference[0])
        expected = probs.shape[1:]
    elif kind == "raters":
        target, spacing = _soft_from_raters(case.reference, probs.shape[0])
        expected = probs.shape
    else:
        target, spacing = read_probs(case.reference[0])
        _check_probs(case.name, case.reference[0], target, probs.shape[0])
        expected = probs.shape
    if target.shape != expected:
        ref_spatial = target.shape if kind == "labels" else target.shape[1:]
        raise ValueError(
            f"case {case.name!r}: shape mismatch: the prediction {case.probs.name} has spatial shape "
            f"{probs.shape[1:]} but the reference {', '.join(p.name for p in case.reference)} has {ref_spatial} "
            "(spatial axes in (x, y, z) order)."
        )
    return Case(case.name, torch.from_numpy(probs)[None], torch.from_numpy(target)[None], spacing or probs_spacing)


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
