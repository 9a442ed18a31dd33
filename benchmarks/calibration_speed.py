"""Speed, state size and peak memory of streaming ECE on a 3-D test set: softlabels vs torchmetrics vs MONAI.

Test set: ``--volumes`` (default 10) volumes of 4×240×240×155 float32 softmax probabilities (softmax of trilinearly
upsampled random logits from a 30×30×20 grid, times 4, so the maps are smooth) with int64 label maps drawn from
those probabilities. Volume ``v`` comes from ``torch.Generator().manual_seed(seed * 1000 + v)``, so every
subprocess sees identical volumes; generating them is not timed.

Each implementation runs in its own subprocess (clean peak RSS), streaming one volume at a time:

* ``softlabels_top_label``: ``CalibrationError(4, mode="top_label", validate_args=True)``;
* ``softlabels_classwise``: ``CalibrationError(4, mode="classwise", validate_args=True)``;
* ``torchmetrics_top_label``: ``MulticlassCalibrationError(num_classes=4, n_bins=15, norm="l1")`` (validation on);
* ``monai_classwise``: ``CalibrationErrorMetric(num_bins=15, right=True)`` called per volume; it needs a one-hot
  ``y``, which the caller builds: that conversion is timed separately and NOT included in MONAI's times;
* ``reference``: float64 NumPy histograms (float32 edges, lower-open bins), pooled and per volume.

Per implementation: total update time, compute time (``compute()`` / ``aggregate()``), state bytes before compute,
and the peak RSS increase: the largest RSS sampled (psutil, every 2 ms) during the update and compute calls, minus
the RSS just before the first update (imports done, metric built, first volume and its inputs in memory). Values
are compared with the float64 reference: ours and torchmetrics with the pooled ECE, MONAI (mean over volumes of
per-volume, per-class ECE) with the same quantity computed in float64.

Acceptance (exit status 1 if missed): total time of torchmetrics / total time of softlabels top-label ≥ 2.

Run: ``python benchmarks/calibration_speed.py`` (10 volumes, ~10 min) or ``--volumes 2`` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch

from _common import (
    N_BINS,
    PeakRSS,
    RefHistogram,
    float32_edges,
    fmt,
    machine_info,
    machine_md,
    max_rss_bytes,
    md_table,
    reference_update,
    rss_bytes,
    state_bytes,
    write_results,
)

C = 4
SHAPE = (240, 240, 155)
LOW = (30, 30, 20)
LOGIT_SCALE = 4.0
MIN_RATIO = 2.0
RATIO_PAIR = ("torchmetrics_top_label", "softlabels_top_label")
IMPLS = ("softlabels_top_label", "softlabels_classwise", "torchmetrics_top_label", "monai_classwise", "reference")


def make_volume(seed: int, v: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Volume ``v``: probs ``(1, C, 240, 240, 155)`` float32 and labels ``(1, 240, 240, 155)`` int64."""
    g = torch.Generator().manual_seed(seed * 1000 + v)
    logits = torch.randn(1, C, *LOW, generator=g) * LOGIT_SCALE
    logits = torch.nn.functional.interpolate(logits, size=SHAPE, mode="trilinear", align_corners=False)
    probs = torch.softmax(logits, dim=1)
    del logits
    u = torch.rand(1, 1, *SHAPE, generator=g)
    labels = (u > probs.cumsum(1)).sum(1).clamp_max_(C - 1)
    return probs, labels


# --------------------------------------------------------------------------------------------- one implementation
class Impl:
    """Uniform interface: ``prepare`` (untimed caller-side work), ``update``, ``compute``, ``state``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.prepare_s = 0.0
        if name.startswith("softlabels"):
            from softlabels.metrics.calibration import CalibrationError

            mode = name.removeprefix("softlabels_")
            self.metric: Any = CalibrationError(C, n_bins=N_BINS, mode=mode, validate_args=True)
        elif name == "torchmetrics_top_label":
            from torchmetrics.classification import MulticlassCalibrationError

            self.metric = MulticlassCalibrationError(num_classes=C, n_bins=N_BINS, norm="l1")
        elif name == "monai_classwise":
            from monai.metrics import CalibrationErrorMetric

            self.metric = CalibrationErrorMetric(
                num_bins=N_BINS,
                include_background=True,
                calibration_reduction="expected",
                metric_reduction="mean",
                right=True,
            )
        else:
            self.edges = float32_edges()
            self.pooled = {"f32": (RefHistogram(1), RefHistogram(C))}
            self.per_volume: list[float] = []

    def prepare(self, probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.name != "monai_classwise":
            return probs, labels
        t0 = time.perf_counter()
        onehot = torch.zeros_like(probs).scatter_(1, labels.unsqueeze(1), 1.0)
        self.prepare_s += time.perf_counter() - t0
        return probs, onehot

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        if self.name == "monai_classwise":
            self.metric(y_pred=probs, y=target)
        elif self.name == "reference":
            p_np = probs[0].reshape(C, -1).numpy()
            y_np = target.reshape(-1).numpy()
            one = {"f32": (RefHistogram(1), RefHistogram(C))}
            reference_update(p_np, y_np, one, self.edges)
            for mine, theirs in zip(self.pooled["f32"], one["f32"], strict=True):
                mine.count += theirs.count
                mine.conf += theirs.conf
                mine.outc += theirs.outc
            self.per_volume.append(float(one["f32"][1].ece_rows().mean()))
        else:
            self.metric.update(probs, target)

    def compute(self) -> dict[str, float]:
        if self.name == "monai_classwise":
            return {"value": float(self.metric.aggregate())}
        if self.name == "reference":
            top, cw = self.pooled["f32"]
            return {
                "top_label": float(top.ece_rows()[0]),
                "classwise": float(cw.ece_rows().mean()),
                "classwise_mean_of_volumes": float(np.mean(self.per_volume)),
            }
        return {"value": float(self.metric.compute())}

    def state(self) -> int:
        if self.name == "monai_classwise":
            return state_bytes(self.metric.get_buffer())
        if self.name == "reference":
            return sum(a.nbytes for h in self.pooled["f32"] for a in (h.count, h.conf, h.outc))
        return state_bytes(self.metric.metric_state)


class _NoSampler:
    """Stands in for :class:`PeakRSS` in the timing pass: a sampling thread would compete for the 2 cores."""

    peak = 0

    def __enter__(self) -> _NoSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None


def worker(name: str, volumes: int, seed: int, threads: int, sample_rss: bool = False) -> dict[str, Any]:
    """Stream the volumes through one implementation; times, state and value (or, with ``sample_rss``, the peak RSS).

    Time and memory are measured in two separate runs: the RSS sampler is a Python thread polling every 2 ms, which
    on 2 cores competes with the 2 compute threads and slows implementations with many small operations.
    """
    torch.set_num_threads(threads)
    load_start = os.getloadavg()[0]
    rss_start = rss_bytes()
    impl = Impl(name)
    sampler: Any = PeakRSS() if sample_rss else _NoSampler()
    update_s, gen_s, baseline = 0.0, 0.0, 0
    for v in range(volumes):
        t0 = time.perf_counter()
        probs, labels = make_volume(seed, v)
        gen_s += time.perf_counter() - t0
        probs, target = impl.prepare(probs, labels)
        del labels
        if v == 0:
            baseline = rss_bytes()
        with sampler:
            t0 = time.perf_counter()
            impl.update(probs, target)
            update_s += time.perf_counter() - t0
        del probs, target
    state = impl.state()
    with sampler:
        t0 = time.perf_counter()
        value = impl.compute()
        compute_s = time.perf_counter() - t0
    sampler.close()
    return {
        "name": name,
        "volumes": volumes,
        "update_s": update_s,
        "compute_s": compute_s,
        "total_s": update_s + compute_s,
        "caller_prepare_s_not_counted": impl.prepare_s,
        "generation_s_not_counted": gen_s,
        "state_bytes": state,
        "rss_start_bytes": rss_start,
        "rss_baseline_bytes": baseline,
        "peak_rss_bytes": sampler.peak,
        "peak_rss_increase_bytes": sampler.peak - baseline,
        "ru_maxrss_bytes": max_rss_bytes(),
        "torch_threads": threads,
        "loadavg_1min_start_end": [load_start, os.getloadavg()[0]],
        **value,
    }


# --------------------------------------------------------------------------------------------- driver
def _run_worker(name: str, volumes: int, seed: int, threads: int, sample_rss: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", name, "--volumes", str(volumes), "--seed", str(seed)]
    cmd += ["--threads", str(threads)] + (["--sample-rss"] if sample_rss else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"name": name, "error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_all(volumes: int, seed: int, impls: list[str], threads: int) -> dict[str, dict[str, Any]]:
    """Each implementation in its own subprocess: a timing run, then a memory run."""
    out = {}
    for name in impls:
        out[name] = _run_worker(name, volumes, seed, threads, sample_rss=False)
        if "error" not in out[name]:
            mem = _run_worker(name, volumes, seed, threads, sample_rss=True)
            for key in ("peak_rss_bytes", "peak_rss_increase_bytes", "ru_maxrss_bytes", "rss_baseline_bytes"):
                out[name][key] = mem.get(key)
        print(json.dumps(out[name]), flush=True)
    return out


def add_errors(res: dict[str, dict[str, Any]]) -> None:
    ref = res.get("reference", {})
    targets = {
        "softlabels_top_label": "top_label",
        "softlabels_classwise": "classwise",
        "torchmetrics_top_label": "top_label",
        "monai_classwise": "classwise_mean_of_volumes",
    }
    for name, key in targets.items():
        r = res.get(name, {})
        if "value" in r and key in ref:
            r["reference_key"] = key
            r["reference_value"] = ref[key]
            r["abs_err"] = abs(r["value"] - ref[key])


def markdown(payload: dict[str, Any]) -> str:
    res = payload["results"]
    rows = []
    for name, r in res.items():
        if "error" in r:
            rows.append([name, "failed: see JSON", *["—"] * 9])
            continue
        value = r.get("value")
        rows.append(
            [
                name,
                f"{r['update_s']:.2f}",
                f"{r['compute_s']:.3f}",
                f"{r['total_s']:.2f}",
                f"{r['state_bytes']:,}",
                f"{r['peak_rss_increase_bytes'] / 2**20:.0f}",
                "—" if value is None else f"{value:.9f}",
                r.get("reference_key", "—"),
                fmt(r.get("reference_value"), ".9f"),
                fmt(r.get("abs_err")),
                "→".join(f"{x:.1f}" for x in r.get("loadavg_1min_start_end", [])),
            ]
        )
    ref = res.get("reference", {})
    monai_prep = res.get("monai_classwise", {}).get("caller_prepare_s_not_counted")
    lines = [
        "# Calibration speed benchmark (`benchmarks/calibration_speed.py`)\n",
        machine_md(payload["machine"]),
        f"1-minute load average at the start: {payload['loadavg_1min_at_start']:.2f}.\n"
        f"\nTest set: {payload['volumes']} volumes of 4×240×240×155 float32 softmax probabilities + int64 labels "
        f"drawn from them (seed {payload['seed']}); one volume per update, {N_BINS} bins, l1; each implementation in "
        f"its own subprocess, torch threads = {payload['threads']}. Peak RSS increase = max RSS during "
        "update/compute calls − RSS before the first update (first volume already in memory), sampled every 2 ms by "
        "a thread in a second run of each implementation; the times come from a run without that thread.\n\n",
        md_table(
            [
                "implementation",
                "update s",
                "compute s",
                "total s",
                "state bytes",
                "peak RSS increase MiB",
                "value",
                "reference quantity",
                "reference (float64)",
                "abs error",
                "load avg start→end",
            ],
            rows,
        ),
        f"\nMONAI needs a one-hot `y`; the caller's conversion took {fmt(monai_prep, '.2f')} s in total and is NOT "
        "included in MONAI's times. MONAI's value is the mean over volumes of per-volume, per-class ECE, compared "
        "with that quantity in float64; the pooled float64 classwise ECE is "
        f"{fmt(ref.get('classwise'), '.9f')}.\n",
        f"\n**Speed ratio** total torchmetrics / total softlabels top-label = **{fmt(payload['ratio'], '.2f')}**, "
        "the median of the timing runs "
        + ", ".join(fmt(x, ".2f") for x in payload.get("ratio_runs", [payload["ratio"]]))
        + " (the table shows the first; each further run times the pair again, torchmetrics first) "
        f"(acceptance ≥ {MIN_RATIO:g}, validation on): **{'PASS' if payload['passed'] else 'FAIL'}**. "
        f"torchmetrics / softlabels classwise = {fmt(payload['ratio_classwise'], '.2f')}.\n",
    ]
    return "".join(lines)


def ratio(res: dict[str, dict[str, Any]], ours: str) -> float | None:
    a, b = res.get("torchmetrics_top_label", {}), res.get(ours, {})
    return a["total_s"] / b["total_s"] if "total_s" in a and "total_s" in b else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--volumes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every worker")
    ap.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    ap.add_argument("--sample-rss", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impls", default=",".join(IMPLS), help="comma-separated subset of " + ", ".join(IMPLS))
    ap.add_argument("--name", default="calibration_speed", help="result file stem")
    ap.add_argument("--repeats", type=int, default=3, help="timing runs of the ratio pair; the median is judged")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.volumes, args.seed, args.threads, args.sample_rss)))
        return 0
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()[0]
    res = run_all(args.volumes, args.seed, args.impls.split(","), args.threads)
    add_errors(res)
    runs = [ratio(res, "softlabels_top_label")]
    for _ in range(args.repeats - 1):  # extra timing runs of the pair, torchmetrics first as in the full run
        pair = {n: _run_worker(n, args.volumes, args.seed, args.threads, False) for n in RATIO_PAIR}
        runs.append(ratio(pair, "softlabels_top_label"))
        print(json.dumps({"repeat_ratio": runs[-1]}), flush=True)
    valid = sorted(x for x in runs if x is not None)
    r = valid[len(valid) // 2] if len(valid) == len(runs) else None
    passed = r is not None and r >= MIN_RATIO
    payload = {
        "benchmark": "calibration_speed",
        "machine": machine_info(),
        "volumes": args.volumes,
        "seed": args.seed,
        "shape": [C, *SHAPE],
        "n_bins": N_BINS,
        "threads": args.threads,
        "results": res,
        "ratio": r,
        "ratio_runs": runs,
        "ratio_classwise": ratio(res, "softlabels_classwise"),
        "min_ratio": MIN_RATIO,
        "passed": passed,
        "wall_s": time.perf_counter() - t0,
        "loadavg_1min_at_start": load_at_start,
    }
    write_results(args.name, payload, markdown(payload))
    print(f"ratio torchmetrics/softlabels = {r} (median of {runs}): {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
