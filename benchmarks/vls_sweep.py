"""VLS defaults by evidence: sweep m ∈ {4, 8, 16}, τ ∈ {1, 2, 4}, α ∈ {0.1, 0.3, 0.5} on synthetic data with known p*.

The CALSeg paper gives no values for m, τ, α. For each seed, stage 1 (the generator) is trained once on the default
benchmark's synthetic segmentation training split; every (m, τ, α) then generates its cached soft labels and trains
stage 2 (the benchmark's UNet and schedule). The choice uses the **validation split only**: lowest mean validation
NLL against p* over the seeds (a proper score: it rewards calibration and accuracy together), ECE as tie-break.
The test split is not looked at here. Writes ``benchmarks/results/vls_sweep.{json,md}``; the registry defaults of
``vls`` are set from ``chosen`` (``tests/methods/test_registry.py`` checks that they agree).

    python benchmarks/vls_sweep.py                # 27 settings × 3 seeds, about 10 min on 2 cores
    python benchmarks/vls_sweep.py --seeds 0      # one seed
"""

from __future__ import annotations

import argparse
import copy
import itertools
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import machine_info, machine_md, md_table, write_results

M_VALUES, TAU_VALUES, ALPHA_VALUES = (4, 8, 16), (1.0, 2.0, 4.0), (0.1, 0.3, 0.5)
KEYS = ("nll", "ece", "ece_boundary", "dice", "brier")


def _base_config() -> dict[str, Any]:
    from softlabels.bench.suites import get_benchmark

    suite = next(s for s in get_benchmark("default") if s.name == "synthetic_segmentation")
    vls = next(c for c in suite.cells if c.label == "vls")
    config = copy.deepcopy(dict(suite.base))
    config["method"] = {"name": "vls", "options": {k: v for k, v in vls.options.items() if k == "generator"}}
    config["trainer"] = {**config["trainer"], "enable_progress_bar": False}
    return config


def _run(base: dict[str, Any], seed: int, m: int, tau: float, alpha: float, out: Path) -> dict[str, float]:
    from softlabels.training.config import config_from_dict
    from softlabels.training.run import train

    config = copy.deepcopy(base)
    config["method"]["options"] |= {"m": m, "tau": tau, "alpha": alpha}
    metrics = train(config_from_dict({**config, "seed": seed, "output_dir": str(out)}), overwrite=True)
    return {key: float(metrics[f"val/{key}"]) for key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(2)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    base = _base_config()
    grid = list(itertools.product(M_VALUES, TAU_VALUES, ALPHA_VALUES))
    rows: dict[str, dict[str, list[float]]] = {}
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="vls-sweep-"))
    try:
        for seed in args.seeds:
            out = work / f"seed{seed}"  # one folder per seed: stage 1 is trained once and reused by every setting
            for m, tau, alpha in grid:
                values = _run(base, seed, m, tau, alpha, out)
                key = f"m={m} tau={tau:g} alpha={alpha:g}"
                for metric, value in values.items():
                    rows.setdefault(key, {}).setdefault(metric, []).append(value)
                print(f"seed {seed} {key}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    means = {key: {metric: float(np.mean(v)) for metric, v in values.items()} for key, values in rows.items()}
    chosen_key = min(means, key=lambda k: (round(means[k]["nll"], 4), means[k]["ece"]))
    m, tau, alpha = grid[list(rows).index(chosen_key)]
    payload = {
        "machine": machine_info(), "seeds": args.seeds, "seconds": time.perf_counter() - start,
        "selection": "lowest mean validation NLL over seeds (rounded to 1e-4), then lowest validation ECE",
        "grid": {"m": M_VALUES, "tau": TAU_VALUES, "alpha": ALPHA_VALUES}, "validation": rows, "means": means,
        "chosen": {"m": m, "tau": tau, "alpha": alpha},
    }  # fmt: skip
    ordered = sorted(means, key=lambda k: (round(means[k]["nll"], 4), means[k]["ece"]))
    table = md_table(
        ["setting", *[f"val {k}" for k in KEYS]],
        [[f"**{k}**" if k == chosen_key else k, *[f"{means[k][metric]:.4f}" for metric in KEYS]] for k in ordered],
    )
    markdown = (
        "# VLS (CALSeg) sweep of m, τ, α on synthetic data with known p* (validation split only)\n\n"
        f"Seeds {args.seeds}; stage 1 trained once per seed; stage 2 = the default benchmark's synthetic-segmentation "
        f"UNet and schedule. Selection: {payload['selection']}. **Chosen: m = {m}, τ = {tau:g}, α = {alpha:g}** "
        f"(the registry defaults of `vls`). Run time {payload['seconds']:.0f} s.\n\n"
        f"{table}\n\n{machine_md(payload['machine'])}"
    )
    write_results("vls_sweep", payload, markdown)
    print(f"chosen: m={m} tau={tau:g} alpha={alpha:g}")


if __name__ == "__main__":
    main()
