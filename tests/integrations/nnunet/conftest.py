"""Fixtures of the tests that run the real nnU-Net (in .venv-nnunet; skipped where nnunetv2 is not installed).

``nnunet_env``: a workspace with nnU-Net's three folders and the variables nnU-Net reads. ``raters_dataset`` /
``labels_dataset``: tiny synthetic 2D datasets (64 × 64, discs of random centre and radius; 3 raters who move the
disc border by up to ±2 pixels, or 3 classes: disc and ring), converted with ``softlabels nnunet convert`` and
planned and preprocessed with ``nnUNetv2_plan_and_preprocess`` (2d), once per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

BIN = Path(sys.executable).parent
RATERS_ID, LABELS_ID = 501, 502


def run(command: list[str], env: dict[str, str], log: Path) -> subprocess.CompletedProcess:
    """Run one command of the pipeline, its output kept in ``log``; the test asserts its exit code."""
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    log.write_text(f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}")
    return result


def synthetic_folder(root: Path, cases: int, *, raters: int = 0, seed: int = 0) -> Path:
    """A generic folder: images/ and either raters/r<k>/ (binary discs) or labels/ (0 background, 1 disc, 2 ring)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    for i in range(cases):
        cy, cx, radius = rng.uniform(20, 44), rng.uniform(20, 44), rng.uniform(8, 14)
        distance = np.hypot(yy - cy, xx - cx)
        image = (distance < radius) + 0.5 * (distance < radius + 4) + rng.normal(0, 0.3, distance.shape)
        save(root / "images" / f"case{i:02d}.nii.gz", image.astype(np.float32))
        if raters:
            for k in range(raters):
                mask = distance < radius + rng.uniform(-2, 2)
                save(root / "raters" / f"r{k}" / f"case{i:02d}.nii.gz", mask.astype(np.uint8))
        else:
            labels = (distance < radius).astype(np.uint8) + 2 * ((distance >= radius) & (distance < radius + 4))
            save(root / "labels" / f"case{i:02d}.nii.gz", labels.astype(np.uint8))
    return root


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array[..., None], np.eye(4)), str(path))


@pytest.fixture(scope="session")
def nnunet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """nnU-Net's variables (``nnUNet_extTrainer`` as ``softlabels nnunet trainers-path`` prints it), for the commands
    run here and (set for the session) for trainers built in-process."""
    pytest.importorskip("nnunetv2")
    printed = subprocess.run([str(BIN / "softlabels"), "nnunet", "trainers-path"], capture_output=True, text=True,
                             check=False)  # fmt: skip
    assert printed.returncode == 0 and Path(printed.stdout.strip()).is_dir(), printed.stderr
    work = tmp_path_factory.mktemp("nnunet")
    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / name).mkdir()
        env[name] = str(work / name)
    env |= {"nnUNet_extTrainer": printed.stdout.strip(), "nnUNet_n_proc_DA": "1", "nnUNet_compile": "false"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["WORK"] = str(work)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA", "nnUNet_compile"):
            patch.setenv(name, env[name] if name != "nnUNet_n_proc_DA" else "0")  # in-process: no worker processes
        yield env


def prepared(env: dict[str, str], dataset_id: int, name: str, folder: Path) -> Path:
    """Convert ``folder`` and plan and preprocess it (2d); return the preprocessed dataset folder."""
    logs = Path(env["WORK"])
    command = ["softlabels", "nnunet", "convert", "--input", str(folder), "--output", env["nnUNet_raw"],
               "--dataset-id", str(dataset_id), "--name", name]  # fmt: skip
    converted = run(command, env, logs / f"convert_{dataset_id}.log")
    assert converted.returncode == 0, converted.stderr
    plan = ["nnUNetv2_plan_and_preprocess", "-d", str(dataset_id), "-c", "2d", "-npfp", "1", "-np", "1",
            "--verify_dataset_integrity"]  # fmt: skip
    planned = run(plan, env, logs / f"plan_{dataset_id}.log")
    assert planned.returncode == 0, planned.stderr[-2000:]
    preprocessed = Path(env["nnUNet_preprocessed"]) / f"Dataset{dataset_id:03d}_{name}"
    labels = Path(env["nnUNet_raw"]) / preprocessed.name / "labelsTr"
    cases = sorted(p.name.removesuffix(".nii.gz") for p in labels.iterdir())
    splits = [{"train": cases[2:], "val": cases[:2]}]  # fold 0: two validation cases keep nnU-Net's final check short
    (preprocessed / "splits_final.json").write_text(json.dumps(splits))
    return preprocessed


@pytest.fixture(scope="session")
def raters_dataset(nnunet_env: dict[str, str]) -> Path:
    folder = synthetic_folder(Path(nnunet_env["WORK"]) / "raters_folder", 16, raters=3)
    return prepared(nnunet_env, RATERS_ID, "Raters", folder)


@pytest.fixture(scope="session")
def labels_dataset(nnunet_env: dict[str, str]) -> Path:
    folder = synthetic_folder(Path(nnunet_env["WORK"]) / "labels_folder", 8, seed=1)
    return prepared(nnunet_env, LABELS_ID, "Labels", folder)
