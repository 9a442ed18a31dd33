import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from softlabels.data.prediction_files import read_probs
from softlabels.training.config import config_from_dict
from softlabels.training.prediction import check_thresholds, predict
from softlabels.training.run import train

QUIET = {"accelerator": "cpu", "enable_progress_bar": False, "log_every_n_steps": 1}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = config_from_dict({
        "task": "segmentation", "seed": 0, "output_dir": str(out),
        "data": {"source": "synthetic_segmentation", "options": {"shape": [24, 24], "num_cases": [8, 4, 4]},
                 "batch_size": 4},
        "model": {"name": "small_unet"}, "method": {"name": "raters_mean"},
        "trainer": {"max_epochs": 1, **QUIET},
    })  # fmt: skip
    train(config)
    return out / "checkpoints" / "last.ckpt"


def test_predict_on_a_nifti_folder_keeps_the_affine_and_nests_the_masks(checkpoint, tmp_path):
    images = tmp_path / "in" / "images"
    images.mkdir(parents=True)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[:3, 3] = [10.0, -4.0, 7.0]
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        nib.save(nib.Nifti1Image(rng.random((24, 24)).astype(np.float32), affine), images / f"{name}.nii.gz")
    manifest = predict(checkpoint, tmp_path / "out", input_root=tmp_path / "in", thresholds=[0.1, 0.5, 0.9])
    assert manifest["thresholds"] == [0.1, 0.5, 0.9]
    probs = nib.load(tmp_path / "out" / "probs" / "a.nii.gz")
    np.testing.assert_allclose(probs.affine, affine)
    data = np.asarray(probs.dataobj)
    assert data.shape == (24, 24, 1, 2) and np.allclose(data.sum(-1), 1, atol=1e-5)
    masks = {
        t: np.asarray(nib.load(tmp_path / "out" / "masks" / "a" / f"t{t:.2f}.nii.gz").dataobj) for t in (0.1, 0.5, 0.9)
    }
    assert all(m.shape == (24, 24, 1) for m in masks.values())
    assert np.all(masks[0.9] <= masks[0.5]) and np.all(masks[0.5] <= masks[0.1])  # nested
    np.testing.assert_array_equal(masks[0.5], (data[..., 1] >= 0.5).astype(np.uint8))
    np.testing.assert_allclose(nib.load(tmp_path / "out" / "masks" / "a" / "t0.50.nii.gz").affine, affine)
    # the probability map is what `softlabels score --probs` reads
    assert read_probs(tmp_path / "out" / "probs" / "a.nii.gz")[0].shape == (2, 24, 24)


def test_predict_on_the_run_split_writes_npz_and_png_masks(checkpoint, tmp_path):
    manifest = predict(checkpoint, tmp_path / "split", split="test", thresholds=[0.2, 0.8])
    stored = json.loads((tmp_path / "split" / "predictions.json").read_text())
    assert stored["files"] == manifest["files"] and len(stored["files"]) == 4 * 3
    probs = np.load(tmp_path / "split" / "probs" / "test_0000.npz")["probabilities"]
    assert probs.shape == (2, 24, 24)
    low = np.asarray(Image.open(tmp_path / "split" / "masks" / "test_0000" / "t0.20.png"))
    high = np.asarray(Image.open(tmp_path / "split" / "masks" / "test_0000" / "t0.80.png"))
    assert set(np.unique(low)) <= {0, 255} and np.all(high <= low)
    np.testing.assert_array_equal(low == 255, probs[1] >= 0.2)  # PNG rows/columns = the npz's reversed (y, x)


def test_bad_thresholds_raise():
    with pytest.raises(ValueError, match=r"`thresholds` of predict must be numbers in \(0, 1\]; got \[0.0, 0.5\]"):
        check_thresholds([0.0, 0.5])
