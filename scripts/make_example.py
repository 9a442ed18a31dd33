"""Generate the small example shipped in src/softlabels/data/examples/score/ (deterministic; its output is committed).

Four 32x32x16 volumes (voxel size 1 x 1 x 2 mm), 3 classes: background, an outer ellipsoid (label 1) and a nested
inner ellipsoid (label 2). Per case:

* labels/<case>.nii.gz          the reference label map (uint8);
* raters/rater{1,2,3}/<case>.nii.gz  three annotations with jittered boundaries (centre, radii, a smooth surface field);
* probs/<case>.nii.gz           a model's predicted probabilities, float32 (x, y, z, C): the softmax of a sharpened,
                                smoothed one-hot of another jittered annotation plus noise (slightly over-confident).

Run: python scripts/make_example.py [output_dir]. Every random draw comes from one seeded numpy Generator, and
nibabel writes gzip with mtime 0, so re-running reproduces the files byte for byte.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

SEED = 20240601
SHAPE = (32, 32, 16)
SPACING = (1.0, 1.0, 2.0)
N_CASES = 4
N_RATERS = 3
NUM_CLASSES = 3
OUT = Path(__file__).resolve().parents[1] / "src" / "softlabels" / "data" / "examples" / "score"


def physical_grid() -> np.ndarray:
    axes = [np.arange(n) * s for n, s in zip(SHAPE, SPACING, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"))  # (3, x, y, z) in mm


def ellipsoid_field(grid: np.ndarray, center: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Implicit function: < 0 inside the ellipsoid."""
    return (((grid - center[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) - 1.0


def smooth_noise(rng: np.random.Generator, sigma: float, amplitude: float) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal(SHAPE), sigma=sigma)
    return amplitude * field / (np.abs(field).max() + 1e-12)


def case_shape(rng: np.random.Generator) -> dict[str, np.ndarray]:
    middle = (np.array(SHAPE) - 1) * np.array(SPACING) / 2
    outer_c = middle + rng.uniform(-2.0, 2.0, 3)
    outer_r = rng.uniform([10.0, 9.0, 10.0], [13.0, 12.0, 13.0])
    inner_r = outer_r * rng.uniform(0.45, 0.6, 3)
    inner_c = outer_c + rng.uniform(-1.5, 1.5, 3)
    return {"outer_c": outer_c, "outer_r": outer_r, "inner_c": inner_c, "inner_r": inner_r}


def label_map(
    grid: np.ndarray, shape: dict[str, np.ndarray], rng: np.random.Generator | None, jitter: float
) -> np.ndarray:
    """Labels of the nested ellipsoids; with ``rng``, centres, radii and surfaces are jittered by ``jitter``."""
    params = dict(shape)
    outer_noise = inner_noise = np.zeros(SHAPE)
    if rng is not None:
        for key in ("outer_c", "inner_c"):
            params[key] = params[key] + rng.normal(0.0, 0.6 * jitter, 3)
        for key in ("outer_r", "inner_r"):
            params[key] = params[key] * (1.0 + rng.normal(0.0, 0.05 * jitter, 3))
        outer_noise = smooth_noise(rng, 2.0, 0.25 * jitter)
        inner_noise = smooth_noise(rng, 2.0, 0.35 * jitter)
    outer = ellipsoid_field(grid, params["outer_c"], params["outer_r"]) + outer_noise < 0
    inner = ellipsoid_field(grid, params["inner_c"], params["inner_r"]) + inner_noise < 0
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[outer] = 1
    labels[outer & inner] = 2
    return labels


def predicted_probs(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Slightly over-confident softmax of a smoothed one-hot plus noise, float32 (x, y, z, C)."""
    onehot = (labels[None] == np.arange(NUM_CLASSES)[:, None, None, None]).astype(np.float64)
    smoothed = np.stack([gaussian_filter(ch, sigma=(1.2, 1.2, 0.6)) for ch in onehot])
    logits = 3.0 * np.log(smoothed + 0.03) + rng.normal(0.0, 0.6, onehot.shape)
    logits -= logits.max(0, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(0, keepdims=True)
    return np.moveaxis(probs, 0, -1).astype(np.float32)


def save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*SPACING, 1.0])
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))


def main(out: Path = OUT) -> None:
    rng = np.random.default_rng(SEED)
    grid = physical_grid()
    for i in range(N_CASES):
        name = f"case_{i:03d}.nii.gz"
        shape = case_shape(rng)
        save(label_map(grid, shape, None, 0.0), out / "labels" / name)
        for r in range(N_RATERS):
            save(label_map(grid, shape, rng, 1.0), out / "raters" / f"rater{r + 1}" / name)
        save(predicted_probs(label_map(grid, shape, rng, 1.3), rng), out / "probs" / name)
    print(f"wrote {N_CASES} cases to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
