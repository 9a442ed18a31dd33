import math

import pytest
import torch

from softlabels.metrics.functional import (
    brier_score,
    calibration_error,
    dice_score,
    embedding_compactness,
    negative_log_likelihood,
    thresholded_dice,
    top_k_accuracy,
)
from softlabels.metrics.functional.regions import boundary_band
from softlabels.training.evaluation import CaseNames, MetricSuite, batch_references


def seg_batches(seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(3):
        probs = torch.softmax(2 * torch.randn(2, 3, 12, 12, generator=g), 1)
        label = torch.randint(0, 3, (2, 1, 12, 12), generator=g)
        raters = torch.randint(0, 3, (2, 4, 12, 12), generator=g)
        out.append((probs, {"label": label, "raters": raters}))
    return out


def test_segmentation_suite_equals_the_functional_metrics_over_all_batches():
    batches = seg_batches(0)
    suite = MetricSuite("segmentation", 3, spatial_dims=2)
    for probs, batch in batches:
        suite.update(probs, batch)
    values = suite.compute()
    probs = torch.cat([p for p, _ in batches])
    hard = torch.cat([b["label"][:, 0] for _, b in batches])
    soft = torch.cat([batch_references(b, 3, 2)[1] for _, b in batches])
    assert values["ece"] == pytest.approx(calibration_error(probs, soft).item(), rel=1e-9)
    assert values["ece_classwise"] == pytest.approx(calibration_error(probs, soft, mode="classwise").item(), rel=1e-9)
    band = boundary_band(hard, width=2.0)
    assert values["ece_boundary"] == pytest.approx(calibration_error(probs, soft, mask=band).item(), rel=1e-9)
    assert values["brier"] == pytest.approx(brier_score(probs, soft).item(), rel=1e-9)
    assert values["nll"] == pytest.approx(negative_log_likelihood(probs, soft).item(), rel=1e-9)
    assert values["dice"] == pytest.approx(float(dice_score(probs, hard).mean()), rel=1e-9)
    assert values["thresholded_dice"] == pytest.approx(float(thresholded_dice(probs, soft).mean()), rel=1e-9)
    assert math.isfinite(values["hd95"])
    suite.reset()
    assert suite.compute() == {}


def test_reference_label_uses_the_hard_labels_and_true_probs_take_priority():
    probs, batch = seg_batches(1)[0]
    truth = torch.softmax(torch.randn(2, 3, 12, 12), 1)
    hard, soft = batch_references({**batch, "true_probs": truth}, 3, 2)
    assert torch.equal(soft, truth) and hard.shape == (2, 12, 12)
    suite = MetricSuite("segmentation", 3, names=("ece", "nll"), reference="label")
    suite.update(probs, batch)
    assert suite.compute()["nll"] == pytest.approx(negative_log_likelihood(probs, hard).item(), rel=1e-9)
    without_soft = MetricSuite("segmentation", 3, names=("thresholded_dice", "dice"))
    without_soft.update(probs, {"label": batch["label"]})
    assert set(without_soft.compute()) == {"dice"}  # QUBIQ Dice needs a soft reference


def test_classification_suite_with_compactness():
    g = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(20, 6, generator=g), 1)
    label = torch.randint(0, 6, (20,), generator=g)
    features = torch.randn(20, 5, generator=g)
    suite = MetricSuite("classification", 6, num_features=5)
    suite.update(probs[:10], {"label": label[:10]}, features[:10])
    suite.update(probs[10:], {"label": label[10:]}, features[10:])
    values = suite.compute()
    assert values["top1"] == pytest.approx(top_k_accuracy(probs, label, k=1).item())
    assert values["top5"] == pytest.approx(top_k_accuracy(probs, label, k=5).item())
    assert values["compactness"] == pytest.approx(embedding_compactness(features, label, num_classes=6).item())
    assert "compactness" not in MetricSuite("classification", 6).metrics  # no embedding size: left out


def test_bad_options_raise():
    with pytest.raises(ValueError, match=r"`metric` of MetricSuite \(segmentation\) .*got 'top1'"):
        MetricSuite("segmentation", 2, names=("top1",))
    with pytest.raises(ValueError, match=r"needs `num_features`"):
        MetricSuite("classification", 2, names=("compactness",))
    with pytest.raises(ValueError, match=r"`reference` of MetricSuite .*got 'soft'"):
        MetricSuite("segmentation", 2, reference="soft")


def test_case_names_are_unique_in_loader_order_even_against_given_names():
    names = CaseNames()
    first = names({"case": ["p1", "p1_1", "p1"]}, 3)  # the third "p1" skips the given "p1_1"
    assert first == ["p1", "p1_1", "p1_2"]
    assert names({"case": ("p2",)}, 1) == ["p2"] and names({"image": None}, 2) == ["case_00004", "case_00005"]
