"""``softlabels predict``: calibrated probability maps and thresholded masks of a checkpoint, written atomically.

Segmentation outputs, per case, in ``output/``:

- ``probs/<case>.nii.gz`` for NIfTI inputs: the probabilities with the classes on the last axis ``(x, y, z, C)``
  (``(x, y, 1, C)`` for a 2D image) and **the input's affine** — the layout ``softlabels score --probs`` reads;
  ``probs/<case>.npz`` otherwise (key ``probabilities``, ``(C, *reversed spatial axes)``, nnU-Net's layout);
- ``masks/<case>/t<level>.nii.gz`` (NIfTI inputs) or ``masks/<case>/t<level>[_c<class>].png`` (2D otherwise) or
  ``.npz``: for every threshold level ``t``, the voxels with ``p_c >= t``, one channel per foreground class (a binary
  task: a single map). Masks are nested by construction: the mask at 0.9 lies inside the mask at 0.1;
- ``predictions.json``: the files, the thresholds and the temperature used.

``<case>`` is the sample's name (:class:`~softlabels.training.evaluation.CaseNames`: its ``"case"``, with ``_1``,
``_2``, … appended when a source's case holds several samples, e.g. the nodules of one LIDC patient).

Classification: ``predictions.csv`` (case, the probability of each class, the predicted class).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from softlabels.bench.report import atomic_write
from softlabels.training.evaluation import CaseNames
from softlabels.training.inference import split_loader
from softlabels.training.run import load_run

__all__ = ["QUBIQ_THRESHOLDS", "check_thresholds", "predict"]

QUBIQ_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The QUBIQ threshold levels.

Example:
    >>> QUBIQ_THRESHOLDS[0], QUBIQ_THRESHOLDS[-1]
    (0.1, 0.9)
"""


def check_thresholds(levels: Sequence[float]) -> tuple[float, ...]:
    """Check threshold levels: numbers in (0, 1], sorted and unique on return.

    Example:
        >>> check_thresholds([0.9, 0.1])
        (0.1, 0.9)
    """
    values = tuple(float(v) for v in levels)
    if not values or not all(0.0 < v <= 1.0 for v in values):
        raise ValueError(f"`thresholds` of predict must be numbers in (0, 1]; got {list(levels)!r}.")
    return tuple(sorted(set(values)))


def _nifti_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    import nibabel as nib

    image = nib.Nifti1Image(array, affine)
    return gzip.compress(image.to_bytes(), compresslevel=6)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _png_bytes(mask: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask.T * 255).astype(np.uint8)).save(buffer, format="PNG")  # (x, y) → rows
    return buffer.getvalue()


def _write(path: Path, payload: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: handle.write(payload))
    return str(path)


def _write_case(out: Path, case: str, probs: Tensor, affine: Tensor | None, levels: Sequence[float]) -> list[str]:
    """Write one case's probability map and masks; return the files."""
    p = probs.double().numpy()  # (C, *spatial)
    files: list[str] = []
    spatial = p.shape[1:]
    if affine is not None:
        channels_last = np.moveaxis(p, 0, -1).astype(np.float32)
        if len(spatial) == 2:
            channels_last = channels_last[:, :, None, :]
        files.append(_write(out / "probs" / f"{case}.nii.gz", _nifti_bytes(channels_last, affine.double().numpy())))
    else:
        reversed_axes = np.transpose(p, (0, *range(p.ndim - 1, 0, -1))).astype(np.float32)
        files.append(_write(out / "probs" / f"{case}.npz", _npz_bytes(probabilities=reversed_axes)))
    for level in levels:
        masks = (p[1:] >= level).astype(np.uint8)  # (C − 1, *spatial)
        files += _write_masks(out / "masks" / case, f"t{level:.2f}", masks, affine)
    return files


def _write_masks(folder: Path, stem: str, masks: np.ndarray, affine: Tensor | None) -> list[str]:
    if affine is not None:
        data = np.moveaxis(masks, 0, -1)
        data = data[..., 0] if data.shape[-1] == 1 else data
        if masks.ndim == 3:  # 2D image: (x, y[, C−1]) → (x, y, 1[, C−1])
            data = data[:, :, None, ...]
        return [_write(folder / f"{stem}.nii.gz", _nifti_bytes(data, affine.double().numpy()))]
    if masks.ndim == 3:
        names = [f"{stem}.png"] if len(masks) == 1 else [f"{stem}_c{c + 1}.png" for c in range(len(masks))]
        return [_write(folder / name, _png_bytes(mask)) for name, mask in zip(names, masks, strict=True)]
    return [_write(folder / f"{stem}.npz", _npz_bytes(masks=masks))]


def _input_loader(input_root: str | Path, num_classes: int) -> Any:
    from torch.utils.data import DataLoader

    from softlabels.data.folders import SegmentationFolder

    folder = SegmentationFolder(input_root, num_classes=num_classes)
    return DataLoader(folder.dataset(), batch_size=1, shuffle=False)


def predict(
    checkpoint: str | Path,
    output: str | Path,
    *,
    input_root: str | Path | None = None,
    split: str = "test",
    thresholds: Sequence[float] = QUBIQ_THRESHOLDS,
) -> dict[str, Any]:
    """Write the probability maps and thresholded masks of ``checkpoint`` (see the module docstring).

    The inputs are a user's folder (``input_root``: the generic layout with ``images/``) or a split of the run's
    data. Returns the manifest (also written as ``predictions.json``).

    Raises:
        ValueError: bad thresholds, a classification run given an image folder, unreadable inputs (named).

    Example:
        >>> import tempfile
        >>> from softlabels.training.config import config_from_dict
        >>> tmp = tempfile.TemporaryDirectory()
        >>> config = config_from_dict({"task": "classification", "output_dir": tmp.name, "model": {"name": "small_cnn"},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [16, 8, 8]}},
        ...     "trainer": {"max_epochs": 1, "enable_progress_bar": False}})
        >>> from softlabels.training.run import train
        >>> _ = train(config)
        >>> checkpoint = f"{tmp.name}/checkpoints/last.ckpt"
        >>> manifest = predict(checkpoint, f"{tmp.name}/predictions", split="test")
        >>> sorted(manifest), manifest["temperature"]
        (['files', 'temperature'], 1.0)
        >>> tmp.cleanup()
    """
    levels = check_thresholds(thresholds)
    config, dm, task = load_run(checkpoint)
    out = Path(output)
    if config.task == "classification":
        if input_root is not None:
            raise ValueError("predict on a folder is for segmentation runs; use --split for classification.")
        return _predict_classes(task, split_loader(dm, split), out)
    loader = _input_loader(input_root, task.num_classes) if input_root is not None else split_loader(dm, split)
    files: list[str] = []
    case_names = CaseNames()
    with torch.no_grad():
        for batch in loader:
            probs = torch.softmax(task.predict_logits(batch["image"]).float(), dim=1)
            affines = batch.get("affine")
            for i, name in enumerate(case_names(batch, len(probs))):
                affine = affines[i] if isinstance(affines, Tensor) else None
                files += _write_case(out, name, probs[i], affine, levels)
    manifest: dict[str, Any] = {"checkpoint": str(checkpoint), "thresholds": list(levels), "files": files}
    manifest["temperature"] = task.scaler.temperature_
    _write(out / "predictions.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def _predict_classes(task: Any, loader: Any, out: Path) -> dict[str, Any]:
    rows: list[list[Any]] = []
    case_names = CaseNames()
    with torch.no_grad():
        for batch in loader:
            probs = torch.softmax(task.predict_logits(batch["image"]).float(), dim=1)
            for name, row in zip(case_names(batch, len(probs)), probs.tolist(), strict=True):
                rows.append([name, *row, int(np.argmax(row))])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case", *[f"p{c}" for c in range(task.num_classes)], "predicted"])
    writer.writerows(rows)
    _write(out / "predictions.csv", buffer.getvalue().encode())
    return {"files": [str(out / "predictions.csv")], "temperature": task.scaler.temperature_}
