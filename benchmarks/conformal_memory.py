"""Peak memory of fitting conformal thresholds over a 3D calibration split: independent of its number of cases.

``softlabels.conformal.SegmentationRiskControl`` is streaming: every ``update`` turns a batch into per-case
histograms over the grid of levels and adds its loss and volume curves to a fixed ``(K, G)`` float64 state. This
script fits CRC thresholds (FNR, α = 0.2: with 8 cases α = 0.1 is out of reach, CRC needs 1/(n + 1) ≤ α; 1001
levels) over a synthetic 3D calibration split — 4 classes (3 structures), truth = the one-hot label map,
probabilities = the true per-voxel probabilities p*; every case is generated on access with
``SyntheticSegmentation.sample`` and dropped after its ``update`` (batch size 1) — at 8 cases of 64³, 32 cases of
64³ and 8 cases of 96³, each in a fresh process, and compares the peak resident set sizes. The loop is the plain
one a user writes (no ``softlabels._memory.bounded_heap``, no trimming between cases): the per-case temporaries of
``update`` are small enough that glibc's heap does not drift.

For comparison, the **in-memory** baseline does what an array API such as MAPIE's needs: it concatenates the
probabilities and truth of every case into one ``(N, C, *spatial)`` array each and computes the same curves from
those in one call.

A third part measures the size side alone: the rise of the resident set during one ``update`` of one case (random
probabilities, already in memory) at 64³ … 160³, sampled every 0.5 ms in a fresh process per size. The histograms
are built ``CHUNK`` values at a time, so this transient should level off instead of growing with the volume.

Goal: peak RSS(32 cases, 64³) ≤ 1.1 × peak RSS(8 cases, 64³) for the streaming fit; exit status 1 when missed.

    python benchmarks/conformal_memory.py        # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

from _common import REPO, PeakRSS, fmt, machine_info, machine_md, md_table, rss_bytes, write_results

GOAL = 1.1
NUM_CLASSES = 4
NUM_LEVELS = 1001
ALPHA = 0.2  # CRC needs 1/(n + 1) <= α: with n = 8 cases, α = 0.1 is out of reach
CONFIGS = (("streaming", 8, 64), ("streaming", 32, 64), ("streaming", 8, 96),
           ("in_memory", 8, 64), ("in_memory", 32, 64), ("in_memory", 8, 96))  # fmt: skip
TRANSIENT_SIZES = (64, 96, 128, 160)


def _case(generator: Any, index: int) -> tuple[Any, Any]:
    """Probabilities ``(1, C, *spatial)`` float32 and one-hot truth ``(1, C, *spatial)`` float32 of one case."""
    import torch

    sample = generator.sample(index, seed=0, split="test")
    probs = sample["true_probs"].unsqueeze(0)
    truth = torch.zeros_like(probs).scatter_(1, sample["label"].unsqueeze(0), 1.0)
    return probs, truth


def _child(mode: str, cases: int, size: int) -> dict[str, Any]:
    """Fit the thresholds over ``cases`` lazily generated cases in this process; return peak RSS and what was kept."""
    import torch

    from softlabels.conformal import SegmentationRiskControl
    from softlabels.data.synthetic_segmentation import SyntheticSegmentation

    generator = SyntheticSegmentation(shape=(size, size, size), num_classes=NUM_CLASSES)
    control = SegmentationRiskControl(NUM_CLASSES, loss="fnr", num_levels=NUM_LEVELS)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    held = 0
    if mode == "streaming":
        for index in range(cases):
            probs, truth = _case(generator, index)
            control.update(probs, truth)
            del probs, truth
    else:
        pairs = [_case(generator, index) for index in range(cases)]
        probs = torch.cat([p for p, _ in pairs])
        truth = torch.cat([t for _, t in pairs])
        del pairs
        held = probs.numel() * probs.element_size() + truth.numel() * truth.element_size()
        control.update(probs, truth)
    fitted = control.fit(ALPHA)
    seconds = time.perf_counter() - start
    state = sum(t.numel() * t.element_size() for t in (control.loss_sum, control.volume_sum, control.cases))
    return {
        "mode": mode, "cases": cases, "size": size, "n_calibration": fitted.n_calibration,
        "thresholds": list(fitted.thresholds), "state_bytes": state, "held_arrays_bytes": held,
        "maps_bytes": 2 * cases * NUM_CLASSES * size**3 * 4, "seconds": seconds,
        "rss_before_bytes": baseline, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }  # fmt: skip


def _transient(size: int) -> dict[str, Any]:
    """The RSS rise during one ``update`` of one case of ``size³`` (inputs allocated before the measurement)."""
    import torch

    from softlabels._memory import release_freed_memory
    from softlabels.conformal import SegmentationRiskControl

    gen = torch.Generator().manual_seed(size)
    probs = torch.rand(1, NUM_CLASSES, size, size, size, generator=gen)
    probs /= probs.sum(1, keepdim=True)
    truth = torch.zeros_like(probs).scatter_(1, probs.argmax(1, keepdim=True), 1.0)
    control = SegmentationRiskControl(NUM_CLASSES, loss="fnr", num_levels=NUM_LEVELS)
    release_freed_memory()
    monitor = PeakRSS(interval=0.0005)
    before = rss_bytes()
    with monitor:
        control.update(probs, truth)
    monitor.close()
    return {"size": size, "input_bytes": 2 * probs.numel() * 4, "rise_bytes": monitor.peak - before}


def _run(mode: str, cases: int, size: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(cases), str(size)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _markdown(payload: dict[str, Any]) -> str:
    runs, ratio, ok = payload["runs"], payload["ratio"], payload["passed"]
    header = ["fit", "cases", "volume", "peak RSS (MiB)", "peak before the fit (MiB)", "rise during the fit (MiB)",
              "arrays held (MiB)", "state (KiB)", "all maps, probs + truth (MiB)", "thresholds (3 structures)",
              "seconds"]  # fmt: skip
    rows = [
        [r["mode"].replace("_", "-"), r["cases"], f"{r['size']}³", fmt(r["peak_rss_bytes"] / 2**20, ".0f"),
         fmt(r["rss_before_bytes"] / 2**20, ".0f"), fmt((r["peak_rss_bytes"] - r["rss_before_bytes"]) / 2**20, ".0f"),
         fmt(r["held_arrays_bytes"] / 2**20, ".0f"), fmt(r["state_bytes"] / 2**10, ".1f"),
         fmt(r["maps_bytes"] / 2**20, ".0f"), ", ".join(f"{t:.3f}" for t in r["thresholds"]),
         fmt(r["seconds"], ".1f")]
        for r in runs
    ]  # fmt: skip
    mem = payload["in_memory_ratio"]
    return "\n".join([
        "# Conformal thresholds: memory of the streaming fit over a 3D calibration split", "",
        f"`python benchmarks/conformal_memory.py` — {NUM_CLASSES} classes (3 structures), FNR, CRC at α = {ALPHA}, "
        f"{NUM_LEVELS} levels; truth = one-hot label map, probabilities = p* of `SyntheticSegmentation`, every case "
        "generated on access; each row in a fresh process. \"streaming\": `SegmentationRiskControl.update` case by "
        "case; \"in-memory\": every case's probabilities and truth concatenated first (what an array API needs). "
        "\"all maps\" is what keeping the calibration split's probabilities and truth (float32) would hold. The "
        "streaming fit's rise is the transient of one case (its generation, the probability and truth tensors, the "
        "chunked histogram pass), so it grows with the volume of a case but not with their number; the state is "
        "2 × K × G float64 + a count.", "",
        md_table(header, rows), "",
        f"**Streaming: peak RSS(32 cases) / peak RSS(8 cases) = {ratio:.3f}** (64³; goal ≤ {GOAL}): "
        f"{'met' if ok else 'MISSED'}. In-memory: {mem:.3f}.", "",
        "One `update` of one case (random probabilities; inputs allocated before the measurement), RSS rise "
        "sampled every 0.5 ms:", "",
        md_table(["volume", "case input, probs + truth (MiB)", "RSS rise during update (MiB)"],
                 [[f"{t['size']}³", fmt(t["input_bytes"] / 2**20, ".0f"), fmt(t["rise_bytes"] / 2**20, ".0f")]
                  for t in payload["update_transient"]]),
        machine_md(payload["machine"]),
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        mode, cases, size = args.child
        print(json.dumps(_transient(int(size)) if mode == "transient" else _child(mode, int(cases), int(size))))
        return 0
    t0 = time.perf_counter()
    runs = [_run(*config) for config in CONFIGS]
    transient = [_run("transient", 1, size) for size in TRANSIENT_SIZES]
    by = {(r["mode"], r["cases"], r["size"]): r for r in runs}
    ratio = by["streaming", 32, 64]["peak_rss_bytes"] / by["streaming", 8, 64]["peak_rss_bytes"]
    in_memory_ratio = by["in_memory", 32, 64]["peak_rss_bytes"] / by["in_memory", 8, 64]["peak_rss_bytes"]
    same = all(r["thresholds"] == by["streaming", r["cases"], r["size"]]["thresholds"] for r in runs)
    ok = ratio <= GOAL and same and all(r["n_calibration"] == r["cases"] for r in runs)
    payload = {
        "goal": f"streaming peak RSS(32 cases) <= {GOAL} x peak RSS(8 cases), 64^3", "ratio": ratio,
        "in_memory_ratio": in_memory_ratio, "same_thresholds_streaming_vs_in_memory": same, "passed": ok,
        "config": {"num_classes": NUM_CLASSES, "num_levels": NUM_LEVELS, "alpha": ALPHA, "loss": "fnr"},
        "runs": runs, "update_transient": transient, "seconds": time.perf_counter() - t0, "machine": machine_info(),
    }  # fmt: skip
    markdown = _markdown(payload)
    write_results("conformal_memory", payload, markdown + "\n")
    print(markdown)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
