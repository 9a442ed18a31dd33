"""The ``softlabels`` command line: ``score`` end to end on the shipped example, and user errors as exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import nibabel as nib
import numpy as np
import pytest
import torch

from softlabels.cli import build_parser, main
from softlabels.data.prediction_files import example_folder
from softlabels.metrics.calibration import CalibrationError
from softlabels.metrics.functional.regions import boundary_band, foreground_mask
from softlabels.metrics.multirater import ThresholdedDice
from softlabels.metrics.proper_scoring import BrierScore, NegativeLogLikelihood
from softlabels.metrics.segmentation import DiceScore, HausdorffDistance95, SoftDiceScore


def load_example(reference: str):
    """The example read directly with nibabel: per case (probs (1, C, x, y, z), target, spacing)."""
    root = example_folder()
    for path in sorted((root / "probs").glob("*.nii.gz")):
        probs = torch.from_numpy(np.moveaxis(np.asarray(nib.load(path).dataobj), -1, 0)).float()[None]
        if reference == "labels":
            image = nib.load(root / "labels" / path.name)
            target = torch.from_numpy(np.asarray(image.dataobj).astype(np.int64))[None]
        else:
            image = nib.load(root / "raters" / "rater1" / path.name)
            maps = [np.asarray(nib.load(d / path.name).dataobj) for d in sorted((root / "raters").iterdir())]
            target = torch.from_numpy(np.mean([np.eye(3)[m] for m in maps], 0)).float().movedim(-1, 0)[None]
        yield probs, target, tuple(float(z) for z in image.header.get_zooms())


def direct_summary(reference: str) -> dict:
    """The dataset values computed by running the metrics directly on the example."""
    metrics = {
        "ece": CalibrationError(3),
        "ece_classwise": CalibrationError(3, mode="classwise"),
        "mce": CalibrationError(3, norm="max"),
        "ece_foreground": CalibrationError(3),
        "ece_boundary": CalibrationError(3),
        "brier": BrierScore(3),
        "nll": NegativeLogLikelihood(3),
    }
    dice, hd95, td, soft_dice = DiceScore(3), HausdorffDistance95(3), ThresholdedDice(3), SoftDiceScore(3)
    for probs, target, spacing in load_example(reference):
        hard = target if reference == "labels" else target.argmax(1)
        for name, metric in metrics.items():
            mask = {"ece_foreground": foreground_mask(hard), "ece_boundary": boundary_band(hard, width=2)}.get(name)
            metric.update(probs, target, mask=mask)
        dice.update(probs, hard)
        hd95.update(probs, hard, spacing=spacing)
        td.update(probs, target)
        soft_dice.update(probs, target)  # the soft reference, or the label map (one-hot)
    out = {name: float(m.compute()) for name, m in metrics.items()}
    out["per_class"] = {
        "dice": dict(zip(["1", "2"], dice.compute().tolist(), strict=True)),
        "hd95": dict(zip(["1", "2"], hd95.compute().tolist(), strict=True)),
        "soft_dice": dict(zip(["1", "2"], soft_dice.compute().tolist(), strict=True)),
    }
    if reference != "labels":
        out["per_class"]["thresholded_dice"] = dict(zip(["1", "2"], td.compute().tolist(), strict=True))
    return out


@pytest.mark.parametrize("reference", ["labels", "raters"])
def test_score_example_end_to_end(tmp_path, capsys, reference):
    argv = ["score", "--example", "--output", str(tmp_path / "out"), "--no-progress"]
    assert main(argv + (["--raters", "-"] if reference == "raters" else [])) == 0
    out = capsys.readouterr().out
    assert "scored 4 case(s)" in out and "report.md" in out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["metrics.json", "reliability.png", "report.md"]
    doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
    expected = direct_summary(reference)
    for name, per_class in expected.pop("per_class").items():
        for k, value in per_class.items():
            assert doc["per_class"][name][k] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    for name, value in expected.items():
        assert doc["summary"][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    per_case = CalibrationError(3, per_case=True)
    for probs, target, _ in load_example(reference):
        per_case.update(probs, target)
    values = per_case.compute()
    assert [r["ece"] for r in doc["cases"]] == pytest.approx(values["per_case"].tolist(), rel=1e-9)
    assert doc["summary"]["ece_case_mean"] == pytest.approx(float(values["per_case"].mean()), rel=1e-9)
    prov = doc["provenance"]
    assert prov["n_cases"] == 4 and prov["n_bins"] == 15 and prov["reference"] == reference
    assert prov["inputs"]["example"] is True
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "case_003" in markdown and "![reliability diagrams](reliability.png)" in markdown


def test_score_class_names_head_the_columns_and_a_wrong_count_is_one_error(tmp_path, capsys):
    argv = ["score", "--example", "--output", str(tmp_path / "out"), "--no-progress"]
    assert main([*argv, "--class-names", "background, liver,tumour"]) == 0
    doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert doc["provenance"]["class_names"] == ["background", "liver", "tumour"]
    assert set(doc["per_class"]["soft_dice"]) == set(doc["cases"][0]["per_class"]["dice"]) == {"liver", "tumour"}
    assert " soft Dice liver | soft Dice tumour " in (tmp_path / "out" / "report.md").read_text()
    capsys.readouterr()
    err = run_error([*argv, "--class-names", "background,liver"], capsys)
    assert err.startswith("softlabels score: error: `class_names`") and "['background', 'liver']" in err


def test_parser_structure():
    parser = build_parser()
    args = parser.parse_args(["score", "--probs", "p", "--labels", "l", "--output", "o", "--spacing", "1,1,2.5"])
    assert args.spacing == (1.0, 1.0, 2.5) and args.ignore_index is None and args.boundary_width == 2.0


@pytest.mark.parametrize(
    "argv",
    [
        ["train"],
        ["score", "--example"],  # --output is required
        ["score", "--probs", "p", "--labels", "l", "--raters", "r", "--output", "o"],
        ["score", "--example", "--output", "o", "--n-bins", "0"],
        ["score", "--example", "--output", "o", "--spacing", "1,x"],
        ["score", "--example", "--output", "o", "--boundary-width", "-2"],
    ],
)
def test_argparse_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def write_case(folder, name, array):
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(folder / f"{name}.nii.gz"))


@pytest.fixture
def small(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        logits = rng.normal(size=(6, 5, 4, 3))
        probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        write_case(tmp_path / "probs", name, probs.astype(np.float32))
        write_case(tmp_path / "labels", name, rng.integers(0, 3, size=(6, 5, 4)).astype(np.uint8))
    return tmp_path


def run_error(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err
    return captured.err


def score_argv(root, probs="probs", labels="labels"):
    return ["score", "--probs", str(root / probs), "--labels", str(root / labels), "--output", str(root / "out")]


def test_small_folder_scores(small, capsys):
    assert main([*score_argv(small), "--no-progress"]) == 0
    doc = json.loads((small / "out" / "metrics.json").read_text())
    assert [r["case"] for r in doc["cases"]] == ["a", "b"]


def test_missing_folder(small, capsys):
    err = run_error(score_argv(small, labels="nope"), capsys)
    assert "softlabels score: error: the --labels folder" in err and "does not exist" in err


def test_unmatched_case(small, capsys):
    (small / "labels" / "b.nii.gz").rename(small / "labels" / "c.nii.gz")
    err = run_error(score_argv(small), capsys)
    assert "1 prediction(s) without a reference" in err and "'b'" in err and "'c'" in err


def test_corrupt_file(small, capsys):
    (small / "probs" / "b.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    err = run_error(score_argv(small), capsys)
    assert "cannot read the NIfTI file" in err and "b.nii.gz" in err
    assert not (small / "out" / "metrics.json").exists()


def test_shape_mismatch(small, capsys):
    write_case(small / "labels", "b", np.zeros((6, 5, 3), dtype=np.uint8))
    err = run_error(score_argv(small), capsys)
    assert "case 'b': shape mismatch" in err


def test_nan_in_probs(small, capsys):
    probs = np.asarray(nib.load(small / "probs" / "a.nii.gz").dataobj).copy()
    probs[0, 0, 0, 0] = np.nan
    write_case(small / "probs", "a", probs)
    err = run_error(score_argv(small), capsys)
    assert "case 'a'" in err and "NaN" in err


def test_example_argument_conflicts(small, capsys):
    err = run_error(["score", "--example", "--probs", str(small / "probs"), "--output", str(small / "o")], capsys)
    assert "--example scores the shipped example" in err
    err = run_error(["score", "--probs", str(small / "probs"), "--output", str(small / "o")], capsys)
    assert "give --probs DIR and one reference" in err
    err = run_error(["score", "--probs", str(small / "probs"), "--labels", "-", "--output", str(small / "o")], capsys)
    assert "use it with --example" in err


def test_module_entry_point_exit_code(tmp_path):
    argv = ["score", "--probs", str(tmp_path / "x"), "--labels", str(tmp_path), "--output", str(tmp_path / "o")]
    proc = subprocess.run(
        [sys.executable, "-m", "softlabels.cli", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_lists_runs_runs_one_by_index_and_rejects_bad_options(tmp_path, capsys):
    from softlabels.bench.suites import get_benchmark, plan_runs
    from softlabels.cli import main

    specs = plan_runs([s for s in get_benchmark("quick") if s.name == "synthetic_classification"])
    args = ["bench", "--suite", "quick", "--only", "synthetic_classification", "--output", str(tmp_path)]
    assert main([*args, "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[1] for line in lines] == [s.run_id for s in specs]
    assert all(line.endswith("pending") for line in lines)
    assert main([*args, "--run-index", "0"]) == 0  # one job of a scheduler's array
    assert f"[bench run 0] {specs[0].run_id} epoch 2/2" in capsys.readouterr().err  # the run's epoch progress
    assert main([*args, "--list"]) == 0
    status = [line.split("\t")[2] for line in capsys.readouterr().out.strip().splitlines()]
    assert status == ["finished"] + ["pending"] * (len(specs) - 1)
    assert main([*args, "--report-only"]) == 2  # the other runs are not finished: named, exit 2
    assert "not finished" in capsys.readouterr().err
    assert main([*args, "--run-index", "99"]) == 2
    assert main(["bench", "--suite", "defualt", "--list"]) == 2
    assert "default" in capsys.readouterr().err
    assert main(["bench", "--only", "nope", "--list"]) == 2
