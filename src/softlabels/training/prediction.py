"""``softlabels predict``: calibrated probability maps and thresholded masks of a checkpoint, written atomically.

Segmentation outputs, per case, in ``output/``:

- ``probs/<case>.nii.gz`` for NIfTI inputs: the probabilities with the classes on the last axis ``(x, y, z, C)``
  (``(x, y, 1, C)`` for a 2D image) and **the input's affine** — the layout ``softlabels score --probs`` reads
  (data of a known voxel size without per-sample affines, e.g. MNI152 slices: a diagonal affine of that size, so
  ``score`` measures HD95 in mm as ``evaluate`` does);
  ``probs/<case>.npz`` otherwise (key ``probabilities``, ``(C, *reversed spatial axes)``, nnU-Net's layout);
- ``masks/<case>/t<level>.nii.gz`` (NIfTI inputs) or ``masks/<case>/t<level>[_c<class>].png`` (2D otherwise) or
  ``.npz``: for every threshold level ``t``, the voxels with ``p_c >= t``, one channel per foreground class (a binary
  task: a single map). Masks are nested by construction: the mask at 0.9 lies inside the mask at 0.1;
- ``masks/<case>/conformal.*`` with ``--conformal FILE`` (thresholds of ``softlabels conformal``): the masks at each
  structure's controlled threshold, one channel per structure, in the format of the other masks;
- ``predictions.json``: the files, the thresholds and the temperature used (and the conformal file's content).

``<case>`` is the sample's name (:class:`~softlabels.evaluation.case_names.CaseNames`: its ``"case"``, with ``_1``,
``_2``, … appended when a source's case holds several samples, e.g. the nodules of one LIDC patient).

Classification: ``predictions.csv`` (case, the probability of each class, the predicted class; with
``--conformal``, the prediction set — the classes separated by spaces — and its size) and ``predictions.json``.

The output folder is written as a whole (:func:`softlabels._io.staged_folder`): the new predictions are built beside
it and swapped in when complete, so a folder never mixes an earlier prediction's masks with this one's. ``output``
must be new, empty, or hold an earlier ``predict`` output only (its ``predictions.json`` and the files named as
above); any other file in it is refused before the model is even loaded.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from softlabels._io import atomic_write_bytes, check_output_folder, staged_folder
from softlabels.evaluation.case_names import CaseNames
from softlabels.training.inference import split_loader
from softlabels.training.run import load_run

__all__ = ["QUBIQ_THRESHOLDS", "check_prediction_folder", "check_thresholds", "predict"]

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
    atomic_write_bytes(path, payload)
    return str(path)


MANIFEST = "predictions.json"
_OWN_FILES = re.compile(
    r"^(predictions\.json|predictions\.csv|probs/[^/]+\.(nii\.gz|npz)"
    r"|masks/[^/]+/(t[0-9.]+|conformal)(_c\d+)?\.(nii\.gz|png|npz))$"
)


def check_prediction_folder(output: str | Path) -> Path:
    """Check ``output`` may receive predictions: new, empty, or an earlier ``predict`` output only.

    Raises:
        ValueError: ``output`` is a file or not writable, or holds a file that ``predict`` did not write (named).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "notes.txt").write_text("mine")
        ...     try:
        ...         check_prediction_folder(tmp)
        ...     except ValueError as err:
        ...         "notes.txt" in str(err)
        True
    """
    out = check_output_folder(output, what="--output")
    if not out.is_dir():
        return out
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir())
    foreign = [f for f in files if not _OWN_FILES.match(f)]
    if files and not (out / MANIFEST).is_file():
        foreign = foreign or files
    if foreign:
        raise ValueError(
            f"--output {str(out)!r} holds files that `predict` did not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); give a new or empty folder, or one holding an earlier "
            "prediction only (it is replaced as a whole)."
        )
    return out


def _write_case(
    out: Path, case: str, probs: Tensor, affine: Tensor | None, levels: Sequence[float], conformal: Any = None
) -> list[str]:
    """Write one case's probability map and masks (and its conformal masks); return the files."""
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
    if conformal is not None:
        masks = conformal.masks(probs[None])[0].cpu().numpy().astype(np.uint8)  # (K, *spatial)
        files += _write_masks(out / "masks" / case, "conformal", masks, affine)
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


def predict(
    checkpoint: str | Path,
    output: str | Path,
    *,
    input_root: str | Path | None = None,
    split: str = "test",
    thresholds: Sequence[float] = QUBIQ_THRESHOLDS,
    conformal: str | Path | None = None,
) -> dict[str, Any]:
    """Write the probability maps and thresholded masks of ``checkpoint`` (see the module docstring).

    ``conformal`` is a file of ``softlabels conformal`` fitted on this checkpoint: its thresholds give one more mask
    per case (segmentation), its prediction sets one more column (classification).

    The inputs are a user's folder (``input_root``: the generic layout with ``images/``; other folders are
    ignored) or a split of the run's data. Folder images go through the run's stored input pipeline
    (:func:`~softlabels.training.image_inference.predict_image`) and their outputs are written on the image's own
    grid with its affine. Returns the manifest (also written as ``predictions.json``).

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
        (['checkpoint', 'files', 'temperature'], 1.0)
        >>> tmp.cleanup()
    """
    levels = check_thresholds(thresholds)
    out = check_prediction_folder(output)
    fitted, fitted_dict = _read_conformal(conformal)
    if input_root is not None:
        return _predict_folder(checkpoint, out, input_root, levels, (fitted, fitted_dict, conformal))
    config, dm, task = load_run(checkpoint)
    _check_conformal(fitted, fitted_dict, config.task, task, conformal)
    loader = split_loader(dm, split)
    manifest: dict[str, Any] = {"checkpoint": str(checkpoint), "temperature": task.scaler.temperature_}
    if fitted is not None:
        manifest["conformal"] = {"file": str(conformal), **fitted_dict}
    with staged_folder(out) as stage:
        if config.task == "classification":
            names = _predict_classes(task, loader, stage, fitted)
        else:
            manifest["thresholds"] = list(levels)
            names = _predict_masks(task, loader, stage, levels, fitted)
        manifest["files"] = [str(out / name) for name in names]
        _write(stage / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def _read_conformal(path: str | Path | None) -> tuple[Any, dict[str, Any]]:
    """The fitted thresholds or sets of a ``softlabels conformal`` file and its JSON content (``None``, {})."""
    if path is None:
        return None, {}
    from softlabels.conformal import read_conformal, read_provenance

    fitted = read_conformal(path)
    return fitted, fitted.to_dict() | {"provenance": read_provenance(path)}


def _check_conformal(fitted: Any, content: dict[str, Any], task_kind: str, task: Any, path: Any) -> None:
    """Refuse a conformal file of the other task, of channels the run lacks, or fitted at another temperature."""
    if fitted is None:
        return
    from softlabels.conformal import ConformalSets

    expected = "classification" if isinstance(fitted, ConformalSets) else "segmentation"
    if expected != task_kind:
        raise ValueError(f"--conformal {str(path)!r} was fitted for {expected}; this is a {task_kind} run.")
    channels = tuple(getattr(fitted, "channels", ()))
    if channels and max(channels) >= task.num_classes:
        raise ValueError(
            f"--conformal {str(path)!r} thresholds channel {max(channels)}; the run has {task.num_classes} channels."
        )
    fitted_t = (content.get("provenance") or {}).get("temperature")
    if fitted_t is not None and abs(float(fitted_t) - float(task.scaler.temperature_)) > 1e-6:
        raise ValueError(
            f"--conformal {str(path)!r} was fitted on probabilities at temperature {fitted_t}; this checkpoint uses "
            f"{task.scaler.temperature_}: refit it with `softlabels conformal --checkpoint` on this checkpoint."
        )


def _predict_folder(
    checkpoint: str | Path, out: Path, input_root: str | Path, levels: Sequence[float], conformal: tuple
) -> dict:
    """``predict --input``: every image of a folder through the run's stored pipeline, written on its own grid."""
    from softlabels.training.image_inference import open_folder, predict_image
    from softlabels.training.run import load_model

    config, task = load_model(checkpoint)
    if config.task == "classification":
        raise ValueError("predict on a folder is for segmentation runs; use --split for classification.")
    _check_conformal(conformal[0], conformal[1], config.task, task, conformal[2])
    data = {"source": "folder", "options": {"root": str(input_root), "check_values": False}}
    dataset, _ = open_folder(data, num_classes=task.num_classes)
    manifest: dict[str, Any] = {"checkpoint": str(checkpoint), "temperature": task.scaler.temperature_}
    manifest |= {"thresholds": list(levels), "input": str(input_root), "input_pipeline": task.input_pipeline}
    if conformal[0] is not None:
        manifest["conformal"] = {"file": str(conformal[2]), **conformal[1]}
    with staged_folder(out) as stage:
        files: list[str] = []
        for index in range(len(dataset)):
            sample = dataset[index]
            affine = sample.get("affine")
            probs = predict_image(task, sample["image"], affine, batch_size=config.data.batch_size)
            files += _write_case(stage, str(sample["case"]), probs, affine, levels, conformal[0])
        manifest["files"] = [str(out / Path(f).relative_to(stage)) for f in files]
        _write(stage / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def _predict_masks(task: Any, loader: Any, stage: Path, levels: Sequence[float], conformal: Any = None) -> list[str]:
    """Write every case's probability map and masks into ``stage``; return their paths relative to it."""
    files: list[str] = []
    case_names = CaseNames()
    spacing = getattr(loader.dataset, "info", {}).get("spacing")  # data of a known voxel size without affines
    sizes = None if spacing is None else [*map(float, spacing), 1.0, 1.0][:3]  # a 2D slice: (x, y, 1)
    grid = None if sizes is None else torch.diag(torch.tensor([*sizes, 1.0]))
    with torch.no_grad():
        for batch in loader:
            probs = torch.softmax(task.predict_logits(batch["image"]).float(), dim=1)
            affines = batch.get("affine")
            for i, name in enumerate(case_names(batch, len(probs))):
                affine = affines[i] if isinstance(affines, Tensor) else grid
                files += _write_case(stage, name, probs[i], affine, levels, conformal)
    return [str(Path(f).relative_to(stage)) for f in files]


def _predict_classes(task: Any, loader: Any, stage: Path, conformal: Any = None) -> list[str]:
    rows: list[list[Any]] = []
    case_names = CaseNames()
    generator = torch.Generator().manual_seed(0)  # randomised sets: reproducible
    with torch.no_grad():
        for batch in loader:
            probs = torch.softmax(task.predict_logits(batch["image"]).float(), dim=1)
            sets = None if conformal is None else conformal.predict(probs, generator=generator)
            for i, (name, row) in enumerate(zip(case_names(batch, len(probs)), probs.tolist(), strict=True)):
                members = [] if sets is None else sets[i].nonzero()[:, 0].tolist()
                extra = [] if sets is None else [" ".join(map(str, members)), len(members)]
                rows.append([name, *row, int(np.argmax(row)), *extra])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    extra_header = [] if conformal is None else ["prediction_set", "set_size"]
    writer.writerow(["case", *[f"p{c}" for c in range(task.num_classes)], "predicted", *extra_header])
    writer.writerows(rows)
    _write(stage / "predictions.csv", buffer.getvalue().encode())
    return ["predictions.csv"]
