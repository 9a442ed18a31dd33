import pytest
import torch

from softlabels.data.datamodule import SampleDataset, SoftLabelDataModule


def make(n):
    return [{"image": torch.full((1, 2, 2), float(i)), "label": torch.tensor(i), "case": f"c{i}"} for i in range(n)]


def test_dataset_applies_the_transform_to_a_copy_and_keeps_info():
    samples = make(3)
    ds = SampleDataset(samples, lambda d: {**d, "image": d["image"] + 1}, info={"num_classes": 3})
    assert float(ds[1]["image"][0, 0, 0]) == 2.0 and float(samples[1]["image"][0, 0, 0]) == 1.0
    assert ds.info == {"num_classes": 3} and len(ds) == 3
    with pytest.raises(TypeError, match=r"`samples` of SampleDataset must be a sequence of dicts"):
        SampleDataset({"a": 1})


def test_loaders_shuffle_reproducibly_and_keep_eval_order():
    ds = SampleDataset(make(10), info={"num_classes": 10})
    first = [b["label"].tolist() for b in SoftLabelDataModule(ds, batch_size=4, seed=1).train_dataloader()]
    again = [b["label"].tolist() for b in SoftLabelDataModule(ds, batch_size=4, seed=1).train_dataloader()]
    other = [b["label"].tolist() for b in SoftLabelDataModule(ds, batch_size=4, seed=2).train_dataloader()]
    assert first == again and first != other and sorted(x for b in first for x in b) == list(range(10))
    dm = SoftLabelDataModule(ds, ds, ds, batch_size=4, eval_batch_size=5)
    assert [b["case"] for b in dm.test_dataloader()] == [[f"c{i}" for i in range(5)], [f"c{i}" for i in range(5, 10)]]
    assert dm.info == {"num_classes": 10}


def test_missing_splits_and_bad_options_raise():
    ds = SampleDataset(make(2))
    with pytest.raises(ValueError, match=r"SoftLabelDataModule has no val dataset"):
        SoftLabelDataModule(ds).val_dataloader()
    with pytest.raises(ValueError, match=r"`batch_size` of SoftLabelDataModule must be an int >= 1; got 0"):
        SoftLabelDataModule(ds, batch_size=0)
    with pytest.raises(ValueError, match=r"`num_workers` of SoftLabelDataModule must be an int >= 0; got -1"):
        SoftLabelDataModule(ds, num_workers=-1)
