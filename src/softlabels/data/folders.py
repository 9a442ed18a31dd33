"""Segmentation data folders as :class:`SampleDataset` s and a :class:`SoftLabelDataModule`: generic and QUBIQ.

Generic layout (2D PNG or 3D NIfTI; cases matched by file name stem; every folder but ``images/`` optional)::

    root/images/<case>.nii.gz|.nii|.png          the image (channels: see folder_checks)
    root/labels/<case>.nii.gz|.nii|.png          hard label map, integers in [0, num_classes)
    root/raters/<rater>/<case>.nii.gz|.nii|.png  one hard map per rater (raters in sorted folder-name order)
    root/probs/<case>.nii.gz|.nii                soft map, classes on the last axis (x, y, z, C)
    root/confidence/<case>.nii.gz|.nii|.png      annotator confidence in [0, 1] (8-bit PNG: value / 255)

QUBIQ layout (challenge 2020/2021; pass the folder of case folders, e.g. ``brain-growth/Training``)::

    root/<case>/image.nii.gz                     the image (a 2D slice stored as NIfTI, or a 3D volume)
    root/<case>/task01_seg01.nii.gz, …           one binary map per rater and task: task<TT>_seg<RR>

A sample holds ``"image"`` ``(C_in, *spatial)`` float32, ``"label"`` ``(1, *spatial)`` int64, ``"raters"``
``(R, *spatial)`` int64, ``"soft_label"`` ``(C, *spatial)`` float32, ``"confidence"`` ``(1, *spatial)`` float32 (each
when its folder is there), ``"case"`` (the stem or case folder name) and, for NIfTI images, ``"affine"`` ``(4, 4)``
and ``"spacing"`` ``(spatial_dims,)`` float64 of the image. QUBIQ samples have ``"raters"``, ``"soft_label"`` (the
rater mean, 2 classes) and ``"label"`` (strict majority, ``votes ≥ ⌊R/2⌋ + 1``; a tie is background).

Files are checked when the folder is built: case matching, headers (shapes, spacing, channels) and, unless
``check_values=False``, every file's values, one case at a time. ``load="lazy"`` then re-reads each case on access
(nothing held in memory); ``load="eager"`` keeps the samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, overload

from softlabels._options import look_up_option
from softlabels.data.datamodule import SampleDataset, SoftLabelDataModule
from softlabels.data.folder_checks import is_nifti
from softlabels.data.folder_layouts import check_case, check_consistent, index_generic, load_sample
from softlabels.data.folder_qubiq import index_qubiq
from softlabels.data.prediction_files import _check_folder, _few
from softlabels.data.splits import SPLITS, read_splits, split_ids

__all__ = ["SegmentationFolder", "split_cases"]

Layout = Literal["generic", "qubiq"]
Load = Literal["lazy", "eager"]
Transform = Callable[[dict[str, Any]], dict[str, Any]] | None


def split_cases(
    cases: Iterable[str],
    *,
    split_file: str | Path | None = None,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    group: Callable[[str], str] | None = None,
) -> dict[str, list[str]]:
    """Split case ids into train/val/test by group id: from a split file, or deterministically by hash.

    The split is made over group ids (``group(case)``, e.g. a patient id parsed from the case name; ``None``: the
    case itself), so all cases of one group fall in one split. A split file (``read_splits``) lists group ids and
    must list every group; otherwise ``split_ids(groups, fractions=fractions, seed=seed)`` decides.

    Args:
        cases: the case ids (unique).
        split_file: a JSON ``{"train": [...], "val": [...], "test": [...]}`` of group ids, or ``None``.
        fractions: ``(train, val, test)`` for the hash split.
        seed: the hash split's seed.
        group: case id → group id.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` of case ids, each in the order of ``cases``.

    Raises:
        TypeError: ``group`` does not return a string.
        ValueError: a split file that cannot be read, lists an unknown id or leaves a group out (the file is named).

    Example:
        >>> cases = ["p1_a", "p1_b", "p2_a", "p3_a"]
        >>> split = split_cases(cases, fractions=(0.5, 0.25, 0.25), group=lambda case: case.split("_")[0])
        >>> sorted(split["train"] + split["val"] + split["test"]) == cases
        True
        >>> any({"p1_a", "p1_b"} <= set(split[s]) for s in ("train", "val", "test"))  # one patient, one split
        True
    """
    names = list(cases)
    groups = {name: name if group is None else group(name) for name in names}
    bad = next((n for n, g in groups.items() if not isinstance(g, str)), None)
    if bad is not None:
        raise TypeError(f"`group` of split_cases must return a str; got {type(groups[bad]).__name__} for {bad!r}.")
    ids = sorted(set(groups.values()))
    if split_file is None:
        split = split_ids(ids, fractions=fractions, seed=seed)
    else:
        split = read_splits(split_file, ids=ids)
        listed = {i for part in split.values() for i in part}
        missing = [i for i in ids if i not in listed]
        if missing:
            raise ValueError(
                f"split file {str(split_file)!r} does not list {len(missing)} id(s) of the data: {_few(missing)}; "
                "every case (or group) must be in one split."
            )
    members = {name: set(split[name]) for name in SPLITS}
    return {name: [c for c in names if groups[c] in members[name]] for name in SPLITS}


class LazySamples(Sequence[dict[str, Any]]):
    """A sequence of samples read on access: ``load(name)`` merged with per-sample extra keys (e.g. ``"group"``)."""

    def __init__(self, load: Callable[[str], dict[str, Any]], names: Sequence[str], extras: Sequence[dict]) -> None:
        self.load, self.names, self.extras = load, list(names), list(extras)

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        return {**self.load(self.names[index]), **self.extras[index]}


class FolderSplits:
    """Splits of ``self.cases`` into three datasets and a DataModule over them (shared by the folder loaders)."""

    cases: list[str]

    def dataset(
        self,
        cases: Sequence[str] | None = None,
        *,
        transform: Transform = None,
        group: Callable[[str], str] | None = None,
        split: str | None = None,
    ) -> SampleDataset:
        """One dataset over ``cases`` (``None``: all); ``group`` adds the key ``"group"``; ``split`` goes to info."""
        raise NotImplementedError

    def datasets(
        self,
        *,
        split_file: str | Path | None = None,
        fractions: Sequence[float] = (0.7, 0.15, 0.15),
        seed: int = 0,
        group: Callable[[str], str] | None = None,
        transform: Transform = None,
        train_transform: Transform = None,
    ) -> dict[str, SampleDataset]:
        """The train/val/test datasets of :func:`split_cases` (a split may be empty).

        Args:
            split_file: a JSON split file of group ids, or ``None`` for the deterministic hash split.
            fractions: ``(train, val, test)`` of the hash split.
            seed: the hash split's seed.
            group: case id → group id (patient); all cases of a group land in one split.
            transform: a (MONAI dictionary) transform applied on access, every split.
            train_transform: the training split's transform instead (``None``: ``transform``).

        Returns:
            ``{"train": SampleDataset, "val": ..., "test": ...}``.
        """
        parts = split_cases(self.cases, split_file=split_file, fractions=fractions, seed=seed, group=group)
        return {
            name: self.dataset(
                ids,
                transform=train_transform if name == "train" and train_transform is not None else transform,
                group=group,
                split=name,
            )
            for name, ids in parts.items()
        }

    def datamodule(
        self,
        *,
        split_file: str | Path | None = None,
        fractions: Sequence[float] = (0.7, 0.15, 0.15),
        seed: int = 0,
        group: Callable[[str], str] | None = None,
        transform: Transform = None,
        train_transform: Transform = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        drop_last: bool = False,
    ) -> SoftLabelDataModule:
        """A :class:`SoftLabelDataModule` over :meth:`datasets` (its ``seed`` also seeds the shuffling)."""
        sets = self.datasets(
            split_file=split_file, fractions=fractions, seed=seed, group=group, transform=transform,
            train_transform=train_transform,
        )  # fmt: skip
        return SoftLabelDataModule(
            sets["train"], sets["val"], sets["test"], batch_size=batch_size, eval_batch_size=eval_batch_size,
            num_workers=num_workers, seed=seed, drop_last=drop_last,
        )  # fmt: skip


class SegmentationFolder(FolderSplits):
    """A segmentation data folder (generic or QUBIQ layout, see the module docstring), checked when built.

    Args:
        root: the data folder (generic: holding ``images/``; QUBIQ: the folder of case folders).
        num_classes: classes ``C`` including background; required for ``"generic"`` (not inferred: a class absent
            from the maps would go unnoticed); QUBIQ tasks are binary (``None`` or 2).
        layout: ``"generic"`` or ``"qubiq"``.
        task: the QUBIQ task number (``task01_…`` is 1).
        load: ``"lazy"`` (read each case on access) or ``"eager"`` (read all now and keep them).
        check_values: read every case once now to check its values (labels, sums, ranges); with ``False`` only the
            headers are checked now and a bad value raises (naming the file) when its case is read.

    Raises:
        FileNotFoundError: a missing folder.
        ValueError: empty folders, unmatched cases, shape/spacing/channel mismatches, bad values, corrupt files.

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for sub, value in (("images", 9), ("labels", 1), ("raters/r1", 1), ("raters/r2", 0)):
        ...         Path(tmp, sub).mkdir(parents=True)
        ...         for case in ("a", "b", "c"):
        ...             Image.fromarray(np.full((2, 3), value, np.uint8)).save(f"{tmp}/{sub}/{case}.png")
        ...     folder = SegmentationFolder(tmp, num_classes=2)
        ...     sample = folder.dataset()[0]
        ...     sets = folder.datasets(fractions=(1 / 3, 1 / 3, 1 / 3))
        >>> sample["case"], tuple(sample["image"].shape), tuple(sample["raters"].shape), sample["label"].sum().item()
        ('a', (1, 3, 2), (2, 3, 2), 6)
        >>> [len(sets[s]) for s in ("train", "val", "test")]
        [1, 1, 1]
    """

    def __init__(
        self,
        root: str | Path,
        *,
        num_classes: int | None = None,
        layout: Layout = "generic",
        task: int = 1,
        load: Load = "lazy",
        check_values: bool = True,
    ) -> None:
        where = "SegmentationFolder"
        self.layout = look_up_option("layout", layout, ("generic", "qubiq"), where=where)
        self.load = look_up_option("load", load, ("lazy", "eager"), where=where)
        self.num_classes = _check_num_classes(num_classes, self.layout)
        self.root = _check_folder(Path(root), f"{self.layout} data")
        if self.layout == "qubiq":
            if isinstance(task, bool) or not isinstance(task, int) or task < 1:
                raise ValueError(f"`task` of {where} must be an int >= 1; got {task!r}.")
            cases, self.rater_names = index_qubiq(self.root, task)
        else:
            cases, self.rater_names = index_generic(self.root)
        self._cases = {c.name: c for c in cases}
        self._layouts = {c.name: check_case(c, self.num_classes) for c in cases}
        check_consistent(cases, self._layouts)
        self.cases = [c.name for c in cases]
        self._samples: dict[str, dict[str, Any]] | None = None
        if self.load == "eager":
            self._samples = {n: self._read(n) for n in self.cases}
        elif check_values:
            for name in self.cases:
                self._read(name)
        self.info = self._info(task)

    def _read(self, name: str) -> dict[str, Any]:
        case, layout = self._cases[name], self._layouts[name]
        return load_sample(case, layout, num_classes=self.num_classes, qubiq=self.layout == "qubiq")

    def _load_sample(self, name: str) -> dict[str, Any]:
        return self._read(name) if self._samples is None else self._samples[name]

    def _info(self, task: int) -> dict[str, Any]:
        first = self._cases[self.cases[0]]
        layout = self._layouts[first.name]
        keys = ["image", "case"] + (["affine", "spacing"] if is_nifti(first.image) else [])
        keys += [k for k, v in (("label", first.label), ("raters", first.raters), ("soft_label", first.probs)) if v]
        keys += ["confidence"] if first.confidence else []
        keys += ["soft_label", "label"] if self.layout == "qubiq" else []
        info: dict[str, Any] = {
            "task": "segmentation", "layout": self.layout, "root": str(self.root), "num_classes": self.num_classes,
            "spatial_dims": len(layout.spatial), "in_channels": layout.channels, "num_raters": len(self.rater_names),
            "rater_names": list(self.rater_names), "keys": sorted(set(keys)), "num_cases": len(self.cases),
        }  # fmt: skip
        if self.layout == "qubiq":
            info["qubiq_task"] = task
        return info

    def dataset(
        self,
        cases: Sequence[str] | None = None,
        *,
        transform: Transform = None,
        group: Callable[[str], str] | None = None,
        split: str | None = None,
    ) -> SampleDataset:
        """One dataset over ``cases`` (``None``: all), read lazily or from the eager samples.

        Args:
            cases: case names of this folder.
            transform: a (MONAI dictionary) transform applied on access.
            group: case → group id, stored under ``"group"``.
            split: the split name stored in ``info``.

        Returns:
            The :class:`SampleDataset`; ``info`` holds the folder's metadata (``num_classes``, ``spatial_dims``, …).
        """
        names = list(self.cases if cases is None else cases)
        unknown = [n for n in names if n not in self._cases]
        if unknown:
            raise ValueError(f"`cases` of SegmentationFolder.dataset lists unknown case(s): {_few(unknown)}.")
        extras = [{} if group is None else {"group": group(n)} for n in names]
        info = {**self.info, "split": split, "num_cases": len(names)}
        return SampleDataset(LazySamples(self._load_sample, names, extras), transform, info=info)


def _check_num_classes(num_classes: int | None, layout: str) -> int:
    where = "SegmentationFolder"
    if layout == "qubiq":
        if num_classes not in (None, 2):
            raise ValueError(
                f"`num_classes` of {where} must be 2 (or None) for QUBIQ's binary tasks; got {num_classes!r}."
            )
        return 2
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` of {where} must be an int >= 2 for the generic layout; got {num_classes!r}.")
    return num_classes
