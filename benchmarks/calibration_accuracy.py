"""Accuracy of streaming ECE at 1e6 / 1e7 / 1e8 samples: softlabels vs torchmetrics vs MONAI vs a float64 reference.

Data (classification-shaped, C = 4): float32 Dirichlet(1, 1, 1, 1) probabilities (normalised float32 exponentials
from a seeded ``torch.Generator``), labels drawn from those probabilities (inverse CDF), so the data are calibrated
by construction and the true ECE shrinks towards 0 with n. The n = 1e6 and 1e7 sets are the first n samples of the
1e8 stream (one pass, snapshots at each n).

Reference: float64 NumPy, chunked; bins lower-open upper-closed ``e[m−1] < r ≤ e[m]`` (r = 0 in the first bin)
with the exact edges ``m/15`` — softlabels' documented convention (docs/metrics.md) — the float32 values compared in
float64 and summed in float64. A second reference with the float32 edges ``torch.linspace(0, 1, 16,
dtype=float32)`` (torchmetrics' and MONAI's rule) is also reported; the two rules bin differently only the values
lying between an exact edge and its float32 rounding, and the counts of such values are reported.

softlabels ``CalibrationError`` (top-label and classwise) and torchmetrics ``MulticlassCalibrationError`` are fed
chunk by chunk through ``.update`` (chunks of ``--chunk`` samples, shape ``(chunk, 4)``). MONAI
``CalibrationErrorMetric`` (per class one-vs-rest, mean over classes; ``right=True`` = the same lower-open bins)
gets ONE "volume" holding all n samples, shape ``(1, 4, n)`` plus its one-hot target, so that its
mean-over-volumes equals the pooled classwise ECE. netcal runs in a separate interpreter if one is available.

Acceptance (exit status 1 if missed): |ours − reference| ≤ 1e-6 at every n for top-label and classwise, and the
state of ours has the same number of bytes after 1e4 samples as after the largest n, at most 1 MiB.

Run: ``python benchmarks/calibration_accuracy.py`` (full, ~20 min on 2 cores) or ``--quick`` (n = 1e6 only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import (
    N_BINS,
    RESULTS,
    RefHistogram,
    float32_edges,
    fmt,
    machine_info,
    machine_md,
    max_rss_bytes,
    md_table,
    reference_update,
    state_bytes,
    write_results,
)

C = 4
TOL = 1e-6
STATE_LIMIT = 2**20
# netcal needs torch, so it runs in a throwaway venv beside (never inside) the project's environment:
#   python3 -m venv /tmp/netcal-venv && /tmp/netcal-venv/bin/pip install --find-links /opt/wheels torch==2.13.0 netcal
NETCAL_PY = Path(os.environ.get("NETCAL_PYTHON", "/tmp/netcal-venv/bin/python"))
NETCAL_NOTE = (
    "netcal 1.4.0 runs in a throwaway venv (it depends on torch, pyro-ppl, gpytorch and tensorboard; installed there "
    "with the local CPU torch wheel) given by $NETCAL_PYTHON, on the same samples saved as .npy; its value is the "
    "top-label ECE with its own bin convention."
)
NETCAL_SCRIPT = """
import json, sys, numpy as np
from netcal.metrics import ECE
p = np.load(sys.argv[1]); y = np.load(sys.argv[2])
print(json.dumps({"value": float(ECE(bins=int(sys.argv[3])).measure(p, y))}))
"""


def stream(n_total: int, chunk: int, seed: int):
    """Yield ``(probs (m, C) float32, labels (m,) int64)`` chunks of a seeded calibrated-by-construction stream."""
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n_total, chunk):
        m = min(chunk, n_total - start)
        e = torch.empty(m, C).exponential_(generator=g)  # Dirichlet(1,...,1) = normalised Exp(1)
        probs = e / e.sum(1, keepdim=True)
        u = torch.rand(m, 1, generator=g)
        labels = (u > probs.cumsum(1)).sum(1).clamp_max_(C - 1)
        yield probs, labels


class Rivals:
    """Everything fed chunk by chunk, with its cumulative update time."""

    def __init__(self) -> None:
        from torchmetrics.classification import MulticlassCalibrationError

        from softlabels.metrics.calibration import CalibrationError

        self.metrics: dict[str, Any] = {
            "softlabels_top_label": CalibrationError(C, n_bins=N_BINS, mode="top_label"),
            "softlabels_classwise": CalibrationError(C, n_bins=N_BINS, mode="classwise"),
            "torchmetrics_top_label": MulticlassCalibrationError(num_classes=C, n_bins=N_BINS, norm="l1"),
        }
        self.edges = float32_edges()
        self.ref = {"f32": (RefHistogram(1), RefHistogram(C)), "exact": (RefHistogram(1), RefHistogram(C))}
        self.update_s = dict.fromkeys([*self.metrics, "reference"], 0.0)
        self.mismatch = {"top_label": 0, "classwise": 0}  # values the float32 and exact edges bin differently

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        for name, metric in self.metrics.items():
            t0 = time.perf_counter()
            metric.update(probs, labels)
            self.update_s[name] += time.perf_counter() - t0
        t0 = time.perf_counter()
        p_np, y_np = np.ascontiguousarray(probs.numpy().T), labels.numpy()
        mis_top, mis_cw = reference_update(p_np, y_np, self.ref, self.edges)
        self.mismatch["top_label"] += mis_top
        self.mismatch["classwise"] += mis_cw
        self.update_s["reference"] += time.perf_counter() - t0


def state_bytes_after_1e4(seed: int) -> dict[str, int]:
    """State bytes of fresh softlabels metrics after the first 1e4 samples."""
    from softlabels.metrics.calibration import CalibrationError

    probs, labels = next(stream(10_000, 10_000, seed))
    out = {}
    for mode in ("top_label", "classwise"):
        metric = CalibrationError(C, n_bins=N_BINS, mode=mode)
        metric.update(probs, labels)
        out[f"softlabels_{mode}"] = state_bytes(metric.metric_state)
    return out


def run_monai(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """MONAI ``CalibrationErrorMetric`` on one 'volume' ``(1, C, n)``; the one-hot/transposition is not timed."""
    from monai.metrics import CalibrationErrorMetric

    y_pred = probs.T.contiguous().unsqueeze(0)
    y = torch.zeros(C, labels.shape[0]).scatter_(0, labels.unsqueeze(0), 1.0).unsqueeze(0)  # one-hot
    metric = CalibrationErrorMetric(
        num_bins=N_BINS, include_background=True, calibration_reduction="expected", metric_reduction="mean", right=True
    )
    t0 = time.perf_counter()
    metric(y_pred=y_pred, y=y)
    value = float(metric.aggregate())
    return {"value": value, "seconds": time.perf_counter() - t0, "per_class": metric.get_buffer()[0].tolist()}


def run_netcal(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """netcal ``ECE(bins=15)`` (top-label) in its own interpreter, inputs passed as .npy files."""
    if not NETCAL_PY.exists():
        return {"status": "skipped", "reason": NETCAL_NOTE}
    probe = subprocess.run([str(NETCAL_PY), "-c", "import netcal"], capture_output=True, text=True)
    if probe.returncode != 0:
        return {"status": "skipped", "reason": NETCAL_NOTE + " `import netcal` failed: " + probe.stderr[-300:]}
    with tempfile.TemporaryDirectory() as tmp:
        p_path, y_path = Path(tmp) / "p.npy", Path(tmp) / "y.npy"
        np.save(p_path, probs.numpy())
        np.save(y_path, labels.numpy())
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(NETCAL_PY), "-c", NETCAL_SCRIPT, str(p_path), str(y_path), str(N_BINS)], capture_output=True, text=True
        )
        secs = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"status": "failed", "reason": proc.stderr[-500:]}
    return {"status": "ok", "value": json.loads(proc.stdout)["value"], "seconds_incl_startup": secs}


def snapshot(
    r: Rivals, n: int, probs_all: list[torch.Tensor], labels_all: list[torch.Tensor], with_netcal: bool
) -> dict[str, Any]:
    """Values, errors, times and state sizes of every implementation after the first n samples."""
    ref = {}
    for kind, (top, cw) in r.ref.items():
        ref[kind] = {
            "top_label": float(top.ece_rows()[0]),
            "classwise": float(cw.ece_rows().mean()),
            "counts_top": top.count[0].tolist(),
        }
    out: dict[str, Any] = {"n": n, "reference": ref, "implementations": {}, "edge_rule_mismatches": dict(r.mismatch)}
    for name, metric in r.metrics.items():
        t0 = time.perf_counter()
        value = float(metric.compute())
        secs = time.perf_counter() - t0
        mode = "classwise" if name.endswith("classwise") else "top_label"
        out["implementations"][name] = {
            "mode": mode,
            "value": value,
            "abs_err": abs(value - ref["exact"][mode]),
            "abs_err_vs_float32_edges": abs(value - ref["f32"][mode]),
            "update_s_cumulative": r.update_s[name],
            "compute_s": secs,
            "state_bytes": state_bytes(metric.metric_state),
        }
    probs = torch.cat(probs_all)[:n]
    labels = torch.cat(labels_all)[:n].long()
    m = run_monai(probs, labels)
    out["implementations"]["monai_classwise"] = {
        "mode": "classwise",
        "value": m["value"],
        "abs_err": abs(m["value"] - ref["exact"]["classwise"]),
        "abs_err_vs_float32_edges": abs(m["value"] - ref["f32"]["classwise"]),
        "compute_s": m["seconds"],
        "per_class": m["per_class"],
        "state_bytes": 8 * C,
    }
    if with_netcal:
        nc = run_netcal(probs, labels)
        if nc.get("status") == "ok":
            nc.update(
                mode="top_label",
                abs_err=abs(nc["value"] - ref["exact"]["top_label"]),
                abs_err_vs_float32_edges=abs(nc["value"] - ref["f32"]["top_label"]),
            )
        out["implementations"]["netcal_top_label"] = nc
    out["reference_update_s_cumulative"] = r.update_s["reference"]
    out["max_rss_bytes_so_far"] = max_rss_bytes()
    return out


def check(snaps: list[dict[str, Any]], bytes_1e4: dict[str, int]) -> list[str]:
    """Acceptance failures (empty if all pass)."""
    fails = []
    for s in snaps:
        for name in ("softlabels_top_label", "softlabels_classwise"):
            imp = s["implementations"][name]
            if not imp["abs_err"] <= TOL:
                fails.append(f"{name} at n={s['n']:.0e}: |ECE - ref| = {imp['abs_err']:.3e} > {TOL:g}")
    for name, b in bytes_1e4.items():
        last = snaps[-1]["implementations"][name]["state_bytes"]
        if b != last or last > STATE_LIMIT:
            n_last = snaps[-1]["n"]
            fails.append(f"{name}: state bytes {b} after 1e4 vs {last} after n={n_last:.0e} (limit {STATE_LIMIT})")
    return fails


def markdown(payload: dict[str, Any]) -> str:
    rows = []
    for s in payload["snapshots"]:
        for name, imp in s["implementations"].items():
            if "value" not in imp:
                rows.append([f"{s['n']:.0e}", name, "—", "—", "—", imp.get("status", "") + ": see JSON", "—", "—"])
                continue
            ref = s["reference"]["exact"][imp["mode"]]
            t = imp.get("update_s_cumulative", 0.0) + imp.get("compute_s", 0.0) + imp.get("seconds_incl_startup", 0.0)
            rows.append(
                [
                    f"{s['n']:.0e}",
                    name,
                    imp["mode"],
                    f"{imp['value']:.9f}",
                    f"{ref:.9f}",
                    fmt(imp["abs_err"]),
                    fmt(imp["abs_err_vs_float32_edges"]),
                    f"{t:.1f}",
                ]
            )
    st = payload["state_bytes"]
    lines = [
        "# Calibration accuracy benchmark (`benchmarks/calibration_accuracy.py`)\n",
        machine_md(payload["machine"]),
        f"\nData: C = {C}, float32 Dirichlet(1,1,1,1) probabilities, labels drawn from them (true ECE → 0), "
        f"seed {payload['seed']}, update chunks of {payload['chunk']:,} samples, {N_BINS} bins, l1. Reference: float64 "
        "NumPy with the exact edges m/15 (softlabels' convention), lower-open bins. "
        "MONAI: one 'volume' of all n samples, `right=True`, value = mean of the per-class ECEs "
        "(compare with our classwise).\n\n",
        md_table(
            [
                "n",
                "implementation",
                "mode",
                "value",
                "reference (exact edges)",
                "abs error",
                "abs error vs float32-edge reference",
                "time s (update+compute)",
            ],
            rows,
        ),
        "\nState bytes of softlabels `CalibrationError` (`metric_state`):\n\n",
        md_table(
            ["metric", "after 1e4", "after each n"],
            [
                [k, v, ", ".join(str(s["implementations"][k]["state_bytes"]) for s in payload["snapshots"])]
                for k, v in st["softlabels_after_1e4"].items()
            ],
        ),
        "\ntorchmetrics list state after each n: "
        + ", ".join(
            f"{s['implementations']['torchmetrics_top_label']['state_bytes'] / 2**20:.1f} MiB"
            for s in payload["snapshots"]
        )
        + ".\n",
        "\nReference with exact edges m/15 vs float32 edges: "
        + "; ".join(
            f"n={s['n']:.0e}: top {s['reference']['exact']['top_label']:.12f} vs "
            f"{s['reference']['f32']['top_label']:.12f}, classwise {s['reference']['exact']['classwise']:.12f}"
            f" vs {s['reference']['f32']['classwise']:.12f} (values binned differently by the two edge rules: "
            f"{s['edge_rule_mismatches']})"
            for s in payload["snapshots"]
        )
        + ".\n",
        f"\nnetcal: {payload['netcal_note']}\n",
        f"\n**Acceptance** (|ours − ref| ≤ {TOL:g} at every n, top-label and classwise; state bytes equal after 1e4 "
        f"and after the largest n, ≤ 1 MiB): **{'PASS' if not payload['failures'] else 'FAIL'}**\n",
    ]
    lines += [f"- {f}\n" for f in payload["failures"]]
    return "".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="only n = 1e6 (smoke test)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--chunk", type=int, default=100_000, help="samples per update call")
    ap.add_argument("--no-netcal", action="store_true")
    ap.add_argument("--name", default="calibration_accuracy", help="result file stem")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the existing .json")
    args = ap.parse_args()
    if args.render:
        payload = json.loads((RESULTS / f"{args.name}.json").read_text())
        write_results(args.name, payload, markdown(payload))
        return 0 if payload["passed"] else 1
    torch.set_num_threads(2)
    ns = [10**6] if args.quick else [10**6, 10**7, 10**8]
    rivals = Rivals()
    probs_all: list[torch.Tensor] = []
    labels_all: list[torch.Tensor] = []
    snaps: list[dict[str, Any]] = []
    seen = 0
    t_start = time.perf_counter()
    for probs, labels in stream(ns[-1], args.chunk, args.seed):
        rivals.update(probs, labels)
        probs_all.append(probs)
        labels_all.append(labels.to(torch.uint8))
        seen += probs.shape[0]
        if seen in ns:
            snaps.append(snapshot(rivals, seen, probs_all, labels_all, with_netcal=not args.no_netcal))
            print(
                json.dumps(
                    {
                        k: (v["value"] if "value" in v else v.get("status"))
                        for k, v in snaps[-1]["implementations"].items()
                    }
                    | {
                        "n": seen,
                        "ref": snaps[-1]["reference"]["f32"]["top_label"],
                        "ref_cw": snaps[-1]["reference"]["f32"]["classwise"],
                        "elapsed_s": round(time.perf_counter() - t_start, 1),
                    }
                ),
                flush=True,
            )
    bytes_1e4 = state_bytes_after_1e4(args.seed)
    failures = check(snaps, bytes_1e4)
    payload = {
        "benchmark": "calibration_accuracy",
        "machine": machine_info(),
        "seed": args.seed,
        "chunk": args.chunk,
        "num_classes": C,
        "n_bins": N_BINS,
        "tolerance": TOL,
        "ns": ns,
        "state_bytes": {"softlabels_after_1e4": bytes_1e4, "limit": STATE_LIMIT},
        "snapshots": snaps,
        "netcal_note": NETCAL_NOTE,
        "failures": failures,
        "passed": not failures,
        "wall_s": time.perf_counter() - t_start,
    }
    write_results(args.name, payload, markdown(payload))
    print("PASS" if not failures else "FAIL:\n" + "\n".join(failures))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
