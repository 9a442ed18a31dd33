"""Datasets of sample dictionaries and the Lightning DataModule every softlabels data source is served through.

A sample is a dict of channel-first tensors, the keys the method registry reads (``softlabels.methods``):
``"image"`` ``(C_in, *spatial)``, ``"label"`` ``(1, *spatial)`` integer (a 0-d tensor for classification),
``"raters"`` ``(R, *spatial)`` (``(R,)``), ``"confidence"`` ``(1, *spatial)``, ``"soft_label"`` ``(C, *spatial)``, and
for data with a known truth ``"true_probs"`` ``(C, *spatial)``; plus ``"case"``, the sample's id, and ``"group"``,
the id splits are made by (patient, volume, slab), when it differs from the case. The default collate stacks them to
the batch layout the methods and losses take.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

__all__ = ["EpochShuffleSampler", "SampleDataset", "SoftLabelDataModule"]


class EpochShuffleSampler(RandomSampler):
    """A shuffling sampler whose order depends only on ``(seed, epoch)``: the same epoch gives the same order.

    The permutation is ``torch.randperm(n, generator=Generator().manual_seed(seed + epoch))``, the order
    ``torch.utils.data.DistributedSampler`` uses, so a run resumed at epoch ``e`` (Lightning calls
    :meth:`set_epoch`) sees the batches of an uninterrupted run, and one process with batch ``k·b`` sees the union of
    ``k`` processes' batches ``b``. It is a ``RandomSampler``, so Lightning knows the loader shuffles.

    Args:
        data_source: the dataset.
        seed: the base seed.

    Example:
        >>> sampler = EpochShuffleSampler(range(5), seed=3)
        >>> first = list(sampler); sampler.set_epoch(1); second = list(sampler); sampler.set_epoch(0)
        >>> list(sampler) == first != second
        True
    """

    def __init__(self, data_source: Any, *, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = int(epoch)

    def __iter__(self) -> Any:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=generator).tolist())


class SampleDataset(Dataset):
    """A map-style dataset over a list of sample dicts, with an optional (MONAI) transform applied on access.

    Args:
        samples: the sample dicts (tensors, strings).
        transform: a callable on a sample dict (e.g. ``monai.transforms.Compose`` of dictionary transforms), or
            ``None``. It gets a shallow copy, so the stored samples are never changed.
        info: metadata of the data source (``num_classes``, ``spatial_dims``, ``description``, a known floor, …).

    Example:
        >>> ds = SampleDataset([{"image": torch.zeros(1, 4, 4), "label": torch.zeros(1, 4, 4, dtype=torch.long)}])
        >>> len(ds), ds[0]["image"].shape
        (1, torch.Size([1, 4, 4]))
    """

    def __init__(
        self,
        samples: Sequence[Mapping[str, Any]],
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        *,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(samples, Sequence):
            raise TypeError(f"`samples` of SampleDataset must be a sequence of dicts; got {type(samples).__name__}.")
        self.samples = samples
        self.transform = transform
        self.info: dict[str, Any] = dict(info or {})

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.samples[index])
        return sample if self.transform is None else self.transform(sample)


class SoftLabelDataModule(L.LightningDataModule):
    """Lightning DataModule over train/val/test :class:`SampleDataset` s (or any map-style datasets).

    The training loader shuffles with an :class:`EpochShuffleSampler` (the order depends on ``seed`` and the epoch
    only: resumable, and equal to DDP's ``DistributedSampler`` order); the others keep their order. ``info`` is the
    training dataset's metadata (``num_classes``, ``spatial_dims``, …).

    Args:
        train: the training dataset.
        val: the validation dataset, or ``None``.
        test: the test dataset, or ``None``.
        batch_size: training batch size.
        eval_batch_size: validation/test batch size (``None``: ``batch_size``).
        num_workers: DataLoader worker processes.
        seed: the shuffling seed.
        drop_last: drop the last incomplete training batch.

    Example:
        >>> ds = SampleDataset([{"image": torch.zeros(1, 2, 2), "label": torch.tensor(i)} for i in range(5)])
        >>> dm = SoftLabelDataModule(ds, ds, batch_size=2)
        >>> [tuple(b["image"].shape) for b in dm.val_dataloader()]
        [(2, 1, 2, 2), (2, 1, 2, 2), (1, 1, 2, 2)]
    """

    def __init__(
        self,
        train: Dataset,
        val: Dataset | None = None,
        test: Dataset | None = None,
        *,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size or 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` of SoftLabelDataModule must be an int >= 1; got {value!r}.")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"`num_workers` of SoftLabelDataModule must be an int >= 0; got {num_workers!r}.")
        self.train_set, self.val_set, self.test_set = train, val, test
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.drop_last = drop_last

    @property
    def info(self) -> dict[str, Any]:
        """The training dataset's metadata (empty if it has none)."""
        return dict(getattr(self.train_set, "info", {}))

    def _loader(self, dataset: Dataset | None, split: str, *, train: bool) -> DataLoader:
        if dataset is None:
            raise ValueError(f"SoftLabelDataModule has no {split} dataset.")
        sampler = EpochShuffleSampler(dataset, seed=self.seed) if train else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=self.drop_last and train,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """The shuffled training loader."""
        return self._loader(self.train_set, "train", train=True)

    def val_dataloader(self) -> DataLoader:
        """The validation loader (dataset order)."""
        return self._loader(self.val_set, "val", train=False)

    def test_dataloader(self) -> DataLoader:
        """The test loader (dataset order)."""
        return self._loader(self.test_set, "test", train=False)
