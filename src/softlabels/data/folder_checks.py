"""Reading and checking the files of a segmentation data folder, one file at a time; every error names the file.

Conventions (those of :mod:`softlabels.data.prediction_files`, whose readers are reused, so a map read here and one
read by ``softlabels score`` agree):

* spatial axes in NIfTI voxel order ``(x, y[, z])``; a PNG ``(rows, columns)`` is transposed to ``(x, y)``;
* trailing spatial axes of size 1 are dropped (down to 2), so a slice stored as ``(x, y, 1)`` is 2D;
* **images**: NIfTI ``(x, y[, z])`` is one channel, ``(x, y, z, C)`` has its channels last (ITK's vector layout
  ``(x, y, z, 1, C)`` too), and ``(x, y, C)`` has its channels last when the case's maps are 2D ``(x, y)`` (QUBIQ
  stores multimodal slices so); PNG grey (1 channel) or RGB (3). Values as stored, as float32, never rescaled;
* **label and rater maps**: integer labels in ``[0, num_classes)`` (a float NIfTI must hold whole numbers);
* **soft maps**: float NIfTI, classes on the last axis ``(x, y, z, C)`` (2D: ``(x, y, 1, C)``), or a 3D volume of
  the foreground probability of a binary task, expanded to ``(1 − p, p)``. Values in ``[0, 1]`` summing to 1 over
  the classes within ``1e-4`` (the metrics' tolerance; 16-bit files are divided by their sum as ``read_probs`` does);
* **confidence**: NIfTI of values in ``[0, 1]`` as stored, or an 8-bit grey PNG divided by 255.

:func:`read_header` reads what the header says without the voxel data (shape, spacing, affine, PNG mode), so a
folder can be checked up front without holding its volumes; the ``read_*`` functions read and check the values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from softlabels._checks import check_distribution
from softlabels.data.prediction_files import _read_nifti, read_label_map, read_probs

__all__ = ["FileHeader", "read_confidence", "read_header", "read_image", "read_labels", "read_soft_label"]

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
_IMAGE_PNG_MODES = ("1", "L", "I;16", "I;16B", "I;16L", "I", "F", "RGB")


class FileHeader(NamedTuple):
    """What a file's header says, without its voxel data.

    ``shape`` is the NIfTI data shape, or ``(x, y)`` / ``(x, y, bands)`` for a PNG (transposed like its data);
    ``spacing`` the NIfTI zooms and ``affine`` its 4×4 voxel-to-world matrix (``None`` for PNG); ``mode`` the PNG
    mode (``None`` for NIfTI).

    Example:
        >>> FileHeader(Path("a.png"), (4, 3), None, None, "L").is_png
        True
    """

    path: Path
    shape: tuple[int, ...]
    spacing: tuple[float, ...] | None
    affine: np.ndarray | None
    mode: str | None

    @property
    def is_png(self) -> bool:
        """Whether the file is a PNG."""
        return self.mode is not None


def is_nifti(path: Path | str) -> bool:
    """Whether ``path`` ends in ``.nii`` or ``.nii.gz`` (any case)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def read_header(path: Path | str | os.PathLike[str]) -> FileHeader:
    """Read the header of a NIfTI or PNG file (not its voxel data).

    Args:
        path: a ``.nii``, ``.nii.gz`` or ``.png`` file.

    Returns:
        The :class:`FileHeader`.

    Raises:
        ValueError: another suffix, or an unreadable or corrupt file (the file is named).

    Example:
        >>> import tempfile
        >>> import nibabel as nib
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     volume = nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.diag([0.5, 0.5, 2.0, 1.0]))
        ...     nib.save(volume, f"{tmp}/a.nii.gz")
        ...     header = read_header(f"{tmp}/a.nii.gz")
        >>> header.shape, header.spacing
        ((4, 5, 6), (0.5, 0.5, 2.0))
    """
    path = Path(path)
    if path.name.lower().endswith(".png"):
        from PIL import Image

        try:
            with Image.open(path) as image:
                (width, height), mode, bands = image.size, image.mode, len(image.getbands())
        except Exception as err:
            raise ValueError(f"cannot read the PNG file {str(path)!r}: {type(err).__name__}: {err}") from err
        return FileHeader(path, (width, height) if bands == 1 else (width, height, bands), None, None, mode)
    if not is_nifti(path):
        raise ValueError(f"a data file must be a .nii, .nii.gz or .png file; got {str(path)!r}.")
    import nibabel as nib

    try:
        nifti = nib.load(str(path))
        shape = tuple(int(n) for n in nifti.shape)  # type: ignore[attr-defined]
        zooms = tuple(float(z) for z in nifti.header.get_zooms())  # type: ignore[attr-defined]
        affine = np.asarray(nifti.affine, dtype=np.float64)  # type: ignore[attr-defined]
    except Exception as err:
        raise ValueError(f"cannot read the NIfTI file {str(path)!r}: {type(err).__name__}: {err}") from err
    return FileHeader(path, shape, zooms, affine, None)


def squeeze_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop trailing axes of size 1 while more than 2 remain (``(x, y, 1)`` → ``(x, y)``)."""
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


class ImageLayout(NamedTuple):
    """How an image file holds its channels: ``channels``, the spatial shape, and whether channels are last."""

    channels: int
    spatial: tuple[int, ...]
    channels_last: bool


def image_layout(header: FileHeader, reference: tuple[int, ...] | None = None) -> ImageLayout:
    """The channel layout of an image from its header; ``reference`` is the spatial shape of the case's maps."""
    shape = header.shape
    if header.is_png:
        if header.mode not in _IMAGE_PNG_MODES:
            raise ValueError(
                f"the image PNG {str(header.path)!r} must be grey or RGB; got mode {header.mode!r} "
                f"(accepted: {', '.join(_IMAGE_PNG_MODES)}). Convert it, e.g. drop the alpha channel."
            )
        return ImageLayout(1, shape, False) if len(shape) == 2 else ImageLayout(shape[2], shape[:2], True)
    if len(shape) == 5 and shape[3] == 1:
        shape = shape[:3] + shape[4:]
    if len(shape) == 4:
        return ImageLayout(shape[3], squeeze_shape(shape[:3]), True)
    if len(shape) == 3 and reference is not None and len(reference) == 2 and shape[:2] == reference and shape[2] > 1:
        return ImageLayout(shape[2], shape[:2], True)
    if len(shape) in (2, 3):
        return ImageLayout(1, squeeze_shape(shape), False)
    raise ValueError(f"the image {str(header.path)!r} must be (x, y[, z]) or (x, y, z, C); got shape {header.shape}.")


def _read_png_array(path: Path) -> tuple[np.ndarray, str]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.asarray(image)
    except Exception as err:
        raise ValueError(f"cannot read the PNG file {str(path)!r}: {type(err).__name__}: {err}") from err
    return array, mode


def read_image(path: Path | str, *, reference: tuple[int, ...] | None = None) -> tuple[np.ndarray, FileHeader]:
    """Read an image as float32 ``(C_in, *spatial)`` (values as stored) and its header.

    Args:
        path: a NIfTI or PNG image (layouts in the module docstring).
        reference: the spatial shape of the case's maps; with a 2D ``reference``, a NIfTI ``(x, y, C)`` has its
            channels last.

    Returns:
        ``(image, header)``.

    Raises:
        ValueError: an unreadable file, an unsupported PNG mode or shape, or NaN/inf values (the file is named).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     Image.fromarray(np.array([[0, 10, 20]], dtype=np.uint8)).save(f"{tmp}/a.png")
        ...     image, header = read_image(f"{tmp}/a.png")
        >>> image.shape, image[0, :, 0].tolist()
        ((1, 3, 1), [0.0, 10.0, 20.0])
    """
    header = read_header(path)
    layout = image_layout(header, reference)
    if header.is_png:
        array, _ = _read_png_array(header.path)
        array = array.T[None] if array.ndim == 2 else array.transpose(2, 1, 0)
    else:
        array, _ = _read_nifti(header.path)
        if layout.channels_last:
            array = np.moveaxis(array, -1, 0)
    array = np.ascontiguousarray(array.reshape(layout.channels, *layout.spatial), dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"the image {str(header.path)!r} holds {int((~np.isfinite(array)).sum())} NaN/inf value(s).")
    return array, header


def read_labels(path: Path | str, num_classes: int, *, what: str = "label map") -> np.ndarray:
    """Read an integer label map as int64 ``(*spatial)`` and check its labels are in ``[0, num_classes)``.

    Args:
        path: a NIfTI or single-channel PNG label map (read by ``prediction_files.read_label_map``).
        num_classes: the number of classes ``C``.
        what: what the map is, quoted in errors (``"label map"``, ``"rater map"``).

    Returns:
        The labels.

    Raises:
        ValueError: an unreadable file, non-integer values, or a label outside ``[0, C)`` (the file is named).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     Image.fromarray(np.array([[0, 1, 1]], dtype=np.uint8)).save(f"{tmp}/a.png")
        ...     read_labels(f"{tmp}/a.png", 2).tolist()
        [[0], [1], [1]]
    """
    labels, _ = read_label_map(path)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"the {what} {str(path)!r} must hold labels in [0, {num_classes - 1}] (num_classes={num_classes}); "
            f"got min {labels.min()}, max {labels.max()}."
        )
    return labels


def read_soft_label(path: Path | str, num_classes: int) -> np.ndarray:
    """Read a soft map as float32 ``(C, *spatial)`` and check it is a distribution over the classes.

    A 3D volume (one channel) of a binary task (``num_classes = 2``) is the foreground probability ``p`` and is
    returned as ``(1 − p, p)``.

    Args:
        path: a NIfTI ``(x, y, z, C)`` (2D: ``(x, y, 1, C)``) or ``(x, y, z)`` map (read by ``read_probs``).
        num_classes: the number of classes ``C``.

    Returns:
        The soft label.

    Raises:
        ValueError: an unreadable file, a wrong class count, values outside ``[0, 1]``, NaN/inf, or class sums off
            1 by more than 1e-4 (the file is named).

    Example:
        >>> import tempfile
        >>> import nibabel as nib
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     nib.save(nib.Nifti1Image(np.full((2, 3, 1), 0.25, np.float32), np.eye(4)), f"{tmp}/a.nii.gz")
        ...     soft = read_soft_label(f"{tmp}/a.nii.gz", 2)
        >>> soft.shape, soft[:, 0, 0].tolist()
        ((2, 2, 3), [0.75, 0.25])
    """
    probs, _ = read_probs(path)
    where = f"the soft map {str(path)!r}"
    check_distribution(torch.from_numpy(probs)[None], "soft_label", where)
    if probs.shape[0] == 1 and num_classes == 2:
        probs = np.concatenate([1.0 - probs, probs])
    if probs.shape[0] != num_classes:
        raise ValueError(f"{where} has {probs.shape[0]} class channel(s); expected num_classes={num_classes}.")
    return np.ascontiguousarray(probs, dtype=np.float32)


def read_confidence(path: Path | str) -> np.ndarray:
    """Read an annotator-confidence map as float32 ``(*spatial)`` in ``[0, 1]``.

    A NIfTI holds the confidence as stored; an 8-bit grey PNG (mode ``"L"``) is divided by 255.

    Args:
        path: a NIfTI or 8-bit grey PNG file.

    Returns:
        The confidence.

    Raises:
        ValueError: an unreadable file, another PNG mode, or values outside ``[0, 1]`` or NaN (the file is named).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     Image.fromarray(np.array([[0, 51, 255]], dtype=np.uint8)).save(f"{tmp}/a.png")
        ...     read_confidence(f"{tmp}/a.png").ravel().tolist()
        [0.0, 0.20000000298023224, 1.0]
    """
    path = Path(path)
    if is_nifti(path):
        array, _ = _read_nifti(path)
        array = np.asarray(array, dtype=np.float64)
    else:
        png, mode = _read_png_array(path)
        if mode != "L":
            raise ValueError(f"the confidence PNG {str(path)!r} must be 8-bit grey (mode 'L'); got mode {mode!r}.")
        array = png.T.astype(np.float64) / 255.0
    array = array.reshape(squeeze_shape(array.shape))
    if array.size and not (np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0):
        finite = array[np.isfinite(array)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (float("nan"), float("nan"))
        raise ValueError(
            f"the confidence map {str(path)!r} must hold values in [0, 1]; got min {lo:.6g}, max {hi:.6g}"
            f"{'' if finite.size == array.size else f' and {array.size - finite.size} NaN/inf value(s)'}."
        )
    return np.ascontiguousarray(array, dtype=np.float32)
