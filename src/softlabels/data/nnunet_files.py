"""nnU-Net v2 prediction folders (``nnUNetv2_predict --save_probabilities``) for ``softlabels score``.

nnU-Net writes, per case, ``<case>.npz`` (key ``probabilities``, ``(C, z, y, x)``: its reader's array order, which
is NIfTI's voxel order ``(x, y, z)`` reversed), ``<case>.pkl`` (the case's "properties") and the segmentation
``<case>.nii.gz``, plus ``dataset.json``, ``plans.json`` and ``predict_from_raw_data_args.json`` once per folder.
:mod:`softlabels.data.prediction_files` reads the ``.npz`` and, through :func:`nnunet_prediction`, this module adds:

* **Geometry from the** ``.pkl``. nnU-Net's SimpleITK reader (its default for NIfTI) stores ``sitk_stuff``
  (``spacing``, ``origin``, ``direction``, ITK's LPS world) and its nibabel readers ``nibabel_stuff``
  (``original_affine``; ``NibabelIOWithReorient`` also ``reoriented_affine``, the affine of the RAS-reoriented array
  it predicted on, which is then the ``.npz``'s). Either becomes the prediction's NIfTI affine (RAS), so HD95 gets
  the voxel size in mm and a NIfTI reference is brought onto the prediction's grid and checked like a NIfTI
  prediction's. Other readers (PNG, TIFF) store only ``spacing`` (reversed, as the array): spacing, no affine. The
  ``.pkl`` is read by a restricted unpickler that builds NumPy arrays, NumPy scalars and plain builtin values only:
  a file needing anything else (any other class or function) is refused, never run. No ``.pkl``: no geometry.
* **Regions.** A ``dataset.json`` in the prediction folder that declares regions (nnU-Net's region-based training:
  one sigmoid probability per region, not a distribution over classes) is read only when it carries softlabels'
  ``softlabels_encoding`` record (``softlabels nnunet convert``) and its regions are **nested**; the soft foreground
  is then ``p`` = the mean over the region channels (for "at least k of R" regions, ``E[count] / R``: the expected
  rater mean) and the prediction becomes ``(1 − p, p)``. Other region datasets are refused.
* A folder with ``plans.json`` beside ``dataset.json`` (nnU-Net wrote it) must give a ``.npz`` for every case: its
  ``<case>.nii.gz`` are segmentations, not probabilities.
"""

from __future__ import annotations

import io
import itertools
import json
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["NnunetPrediction", "check_prediction_folder", "nnunet_prediction", "read_properties"]

_NUMPY_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
_BUILTINS = {"bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list", "range", "set",
             "slice", "str", "tuple"}  # fmt: skip
_MAX_PKL_BYTES = 16 * 2**20  # nnU-Net's properties are a few kB
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


class NnunetPrediction(NamedTuple):
    """An ``.npz`` prediction with what nnU-Net's files beside it say.

    Attributes:
        probs: ``(C, x, y[, z])`` float (``(1 − p, p)`` after region decoding).
        spacing: the voxel size per spatial axis of ``probs`` (mm), or ``None``.
        affine: the 4×4 voxel → RAS world (mm) matrix of ``probs``' first three spatial axes, or ``None``.

    Example:
        >>> out = NnunetPrediction(np.zeros((2, 4, 3)), (0.5, 0.5), None)
        >>> out.probs.shape[0], out.spacing
        (2, (0.5, 0.5))
    """

    probs: np.ndarray
    spacing: tuple[float, ...] | None
    affine: np.ndarray | None


class _RefusedPickle(ValueError):
    """A ``.pkl`` that needs a class or function the restricted unpickler does not load."""


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves NumPy's array/scalar builders and plain builtin types only."""

    def __init__(self, data: bytes, path: Path) -> None:
        super().__init__(io.BytesIO(data))
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS or (module == "builtins" and name in _BUILTINS):
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol 2 pickles
            return super().find_class(module, name)
        raise _RefusedPickle(
            f"refusing to read the nnU-Net properties file {str(self.path)!r}: it needs {module}.{name}, and only "
            "NumPy arrays and plain builtin values are loaded from a .pkl (delete it to score without its geometry)."
        )


def read_properties(path: Path | str) -> dict[str, Any]:
    """Read nnU-Net's ``<case>.pkl`` (a case's properties) without running code from it.

    Args:
        path: the ``.pkl`` file.

    Returns:
        The properties dict (``spacing``, ``sitk_stuff`` or ``nibabel_stuff``, ``shape_before_cropping``, ...).

    Raises:
        ValueError: unreadable or corrupt file, not a dict, or a pickle that needs any class or function other
            than NumPy's array and scalar builders and plain builtin types (the file is named).

    Example:
        >>> import os, pickle, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = Path(tmp, "a.pkl").write_bytes(pickle.dumps({"spacing": [1.0, 0.5, 0.5], "m": np.eye(2)}))
        ...     read_properties(Path(tmp, "a.pkl"))["spacing"]
        ...     _ = Path(tmp, "b.pkl").write_bytes(pickle.dumps(os.getcwd))
        ...     try:
        ...         read_properties(Path(tmp, "b.pkl"))
        ...     except ValueError as err:
        ...         print(str(err).split(":")[1].strip().split(",")[0])
        [1.0, 0.5, 0.5]
        it needs posix.getcwd
    """
    path = Path(path)
    try:
        if path.stat().st_size > _MAX_PKL_BYTES:
            raise ValueError(f"it is larger than {_MAX_PKL_BYTES // 2**20} MiB")
        data = path.read_bytes()
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the nnU-Net properties file {str(path)!r}: {err}.") from err
    try:
        properties = _RestrictedUnpickler(data, path).load()
    except _RefusedPickle:
        raise
    except Exception as err:
        raise ValueError(f"cannot read the nnU-Net properties file {str(path)!r}: {type(err).__name__}: {err}") from err
    if not isinstance(properties, dict):
        raise ValueError(
            f"the nnU-Net properties file {str(path)!r} must hold a dict; got {type(properties).__name__}."
        )
    return properties


def _floats(value: Any, count: Sequence[int], what: str, path: Path) -> np.ndarray:
    """``value`` as a finite float64 vector of one of the lengths ``count`` (else a one-line error)."""
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        array = np.empty(0)
    if array.size not in count or not np.isfinite(array).all():
        raise ValueError(f"the nnU-Net properties file {str(path)!r} has an invalid {what}: {value!r}.")
    return array


def _sitk_affine(stuff: Mapping[str, Any], path: Path) -> np.ndarray:
    """The NIfTI (RAS) affine of SimpleITK's spacing, origin and direction (LPS), in ITK's index order ``(x, y, z)``."""
    spacing = _floats(stuff.get("spacing"), (2, 3), "sitk_stuff spacing", path)
    n = spacing.size
    origin = _floats(stuff.get("origin"), (n,), "sitk_stuff origin", path)
    direction = _floats(stuff.get("direction"), (n * n,), "sitk_stuff direction", path).reshape(n, n)
    if (spacing <= 0).any():
        raise ValueError(f"the nnU-Net properties file {str(path)!r} has a non-positive spacing {spacing.tolist()}.")
    matrix, offset = np.eye(3), np.zeros(3)  # a 2D image: its z axis is a 1 mm unit axis
    matrix[:n, :n] = direction * spacing
    offset[:n] = origin
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = _LPS_TO_RAS @ matrix, _LPS_TO_RAS @ offset
    return affine


def _geometry(properties: Mapping[str, Any], path: Path, ndim: int) -> tuple[tuple[float, ...], np.ndarray | None]:
    """The spacing (``(x, y, z)`` order) and affine of an ``.npz`` whose array has ``ndim`` spatial axes."""
    affine: np.ndarray | None = None
    if isinstance(properties.get("sitk_stuff"), Mapping):
        affine = _sitk_affine(properties["sitk_stuff"], path)
    elif isinstance(properties.get("nibabel_stuff"), Mapping):
        stuff = properties["nibabel_stuff"]
        key = "reoriented_affine" if "reoriented_affine" in stuff else "original_affine"
        affine = _floats(stuff.get(key), (16,), f"nibabel_stuff {key}", path).reshape(4, 4)
    if affine is not None:
        spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    else:
        spacing = tuple(float(s) for s in _floats(properties.get("spacing"), (ndim,), "spacing", path)[::-1])
    if len(spacing) < ndim or not all(s > 0 for s in spacing):
        raise ValueError(
            f"the nnU-Net properties file {str(path)!r} gives the voxel size {spacing} for a prediction with "
            f"{ndim} spatial axes."
        )
    return spacing[:ndim], affine


def _dataset_json(folder: Path) -> dict[str, Any] | None:
    path = folder / "dataset.json"
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {str(path)!r}: {type(err).__name__}: {err}") from err
    return content if isinstance(content, dict) else None


def _regions(dataset: Mapping[str, Any]) -> list[frozenset[int]] | None:
    """nnU-Net's regions of a ``dataset.json`` (its order: ``labels`` without background and ignore), or ``None``."""
    labels = dataset.get("labels")
    if not isinstance(labels, Mapping):
        return None
    if not any(isinstance(v, list | tuple) and len(v) > 1 for v in labels.values()):
        return None
    regions = []
    for key, value in labels.items():
        members = frozenset(int(v) for v in (value if isinstance(value, list | tuple) else [value]))
        if key != "ignore" and members != {0}:
            regions.append(members)
    return regions


def _nested(regions: Sequence[frozenset[int]]) -> bool:
    by_size = sorted(regions, key=len, reverse=True)
    return all(inner < outer for outer, inner in itertools.pairwise(by_size))


def _decode(probs: np.ndarray, dataset: Mapping[str, Any], folder: Path, path: Path) -> np.ndarray:
    """The prediction as class probabilities: unchanged (softmax), or ``(1 − p, p)`` of nested softlabels regions."""
    regions = _regions(dataset)
    where = str(folder / "dataset.json")
    if regions is None:
        labels = dataset.get("labels")
        classes = len([k for k in labels if k != "ignore"]) if isinstance(labels, Mapping) else probs.shape[0]
        if probs.shape[0] != classes:
            raise ValueError(
                f"{str(path)!r} has {probs.shape[0]} class channel(s) but {where!r} declares {classes} label(s)."
            )
        return probs
    if not isinstance(dataset.get("softlabels_encoding"), Mapping) or not _nested(regions):
        raise ValueError(
            f"{where!r} declares nnU-Net regions (one sigmoid probability each, not a distribution over classes); "
            "softlabels score reads softmax classes, or the nested regions of a dataset made by softlabels nnunet "
            "convert (with its softlabels_encoding record)."
        )
    if probs.shape[0] != len(regions):
        raise ValueError(
            f"{str(path)!r} has {probs.shape[0]} channel(s) but {where!r} declares {len(regions)} regions."
        )
    p = probs.astype(np.float64).mean(axis=0)
    return np.stack([1.0 - p, p]).astype(np.float32)


def nnunet_prediction(path: Path, probs: np.ndarray) -> NnunetPrediction:
    """Add what nnU-Net's files beside the ``.npz`` ``path`` say to its probabilities ``probs`` ``(C, x, y[, z])``.

    ``probs`` is the ``.npz`` array with its spatial axes already reversed (NIfTI's ``(x, y, z)`` order). The
    ``<case>.pkl`` beside it gives the spacing and affine; the folder's ``dataset.json`` (if any) says whether the
    channels are softmax classes (kept; their number is checked) or softlabels' nested regions (decoded as
    ``(1 − p, p)``, ``p`` their mean). See the module's notes.

    Raises:
        ValueError: a refused or invalid ``.pkl``, a ``.pkl`` of another shape than the ``.npz``, a region dataset
            that softlabels did not make, or channels that do not match ``dataset.json`` (the files are named).

    Example:
        >>> import pickle, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     stuff = {"spacing": (0.5, 2.0, 3.0), "origin": (0.0, 0.0, 0.0), "direction": tuple(np.eye(3).flat)}
        ...     props = {"sitk_stuff": stuff, "spacing": [3.0, 2.0, 0.5], "shape_before_cropping": (1, 4, 5)}
        ...     _ = Path(tmp, "a.pkl").write_bytes(pickle.dumps(props))
        ...     out = nnunet_prediction(Path(tmp, "a.npz"), np.full((2, 5, 4, 1), 0.5, np.float32))
        >>> out.spacing, out.affine[0, 0]
        ((0.5, 2.0, 3.0), np.float64(-0.5))
    """
    path = Path(path)
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None
    pkl = path.with_name(path.name[: -len(".npz")] + ".pkl")
    if pkl.is_file():
        properties = read_properties(pkl)
        shape = properties.get("shape_before_cropping")
        if shape is not None and tuple(int(s) for s in shape)[::-1] != probs.shape[1:]:
            raise ValueError(
                f"{str(pkl)!r} is for an image of shape {tuple(shape)} (nnU-Net's order), but {str(path)!r} holds "
                f"{probs.shape[1:][::-1]}: the .pkl belongs to another prediction."
            )
        spacing, affine = _geometry(properties, pkl, probs.ndim - 1)
    dataset = _dataset_json(path.parent)
    if dataset is not None:
        probs = _decode(probs, dataset, path.parent, path)
    return NnunetPrediction(probs, spacing, affine)


def check_prediction_folder(folder: Path | str, files: Mapping[str, Path]) -> None:
    """Refuse a folder nnU-Net wrote (``dataset.json`` and ``plans.json``) in which a case has no ``.npz``.

    ``files`` maps each case to the file chosen for it (:func:`softlabels.data.prediction_files.index_folder`).

    Raises:
        ValueError: a case whose file is nnU-Net's segmentation, not its probabilities (a few are named).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for name in ("dataset.json", "plans.json"):
        ...         _ = Path(tmp, name).write_text("{}")
        ...     try:
        ...         check_prediction_folder(tmp, {"a": Path(tmp, "a.nii.gz")})
        ...     except ValueError as err:
        ...         print("--save_probabilities" in str(err))
        True
    """
    folder = Path(folder)
    if not ((folder / "dataset.json").is_file() and (folder / "plans.json").is_file()):
        return
    segmentations = sorted(name for name, path in files.items() if not path.name.lower().endswith(".npz"))
    if segmentations:
        shown = ", ".join(repr(n) for n in segmentations[:5]) + (" ..." if len(segmentations) > 5 else "")
        raise ValueError(
            f"{str(folder)!r} is an nnU-Net prediction folder, but {len(segmentations)} case(s) have no .npz "
            f"probabilities, only a segmentation: {shown}; run nnUNetv2_predict with --save_probabilities."
        )
