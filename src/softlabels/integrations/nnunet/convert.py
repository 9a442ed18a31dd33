"""Convert a softlabels data folder (generic or QUBIQ layout) into nnU-Net v2's raw format, soft labels encoded.

Written (all at once, see below)::

    <output>/Dataset<ID:03d>_<name>/imagesTr/<case>_<CCCC>.nii.gz   one file per image channel, values as read
    <output>/Dataset<ID:03d>_<name>/labelsTr/<case>.nii.gz          the encoded label map, uint8, the image's affine
    <output>/Dataset<ID:03d>_<name>/dataset.json                    channel_names, labels (+ regions_class_order),
                                                                    numTraining, file_ending, softlabels_encoding
    <output>/Dataset<ID:03d>_<name>/softlabels_encoding.json        the same encoding, on its own

The label maps hold :class:`~softlabels.integrations.nnunet.encoding.LabelEncoding`'s codes: up to 8 binary raters
as one bit each (``v = Σ_r 2^r y_r``, ``L = R``), a binary label with an annotator confidence as a "foreground level"
(``v = round(q·L)``), or the plain labels; ``dataset.json`` declares nested regions "at least ``k`` of ``L``" for the
first two so that nnU-Net's plain ``nnUNetTrainer`` still trains something meaningful (an ordinal model); nnU-Net keeps
extra keys of ``dataset.json``, so the encoding travels with the dataset.

Geometry: a NIfTI image is written with its own affine (qform and sform), a 2D slice as ``(x, y, 1)``; a PNG image
(no geometry) is written as NIfTI ``(x, y, 1)`` with the identity affine (1 mm voxels), its RGB bands as 3 channels.
The input is read with softlabels' own folder readers (:mod:`softlabels.data.folder_layouts`,
:mod:`softlabels.data.folder_qubiq`), so the same header and value checks apply. The dataset folder is built in a
staging folder and swapped in whole (:func:`softlabels._io.staged_folder`): a refused or failed conversion leaves no
partial dataset, and an existing non-empty dataset folder is refused unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from softlabels._io import atomic_write_bytes, check_output_folder, staged_folder
from softlabels._options import look_up_option
from softlabels.data.folder_layouts import SegmentationCase, check_case, check_consistent, index_generic, load_sample
from softlabels.data.folder_qubiq import index_qubiq
from softlabels.integrations.nnunet.encoding import (
    MAX_LEVEL,
    MAX_RATERS,
    LabelEncoding,
    encode_confidence,
    encode_raters,
)

__all__ = ["convert_to_nnunet"]

FILE_ENDING = ".nii.gz"
ENCODING_FILE = "softlabels_encoding.json"
_WHERE = "convert_to_nnunet"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_READ_CLASSES = MAX_LEVEL + 1  # read maps with the widest range; the encoding's own checks then name the problem


def convert_to_nnunet(
    root: str | Path,
    output: str | Path,
    *,
    dataset_id: int,
    name: str,
    layout: str = "generic",
    task: int = 1,
    source: str = "auto",
    levels: int = 10,
    channel_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``<output>/Dataset<ID>_<name>`` in nnU-Net v2's raw format, with the soft labels encoded as levels.

    ``source="auto"`` takes the raters if the cases have ``raters/`` (QUBIQ always does), else the confidence if they
    have ``labels/`` and ``confidence/``, else the hard ``labels/``. Levels: ``v = Σ_r y_r`` (``L = R``, exact) or
    ``v = ⌊q·L + ½⌋`` with ``q = c`` on label 1 and ``1 − c`` on label 0 (``L = levels``), decoded as ``q = v / L``.

    Args:
        root: the data folder (generic: holding ``images/``; QUBIQ: the folder of case folders).
        output: nnU-Net's raw folder (``$nnUNet_raw``); the dataset is a sub-folder.
        dataset_id: nnU-Net's dataset id, 1..999.
        name: the dataset name (letters, digits, ``_ . -``).
        layout: ``"generic"`` or ``"qubiq"``.
        task: the QUBIQ task number.
        source: ``"auto"``, ``"raters"``, ``"confidence"`` or ``"labels"``.
        levels: ``L`` for the confidence encoding (1..255).
        channel_names: one name per image channel (nnU-Net picks its normalisation from it: ``"CT"`` or else
            z-score); default ``"image"`` (one channel) or ``"channel_<c>"``.
        num_classes: classes of a ``"labels"`` conversion; default the largest label found + 1.
        overwrite: replace an existing non-empty dataset folder.

    Returns:
        ``{"folder", "cases", "encoding", "dataset_json"}``: the dataset folder, case names, encoding dict and the
        ``dataset.json`` content.

    Raises:
        ValueError: bad arguments, an existing dataset (or another dataset of the same id), folder errors of the
            readers, several raters with non-binary maps, a non-binary label with confidence (files are named).

    Example:
        >>> import tempfile
        >>> import nibabel as nib
        >>> tmp = Path(tempfile.mkdtemp())
        >>> for sub, value in (("images", 5), ("raters/r1", 1), ("raters/r2", 0)):
        ...     (tmp / "in" / sub).mkdir(parents=True)
        ...     nib.save(nib.Nifti1Image(np.full((4, 4, 1), value, np.uint8), np.eye(4)), tmp / "in" / sub / "a.nii.gz")
        >>> out = convert_to_nnunet(tmp / "in", tmp / "raw", dataset_id=7, name="Demo")
        >>> Path(out["folder"]).name, out["encoding"]["levels"], out["dataset_json"]["regions_class_order"]
        ('Dataset007_Demo', 2, [1, 3])
        >>> nib.load(Path(out["folder"]) / "labelsTr" / "a.nii.gz").get_fdata()[0, 0, 0]
        np.float64(1.0)
    """
    target = _check_arguments(output, dataset_id, name, levels, overwrite)
    chosen_layout = look_up_option("layout", layout, ("generic", "qubiq"), where=_WHERE)
    source = look_up_option("source", source, ("auto", "raters", "confidence", "labels"), where=_WHERE)
    if chosen_layout == "qubiq":
        if isinstance(task, bool) or not isinstance(task, int) or task < 1:
            raise ValueError(f"`task` of {_WHERE} must be an int >= 1; got {task!r}.")
        cases, _ = index_qubiq(root, task)
    else:
        cases, _ = index_generic(root)
    source = _resolve_source(cases, source, root)
    layouts = {c.name: check_case(c, 2) for c in cases}
    check_consistent(cases, layouts)
    channels = layouts[cases[0].name].channels
    names = _channel_names(channel_names, channels)
    if source == "raters" and len(cases[0].raters) > MAX_LEVEL:
        raise ValueError(f"{_WHERE} encodes at most {MAX_LEVEL} raters in a uint8 map; got {len(cases[0].raters)}.")
    with staged_folder(target) as stage:
        (stage / "imagesTr").mkdir()
        (stage / "labelsTr").mkdir()
        top = 0
        for case in cases:
            sample = load_sample(case, layouts[case.name], num_classes=_read_classes(source, num_classes))
            encoded, found = _encode(case, sample, source, levels)
            top = max(top, found)
            _write_case(stage, case.name, sample, encoded)
        encoding = _encoding(source, cases, levels, num_classes, top)
        dataset_json = _dataset_json(encoding, names, len(cases), name)
        for file in ("dataset.json", ENCODING_FILE):
            content = dataset_json if file == "dataset.json" else encoding.to_dict()
            atomic_write_bytes(stage / file, (json.dumps(content, indent=2) + "\n").encode())
    return {"folder": str(target), "cases": [c.name for c in cases], "encoding": encoding.to_dict(),
            "dataset_json": dataset_json}  # fmt: skip


def _check_arguments(output: str | Path, dataset_id: int, name: str, levels: int, overwrite: bool) -> Path:
    """The dataset folder, after checking the arguments and that nothing is in the way."""
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
        raise ValueError(f"`dataset_id` of {_WHERE} must be an int in [1, 999]; got {dataset_id!r}.")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"`name` of {_WHERE} must be letters, digits, '_', '.', '-' (no spaces); got {name!r}.")
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= MAX_LEVEL:
        raise ValueError(f"`levels` of {_WHERE} must be an int in [1, {MAX_LEVEL}]; got {levels!r}.")
    out = check_output_folder(output, what="the nnU-Net raw folder")
    target = out / f"Dataset{dataset_id:03d}_{name}"
    if out.is_dir():
        others = sorted(p.name for p in out.glob(f"Dataset{dataset_id:03d}_*") if p.is_dir() and p != target)
        if others:
            raise ValueError(
                f"{str(out)!r} already holds {others[0]!r} with dataset id {dataset_id}; nnU-Net finds datasets by "
                "id, so choose another id."
            )
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise ValueError(
            f"the dataset folder {str(target)!r} exists and is not empty; pass overwrite=True to replace it."
        )
    if target.exists() and not target.is_dir():
        raise ValueError(f"the dataset folder {str(target)!r} exists and is not a folder.")
    return target


def _resolve_source(cases: Sequence[SegmentationCase], source: str, root: str | Path) -> str:
    """The source asked for, or for ``"auto"`` the first available of raters, confidence, labels."""
    first = cases[0]
    available = {
        "raters": bool(first.raters),
        "confidence": first.label is not None and first.confidence is not None,
        "labels": first.label is not None,
    }
    if source == "auto":
        source = next((s for s, ok in available.items() if ok), "none")
        if source == "none":
            raise ValueError(
                f"{_WHERE}: the folder {str(root)!r} has no raters/, labels/ (+ confidence/) to convert"
                + (" (soft maps in probs/ are not converted)." if first.probs is not None else ".")
            )
    elif not available[source]:
        needs = {"raters": "raters/", "confidence": "labels/ and confidence/", "labels": "labels/"}[source]
        raise ValueError(f"source={source!r} of {_WHERE} needs {needs} in {str(root)!r}; they are missing.")
    return source


def _channel_names(channel_names: Sequence[str] | None, channels: int) -> dict[str, str]:
    if channel_names is None:
        return {"0": "image"} if channels == 1 else {str(c): f"channel_{c}" for c in range(channels)}
    given = [channel_names] if isinstance(channel_names, str) else list(channel_names)
    if len(given) != channels or not all(isinstance(n, str) and n for n in given):
        raise ValueError(
            f"`channel_names` of {_WHERE} must be {channels} non-empty string(s), one per image channel; "
            f"got {channel_names!r}."
        )
    return {str(c): n for c, n in enumerate(given)}


def _read_classes(source: str, num_classes: int | None) -> int:
    if source != "labels" or num_classes is None:
        return _READ_CLASSES
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 2 <= num_classes <= _READ_CLASSES:
        raise ValueError(f"`num_classes` of {_WHERE} must be an int in [2, {_READ_CLASSES}]; got {num_classes!r}.")
    return num_classes


def _encode(case: SegmentationCase, sample: dict[str, Any], source: str, levels: int) -> tuple[np.ndarray, int]:
    """The encoded uint8 map ``(*spatial)`` of one case and its largest value."""
    if source == "raters":
        raters = sample["raters"].numpy()
        if len(raters) > MAX_RATERS:
            raise ValueError(
                f"case {case.name!r} has {len(raters)} raters: nnU-Net label maps hold at most {MAX_RATERS} (one bit "
                "per rater in a uint8 map); use --source confidence with a fused map, or fewer raters."
            )
        for path, rater in zip(case.raters, raters, strict=True):
            if rater.size and rater.max() > 1:
                raise ValueError(
                    f"the rater map {str(path)!r} holds label {int(rater.max())}: several raters can be encoded for "
                    "binary (0/1) tasks only (a multi-class distribution per voxel does not fit one integer map)."
                )
        encoded = encode_raters(raters)
    elif source == "confidence":
        label = sample["label"][0].numpy()
        if label.size and label.max() > 1:
            raise ValueError(
                f"the label map {str(case.label)!r} holds label {int(label.max())}: the confidence encoding is for "
                "binary (0/1) tasks only."
            )
        encoded = encode_confidence(label, sample["confidence"][0].numpy(), levels)
    else:
        encoded = sample["label"][0].numpy().astype(np.uint8)
    return encoded, int(encoded.max()) if encoded.size else 0


def _write_case(stage: Path, case: str, sample: dict[str, Any], encoded: np.ndarray) -> None:
    """Write one case's image channels and encoded label map as NIfTI, sharing the image's affine."""
    import nibabel as nib

    affine = sample["affine"].numpy() if "affine" in sample else np.eye(4)

    def save(array: np.ndarray, path: Path) -> None:
        volume = array[..., None] if array.ndim == 2 else array
        image = nib.Nifti1Image(np.ascontiguousarray(volume), affine)
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        nib.save(image, str(path))

    for channel, values in enumerate(sample["image"].numpy()):
        save(values, stage / "imagesTr" / f"{case}_{channel:04d}{FILE_ENDING}")
    save(encoded, stage / "labelsTr" / f"{case}{FILE_ENDING}")


def _encoding(
    source: str, cases: Sequence[SegmentationCase], levels: int, num_classes: int | None, top: int
) -> LabelEncoding:
    if source == "raters":
        return LabelEncoding("rater_bits", len(cases[0].raters), "raters")
    if source == "confidence":
        return LabelEncoding("foreground_levels", levels, "confidence")
    classes = num_classes if num_classes is not None else max(top + 1, 2)
    return LabelEncoding("labels", classes - 1, "labels", classes)


def _dataset_json(encoding: LabelEncoding, channel_names: dict[str, str], num_cases: int, name: str) -> dict:
    """nnU-Net's ``dataset.json`` (its required keys, regions when the encoding has them, and the encoding)."""
    labels, regions_class_order = encoding.dataset_labels()
    content: dict[str, Any] = {"channel_names": channel_names, "labels": labels}
    if regions_class_order is not None:
        content["regions_class_order"] = regions_class_order
    content |= {"numTraining": num_cases, "file_ending": FILE_ENDING, "name": name}
    descriptions = {
        "rater_bits": f"one bit per rater (v = sum_r 2^r y_r, {encoding.levels} raters)",
        "foreground_levels": f"the soft foreground as a level (q = v / {encoding.levels})",
        "labels": "plain hard label maps",
    }
    content["description"] = f"Converted by softlabels: {descriptions[encoding.kind]}; see softlabels_encoding."
    content["softlabels_encoding"] = encoding.to_dict()
    return content
