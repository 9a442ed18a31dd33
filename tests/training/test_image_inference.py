"""A trained model on a new user's folder of raw volumes: the stored pipeline, outputs on the input grid, mm HD95."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from softlabels.cli import main
from softlabels.data.mni152 import load_mni152, mni152_soft_target
from softlabels.training.config import config_from_dict
from softlabels.training.image_inference import open_folder
from softlabels.training.run import load_model, train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mni-run")
    config = config_from_dict({
        "task": "segmentation", "output_dir": str(out),
        "data": {"source": "mni152", "options": {"downsample": 4, "size_multiple": 16, "num_slabs": 6, "gap": 1,
                                                  "normalize": "zscore"}, "batch_size": 16},
        "model": {"name": "unet", "options": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}},
        "method": {"name": "soft_label"},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False, "limit_train_batches": 2,
                    "limit_val_batches": 1},
    })  # fmt: skip
    train(config)
    return out / "checkpoints" / "last.ckpt"


def _resampled(volume: np.ndarray, spacing: float) -> np.ndarray:
    """``(C, x, y, z)`` at 1 mm → ``spacing`` mm (linear)."""
    size = [round(n / spacing) for n in volume.shape[1:]]
    tensor = torch.from_numpy(volume)[None]
    return F.interpolate(tensor, size=size, mode="trilinear", align_corners=False)[0].numpy()


@pytest.fixture(scope="module")
def new_folder(tmp_path_factory) -> Path:
    """Three raw volumes of other grids than the run's 4 mm (3 mm RAS, the same stored LAS, 5 mm cropped and scaled)."""
    root = tmp_path_factory.mktemp("new-brains")
    for sub in ("images", "probs"):
        (root / sub).mkdir()
    volumes = load_mni152()
    stacked = np.concatenate([volumes.t1[None], mni152_soft_target(volumes, num_classes=3)])
    three, five = _resampled(stacked, 3.0), _resampled(stacked, 5.0)[:, 2:-3, 4:-1, 1:-2]
    ras3 = volumes.affine @ np.diag([3.0, 3.0, 3.0, 1.0])
    las3 = ras3 @ np.array([[-1, 0, 0, three.shape[1] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    ras5 = volumes.affine @ np.diag([5.0, 5.0, 5.0, 1.0])
    cases = {"a_ras3mm": (three, ras3, 1.0), "b_las3mm": (three[:, ::-1], las3, 1.0), "c_5mm": (five, ras5, 700.0)}
    for name, (data, affine, scale) in cases.items():
        image = np.ascontiguousarray(data[0] * scale, dtype=np.float32)
        probs = np.ascontiguousarray(np.moveaxis(data[1:], 0, -1), dtype=np.float32)
        probs /= probs.sum(-1, keepdims=True)
        nib.save(nib.Nifti1Image(image, affine), root / "images" / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(probs, affine), root / "probs" / f"{name}.nii.gz")
    return root


def _data_config(tmp_path: Path, root: Path, **extra) -> Path:
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump({"data": {"source": "folder", "options": {"root": str(root)}, **extra}}))
    return path


@pytest.fixture(scope="module")
def predicted(checkpoint, new_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("predict") / "pred"
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(new_folder), "--output", str(out),
                 "--thresholds", "0.5"]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def evaluated(checkpoint, new_folder, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("evaluate")
    config = _data_config(tmp, new_folder)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data-config", str(config), "--output",
                 str(tmp / "report")]) == 0  # fmt: skip
    return tmp / "report"


def test_the_run_stores_its_input_pipeline(checkpoint):
    stored = json.loads((checkpoint.parent.parent / "input_pipeline.json").read_text())
    assert stored["input_pipeline"]["spacing"] == [4.0, 4.0, 4.0] and stored["input_pipeline"]["slice_axis"] == 2
    assert stored["class_names"] == ["other", "grey matter", "white matter"]
    _, task = load_model(checkpoint)
    assert task.input_pipeline == stored["input_pipeline"] and task.class_names == stored["class_names"]


def test_evaluate_scores_every_case_of_a_folder_without_labels(checkpoint, new_folder, evaluated, tmp_path):
    assert not (new_folder / "labels").exists()
    config = _data_config(tmp_path, new_folder)
    document = json.loads((evaluated / "metrics.json").read_text())
    assert sorted(row["case"] for row in document["cases"]) == ["a_ras3mm", "b_las3mm", "c_5mm"]
    assert document["provenance"]["inputs"]["split"] == "all"
    assert set(document["per_class"]["soft_dice"]) == {"grey matter", "white matter"}
    markdown = (evaluated / "report.md").read_text()
    assert "grey matter" in markdown and "soft_dice" in markdown
    # a split of the folder is scored only when named
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data-config", str(config), "--split", "test",
                 "--output", str(tmp_path / "test-split")]) == 0  # fmt: skip
    assert len(json.loads((tmp_path / "test-split" / "metrics.json").read_text())["cases"]) < 3


def test_predict_writes_outputs_on_the_input_grid_with_its_affine(new_folder, predicted):
    out = predicted
    maps = {}
    for name in ("a_ras3mm", "b_las3mm", "c_5mm"):
        source = nib.load(new_folder / "images" / f"{name}.nii.gz")
        written = nib.load(out / "probs" / f"{name}.nii.gz")
        assert written.shape == (*source.shape, 3)
        np.testing.assert_array_equal(written.affine, source.affine)
        mask = nib.load(out / "masks" / name / "t0.50.nii.gz")
        assert mask.shape[:3] == source.shape
        maps[name] = np.asarray(written.dataobj)
        np.testing.assert_allclose(maps[name].sum(-1), 1.0, atol=1e-5)
    # the LAS copy is the RAS volume stored flipped: the stored pipeline reorients it, so its output is the flip
    np.testing.assert_allclose(maps["b_las3mm"], maps["a_ras3mm"][::-1], atol=1e-5)


def test_the_stored_preprocessing_is_what_the_run_trained_on(checkpoint):
    """The stored pipeline prepares the template exactly as the run's own test slices (z-scored with its stats)."""
    from softlabels.data.input_pipeline import InputPipeline
    from softlabels.training.run import load_run

    _, dm, task = load_run(checkpoint)
    volumes = load_mni152()
    prepared, _ = InputPipeline.from_dict(task.input_pipeline).prepare(torch.from_numpy(volumes.t1)[None],
                                                                       volumes.affine)  # fmt: skip
    assert task.input_pipeline["normalize"] is not None
    for sample in (dm.test_set[0], dm.test_set[len(dm.test_set) - 1]):
        torch.testing.assert_close(prepared[:, :, :, sample["index"]], sample["image"], atol=1e-5, rtol=1e-5)


def test_hd95_is_in_mm_in_every_command_for_the_same_files(new_folder, predicted, evaluated, tmp_path):
    assert main(["score", "--probs", str(predicted / "probs"), "--ref-probs", str(new_folder / "probs"),
                 "--output", str(tmp_path / "scored"), "--no-progress"]) == 0  # fmt: skip
    assert main(["score", "--probs", str(predicted / "probs"), "--ref-probs", str(new_folder / "probs"),
                 "--spacing", "1,1,1", "--output", str(tmp_path / "voxels"), "--no-progress"]) == 0  # fmt: skip
    by_case, scored, voxels = (
        {row["case"]: row for row in json.loads((folder / "metrics.json").read_text())["cases"]}
        for folder in (evaluated, tmp_path / "scored", tmp_path / "voxels")
    )
    assert sorted(by_case) == sorted(scored)
    for case, row in by_case.items():
        assert row["hd95"] == pytest.approx(scored[case]["hd95"], rel=1e-6, abs=1e-6)
        assert row["ece"] == pytest.approx(scored[case]["ece"], abs=1e-6)
        assert row["spacing"] == scored[case]["spacing"] != [1.0, 1.0, 1.0]
        if np.isfinite(row["hd95"] or np.nan) and row["hd95"]:
            assert row["hd95"] != pytest.approx(voxels[case]["hd95"])  # the spacing is used, not voxel units


def test_evaluation_transforms_from_yaml_apply_to_the_folder(checkpoint, new_folder):
    data = {"source": "folder", "options": {"root": str(new_folder)},
            "transforms": [{"name": "ScaleIntensityd", "keys": ["image"]}]}  # fmt: skip
    dataset, cases = open_folder(data, num_classes=3)
    assert len(cases) == 3 and float(dataset[2]["image"].max()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown option"):
        open_folder({"source": "folder", "options": {"root": str(new_folder), "rooot": 1}}, num_classes=3)
    with pytest.raises(ValueError, match="num_classes 4 differs"):
        open_folder({"source": "folder", "options": {"root": str(new_folder), "num_classes": 4}}, num_classes=3)


def test_hd95_is_in_mm_for_the_run_s_own_split_too(checkpoint, tmp_path):
    """MNI152 slices carry no affine; evaluate and the files of predict --split both use the data's 4 mm."""
    from softlabels.training.run import load_run

    assert main(["evaluate", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "evaluated")]) == 0
    assert main(["predict", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "pred"), "--thresholds",
                 "0.5"]) == 0  # fmt: skip
    _, dm, _ = load_run(checkpoint)
    (tmp_path / "refs").mkdir()
    evaluated = {r["case"]: r for r in json.loads((tmp_path / "evaluated" / "metrics.json").read_text())["cases"]}
    for sample in dm.test_set:
        soft = np.moveaxis(sample["soft_label"].numpy(), 0, -1)[:, :, None, :]
        nib.save(nib.Nifti1Image(soft, np.diag([4.0, 4.0, 1.0, 1.0])), tmp_path / "refs" / f"{sample['case']}.nii.gz")
    assert main(["score", "--probs", str(tmp_path / "pred" / "probs"), "--ref-probs", str(tmp_path / "refs"),
                 "--output", str(tmp_path / "scored"), "--no-progress"]) == 0  # fmt: skip
    scored = {r["case"]: r for r in json.loads((tmp_path / "scored" / "metrics.json").read_text())["cases"]}
    assert sorted(scored) == sorted(evaluated)
    for case, row in evaluated.items():
        assert row["spacing"] == [4.0, 4.0]
        assert row["hd95"] == pytest.approx(scored[case]["hd95"], rel=1e-6, nan_ok=True)
        assert row["dice"] == pytest.approx(scored[case]["dice"], abs=1e-6)
