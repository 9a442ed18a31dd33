import numpy as np
import pytest
import torch

from softlabels.data.synthetic_segmentation import SyntheticSegmentation, floor_of, synthetic_segmentation_datamodule
from softlabels.methods import create_method
from softlabels.metrics.functional import brier_score, calibration_error, negative_log_likelihood


@pytest.mark.parametrize("shape", [(48, 48), (20, 20, 20)])
def test_true_probs_are_distributions_and_samples_are_consistent(shape):
    ds = SyntheticSegmentation(shape=shape, num_classes=3, structures=(2, 3)).dataset(6, seed=3)
    for sample in ds:
        p = sample["true_probs"].double()
        assert p.shape == (3, *shape) and (p >= 0).all()
        torch.testing.assert_close(p.sum(0), torch.ones(shape, dtype=torch.float64), atol=1e-6, rtol=0)
        label, raters = sample["label"][0], sample["raters"]
        assert raters.shape == (5, *shape) and torch.equal(label, raters[2])  # the median rater
        # a rater never marks a voxel whose true probability of that class is 0
        assert bool((torch.gather(p, 0, raters.long()) > 0).all())
        conf = sample["confidence"][0].double()
        torch.testing.assert_close(conf, torch.gather(p, 0, label[None].long())[0], atol=1e-6, rtol=0)
        # the image shows the membership profile: image = 0.2 + Σ_c (0.6 c / 2)·p*_c + texture (0.05) + noise (0.03)
        steps = torch.tensor([0.0, 0.3, 0.6], dtype=torch.float64).view(3, *([1] * len(shape)))
        residual = sample["image"][0].double() - 0.2 - (steps * p).sum(0)
        assert 0.5 * np.hypot(0.05, 0.03) < float(residual.std()) < 1.5 * np.hypot(0.05, 0.03)


def test_panel_styles_go_from_over_to_under_segmentation():
    ds = SyntheticSegmentation(shape=(48, 48)).dataset(10, seed=0)
    fg = torch.stack([s["raters"] for s in ds]).gt(0).double().mean(dim=(0, 2, 3))
    assert bool((fg[:-1] > fg[1:]).all())  # level 0.1 marks most, level 0.9 least


def test_raters_are_sampled_from_the_stored_true_probs():
    # a large panel of consistent raters (levels spread over (0, 1), smooth per-image jitter) is a sample of the
    # rater population; its per-voxel frequency of each class must match p* (Monte Carlo, R = 1500)
    num_raters = 1500
    cfg = SyntheticSegmentation(shape=(40, 40), num_classes=3, structures=(2, 3), num_raters=num_raters)
    sample = cfg.dataset(1, seed=7)[0]
    p = sample["true_probs"].double()
    freq = torch.stack([(sample["raters"] == c).double().mean(0) for c in range(3)])
    error = (freq - p).abs()
    standard_error = torch.sqrt(p * (1 - p) / num_raters)
    assert float(error.mean()) < 0.005
    assert bool((error <= 5 * standard_error + 0.02).all()), float(error.max())
    ambiguous = (p.amax(0) < 0.9) & (p.amax(0) > 0.1)
    assert int(ambiguous.sum()) > 20  # the check is not trivial: there are ambiguous voxels


def test_stored_floor_equals_the_metrics_applied_to_the_true_probs():
    ds = SyntheticSegmentation(shape=(32, 32)).dataset(5, seed=1)
    probs = torch.stack([s["true_probs"] for s in ds])
    floor = ds.info["floor"]
    assert floor == floor_of([s["true_probs"] for s in ds])
    assert negative_log_likelihood(probs, probs).item() == pytest.approx(floor["nll"], rel=1e-6)
    assert calibration_error(probs, probs).item() == pytest.approx(floor["ece"], abs=1e-12)
    assert brier_score(probs, probs).item() == pytest.approx(floor["brier"], abs=1e-12)
    # expected Brier of p* against labels drawn from p*: average the hard-label Brier over the classes, weighted by p*
    expected = sum(
        (probs[:, c] * ((probs - torch.nn.functional.one_hot(torch.full(probs.shape[:1] + probs.shape[2:], c), 2)
                         .movedim(-1, 1)) ** 2).sum(1)).mean()
        for c in range(2)
    )  # fmt: skip
    assert float(expected) == pytest.approx(floor["bayes_brier"], rel=1e-5)
    band = probs.amax(1) < 0.98
    band_nll = negative_log_likelihood(probs, probs, mask=band)
    assert band_nll.item() == pytest.approx(floor["nll_band"], rel=1e-6)


def test_same_seed_same_data_and_splits_differ():
    cfg = SyntheticSegmentation(shape=(24, 24))
    a, b = cfg.dataset(3, seed=5), cfg.dataset(3, seed=5)
    for x, y in zip(a, b, strict=True):
        for key in ("image", "raters", "true_probs", "confidence"):
            assert torch.equal(x[key], y[key])
    other = cfg.dataset(3, seed=5, split="val")
    assert not torch.equal(a[0]["image"], other[0]["image"])
    assert not torch.equal(a[0]["image"], cfg.dataset(3, seed=6)[0]["image"])


def test_datamodule_batches_feed_every_segmentation_method():
    dm = synthetic_segmentation_datamodule(SyntheticSegmentation(shape=(16, 16)), num_cases=(4, 2, 2), batch_size=2)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 1, 16, 16) and batch["label"].shape == (2, 1, 16, 16)
    for name in ("hard", "raters_mean", "raters_svls", "confidence_threshold", "svls"):
        method = create_method(name, 2, task="segmentation")
        target = method.make_target(batch)
        assert torch.isfinite(method(torch.zeros(2, 2, 16, 16), target))


def test_bad_configurations_raise():
    with pytest.raises(ValueError, match=r"`shape` of SyntheticSegmentation must be a tuple of 2 or 3 sizes"):
        SyntheticSegmentation(shape=(4, 4))
    with pytest.raises(ValueError, match=r"`num_classes` of SyntheticSegmentation must be an int >= 2; got 1"):
        SyntheticSegmentation(num_classes=1)
    with pytest.raises(ValueError, match=r"`jitter` of SyntheticSegmentation must be in \[0, 1\); got 1.5"):
        SyntheticSegmentation(jitter=1.5)
    with pytest.raises(ValueError, match=r"`rater_levels` must hold 5 levels in \(0, 1\)"):
        SyntheticSegmentation(rater_levels=(0.5, 1.0, 0.2, 0.3, 0.4))
    with pytest.raises(ValueError, match=r"`split` of SyntheticSegmentation.dataset must be one of"):
        SyntheticSegmentation(shape=(16, 16)).dataset(2, split="training")
