"""Classification data on disk as :class:`SampleDataset` s: an ImageFolder layout and MedMNIST ``.npz`` files.

ImageFolder layout (as RadImageNet is distributed; class = the first folder below ``root``)::

    root/<class_name>/<image>.png|.jpg|.jpeg     (sub-folders below a class folder are searched too)

Classes are the sorted class folder names (label ``k`` = the k-th name). A sample holds ``"image"`` ``(C, H, W)``
float32 in ``[0, 1]`` (8-bit / 255, 16-bit grey / 65535; Pillow modes ``1``, ``L``, ``I;16``, ``RGB``; others such
as ``RGBA`` or ``P`` are refused, naming the file), ``"label"`` a 0-d int64 and ``"case"`` the image's path relative
to ``root`` (``"group"`` too when a ``group`` function maps it to a patient id). Images keep the usual ``(H, W)``
order (rows, columns); only segmentation maps are transposed to NIfTI's ``(x, y)``.

MedMNIST ``.npz`` (read with NumPy only; the ``medmnist`` package downloads and is not used): the keys
``{train,val,test}_images`` uint8 ``(N, H, W)`` or ``(N, H, W, 3)`` and ``{train,val,test}_labels`` ``(N, 1)``
integers; the file's own splits are used. Multi-label files ``(N, L)`` (ChestMNIST) are refused.

Images of one dataset must share their size and number of channels (a batch stacks them) unless ``size=(H, W)``
(bilinear ``torch.nn.functional.interpolate``, antialiased, ``align_corners=False``: values stay in ``[0, 1]``) and
``channels`` (1: ITU-R 601 luma of RGB; 3: grey repeated) ask for a conversion. ImageFolder images are opened at
construction to read their headers (mode and size: corrupt files fail there) and decoded lazily on access;
MedMNIST arrays are held in memory as uint8 and converted per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from softlabels.data.datamodule import SampleDataset, SoftLabelDataModule
from softlabels.data.folders import FolderSplits, LazySamples, Transform
from softlabels.data.prediction_files import _check_folder, _few
from softlabels.data.splits import SPLITS, read_splits

__all__ = ["ImageFolder", "MedMNISTFile"]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
_SCALE = {"1": 1.0, "L": 255.0, "RGB": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0}
_LUMA = (0.299, 0.587, 0.114)


def _check_options(size: object, channels: object, where: str) -> tuple[tuple[int, int] | None, int | None]:
    ok = size is None or (
        isinstance(size, Sequence) and len(size) == 2 and all(isinstance(s, int) and s >= 1 for s in size)
    )
    if not ok:
        raise ValueError(f"`size` of {where} must be None or (H, W), two ints >= 1; got {size!r}.")
    if channels not in (None, 1, 3):
        raise ValueError(f"`channels` of {where} must be None, 1 or 3; got {channels!r}.")
    return (None if size is None else (int(size[0]), int(size[1]))), channels  # type: ignore[index, return-value]


def convert(image: Tensor, *, channels: int | None, size: tuple[int, int] | None) -> Tensor:
    """``(C, H, W)`` in [0, 1] → the asked channels (luma / repeat) and size (antialiased bilinear), as float32."""
    if channels is not None and image.shape[0] != channels:
        if channels == 3:
            image = image.repeat(3, 1, 1)
        else:
            luma = torch.tensor(_LUMA, dtype=image.dtype, device=image.device).reshape(3, 1, 1)
            image = (image * luma).sum(0, keepdim=True)
    if size is not None and tuple(image.shape[1:]) != size:
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return image.contiguous()


def _header(path: Path) -> tuple[str, tuple[int, int], int]:
    """Pillow mode, ``(H, W)`` and channel count of an image file, from its header."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode, (width, height) = image.mode, image.size
    except Exception as err:
        raise ValueError(f"cannot read the image file {str(path)!r}: {type(err).__name__}: {err}") from err
    if mode not in _SCALE:
        raise ValueError(
            f"the image {str(path)!r} must be grey or RGB (Pillow modes {', '.join(_SCALE)}); got mode {mode!r}. "
            "Convert it first (e.g. drop the alpha channel)."
        )
    return mode, (height, width), 3 if mode == "RGB" else 1


def _decode(path: Path) -> Tensor:
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.asarray(image)
    except Exception as err:
        raise ValueError(f"cannot decode the image file {str(path)!r}: {type(err).__name__}: {err}") from err
    if mode not in _SCALE:
        raise ValueError(f"the image {str(path)!r} has mode {mode!r}, not one read when the folder was indexed.")
    scaled = torch.from_numpy(array.astype(np.float32) / np.float32(_SCALE[mode]))
    return scaled.permute(2, 0, 1) if scaled.ndim == 3 else scaled[None]


def _first_mismatch(values: dict[str, Any]) -> tuple[str, str] | None:
    names = list(values)
    other = next((n for n in names if values[n] != values[names[0]]), None)
    return None if other is None else (names[0], other)


class ImageFolder(FolderSplits):
    """An ImageFolder classification layout (``root/<class_name>/<image>``), checked when built.

    Args:
        root: the folder of class folders.
        size: resize every image to ``(H, W)``, or ``None`` (all images must then have one size).
        channels: convert to 1 or 3 channels, or ``None`` (all images must then have one channel count).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no class folder, an empty class folder, an unreadable image or mode, mixed sizes or channel
            counts without ``size`` / ``channels`` (the files are named).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for i, name in enumerate(["normal/p1_a.png", "normal/p2_a.png", "tumour/p3_a.png", "tumour/p1_b.png"]):
        ...         Path(tmp, name).parent.mkdir(exist_ok=True)
        ...         Image.fromarray(np.full((4, 6), 51 * i, np.uint8)).save(Path(tmp, name))
        ...     folder = ImageFolder(tmp, size=(2, 3))
        ...     sample = folder.dataset()[3]
        ...     patient = lambda path: path.split("/")[1].split("_")[0]  # "tumour/p1_b.png" -> "p1"
        ...     sets = folder.datasets(fractions=(0.5, 0.5, 0.0), group=patient)
        ...     groups = {s: sorted(x["group"] for x in sets[s]) for s in ("train", "val", "test")}
        >>> folder.info["class_names"], sample["case"], tuple(sample["image"].shape), sample["label"].item()
        (['normal', 'tumour'], 'tumour/p3_a.png', (1, 2, 3), 1)
        >>> groups
        {'train': ['p1', 'p1', 'p2'], 'val': ['p3'], 'test': []}
    """

    def __init__(self, root: str | Path, *, size: tuple[int, int] | None = None, channels: int | None = None) -> None:
        self.size, self.channels = _check_options(size, channels, "ImageFolder")
        self.root = _check_folder(Path(root), "ImageFolder")
        self.class_names = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not self.class_names:
            raise ValueError(f"the ImageFolder {str(self.root)!r} holds no class folders (root/<class_name>/<image>).")
        self._labels: dict[str, int] = {}
        empty = []
        for label, name in enumerate(self.class_names):
            files = sorted(
                p for p in (self.root / name).rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(self.root).parts)
            )  # fmt: skip
            empty += [] if files else [name]
            self._labels.update({p.relative_to(self.root).as_posix(): label for p in files})
        if empty:
            raise ValueError(
                f"class folder(s) of {str(self.root)!r} without {' / '.join(IMAGE_SUFFIXES)} images: {_few(empty)}."
            )
        self.cases = list(self._labels)
        self.info = self._scan()

    def _scan(self) -> dict[str, Any]:
        headers = {case: _header(self.root / case) for case in self.cases}
        for what, index, option, hint in (
            ("size (H, W)", 1, self.size, "size=(H, W)"),
            ("channels", 2, self.channels, "channels=1 or 3"),
        ):
            pair = None if option is not None else _first_mismatch({c: h[index] for c, h in headers.items()})
            if pair is not None:
                a, b = pair
                raise ValueError(
                    f"the images of {str(self.root)!r} must share one {what} (or pass {hint}): "
                    f"{str(self.root / a)!r} has {headers[a][index]}, {str(self.root / b)!r} has {headers[b][index]}."
                )
        first = headers[self.cases[0]]
        return {
            "task": "classification", "root": str(self.root), "num_classes": len(self.class_names),
            "class_names": list(self.class_names), "spatial_dims": 2, "num_cases": len(self.cases),
            "in_channels": self.channels or first[2], "image_size": self.size or first[1],
        }  # fmt: skip

    def _load(self, case: str) -> dict[str, Any]:
        image = convert(_decode(self.root / case), channels=self.channels, size=self.size)
        return {"image": image, "label": torch.tensor(self._labels[case], dtype=torch.int64), "case": case}

    def dataset(
        self,
        cases: Sequence[str] | None = None,
        *,
        transform: Transform = None,
        group: Callable[[str], str] | None = None,
        split: str | None = None,
    ) -> SampleDataset:
        """One dataset over ``cases`` (relative paths; ``None``: all), decoded lazily.

        Args:
            cases: image paths relative to ``root``, as in :attr:`cases`.
            transform: a (MONAI dictionary) transform applied on access.
            group: relative path → group (patient) id, stored under ``"group"``.
            split: the split name stored in ``info``.

        Returns:
            The :class:`SampleDataset`.
        """
        names = list(self.cases if cases is None else cases)
        unknown = [n for n in names if n not in self._labels]
        if unknown:
            raise ValueError(f"`cases` of ImageFolder.dataset lists unknown image(s): {_few(unknown)}.")
        extras = [{} if group is None else {"group": group(n)} for n in names]
        info = {**self.info, "split": split, "num_cases": len(names)}
        return SampleDataset(LazySamples(self._load, names, extras), transform, info=info)

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
        """The train/val/test datasets (see ``FolderSplits.datasets``).

        A split file lists relative paths (``"<class_name>/<image>"``), or group ids when ``group`` is given; a
        path in a class folder that does not exist is reported as such.
        """
        if split_file is not None and group is None:
            listed = {i for part in read_splits(split_file).values() for i in part}
            unknown = sorted({i.split("/")[0] for i in listed} - set(self.class_names))
            if unknown:
                raise ValueError(
                    f"split file {str(split_file)!r} lists images in unknown class folder(s) {_few(unknown)}; "
                    f"the class folders of {str(self.root)!r} are {_few(self.class_names)}."
                )
        return super().datasets(
            split_file=split_file, fractions=fractions, seed=seed, group=group, transform=transform,
            train_transform=train_transform,
        )  # fmt: skip


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    keys = [f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels")]
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise ValueError(f"missing key(s) {missing}; it holds {sorted(npz.files)}")
            arrays = {k: np.asarray(npz[k]) for k in keys}
    except Exception as err:
        raise ValueError(f"the MedMNIST file {str(path)!r} cannot be used: {type(err).__name__}: {err}") from err
    return arrays


def _check_split(path: Path, split: str, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    where = f"the MedMNIST file {str(path)!r}"
    if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)):
        raise ValueError(
            f"`{split}_images` of {where} must be uint8 (N, H, W) or (N, H, W, 3); got {images.dtype} {images.shape}."
        )
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise ValueError(
            f"`{split}_labels` of {where} is multi-label, shape {labels.shape} (e.g. ChestMNIST); only single-label "
            "files ((N, 1) labels) are supported."
        )
    if labels.ndim not in (1, 2) or labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"`{split}_labels` of {where} must be integers (N, 1) with N = {images.shape[0]} images; "
            f"got {labels.dtype} {labels.shape}."
        )
    return labels.reshape(-1).astype(np.int64)


class MedMNISTFile:
    """A MedMNIST ``.npz`` file already on disk (2D, single-label), with its own train/val/test splits.

    Args:
        path: the ``.npz`` file (e.g. ``pathmnist.npz``, ``bloodmnist_224.npz``).
        num_classes: the number of classes (``None``: the largest label + 1 over the three splits).
        size: resize to ``(H, W)``, or ``None``.
        channels: convert to 1 or 3 channels, or ``None``.

    Raises:
        ValueError: an unreadable file, a missing key, multi-label or non-integer labels, a wrong image dtype or
            shape, or labels outside ``[0, num_classes)`` (the file and key are named).

    Example:
        >>> import tempfile
        >>> arrays = {f"{s}_images": np.full((2, 3, 3), 255, np.uint8) for s in ("train", "val", "test")}
        >>> arrays |= {f"{s}_labels": np.array([[0], [2]]) for s in ("train", "val", "test")}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     np.savez(f"{tmp}/tiny.npz", **arrays)
        ...     data = MedMNISTFile(f"{tmp}/tiny.npz")
        >>> sample = data.dataset("val")[1]
        >>> data.num_classes, sample["case"], tuple(sample["image"].shape), sample["label"]
        (3, 'val_000001', (1, 3, 3), tensor(2))
    """

    def __init__(
        self,
        path: str | Path,
        *,
        num_classes: int | None = None,
        size: tuple[int, int] | None = None,
        channels: int | None = None,
    ) -> None:
        self.size, self.channels = _check_options(size, channels, "MedMNISTFile")
        self.path = Path(path)
        arrays = _read_npz(self.path)
        self._images = {s: arrays[f"{s}_images"] for s in SPLITS}
        self._labels = {s: _check_split(self.path, s, arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in SPLITS}
        every = np.concatenate(list(self._labels.values()))
        top = int(every.max()) + 1 if every.size else 0
        if num_classes is None:
            num_classes = max(top, 2)
        elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` of MedMNISTFile must be None or an int >= 2; got {num_classes!r}.")
        if every.size and (every.min() < 0 or top > num_classes):
            raise ValueError(
                f"the labels of the MedMNIST file {str(self.path)!r} must be in [0, {num_classes - 1}]; "
                f"got min {every.min()}, max {every.max()}."
            )
        shapes = {tuple(self._images[s].shape[1:]) for s in SPLITS}
        if len(shapes) > 1:
            raise ValueError(f"the splits of the MedMNIST file {str(self.path)!r} differ in image shape: {shapes}.")
        self.num_classes = num_classes
        first = self._images["train"].shape
        self.info = {
            "task": "classification", "root": str(self.path), "num_classes": num_classes, "spatial_dims": 2,
            "in_channels": self.channels or (3 if len(first) == 4 else 1), "image_size": self.size or first[1:3],
        }  # fmt: skip

    def _load(self, case: str) -> dict[str, Any]:
        split, index = case.rsplit("_", 1)
        array = torch.from_numpy(np.array(self._images[split][int(index)], dtype=np.float32) / np.float32(255.0))
        image = convert(
            array.permute(2, 0, 1) if array.ndim == 3 else array[None], channels=self.channels, size=self.size
        )
        return {"image": image, "label": torch.tensor(self._labels[split][int(index)]), "case": case}

    def dataset(self, split: str, *, transform: Transform = None) -> SampleDataset:
        """The file's ``split`` (``"train"``, ``"val"`` or ``"test"``); ``"case"`` is ``"<split>_<index>"``."""
        if split not in SPLITS:
            raise ValueError(f"`split` of MedMNISTFile.dataset must be one of {list(SPLITS)}; got {split!r}.")
        names = [f"{split}_{i:06d}" for i in range(len(self._labels[split]))]
        info = {**self.info, "split": split, "num_cases": len(names)}
        return SampleDataset(LazySamples(self._load, names, [{}] * len(names)), transform, info=info)

    def datasets(self, *, transform: Transform = None, train_transform: Transform = None) -> dict[str, SampleDataset]:
        """The file's three splits; ``train_transform`` (``None``: ``transform``) for the training split."""
        return {
            s: self.dataset(s, transform=train_transform if s == "train" and train_transform is not None else transform)
            for s in SPLITS
        }

    def datamodule(
        self,
        *,
        transform: Transform = None,
        train_transform: Transform = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = False,
    ) -> SoftLabelDataModule:
        """A :class:`SoftLabelDataModule` over the file's splits (``seed`` seeds the shuffling)."""
        sets = self.datasets(transform=transform, train_transform=train_transform)
        return SoftLabelDataModule(
            sets["train"], sets["val"], sets["test"], batch_size=batch_size, eval_batch_size=eval_batch_size,
            num_workers=num_workers, seed=seed, drop_last=drop_last,
        )  # fmt: skip
