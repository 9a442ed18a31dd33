"""Wall time of ``softlabels score`` against the number of classes: C = 3, 30, 300 on a tiny and a larger volume.

Issue 13: with 300 classes, scoring one case of 32 voxels took 175 s (one classwise reliability panel per class in a
126,420-pixel-wide PNG). The cost should grow with voxels × classes, and the figure should stay bounded.

Data (seed ``--seed``): one case per setting, written as NIfTI like a user's files: a label map with labels drawn
uniformly from ``[0, C)`` (so, on the larger volume, every class is present and HD95 runs for each) and a
probability map ``softmax(3·onehot + N(0, 1))`` with the classes last. Volumes: 4×4×2 (32 voxels) and 32×32×16
(16,384 voxels). Generating and writing the files is not timed.

Timed, in this process after one untimed warm-up run (imports, matplotlib's font cache), the two calls of
``softlabels score`` (``cli._run_score``): ``score_folders`` (read, metrics) and ``write_report`` (metrics.json,
report.md, reliability.png); the median of ``--repeats`` runs. The PNG's pixel size is recorded.

Acceptance (exit status 1 if missed): on 32 voxels, total time at C = 300 ≤ 50 × total time at C = 3.

Run: ``python benchmarks/score_many_classes.py`` (~1 min on 2 cores) or ``--repeats 1`` for a smoke run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from _common import machine_info, machine_md, md_table, write_results

CLASSES = (3, 30, 300)
VOLUMES = {"tiny": (4, 4, 2), "larger": (32, 32, 16)}
MAX_RATIO = 50.0


def write_case(root: Path, shape: tuple[int, ...], c: int, seed: int) -> None:
    """``root/probs/a.nii.gz`` (x, y, z, C) float32 and ``root/labels/a.nii.gz`` (x, y, z) int16."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=shape)
    logits = 3.0 * np.eye(c)[labels] + rng.normal(size=(*shape, c))
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    for sub, array in (("probs", probs.astype(np.float32)), ("labels", labels.astype(np.int16))):
        (root / sub).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(array, np.eye(4)), str(root / sub / "a.nii.gz"))


def run_once(root: Path, out: Path) -> dict[str, float]:
    """The two calls of ``softlabels score``, timed."""
    from softlabels.evaluation.report_files import write_report
    from softlabels.evaluation.scoring import score_folders

    t0 = time.perf_counter()
    result = score_folders(root / "probs", root / "labels", kind="labels", progress=False)
    t1 = time.perf_counter()
    write_report(result, out, sources={"probs": str(root / "probs"), "labels": str(root / "labels")})
    t2 = time.perf_counter()
    return {"score_s": t1 - t0, "report_s": t2 - t1, "total_s": t2 - t0}


def measure(volume: str, c: int, seed: int, repeats: int, tmp: Path) -> dict[str, Any]:
    from PIL import Image

    shape = VOLUMES[volume]
    root = tmp / f"{volume}_{c}"
    write_case(root, shape, c, seed)
    runs = [run_once(root, root / "out") for _ in range(repeats)]
    with Image.open(root / "out" / "reliability.png") as image:
        width, height = image.size
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    return {
        "volume": volume,
        "shape": list(shape),
        "voxels": int(np.prod(shape)),
        "classes": c,
        **med,
        "total_runs_s": [r["total_s"] for r in runs],
        "png_pixels": [width, height],
    }


def markdown(payload: dict[str, Any]) -> str:
    rows = [
        [
            r["volume"],
            "×".join(map(str, r["shape"])),
            r["voxels"],
            r["classes"],
            f"{r['score_s']:.3f}",
            f"{r['report_s']:.3f}",
            f"{r['total_s']:.3f}",
            "×".join(map(str, r["png_pixels"])),
        ]
        for r in payload["results"]
    ]
    ratios = ", ".join(f"{v}: {x:.1f}" for v, x in payload["ratios_300_over_3"].items())
    return "".join(
        [
            "# `softlabels score` with many classes (`benchmarks/score_many_classes.py`)\n\n",
            machine_md(payload["machine"]),
            f"1-minute load average at the start: {payload['loadavg_1min_at_start']:.2f}.\n\n",
            "One case per row (NIfTI files, labels uniform in [0, C), probabilities softmax(3·onehot + noise)); "
            f"the median of {payload['repeats']} runs of `score_folders` and `write_report` after a warm-up run; "
            f"torch threads {payload['machine']['torch_threads']}.\n\n",
            md_table(
                ["volume", "shape", "voxels", "C", "score s", "report s", "total s", "PNG pixels"],
                rows,
            ),
            f"\nTotal time at C = 300 / at C = 3: {ratios}. Before the fix (issue 13), C = 300 on 32 voxels took "
            "175 s and drew a 126,420-pixel-wide PNG.\n",
            f"\n**Acceptance** (32 voxels, C = 300 ≤ {MAX_RATIO:g} × C = 3): "
            f"**{'PASS' if payload['passed'] else 'FAIL'}**.\n",
        ]
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per setting; the median is reported")
    ap.add_argument("--name", default="score_many_classes", help="result file stem")
    args = ap.parse_args()
    start, load = time.perf_counter(), os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        measure("tiny", 3, args.seed, 1, Path(tmp) / "warm-up")
        for volume in VOLUMES:
            for c in CLASSES:
                results.append(measure(volume, c, args.seed, args.repeats, Path(tmp)))
                print(results[-1], file=sys.stderr, flush=True)
    total = {(r["volume"], r["classes"]): r["total_s"] for r in results}
    ratios = {volume: total[(volume, 300)] / total[(volume, 3)] for volume in VOLUMES}
    passed = ratios["tiny"] <= MAX_RATIO
    payload = {
        "benchmark": "score_many_classes",
        "machine": machine_info(),
        "seed": args.seed,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "results": results,
        "ratios_300_over_3": ratios,
        "max_ratio": MAX_RATIO,
        "passed": passed,
        "wall_s": time.perf_counter() - start,
        "loadavg_1min_at_start": load,
    }
    write_results(args.name, payload, markdown(payload))
    print(f"C=300 / C=3 on 32 voxels: {ratios['tiny']:.1f} (≤ {MAX_RATIO:g}): {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
