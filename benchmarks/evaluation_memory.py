"""Peak memory of the benchmark's evaluation: independent of the number of test cases.

The bench evaluates a trained model's test split in one streaming pass (``softlabels.bench.benchmark_run.
evaluate_split``): every batch runs through the network once, its raw, temperature-scaled and oracle (p*)
probabilities go through three evaluators, and only per-case arrays (a few numbers and histograms per case) are kept.
This script evaluates a 3D synthetic split of 8 and of 32 cases (64³ voxels, 4 classes, 5 raters; the cases are
generated on access, so the data itself is not held in memory either) with an untrained 3D U-Net, each in a fresh
process, and compares the peak resident set sizes.

Goal: peak RSS(32 cases) ≤ 1.1 × peak RSS(8 cases). Before the streaming pass the bench kept every probability map
of the split three times (raw, ts, oracle): the script also reports what that would have held at each size.

    python benchmarks/evaluation_memory.py            # 8 and 32 cases of 64³ (~3 min on 2 cores)
    python benchmarks/evaluation_memory.py --size 48  # a quicker smoke run (not the acceptance size)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

from _common import REPO, fmt, machine_info, machine_md, md_table, write_results

GOAL = 1.1
HEADER = ["cases", "volume", "peak RSS (MiB)", "per-case arrays kept (MiB)", "3 maps per case (MiB)", "seconds"]
NUM_CLASSES = 4


def _child(cases: int, size: int) -> dict[str, Any]:
    """Evaluate ``cases`` lazily generated cases in this process; return peak RSS and what was kept."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    from softlabels.bench.benchmark_run import evaluate_split
    from softlabels.data.synthetic_segmentation import SyntheticSegmentation
    from softlabels.methods import create_method
    from softlabels.models import create_model
    from softlabels.training.task import SegmentationTask

    torch.manual_seed(0)
    generator = SyntheticSegmentation(shape=(size, size, size), num_classes=NUM_CLASSES)

    class Lazy(Dataset):
        def __len__(self) -> int:
            return cases

        def __getitem__(self, index: int) -> dict[str, Any]:
            return generator.sample(index, seed=0, split="test")

    loader = DataLoader(Lazy(), batch_size=2, num_workers=0)
    model = create_model("small_unet", in_channels=1, num_classes=NUM_CLASSES, spatial_dims=3).eval()
    task = SegmentationTask(model, create_method("hard", NUM_CLASSES), num_classes=NUM_CLASSES, spatial_dims=3)
    start = time.perf_counter()
    arrays, examples, _ = evaluate_split(task, loader, temperature=1.5)
    seconds = time.perf_counter() - start
    kept = sum(a.nbytes for per in arrays.values() for a in per.values()) + sum(a.nbytes for a in examples.values())
    return {
        "cases": cases,
        "size": size,
        "evaluated": {name: len(per["nll"]) for name, per in arrays.items()},
        "kept_bytes": kept,
        "seconds": seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "three_maps_per_case_bytes": 3 * cases * NUM_CLASSES * size**3 * 4,
    }


def _run(cases: int, size: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(cases), "--size", str(size)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64, help="edge of the cubic volumes (default 64)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args.child, args.size)))
        return 0
    runs = [_run(cases, args.size) for cases in (8, 32)]
    small, large = runs
    ratio = large["peak_rss_bytes"] / small["peak_rss_bytes"]
    ok = ratio <= GOAL and all(r["evaluated"]["raw"] == r["cases"] for r in runs)
    payload = {"goal": f"peak RSS(32) <= {GOAL} x peak RSS(8)", "ratio": ratio, "passed": ok, "runs": runs}
    payload["machine"] = machine_info()
    rows = [
        [
            r["cases"], f"{r['size']}³", fmt(r["peak_rss_bytes"] / 2**20, ".0f"), fmt(r["kept_bytes"] / 2**20, ".2f"),
            fmt(r["three_maps_per_case_bytes"] / 2**20, ".0f"), fmt(r["seconds"], ".1f"),
        ]
        for r in runs
    ]
    markdown = "\n".join([
        "# Evaluation memory: the bench's streaming evaluation of a 3D split",
        "",
        f"`python benchmarks/evaluation_memory.py` — {NUM_CLASSES} classes, untrained 3D small U-Net, raw + "
        "temperature-scaled + oracle evaluations in one pass, cases generated on access. \"3 maps per case\" is "
        "what the bench held before the streaming pass (raw, ts and oracle maps of every case).",
        "",
        md_table(HEADER, rows),
        "",
        f"**Peak RSS(32) / peak RSS(8) = {ratio:.3f}** (goal ≤ {GOAL}): {'met' if ok else 'MISSED'}.",
        "",
        machine_md(payload["machine"]),
    ])  # fmt: skip
    name = "evaluation_memory" if args.size == 64 else f"evaluation_memory_{args.size}"
    write_results(name, payload, markdown + "\n")
    print(markdown)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
