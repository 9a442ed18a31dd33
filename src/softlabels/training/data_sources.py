"""Data sources by name for the configured runs: every loader of ``softlabels.data`` behind one call.

A config names its data as ``{"source": <name>, "options": {...}}``; :func:`build_datamodule` turns it into a
:class:`~softlabels.data.SoftLabelDataModule`. The options are the keyword arguments of the source's own function
(checked there, with its own clear errors); batch sizes, workers and the seed come from the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from softlabels._options import look_up_option
from softlabels.data.datamodule import SoftLabelDataModule

__all__ = ["DATA_SOURCES", "build_datamodule", "build_transforms"]

Loader = dict[str, Any]  # batch_size, eval_batch_size, num_workers


def _synthetic_segmentation(options: dict[str, Any], loader: Loader, seed: int, task: str) -> SoftLabelDataModule:
    from softlabels.data.synthetic_segmentation import SyntheticSegmentation, synthetic_segmentation_datamodule

    num_cases = tuple(options.pop("num_cases", (200, 50, 50)))
    for key in ("shape", "structures", "radius", "blur", "rater_levels"):
        if isinstance(options.get(key), list):
            options[key] = tuple(options[key])
    dm = synthetic_segmentation_datamodule(
        SyntheticSegmentation(**options), num_cases=num_cases, seed=seed, batch_size=loader["batch_size"],  # type: ignore[arg-type]
        num_workers=loader["num_workers"],
    )  # fmt: skip
    dm.eval_batch_size = loader["eval_batch_size"] or dm.batch_size
    return dm


def _synthetic_classification(options: dict[str, Any], loader: Loader, seed: int, task: str) -> SoftLabelDataModule:
    from softlabels.data.synthetic_classification import SyntheticClassification, synthetic_classification_datamodule

    num_items = tuple(options.pop("num_items", (2000, 500, 500)))
    if isinstance(options.get("rater_levels"), list):
        options["rater_levels"] = tuple(options["rater_levels"])
    dm = synthetic_classification_datamodule(
        SyntheticClassification(**options), num_items=num_items, seed=seed, batch_size=loader["batch_size"],  # type: ignore[arg-type]
        num_workers=loader["num_workers"],
    )  # fmt: skip
    dm.eval_batch_size = loader["eval_batch_size"] or dm.batch_size
    return dm


def _mni152(options: dict[str, Any], loader: Loader, seed: int, task: str) -> SoftLabelDataModule:
    from softlabels.data.mni152 import mni152_datamodule

    options.setdefault("seed", seed)
    return mni152_datamodule(**loader, loader_seed=seed, **options)


def _lidc(options: dict[str, Any], loader: Loader, seed: int, task: str) -> SoftLabelDataModule:
    from softlabels.data.lidc import lidc_datamodule
    from softlabels.data.lidc_build import load_lidc_nodules

    build = dict(options.pop("build", {}))
    options.setdefault("split_seed", seed)
    return lidc_datamodule(load_lidc_nodules(**build), task=task, **loader, shuffle_seed=seed, **options)  # type: ignore[arg-type]


TRANSFORM_SOURCES = ("folder", "qubiq", "image_folder", "medmnist")


def build_transforms(spec: Sequence[Mapping[str, Any]] | None, *, where: str = "data.train_transforms") -> Any:
    """A ``monai.transforms.Compose`` of MONAI dictionary transforms given by name, or ``None``.

    Each item is ``{"name": <a class of monai.transforms>, "keys": [...], "options": {...}}``, e.g.
    ``{"name": "RandSpatialCropd", "keys": ["image", "label"], "options": {"roi_size": [128, 128, 128]}}``.

    Raises:
        ValueError: an unknown transform name (with the closest match) or bad options (MONAI's message).

    Example:
        >>> type(build_transforms([{"name": "RandFlipd", "keys": ["image"], "options": {"prob": 0.5}}]).transforms[0])
        <class 'monai.transforms.spatial.dictionary.RandFlipd'>
    """
    if not spec:
        return None
    import monai.transforms as mt

    names = [n for n in dir(mt) if n[:1].isupper() and isinstance(getattr(mt, n), type)]
    steps = []
    for item in spec:
        unknown = sorted(set(item) - {"name", "keys", "options"})
        if unknown:
            raise ValueError(
                f"transform {dict(item)!r} has unknown key(s) {unknown}; valid: ['keys', 'name', 'options']."
            )
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be a list of {{name, keys, options}} mappings; got item {item!r}.")
        name = look_up_option(f"{where}.name", item.get("name"), names, where="the run config")
        try:
            steps.append(getattr(mt, name)(keys=list(item.get("keys", ["image"])), **dict(item.get("options", {}))))
        except (TypeError, ValueError) as err:
            raise ValueError(f"transform {name!r} of {where} could not be built: {err}") from err
    return mt.Compose(steps)


def _folder(layout: str) -> Callable[[dict[str, Any], Loader, int, str], SoftLabelDataModule]:
    def build(options: dict[str, Any], loader: Loader, seed: int, task: str) -> SoftLabelDataModule:
        from softlabels.data.folders import SegmentationFolder

        folder_keys = ("root", "num_classes", "task", "load", "check_values")
        names = options.pop("class_names", None)
        folder = SegmentationFolder(layout=layout, **{k: options.pop(k) for k in folder_keys if k in options})  # type: ignore[arg-type]
        if names is not None and (not isinstance(names, list | tuple) or len(names) != folder.num_classes):
            raise ValueError(f"data.options.class_names must list {folder.num_classes} names; got {names!r}.")
        dm = folder.datamodule(**loader, seed=seed, **options)
        for dataset in (dm.train_set, dm.val_set, dm.test_set):
            if names is not None:
                dataset.info["class_names"] = [str(n) for n in names]  # type: ignore[union-attr]
        return dm

    return build


def _image_folder(options: dict[str, Any], loader: Loader, seed: int, task: str) -> SoftLabelDataModule:
    from softlabels.data.image_folder import ImageFolder

    folder_keys = ("root", "size", "channels")
    folder = ImageFolder(**{k: _tuple(options.pop(k)) for k in folder_keys if k in options})  # type: ignore[arg-type]
    return folder.datamodule(**loader, seed=seed, **options)


def _medmnist(options: dict[str, Any], loader: Loader, seed: int, task: str) -> SoftLabelDataModule:
    from softlabels.data.image_folder import MedMNISTFile

    file_keys = ("path", "num_classes", "size", "channels")
    source = MedMNISTFile(**{k: _tuple(options.pop(k)) for k in file_keys if k in options})  # type: ignore[arg-type]
    return source.datamodule(**loader, seed=seed, **options)


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


DATA_SOURCES: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any], Loader, int, str], SoftLabelDataModule]]] = {
    "synthetic_segmentation": (("segmentation",), _synthetic_segmentation),
    "synthetic_classification": (("classification",), _synthetic_classification),
    "mni152": (("segmentation",), _mni152),
    "lidc": (("segmentation", "classification"), _lidc),
    "folder": (("segmentation",), _folder("generic")),
    "qubiq": (("segmentation",), _folder("qubiq")),
    "image_folder": (("classification",), _image_folder),
    "medmnist": (("classification",), _medmnist),
}
"""Source name → (tasks it serves, builder).

Example:
    >>> sorted(DATA_SOURCES)[:3]
    ['folder', 'image_folder', 'lidc']
"""


def build_datamodule(
    source: str,
    options: Mapping[str, Any] | None = None,
    *,
    task: str,
    seed: int = 0,
    batch_size: int = 8,
    eval_batch_size: int | None = None,
    num_workers: int = 0,
    train_transforms: Sequence[Mapping[str, Any]] | None = None,
    transforms: Sequence[Mapping[str, Any]] | None = None,
) -> SoftLabelDataModule:
    """The DataModule of a named source for ``task``.

    Args:
        source: a name of :data:`DATA_SOURCES`.
        options: the source function's keyword arguments.
        task: ``"segmentation"`` or ``"classification"``.
        seed: the run's seed (data generation, splits, shuffling).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size (``None``: ``batch_size``).
        num_workers: DataLoader workers.
        train_transforms: MONAI dictionary transforms by name for the training split (:func:`build_transforms`;
            the folder, ImageFolder and MedMNIST sources).
        transforms: the same for every split (the training split's unless ``train_transforms`` are given).

    Raises:
        ValueError: unknown source (the valid ones are listed) or a source that does not serve ``task``; the
            source's own errors for its options.

    Example:
        >>> dm = build_datamodule("synthetic_classification", {"num_items": [8, 4, 4]}, task="classification")
        >>> dm.info["num_classes"]
        8
    """
    name = look_up_option("data.source", source, DATA_SOURCES, where="the run config")
    tasks, builder = DATA_SOURCES[name]
    if task not in tasks:
        raise ValueError(f"data source {name!r} serves {list(tasks)}; the run's task is {task!r}.")
    loader = {"batch_size": batch_size, "eval_batch_size": eval_batch_size, "num_workers": num_workers}
    options = dict(options or {})
    for key, given, option in (("train_transforms", train_transforms, "train_transform"),
                               ("transforms", transforms, "transform")):  # fmt: skip
        if given:
            if name not in TRANSFORM_SOURCES:
                raise ValueError(f"data.{key} are supported for {list(TRANSFORM_SOURCES)} only; got source {name!r}.")
            options[option] = build_transforms(given, where=f"data.{key}")
    for option in ("transform", "train_transform"):  # written in data.options as a list, as in docs/data/folders.md
        if isinstance(options.get(option), list):
            if name not in TRANSFORM_SOURCES:
                raise ValueError(f"data.options.{option} is supported for {list(TRANSFORM_SOURCES)} only.")
            options[option] = build_transforms(options[option], where=f"data.options.{option}")
    return builder(options, loader, seed, task)
