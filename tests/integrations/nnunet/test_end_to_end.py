"""End to end with the real nnU-Net on CPU: convert → plan and preprocess → train our trainer → predict → score.

A tiny synthetic 2D dataset (16 cases of 64 × 64, 3 raters) goes through ``softlabels nnunet convert`` and
``nnUNetv2_plan_and_preprocess`` (the ``raters_dataset`` fixture, which asserts both exit 0), then nnU-Net's own
``nnUNetv2_train`` with ``-tr nnUNetTrainerRatersMean`` (one epoch of a few iterations), ``nnUNetv2_predict
--save_probabilities`` on three new cases, and ``softlabels score`` of nnU-Net's output against the new cases' raters.
Runs in the nnU-Net environment (``scripts/test.sh``); skipped where nnunetv2 is not installed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.integrations.nnunet.conftest import RATERS_ID, run, synthetic_folder

TRAINER = "nnUNetTrainerRatersMean"


def majority(raters_root: Path, case: str) -> np.ndarray:
    maps = [np.asarray(nib.load(str(folder / f"{case}.nii.gz")).dataobj) for folder in sorted(raters_root.iterdir())]
    return (np.sum(maps, axis=0) * 2 > len(maps)).astype(np.uint8)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.sum(a & b)) / float(np.sum(a) + np.sum(b))


def test_convert_plan_train_predict_score_with_nnunets_own_commands(raters_dataset, nnunet_env):
    work = Path(nnunet_env["WORK"])
    env = nnunet_env | {"SOFTLABELS_NNUNET_EPOCHS": "1", "SOFTLABELS_NNUNET_ITERATIONS": "4", "nnUNet_n_proc_DA": "0"}
    trained = run(["nnUNetv2_train", str(RATERS_ID), "2d", "0", "-tr", TRAINER, "-device", "cpu"], env,
                  work / "train.log")  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    results = Path(env["nnUNet_results"]) / raters_dataset.name / f"{TRAINER}__nnUNetPlans__2d"
    assert (results / "fold_0" / "checkpoint_final.pth").is_file()
    model_dataset = json.loads((results / "dataset.json").read_text())
    assert model_dataset["labels"] == {"background": 0, "foreground": 1}
    assert model_dataset["softlabels_encoding"]["kind"] == "rater_bits"
    raters_root = work / "raters_folder" / "raters"
    summary = json.loads((results / "fold_0" / "validation" / "summary.json").read_text())
    for case in summary["metric_per_case"]:  # nnU-Net's final validation scored against the raters' majority
        name = Path(case["reference_file"]).name.removesuffix(".nii.gz")
        predicted = np.asarray(nib.load(case["prediction_file"]).dataobj).astype(bool)
        reference = majority(raters_root, name).astype(bool)
        assert case["metrics"]["1"]["Dice"] == pytest.approx(dice(predicted, reference), abs=1e-6)

    new = synthetic_folder(work / "new_cases", 3, raters=3, seed=7)
    images = work / "imagesTs"
    images.mkdir()
    for path in sorted((new / "images").iterdir()):
        shutil.copy(path, images / path.name.replace(".nii.gz", "_0000.nii.gz"))
    predicted = run(["nnUNetv2_predict", "-i", str(images), "-o", str(work / "predictions"), "-d", str(RATERS_ID),
                     "-c", "2d", "-f", "0", "-tr", TRAINER, "--save_probabilities", "-device", "cpu", "-npp", "1",
                     "-nps", "1"], env, work / "predict.log")  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    probabilities = np.load(work / "predictions" / "case00.npz")["probabilities"]
    assert probabilities.shape == (2, 1, 64, 64)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)

    report = work / "report"
    scored = run(["softlabels", "score", "--probs", str(work / "predictions"), "--raters", str(new / "raters"),
                  "--output", str(report)], env, work / "score.log")  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert (report / "report.md").is_file()
    metrics = json.loads((report / "metrics.json").read_text())
    assert len(metrics["cases"]) == 3 and metrics["provenance"]["reference"] == "raters", metrics["provenance"]
