import json
import math

import pytest
import torch
from scipy.optimize import minimize_scalar

import softlabels.training.inference as inference
from softlabels.calibration import TemperatureScaler
from softlabels.evaluation.fitting import ObservedLogits, fit_scaler
from softlabels.evaluation.references import batch_references
from softlabels.training.config import config_from_dict
from softlabels.training.inference import calibrate, evaluate
from softlabels.training.run import load_run, train

QUIET = {"accelerator": "cpu", "enable_progress_bar": False, "log_every_n_steps": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = config_from_dict({
        "task": "segmentation", "seed": 0, "output_dir": str(out),
        "data": {"source": "synthetic_segmentation", "options": {"shape": [24, 24], "num_cases": [16, 8, 8]},
                 "batch_size": 4},
        "model": {"name": "small_unet"}, "method": {"name": "hard"}, "optimizer": {"name": "adamw", "lr": 0.01},
        "trainer": {"max_epochs": 3, **QUIET},
    })  # fmt: skip
    train(config)
    return out / "checkpoints" / "last.ckpt"


def test_evaluate_writes_a_valid_report(trained, tmp_path):
    paths = evaluate(trained, tmp_path / "report", split="test")
    doc = json.loads(paths["json"].read_text())
    assert len(doc["cases"]) == 8 and {"ece", "nll", "dice"} <= set(doc["summary"])
    assert 0 <= doc["summary"]["ece"] <= 1
    assert paths["png"].stat().st_size > 1000 and "Per case" in paths["markdown"].read_text()
    val = evaluate(trained, tmp_path / "val", split="val")
    assert json.loads(val["json"].read_text())["summary"] != doc["summary"]  # another split


def test_calibrate_fits_the_nll_optimal_temperature_and_stores_it(trained, tmp_path):
    target = tmp_path / "cal.ckpt"
    summary = calibrate(trained, target)
    _, dm, task = load_run(trained)
    with torch.no_grad():  # the observed reference: the rater mean (never the synthetic p*)
        pairs = [
            (task.model(b["image"]).double(), batch_references(b, task.num_classes, 2).soft.double())
            for b in dm.val_dataloader()
        ]

    def nll(t):
        return sum(-(q * torch.log_softmax(z / math.exp(t), 1)).sum().item() for z, q in pairs)

    best = math.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded", options={"xatol": 1e-9}).x)
    assert summary["converged"] and summary["temperature"] == pytest.approx(best, rel=1e-4)
    assert summary["nll_after"] <= summary["nll_before"] + 1e-12
    _, _, calibrated = load_run(target)
    assert calibrated.scaler.temperature_ == pytest.approx(summary["temperature"], rel=1e-6)
    assert json.loads(target.with_suffix(".json").read_text())["temperature"] == summary["temperature"]
    report = evaluate(target, tmp_path / "cal-report", split="val")
    inputs = json.loads(report["json"].read_text())["provenance"]["inputs"]
    assert inputs["temperature"] == pytest.approx(summary["temperature"])


class _WithoutTrueProbs:
    """A loader whose batches lack ``true_probs``."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        for batch in self.loader:
            yield {k: v for k, v in batch.items() if k != "true_probs"}


def test_calibrate_gives_the_same_temperature_with_and_without_true_probs(trained, tmp_path, monkeypatch):
    with_truth = calibrate(trained, tmp_path / "a.ckpt")["temperature"]
    real_load_run = inference.load_run

    def load_run_without_truth(*args, **kwargs):
        config, dm, task = real_load_run(*args, **kwargs)
        val = dm.val_dataloader()
        assert any("true_probs" in b for b in val)  # the data does carry p*: the test is not vacuous
        monkeypatch.setattr(dm, "val_dataloader", lambda: _WithoutTrueProbs(val))
        return config, dm, task

    monkeypatch.setattr(inference, "load_run", load_run_without_truth)
    without_truth = calibrate(trained, tmp_path / "b.ckpt")["temperature"]
    assert without_truth == with_truth  # identical, not approximately
    _, dm, task = real_load_run(trained)
    logits = lambda image: task.predict_logits(image, calibrated=False)  # noqa: E731
    named = ObservedLogits(
        logits, dm.val_dataloader(), num_classes=task.num_classes, spatial_dims=2, reference="true_probs"
    )
    assert fit_scaler(TemperatureScaler(), named).temperature_ != pytest.approx(with_truth, rel=1e-3)  # p* differs


def test_evaluate_on_other_data_through_an_override(trained, tmp_path):
    other = {"data": {"source": "synthetic_segmentation", "options": {"shape": [32, 32], "num_cases": [4, 2, 3]},
                      "batch_size": 2}}  # fmt: skip
    paths = evaluate(trained, tmp_path / "other", overrides=other)  # other data: all of it unless a split is named
    document = json.loads(paths["json"].read_text())
    assert len(document["cases"]) == 9 and document["provenance"]["inputs"]["split"] == "all"
    assert len({row["case"] for row in document["cases"]}) == 9
    paths = evaluate(trained, tmp_path / "other-test", overrides=other, split="test")
    assert len(json.loads(paths["json"].read_text())["cases"]) == 3
