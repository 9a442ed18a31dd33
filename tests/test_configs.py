"""The shipped configs: every small CPU config trains, evaluates and predicts through the CLI; every full one is valid.

The CPU configs run as shipped (their data, model, method and optimiser) with a few steps only:
``--trainer.max_epochs 1 --trainer.limit_train_batches 2 --trainer.limit_val_batches 1``.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from softlabels.cli import main
from softlabels.methods import create_method, list_methods
from softlabels.models import create_model
from softlabels.training.config import config_from_dict, config_parser
from softlabels.training.data_sources import DATA_SOURCES, build_transforms
from softlabels.training.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[1] / "configs"
CPU = sorted((ROOT / "cpu").glob("*.yaml"))
FULL = sorted((ROOT / "full").glob("*.yaml"))
FEW_STEPS = [
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
    "--trainer.enable_progress_bar", "false",
]  # fmt: skip


def _mask(path: Path) -> np.ndarray:
    if path.suffix == ".png":
        return np.asarray(Image.open(path)) > 0
    if path.name.endswith(".nii.gz"):
        return np.asarray(nib.load(path).dataobj) > 0
    return np.load(path)["masks"] > 0


def _check_nested_masks(out: Path, thresholds: tuple[str, ...]) -> int:
    """Every case's masks at the thresholds are nested (higher ⊆ lower); returns the number of comparisons."""
    compared = 0
    for case in sorted((out / "masks").iterdir()):
        for low_path in sorted(case.glob(f"t{thresholds[0]}*")):
            masks = [_mask(case / low_path.name.replace(thresholds[0], t)) for t in thresholds]
            for low, high in itertools.pairwise(masks):
                assert low.shape == high.shape and np.all(high <= low), case / low_path.name
                compared += 1
    return compared


def test_every_seed_setup_has_a_small_and_a_full_config():
    cpu = {p.stem for p in CPU}
    assert {f"classification_mobilenet_v2_{m}" for m in ("hard", "ls", "ols", "tfkd")} <= cpu
    assert {"classification_resnet50_hard", "classification_vgg19_hard", "segmentation_svls_synthetic_3d"} <= cpu
    assert {f"segmentation_confidence_tau0.{t}" for t in (5, 6, 7, 8)} <= cpu and "segmentation_raters_lidc" in cpu
    full = {p.stem for p in FULL}
    nets, methods = ("resnet50", "mobilenet_v2", "vgg19"), ("hard", "ls", "ols", "tfkd")
    assert {f"radimagenet_{n}_{m}" for n in nets for m in methods} <= full
    assert {"brats_svls_3d", "qubiq_raters_soft"} | {f"ultrasound_confidence_tau0.{t}" for t in (5, 6, 7, 8)} <= full


@pytest.mark.parametrize("path", CPU + FULL, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_is_valid_without_building_its_data(path):
    """Parsed and type-checked as `softlabels train` does; every named part builds (the network on `meta`)."""
    namespace = config_parser("softlabels train", "test").parse_args(["--config", str(path)])
    config = config_from_dict(namespace.as_dict())
    assert config.data.source in DATA_SOURCES and config.task in DATA_SOURCES[config.data.source][0]
    assert config.method.name in list_methods(config.task)
    assert create_method(config.method.name, num_classes=4, **config.method.options).name == config.method.name
    channels = 3 if config.task == "classification" else 1
    dims = {"spatial_dims": 3 if "3d" in path.stem else 2} if config.task == "segmentation" else {}
    with torch.device("meta"):
        model = create_model(config.model.name, in_channels=channels, num_classes=4, **dims, **config.model.options)
    build_optimizer(model.parameters(), config.optimizer, config.scheduler, config.trainer.max_epochs)
    build_transforms(config.data.train_transforms)
    if path.parent.name == "full":  # a GPU recipe at the paper's scale, its data and weights from local paths
        assert config.trainer.accelerator == "gpu" and config.trainer.max_epochs >= 50
        assert str(config.data.options["root"]).startswith("/")


@pytest.mark.parametrize("path", CPU, ids=lambda p: p.stem)
def test_small_config_trains_evaluates_and_predicts_through_the_cli(path, tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTLABELS_CACHE", str(tmp_path / "cache"))  # LIDC builds into the test's folder
    config = yaml.safe_load(path.read_text())
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--output_dir", str(run), *FEW_STEPS]) == 0
    final = json.loads((run / "final_metrics.json").read_text())
    assert final and all(math.isfinite(v) for v in final.values())
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "epoch=000.ckpt").is_file()
    checkpoint = run / "checkpoints" / "last.ckpt"

    assert main(["evaluate", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "eval")]) == 0
    doc = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    summary = doc["summary"]
    if config["task"] == "classification":  # pooled metrics (per-case rows are predict's CSV)
        assert 0 <= summary["top1"] <= summary["top5"] <= 1 and 0 <= summary["ece"] <= 1
    else:
        assert doc["cases"] and 0 <= summary["ece"] <= 1
        assert all(0 <= v <= 1 for v in doc["per_class"]["dice"].values()) and 0 <= summary["dice"] <= 1
    assert summary["nll"] >= 0 and 0 <= summary["brier"] <= 2
    assert (tmp_path / "eval" / "reliability.png").stat().st_size > 1000

    out = tmp_path / "pred"
    if config["task"] == "classification":
        assert main(["predict", "--checkpoint", str(checkpoint), "--output", str(out), "--split", "test"]) == 0
        rows = (out / "predictions.csv").read_text().splitlines()
        test_size = yaml.safe_load((run / "config.yaml").read_text())["data"]["options"]["num_items"][2]
        assert len(rows) == 1 + test_size and rows[0].startswith("case")
        return
    levels = ("0.10", "0.50", "0.90")
    args = ["predict", "--checkpoint", str(checkpoint), "--output", str(out), "--split", "test"]
    assert main([*args, "--thresholds", ",".join(levels)]) == 0
    manifest = json.loads((out / "predictions.json").read_text())
    assert manifest["thresholds"] == [0.1, 0.5, 0.9]
    assert sorted(p.name.split(".")[0] for p in (out / "probs").iterdir()) == sorted(c["case"] for c in doc["cases"])
    for name in sorted((out / "probs").iterdir()):  # npz (C first) or, for data of a known voxel size, NIfTI (C last)
        if name.suffix == ".npz":
            np.testing.assert_allclose(np.load(name)["probabilities"].sum(0), 1.0, atol=1e-5)
        else:
            np.testing.assert_allclose(np.asarray(nib.load(name).dataobj).sum(-1), 1.0, atol=1e-5)
    assert _check_nested_masks(out, levels) >= 2 * len(doc["cases"])


@pytest.mark.parametrize("path", CPU, ids=lambda p: p.stem)
def test_small_config_says_whether_it_is_a_smoke_run_or_a_converged_one(path):
    """The first line says which (docs/bench.md has the convergence rule); a converged one gives its command."""
    text = path.read_text()
    first = text.splitlines()[0]
    assert first.startswith(("# Smoke run", "# Converged run")), f"{path.name}: first line {first!r}"
    if first.startswith("# Converged run"):
        assert f"softlabels train --config configs/cpu/{path.name}" in text and "validation" in first
    else:
        assert "not trained" in first and "validation" in first  # what it scores, so no one takes it for a result
