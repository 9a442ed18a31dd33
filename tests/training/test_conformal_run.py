"""``softlabels conformal`` and ``softlabels predict --conformal`` end to end on embedded data (tiny runs)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from softlabels.cli import main
from softlabels.conformal import ConformalSets, ConformalThresholds, read_conformal
from softlabels.training.conformal_run import fit_conformal

SEGMENTATION = {
    "task": "segmentation",
    "data": {"source": "synthetic_segmentation", "options": {"shape": [16, 16], "num_cases": [6, 12, 3]},
             "batch_size": 4},
    "model": {"name": "small_unet"},
    "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False},
}  # fmt: skip
CLASSIFICATION = {
    "task": "classification",
    "data": {"source": "synthetic_classification", "options": {"num_items": [16, 40, 10], "size": 28},
             "batch_size": 8},
    "model": {"name": "small_cnn"},
    "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False},
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("conformal")
    out = {}
    for name, config in (("seg", SEGMENTATION), ("cls", CLASSIFICATION)):
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        assert main(["train", "--config", str(path), "--output_dir", str(root / name)]) == 0
        out[name] = root / name / "checkpoints" / "last.ckpt"
    return out


def test_thresholds_from_the_validation_split_applied_by_predict(runs, tmp_path, capsys):
    out = tmp_path / "thresholds.json"
    assert main(["conformal", "--checkpoint", str(runs["seg"]), "--output", str(out), "--alpha", "0.2"]) == 0
    fitted = read_conformal(out)
    assert isinstance(fitted, ConformalThresholds) and fitted.n_calibration == 12 and fitted.reference == "each"
    assert fitted.procedure == "crc" and fitted.calibration_risk[0] <= 0.2 and "wrote" in capsys.readouterr().out
    provenance = json.loads(out.read_text())["provenance"]
    assert provenance["split"] == "val" and provenance["temperature"] == 1.0
    again, _ = fit_conformal(runs["seg"], alpha=0.2)
    assert again == fitted  # the CLI writes exactly what the Python API fits
    pred = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(runs["seg"]), "--output", str(pred), "--conformal", str(out)]) == 0
    manifest = json.loads((pred / "predictions.json").read_text())
    assert manifest["conformal"]["thresholds"] == list(fitted.thresholds)
    masks = sorted(pred.glob("masks/*/conformal.png"))
    assert len(masks) == 3
    probs = np.load(sorted(pred.glob("probs/*.npz"))[0])["probabilities"]  # (C, y, x)
    mask = np.asarray(Image.open(masks[0])) > 0  # rows = y
    np.testing.assert_array_equal(mask, probs[1] >= fitted.thresholds[0])


def test_ltt_fdr_and_the_reference_are_options(runs, tmp_path):
    out = tmp_path / "ltt.json"
    argv = ["conformal", "--checkpoint", str(runs["seg"]), "--output", str(out), "--alpha", "0.5",
            "--procedure", "ltt", "--delta", "0.2", "--loss", "fdr", "--reference", "majority"]  # fmt: skip
    assert main(argv) == 0
    fitted = read_conformal(out)
    assert (fitted.procedure, fitted.loss, fitted.delta, fitted.reference) == ("ltt", "fdr", 0.2, "majority")


def test_prediction_sets_from_the_validation_split_applied_by_predict(runs, tmp_path):
    out = tmp_path / "sets.json"
    argv = ["conformal", "--checkpoint", str(runs["cls"]), "--output", str(out), "--alpha", "0.2",
            "--set-method", "raps", "--k-reg", "2", "--lambda-reg", "0.1"]  # fmt: skip
    assert main(argv) == 0
    fitted = read_conformal(out)
    assert isinstance(fitted, ConformalSets) and (fitted.method, fitted.k_reg, fitted.n_calibration) == ("raps", 2, 40)
    pred = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(runs["cls"]), "--output", str(pred), "--conformal", str(out)]) == 0
    with (pred / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10
    for row in rows:
        probs = torch.tensor([[float(row[f"p{c}"]) for c in range(8)]])
        expected = fitted.predict(probs)[0].nonzero()[:, 0].tolist()
        assert row["prediction_set"] == " ".join(map(str, expected)) and int(row["set_size"]) == len(expected)


def test_thresholds_from_prediction_folders_and_the_shipped_example(tmp_path):
    out = tmp_path / "example.json"
    assert main(["conformal", "--example", "--output", str(out), "--alpha", "0.25"]) == 0
    fitted = read_conformal(out)
    assert fitted.structures == ("1", "2") and fitted.reference == "each" and fitted.n_calibration == 4
    labels = tmp_path / "labels.json"
    assert main(["conformal", "--example", "--labels", "-", "--output", str(labels), "--alpha", "0.25",
                 "--class-names", "background,outer,inner"]) == 0  # fmt: skip
    assert read_conformal(labels).structures == ("outer", "inner") and read_conformal(labels).reference == "label"


def test_refused_commands_exit_2_and_write_nothing(runs, tmp_path, capsys):
    cases = [
        (["conformal", "--output", str(tmp_path / "a.json")], "either --checkpoint"),
        (["conformal", "--checkpoint", str(runs["seg"]), "--example", "--output", str(tmp_path / "a.json")],
         "either --checkpoint"),
        (["conformal", "--checkpoint", str(runs["seg"]), "--output", str(tmp_path)], "is a folder"),
        (["conformal", "--checkpoint", str(runs["seg"]), "--output", str(tmp_path / "a.json"), "--alpha", "0.01"],
         "alpha"),
        (["conformal", "--example", "--labels", "-", "--reference", "each", "--output", str(tmp_path / "a.json")],
         "raters"),
    ]  # fmt: skip
    for argv, match in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "a.json").exists()


def test_predict_refuses_a_conformal_file_of_another_task_or_temperature(runs, tmp_path, capsys):
    sets = tmp_path / "sets.json"
    assert main(["conformal", "--checkpoint", str(runs["cls"]), "--output", str(sets), "--alpha", "0.2"]) == 0
    pred = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(runs["seg"]), "--output", str(pred), "--conformal", str(sets)]) == 2
    assert "fitted for classification" in capsys.readouterr().err and not pred.exists()
    calibrated = tmp_path / "calibrated.ckpt"
    assert main(["calibrate", "--checkpoint", str(runs["cls"]), "--output", str(calibrated)]) == 0
    assert main(["predict", "--checkpoint", str(calibrated), "--output", str(pred), "--conformal", str(sets)]) == 2
    assert "temperature" in capsys.readouterr().err and not pred.exists()
