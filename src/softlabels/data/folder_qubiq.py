"""QUBIQ's native layout (challenge 2020/2021): one folder per case, one binary map per rater and task.

Layout relied on (as distributed, e.g. ``brain-growth/Training/case01/``, ``pancreas/case1-1/`` in 2021)::

    <root>/<case>/image.nii.gz                   the image: a 2D slice stored as NIfTI (x, y) or (x, y, 1),
                                                 multimodal slices as (x, y, C), or a 3D volume (x, y, z)
    <root>/<case>/task<TT>_seg<RR>.nii.gz        rater RR's binary map (0/1) of task TT, same spatial shape

Pass the folder of case folders (``…/Training`` or ``…/Validation``); the case folder names are the case ids. Other
files in a case folder (other tasks, derived masks such as ``case01_mask.nii.gz``) are ignored. Every case must
have the same rater numbers for the chosen task (rater ``RR`` is a fixed annotator), sorted by number. QUBIQ's
tasks are binary (2 classes): ``"soft_label"`` is the rater mean ``(1 − m, m)`` and ``"label"`` the strict
majority ``votes ≥ ⌊R/2⌋ + 1`` (a tie, possible for even R, is background), as ``softlabels.targets.fuse_raters``.
"""

from __future__ import annotations

import re
from pathlib import Path

from softlabels.data.folder_layouts import SegmentationCase
from softlabels.data.prediction_files import _check_folder, _few

__all__ = ["index_qubiq"]

_SPLIT_FOLDERS = ("Training", "Validation", "Test", "training_data_v3_QC", "validation_data_qubiq2021_QC")
_QUBIQ_MAP = re.compile(r"^task(\d+)_seg(\d+)\.nii(\.gz)?$", re.IGNORECASE)


def _qubiq_case(folder: Path, task: int) -> tuple[Path | None, dict[int, Path], set[int]]:
    """The image, this task's rater maps by rater number, and every task number seen, of one QUBIQ case folder."""
    image = next((folder / n for n in ("image.nii.gz", "image.nii") if (folder / n).is_file()), None)
    maps: dict[int, Path] = {}
    tasks: set[int] = set()
    for path in sorted(folder.iterdir()):
        match = _QUBIQ_MAP.match(path.name)
        if match is None or not path.is_file():
            continue
        tasks.add(int(match[1]))
        if int(match[1]) == task:
            if int(match[2]) in maps:
                raise ValueError(f"QUBIQ case {str(folder)!r} has two maps of rater {int(match[2])}: {path.name}.")
            maps[int(match[2])] = path
    return image, maps, tasks


def index_qubiq(root: Path | str, task: int) -> tuple[list[SegmentationCase], list[str]]:
    """Find the cases of a QUBIQ folder (``<case>/image.nii.gz``, ``<case>/task<TT>_seg<RR>.nii.gz``) for one task.

    Other files of a case folder (other tasks, derived masks) are ignored; the raters are sorted by number.

    Args:
        root: the folder of case folders (e.g. ``brain-growth/Training``).
        task: the task number ``TT``.

    Returns:
        ``(cases sorted by folder name, rater names "seg01", …)``.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no case folder, a case without ``image.nii.gz`` or without maps of the task, or cases with
            different raters (the folders are named).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for name in ("case01/image.nii.gz", "case01/task01_seg01.nii.gz", "case01/task01_seg02.nii.gz"):
        ...         Path(tmp, name).parent.mkdir(exist_ok=True)
        ...         _ = Path(tmp, name).write_bytes(b"")
        ...     cases, raters = index_qubiq(tmp, 1)
        >>> cases[0].name, [p.name for p in cases[0].raters], raters
        ('case01', ['task01_seg01.nii.gz', 'task01_seg02.nii.gz'], ['seg01', 'seg02'])
    """
    root = _check_folder(Path(root), "QUBIQ")
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    split = next((d.name for d in dirs if d.name in _SPLIT_FOLDERS), None)
    hint = f" (the folder of case folders, e.g. {str(root / split)!r}?)" if split else ""
    if not dirs:
        raise ValueError(f"the QUBIQ folder {str(root)!r} holds no case folders.")
    found = {d.name: _qubiq_case(d, task) for d in dirs}
    no_image = [n for n, (image, _, _) in found.items() if image is None]
    if no_image:
        raise ValueError(f"QUBIQ case folder(s) in {str(root)!r} without image.nii.gz: {_few(no_image)}{hint}.")
    no_maps = [n for n, (_, maps, _) in found.items() if not maps]
    if no_maps:
        tasks = sorted({t for _, _, seen in found.values() for t in seen})
        raise ValueError(
            f"QUBIQ case folder(s) in {str(root)!r} without task{task:02d}_seg<RR>.nii.gz maps: {_few(no_maps)} "
            f"(tasks found: {tasks})."
        )
    first = next(iter(found))
    numbers = sorted(found[first][1])
    for name, (_, maps, _) in found.items():
        if sorted(maps) != numbers:
            raise ValueError(
                f"QUBIQ case {str(root / name)!r} has the raters {sorted(maps)} of task {task:02d}; case "
                f"{first!r} has {numbers}. Every case must have the same raters."
            )
    cases = [
        SegmentationCase(n, image, raters=tuple(m[r] for r in numbers)) for n, (image, m, _) in found.items() if image
    ]
    return cases, [f"seg{r:02d}" for r in numbers]
