import pytest
import torch

from softlabels.data.synthetic_classification import SyntheticClassification, synthetic_classification_datamodule
from softlabels.methods import create_method
from softlabels.metrics.functional import negative_log_likelihood


def test_true_probs_live_on_one_confusable_pair():
    ds = SyntheticClassification().dataset(300, seed=0)
    probs = torch.stack([s["true_probs"] for s in ds]).double()
    torch.testing.assert_close(probs.sum(1), torch.ones(300, dtype=torch.float64))
    for row in probs:  # the support is one pair (2j, 2j + 1)
        classes = row.nonzero()[:, 0]
        assert 1 <= len(classes) <= 2 and len(set((classes // 2).tolist())) == 1
    labels = torch.stack([s["label"] for s in ds])
    assert bool((probs.gather(1, labels[:, None]) > 0).all())  # labels only on the item's pair


def test_labels_and_raters_are_sampled_from_the_true_probs():
    ds = SyntheticClassification(num_raters=400).dataset(400, seed=1)
    probs = torch.stack([s["true_probs"] for s in ds]).double()
    raters = torch.stack([s["raters"] for s in ds])
    upper = probs[torch.arange(400), 2 * (probs.argmax(1) // 2) + 1]
    freq = (raters % 2 == 1).double().mean(1)
    assert float((freq - upper).abs().mean()) < 0.03  # population of consistent raters: frequency = p*
    labels = torch.stack([s["label"] for s in ds])
    # independent label draws: the label is the upper class with probability p*(upper), on average over items
    assert float((labels % 2).double().mean()) == pytest.approx(float(upper.mean()), abs=0.06)


def test_the_image_carries_the_ambiguity_and_the_floor_matches_the_metric():
    ds = SyntheticClassification().dataset(200, seed=2)
    probs = torch.stack([s["true_probs"] for s in ds])
    assert negative_log_likelihood(probs, probs).item() == pytest.approx(ds.info["floor"]["nll"], rel=1e-6)
    # items of one pair with a confident upper class look different from confident lower-class items
    a = [s["image"] for s in ds if s["true_probs"][0] > 0.99]
    b = [s["image"] for s in ds if s["true_probs"][1] > 0.99]
    assert a and b and float((torch.stack(a).mean(0) - torch.stack(b).mean(0)).abs().max()) > 0.3


def test_same_seed_same_data_and_datamodule_feeds_classification_methods():
    cfg = SyntheticClassification(size=28)
    x, y = cfg.dataset(5, seed=3), cfg.dataset(5, seed=3)
    assert all(
        torch.equal(a["image"], b["image"]) and torch.equal(a["raters"], b["raters"]) for a, b in zip(x, y, strict=True)
    )
    dm = synthetic_classification_datamodule(cfg, num_items=(8, 4, 4), batch_size=4)
    batch = next(iter(dm.train_dataloader()))
    for name in ("hard", "ls", "ols", "raters_mean", "tfkd"):
        method = create_method(name, 8, task="classification")
        assert torch.isfinite(method(torch.zeros(4, 8), method.make_target(batch)))


def test_bad_configurations_raise():
    with pytest.raises(ValueError, match=r"must be even \(classes come in pairs\); got 7"):
        SyntheticClassification(num_classes=7)
    with pytest.raises(ValueError, match=r"`size` of SyntheticClassification must be in \[28, 64\]; got 16"):
        SyntheticClassification(size=16)
    with pytest.raises(ValueError, match=r"`num_items` of SyntheticClassification.dataset must be an int >= 1"):
        SyntheticClassification().dataset(0)
