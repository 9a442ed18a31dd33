"""One value per quantity: the same predictions through `score` (files), `evaluate` (a split) and the bench."""

import json

import numpy as np
import pytest
import torch

from softlabels.bench.benchmark_run import evaluate_split
from softlabels.cli import main
from softlabels.evaluation.case_names import CaseNames
from softlabels.evaluation.evaluator import summarize
from softlabels.evaluation.references import batch_references
from softlabels.training.config import config_from_dict
from softlabels.training.run import load_run, train

SHARED = {
    "ece", "ece_case_mean", "ece_classwise", "mce", "ece_foreground", "ece_boundary", "brier", "nll", "dice",
    "soft_dice", "hd95", "thresholded_dice",
}  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = config_from_dict({
        "task": "segmentation", "seed": 1, "output_dir": str(out),
        "data": {"source": "synthetic_segmentation", "options": {"shape": [20, 20], "num_cases": [8, 4, 6],
                 "num_classes": 3}, "batch_size": 4},
        "model": {"name": "small_unet"}, "method": {"name": "svls"},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False},
    })  # fmt: skip
    train(config)
    return out / "checkpoints" / "last.ckpt"


def _write_soft_references(checkpoint, folder):
    """The test split's observed soft reference (the rater mean) as npz files, in nnU-Net's axis order."""
    _, dm, task = load_run(checkpoint)
    folder.mkdir()
    names = CaseNames()
    for batch in dm.test_dataloader():
        soft = batch_references(batch, task.num_classes, task.spatial_dims).soft
        for name, ref in zip(names(batch, len(soft)), soft, strict=True):
            reversed_axes = ref.numpy().transpose(0, *range(ref.ndim - 1, 0, -1))
            np.savez(folder / f"{name}.npz", probabilities=reversed_axes.astype(np.float32))


def test_score_evaluate_and_the_bench_give_one_value_per_quantity(checkpoint, tmp_path):
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())

    assert main(["predict", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "pred")]) == 0
    _write_soft_references(checkpoint, tmp_path / "refs")
    _, dm, task = load_run(checkpoint)
    names = ",".join(dm.info["class_names"])  # the names `evaluate` takes from the data, given to `score`
    argv = ["score", "--probs", str(tmp_path / "pred" / "probs"), "--ref-probs", str(tmp_path / "refs")]
    assert main([*argv, "--output", str(tmp_path / "score"), "--no-progress", "--class-names", names]) == 0
    scored = json.loads((tmp_path / "score" / "metrics.json").read_text())

    arrays, _, _ = evaluate_split(task, dm.test_dataloader(), 1.0)
    bench = summarize(arrays["raw"])
    ts_at_one = summarize(arrays["ts"])

    shared = set(evaluated["summary"]) & set(scored["summary"]) & set(bench)
    assert shared >= SHARED, SHARED - shared
    for name in sorted(shared):
        values = (evaluated["summary"][name], scored["summary"][name], bench[name], ts_at_one[name])
        assert all(v is not None and np.isfinite(v) for v in values), (name, values)
        assert max(values) - min(values) <= 1e-9, (name, values)
    assert evaluated["per_class"].keys() == scored["per_class"].keys() >= {"dice", "soft_dice", "hd95"}
    assert list(evaluated["per_class"]["soft_dice"]) == dm.info["class_names"][1:]
    for name, values in evaluated["per_class"].items():
        assert values == pytest.approx(scored["per_class"][name], abs=1e-9), name
    assert [r["case"] for r in evaluated["cases"]] == [r["case"] for r in scored["cases"]]
    for mine, theirs in zip(evaluated["cases"], scored["cases"], strict=True):
        for name in SHARED - {"ece_case_mean"}:
            assert mine[name] == pytest.approx(theirs[name], abs=1e-9, nan_ok=True), (mine["case"], name)
    assert torch.equal(torch.as_tensor(arrays["raw"]["hist_ece"]), torch.as_tensor(arrays["ts"]["hist_ece"]))
