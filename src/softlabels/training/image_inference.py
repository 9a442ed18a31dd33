"""A trained model on new images: the run's stored input pipeline, the network, and the output on the input's grid.

``softlabels evaluate --data-config`` (a folder source) and ``softlabels predict --input`` read raw images from a
folder; :func:`predict_image` prepares each as the run's training data was prepared
(:class:`~softlabels.data.input_pipeline.InputPipeline`: orientation, intensity scaling, resampling to the training
voxel size, padding, z-scoring), runs the network (slice by slice for a model trained on slices of volumes; with
the run's sliding window for volumes larger than its ``inference.roi_size``) and returns the probabilities on the
input's own grid, so they can be written with the input's affine and scored against references on that grid.
:func:`open_folder` reads a data section (``--data-config``) of a folder source without splitting it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from softlabels.data.input_pipeline import InputPipeline

__all__ = ["FOLDER_SOURCES", "input_pipeline_of", "open_folder", "predict_image"]

FOLDER_SOURCES = ("folder", "qubiq")
"""Data sources read as raw images by ``evaluate --data-config`` and ``predict --input``.

Example:
    >>> "folder" in FOLDER_SOURCES
    True
"""

_SPLIT_KEYS = ("split_file", "fractions", "seed")
_FOLDER_KEYS = ("root", "num_classes", "task", "load", "check_values", "class_names")


def input_pipeline_of(task: Any) -> InputPipeline:
    """The stored input pipeline of a loaded task (the identity for runs trained before pipelines were stored).

    Example:
        >>> class Task:
        ...     input_pipeline = {"spatial_dims": 2, "size_multiple": 16}
        ...     spatial_dims = 2
        >>> input_pipeline_of(Task()).size_multiple
        16
    """
    stored = getattr(task, "input_pipeline", None)
    if stored:
        return InputPipeline.from_dict(stored)
    return InputPipeline(int(task.spatial_dims))


def predict_image(task: Any, image: Tensor, affine: Any = None, *, batch_size: int = 8) -> Tensor:
    """Class probabilities ``(K, *spatial)`` of one image ``(C, *spatial)``, on the image's grid.

    The run's stored pipeline prepares the image (module docstring); a slice model sees every slice of a volume
    along the pipeline's ``slice_axis`` (``batch_size`` at a time); the probabilities (with the task's temperature)
    are mapped back by :meth:`~softlabels.data.input_pipeline.InputPipeline.restore`.

    Raises:
        ValueError: the image's channels or number of spatial axes do not fit the model (both named).

    Example:
        >>> from softlabels.methods import create_method
        >>> from softlabels.models import create_model
        >>> from softlabels.training.task import SegmentationTask
        >>> model = create_model("unet", in_channels=1, num_classes=3, spatial_dims=2, channels=[4, 8], strides=[2])
        >>> task = SegmentationTask(model, create_method("hard", 3), num_classes=3, spatial_dims=2).eval()
        >>> task.input_pipeline = InputPipeline(2, spacing=(2.0, 2.0, 2.0), size_multiple=8, slice_axis=2).to_dict()
        >>> probs = predict_image(task, torch.rand(1, 30, 20, 6), torch.eye(4))
        >>> tuple(probs.shape), bool(torch.allclose(probs.sum(0), torch.ones(30, 20, 6), atol=1e-5))
        ((3, 30, 20, 6), True)
    """
    pipeline = input_pipeline_of(task)
    channels = getattr(task, "data_shape", {}).get("in_channels")
    if channels is not None and image.shape[0] != channels:
        raise ValueError(f"the image has {image.shape[0]} channel(s); the model was trained on {channels}.")
    dims = image.ndim - 1
    sliced = pipeline.spatial_dims == 2 and dims == 3
    if sliced and pipeline.slice_axis is None:
        raise ValueError("the model takes 2D images and stores no slice axis; the image is a 3D volume.")
    if dims < pipeline.spatial_dims:
        raise ValueError(f"the model takes {pipeline.spatial_dims}D images; the image has {dims} spatial axes.")
    prepared, placement = pipeline.prepare(image, affine)
    device = next(task.parameters()).device
    with torch.no_grad():
        if sliced:
            axis = 1 + int(pipeline.slice_axis)  # type: ignore[arg-type]
            slices = prepared.movedim(axis, 0)  # (S, C, a, b)
            parts = [
                torch.softmax(task.predict_logits(slices[i : i + batch_size].to(device)).float(), dim=1).cpu()
                for i in range(0, len(slices), batch_size)
            ]
            probs = torch.cat(parts).movedim(0, axis)
        else:
            probs = torch.softmax(task.predict_logits(prepared[None].to(device)).float(), dim=1)[0].cpu()
    return pipeline.restore(probs, placement)


def open_folder(data: Mapping[str, Any], *, num_classes: int, split: str | None = None) -> tuple[Any, list[str]]:
    """The folder of a ``--data-config`` data section and the cases to read: all, or those of ``split``.

    Args:
        data: the data section: ``source`` (``folder`` or ``qubiq``), ``options`` (the folder's: ``root``,
            ``num_classes``, ``class_names``, ``task``, ``load``, ``check_values``, and for ``split`` the split's:
            ``split_file``, ``fractions``, ``seed``), ``transforms`` (MONAI dictionary transforms by name, applied to
            every case).
        num_classes: the model's classes (the folder's ``num_classes`` must agree when given).
        split: ``None`` (every case) or ``train``/``val``/``test`` of the folder's split.

    Returns:
        ``(dataset, case names)``: a dataset of the cases (``info`` with ``class_names`` when given).

    Raises:
        ValueError: another source, an unknown option, or classes that differ from the model's (all named).

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     Path(tmp, "images").mkdir()
        ...     for case in ("a", "b", "c", "d"):
        ...         Image.fromarray(np.full((4, 4), 9, np.uint8)).save(f"{tmp}/images/{case}.png")
        ...     dataset, cases = open_folder({"source": "folder", "options": {"root": tmp}}, num_classes=2)
        ...     shape = tuple(dataset[0]["image"].shape)  # read on access
        >>> cases, shape
        (['a', 'b', 'c', 'd'], (1, 4, 4))
    """
    from softlabels.data.folders import SegmentationFolder, split_cases
    from softlabels.training.data_sources import build_transforms

    source = data.get("source")
    if source not in FOLDER_SOURCES:
        raise ValueError(f"--data-config: source {source!r} is not a folder source {list(FOLDER_SOURCES)}.")
    options = dict(data.get("options") or {})
    unknown = sorted(set(options) - set(_FOLDER_KEYS) - set(_SPLIT_KEYS))
    if unknown:
        raise ValueError(
            f"--data-config: unknown option(s) {unknown} of source {source!r}; "
            f"valid: {sorted(_FOLDER_KEYS + _SPLIT_KEYS)}."
        )
    given = options.get("num_classes")
    if given is not None and given != num_classes:
        raise ValueError(f"--data-config: num_classes {given!r} differs from the model's {num_classes}.")
    class_names = options.pop("class_names", None)
    if class_names is not None and (not isinstance(class_names, list) or len(class_names) != num_classes):
        raise ValueError(f"--data-config: class_names must list {num_classes} names; got {class_names!r}.")
    folder_options = {k: options[k] for k in _FOLDER_KEYS if k in options and k != "class_names"}
    if source == "folder":
        folder_options["num_classes"] = num_classes
    folder = SegmentationFolder(layout="generic" if source == "folder" else "qubiq", **folder_options)
    cases = list(folder.cases)
    if split is not None:
        split_options = {k: options[k] for k in _SPLIT_KEYS if k in options}
        cases = split_cases(cases, **split_options)[split]
    dataset = folder.dataset(cases, transform=build_transforms(data.get("transforms"), where="data.transforms"))
    if class_names is not None:
        dataset.info["class_names"] = [str(c) for c in class_names]
    return dataset, cases
