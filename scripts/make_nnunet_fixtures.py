"""Write tests/data/nnunet_predictions/: files that the real nnU-Net v2 wrote with ``--save_probabilities``.

Run with the nnU-Net environment (``scripts/setup_nnunet.sh``)::

    .venv-nnunet/bin/python scripts/make_nnunet_fixtures.py [--work /tmp/nnunet-fixtures] [--keep 3]

Two tiny synthetic 2D datasets (12 training and 3 test slices of 40 × 32 voxels, stored as NIfTI ``(x, y, 1)`` with
a flipped x axis, anisotropic voxels and a different origin per case, so that axis order, flips and spacing all
matter) go through the whole nnU-Net pipeline on the CPU: ``softlabels nnunet convert`` (a generic folder → an
nnU-Net raw dataset), ``nnUNetv2_plan_and_preprocess -c 2d --verify_dataset_integrity``, ``nnUNetv2_train`` with
``nnUNetTrainer_1epoch`` and ``nnUNetv2_predict --save_probabilities`` on the test slices. The variants:

* ``labels/``: hard labels with 3 classes (background, an outer and an inner ellipse); softmax output, nnU-Net's
  default reader (SimpleITK: ``sitk_stuff`` in the ``.pkl``);
* ``raters/``: 3 binary raters, converted to nested "at least k of R" regions (sigmoid output, one probability
  per region); its ``dataset.json`` asks for ``NibabelIOWithReorient`` so that the ``.npz`` is in RAS order
  (``nibabel_stuff`` with a reoriented affine) while the references keep their flipped x axis.

Copied per variant: ``probs/`` = the prediction folder as nnU-Net wrote it (``<case>.npz``, ``<case>.pkl``,
``<case>.nii.gz``, ``dataset.json``, ``plans.json``, ``predict_from_raw_data_args.json``) for the first ``--keep``
test cases, and the references the user would score against: ``labels/<case>.nii.gz`` or
``raters/<rater>/<case>.nii.gz`` (the generic folder's own files). The network is barely trained (one epoch): the
point is the files' format, not their quality.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHAPE = (40, 32)  # (x, y): not square, so a swapped pair of axes is a shape error
ZOOMS = (0.8, 1.25, 3.0)  # mm; x is flipped in the affine
TRAINER = "nnUNetTrainer_1epoch"
VARIANTS = {"labels": 501, "raters": 502}
RATERS = 3
NEEDED = ("nnUNetv2_plan_and_preprocess", "nnUNetv2_train", "nnUNetv2_predict", "softlabels")


def _affine(index: int) -> np.ndarray:
    """The voxel → world (RAS mm) matrix of case ``index``: x flipped, anisotropic, origin moving with the case."""
    affine = np.diag([-ZOOMS[0], ZOOMS[1], ZOOMS[2], 1.0])
    affine[:3, 3] = (20.0 + index, -15.0 + 0.5 * index, 7.5 * index)
    return affine


def _case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An image, a 3-class label map and ``RATERS`` binary rater maps of one slice, each ``(x, y)``."""
    x, y = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    cx, cy = rng.uniform(14, 26), rng.uniform(11, 21)
    ax, ay = rng.uniform(7, 12), rng.uniform(6, 9)
    radius = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
    labels = (radius < 1.0).astype(np.uint8) + (radius < 0.5).astype(np.uint8)
    raters = np.stack([radius < t for t in (0.8, 1.0, 1.2)[:RATERS]]).astype(np.uint8)
    image = 100.0 * (radius < 1.0) + 60.0 * (radius < 0.5) + rng.normal(0.0, 10.0, SHAPE)
    return image.astype(np.float32), labels, raters


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array[:, :, None], affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)


def _generic_folders(work: Path, variant: str) -> tuple[Path, Path]:
    """The generic folders ``train`` (12 cases) and ``test`` (3 cases) of one variant."""
    rng = np.random.default_rng(17)
    folders = (work / variant / "generic_train", work / variant / "generic_test")
    for index in range(15):
        folder, name = (folders[0], f"train_{index:03d}") if index < 12 else (folders[1], f"case_{index - 12:03d}")
        image, labels, raters = _case(rng)
        affine = _affine(index)
        _save(image, affine, folder / "images" / f"{name}.nii.gz")
        if variant == "labels":
            _save(labels, affine, folder / "labels" / f"{name}.nii.gz")
        else:
            for r in range(RATERS):
                _save(raters[r], affine, folder / "raters" / f"rater{r + 1}" / f"{name}.nii.gz")
    return folders


def _run(command: list[str], env: dict[str, str], log: Path) -> None:
    started = time.monotonic()
    print("$", " ".join(command), flush=True)
    with log.open("a") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}) after {time.monotonic() - started:.0f} s; see {log}")
    print(f"  done in {time.monotonic() - started:.0f} s", flush=True)


def _variant(work: Path, variant: str, dataset_id: int, keep: int, out: Path) -> None:
    train, test = _generic_folders(work, variant)
    base = work / variant
    env = {
        **os.environ,
        "nnUNet_raw": str(base / "raw"), "nnUNet_preprocessed": str(base / "preprocessed"),
        "nnUNet_results": str(base / "results"), "nnUNet_n_proc_DA": "1", "OMP_NUM_THREADS": "2",
    }  # fmt: skip
    log = base / "log.txt"
    name = f"Fixture{variant.capitalize()}"
    convert = [str(BIN / "softlabels"), "nnunet", "convert", "--dataset-id"]
    _run([*convert, str(dataset_id), "--input", str(train), "--output", str(base / "raw"), "--name", name], env, log)
    _run(
        [*convert, str(dataset_id), "--input", str(test), "--output", str(base / "raw_test"), "--name", name], env, log
    )
    dataset = base / "raw" / f"Dataset{dataset_id:03d}_{name}"
    if variant == "raters":  # the npz in RAS order, the references with their flipped x axis
        content = json.loads((dataset / "dataset.json").read_text())
        content["overwrite_image_reader_writer"] = "NibabelIOWithReorient"
        (dataset / "dataset.json").write_text(json.dumps(content, indent=2))
    plan = [str(BIN / "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", "2d", "-np", "1"]
    _run([*plan, "--verify_dataset_integrity"], env, log)
    _run([str(BIN / "nnUNetv2_train"), str(dataset_id), "2d", "0", "-tr", TRAINER, "-device", "cpu"], env, log)
    predictions = base / "predictions"
    images = base / "raw_test" / f"Dataset{dataset_id:03d}_{name}" / "imagesTr"
    _run(
        [str(BIN / "nnUNetv2_predict"), "-i", str(images), "-o", str(predictions), "-d", str(dataset_id), "-c", "2d",
         "-f", "0", "-tr", TRAINER, "--save_probabilities", "-device", "cpu", "-npp", "1", "-nps", "1"],
        env, log,
    )  # fmt: skip
    _copy(predictions, test, variant, keep, out / variant)


def _copy(predictions: Path, test: Path, variant: str, keep: int, target: Path) -> None:
    """The first ``keep`` cases of nnU-Net's prediction folder and their references, into ``target``."""
    if target.exists():
        shutil.rmtree(target)
    cases = sorted(p.name[: -len(".npz")] for p in predictions.glob("*.npz"))[:keep]
    (target / "probs").mkdir(parents=True)
    for file in ("dataset.json", "plans.json", "predict_from_raw_data_args.json"):
        shutil.copy2(predictions / file, target / "probs" / file)
    for case in cases:
        for suffix in (".npz", ".pkl", ".nii.gz"):
            shutil.copy2(predictions / f"{case}{suffix}", target / "probs" / f"{case}{suffix}")
        references = [test / "labels"] if variant == "labels" else sorted((test / "raters").iterdir())
        for folder in references:
            relative = folder.relative_to(test)
            (target / relative).mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / f"{case}.nii.gz", target / relative / f"{case}.nii.gz")


def main() -> None:
    """Run both variants and copy their files into ``tests/data/nnunet_predictions``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary folder)")
    parser.add_argument("--keep", type=int, default=3, help="test cases copied per variant (default 3)")
    parser.add_argument("--output", type=Path, default=ROOT / "tests" / "data" / "nnunet_predictions")
    parser.add_argument("--only", choices=sorted(VARIANTS), default=None, help="run one variant only")
    args = parser.parse_args()
    missing = [tool for tool in NEEDED if not (BIN / tool).exists()]
    if missing:
        sys.exit(f"run this with the nnU-Net environment's python (.venv-nnunet/bin/python); missing: {missing}")
    work = args.work or Path(tempfile.mkdtemp(prefix="nnunet-fixtures-"))
    for variant, dataset_id in VARIANTS.items():
        if args.only in (None, variant):
            if (work / variant).exists():
                shutil.rmtree(work / variant)
            _variant(work, variant, dataset_id, args.keep, args.output)
    total = sum(p.stat().st_size for p in args.output.rglob("*") if p.is_file())
    print(f"wrote {args.output} ({total / 1024:.0f} KiB); scratch files in {work}")


if __name__ == "__main__":
    main()
