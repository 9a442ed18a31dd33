"""Agreement of ``softlabels.conformal`` with MAPIE 1.6.0 on the same fixed probabilities.

MAPIE is not a dependency of softlabels: the script installs ``mapie==1.6.0`` (``--no-deps``; it needs NumPy,
SciPy and scikit-learn, which the project's venv has) into ``benchmarks/.cache/mapie-1.6.0`` and runs the MAPIE
side in a child process with ``PYTHONPATH`` set to that folder. The softlabels side runs in this process. Both
read the same float64 probabilities from an ``.npz`` file (per seed of ``--seeds``, default 0, 1, 2):

* classification: Dirichlet(0.7) probabilities over C = 8 classes, labels drawn from them; 500 calibration and
  1000 test samples; α ∈ {0.05, 0.1, 0.2, 0.4}. Sets: LAC, APS and RAPS (non-randomized), marginal, and LAC and APS
  Mondrian (class-conditional).
* multi-label risk control: 500 calibration and 1000 test samples × 10 labels, Beta probabilities (a different
  Beta per label), truth drawn from them (a sample without any label is redrawn: MAPIE refuses those). softlabels
  treats each sample as a case whose "voxels" are its labels: probabilities ``(N, 1, L)``, truth ``(N, 1, L)``.
  Recall (FNR) with CRC at α ∈ {0.05, 0.1, 0.2}; precision (FDR) with Learn-then-Test at α ∈ {0.1, 0.2},
  δ = 0.1. The λ grid of MAPIE is set to softlabels' levels ``linspace(0, 1, 101)``, so both pick from the same
  101 values.

Where MAPIE 1.6.0 defines a quantity differently, the script says so (``DIFFERENCES``) and compares the identically
defined quantity. Goal: 100 % agreement on every judged row and |q̂ difference| ≤ 1e-12; exit status 1 otherwise.

    python benchmarks/conformal_mapie.py                # seeds 0, 1, 2: ~20 s (after the one-time install of MAPIE)
    python benchmarks/conformal_mapie.py --seeds 0 5 7  # other seeds
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
from typing import Any

import numpy as np

from _common import REPO, machine_info, machine_md, md_table, write_results

MAPIE_VERSION = "1.6.0"
CACHE = REPO / "benchmarks" / ".cache" / f"mapie-{MAPIE_VERSION}"
NUM_CLASSES, N_CAL, N_TEST = 8, 500, 1000
SET_ALPHAS = (0.05, 0.1, 0.2, 0.4)  # 0.4: q̂ low enough that some of our APS/RAPS sets are empty
NUM_LABELS, ML_CAL, ML_TEST = 10, 500, 1000
CRC_ALPHAS = (0.05, 0.1, 0.2)
LTT_ALPHAS, DELTA = (0.1, 0.2), 0.1
NUM_LEVELS = 101
Q_TOL = 1e-12  # |q̂ difference| allowed: the two sides sum the same float64 probabilities in different orders
MAPIE_EPS = 1e-8  # MAPIE's EPSILON: its set rules compare with this tolerance

DIFFERENCES = [
    "MAPIE 1.6.0 has no Mondrian (class-conditional) option (0.x had `MondrianCP`), and it refuses APS on "
    "single-class calibration data (`check_target`: binary target). The Mondrian rows conformalize MAPIE's "
    "`SplitConformalClassifier` on the whole calibration set, then for each class y restrict its stored "
    "calibration scores to those of class y and call `predict_set` (MAPIE's quantile and set code on class y's "
    "scores: the Mondrian construction), keeping column y of the sets.",
    "APS/RAPS calibration score: MAPIE always randomizes it (score = Σ_{j ranked ≤ rank(y)} π_j − U·π_y, U drawn "
    "from `random_state`); there is no switch. Our non-randomized score is U = 0 (our u = 1 − U). The MAPIE side "
    "is given a `numpy.random.RandomState` whose `uniform()` returns 0 (splits and permutations are untouched).",
    "APS/RAPS sets: MAPIE's `include_last_label=False` is our non-randomized rule (y ∈ set ⟺ score_y ≤ q̂) except "
    "that MAPIE always keeps the most probable label (it never returns an empty set; `include_last_label=True` "
    "instead adds the label that crosses q̂). Judged: MAPIE's set = our set ∪ {argmax}; the raw agreement and the "
    "number of our empty sets are reported too.",
    "RAPS: MAPIE chooses k_reg (a quantile of the true label's rank + 1) and λ (from {0.001, 0.01, 0.1, 0.2, 0.5}) on "
    "a held-out part of the calibration data and calibrates on the rest. softlabels takes k_reg and λ as given: it "
    "is run with MAPIE's k_reg, λ and calibration subset. (MAPIE 1.6.0 resets `size_raps` to None inside `fit`, "
    "so the held-out part is scikit-learn's default 10 %, not the documented 20 %.)",
    "MAPIE's set rules compare with a tolerance of 1e-8 (`score − q̂ ≤ 1e-8`); softlabels compares exactly "
    "(`score ≤ q̂`). They differ when a test score lies within 1e-8 above q̂ — in practice an APS score that equals "
    "q̂ mathematically but not in floating point: e.g. the cumulative sum up to a last-ranked class is 1 up to "
    "rounding (1.0 vs 0.9999999999999999, depending on the order of the summed probabilities). Judged: our scores "
    "and q̂ under MAPIE's rule; the agreement of our exact rule and the number of such near ties are reported.",
    "Multi-label: MAPIE predicts a label when p > λ, softlabels when p ≥ t (t = λ here). They differ only for a "
    "probability exactly on a grid value; the count of such probabilities is reported.",
    "CRC: MAPIE keeps the largest λ with n/(n+1)·R̂ + 1/(n+1) < α, softlabels the largest with ≤ α (Angelopoulos "
    "et al. 2024 use ≤). They differ only when the bound equals α exactly; the smallest |bound − α| is reported.",
    "Precision/LTT: MAPIE's `MultiLabelClassificationController` (i) gives an empty predicted set precision "
    "risk 1 (softlabels: FDR 0 — an empty mask makes no false discovery), (ii) tests every λ with Bonferroni–Holm "
    "on the raw risk, and (iii) keeps the smallest valid λ. softlabels runs fixed-sequence testing from the top "
    "level on the per-case monotone upper bound of the FDR. Judged on the identically defined quantities: the "
    "per-sample loss where the set is not empty, the Hoeffding–Bentkus p-values and MAPIE's own fixed-sequence "
    "procedure (`ltt_procedure(..., fwer_method='fixed_sequence')`) on the same risk curve; MAPIE's own controller "
    "result is shown for information.",
]


# --------------------------------------------------------------------------------------------- data
def make_data(seed: int) -> dict[str, np.ndarray]:
    """Classification and multi-label probabilities and truth (float64), and softlabels' levels."""
    rng = np.random.default_rng(seed)
    n = N_CAL + N_TEST
    probs = rng.dirichlet(np.full(NUM_CLASSES, 0.7), size=n)
    probs /= probs.sum(1, keepdims=True)
    labels = np.minimum((rng.random(n)[:, None] > np.cumsum(probs, 1)).sum(1), NUM_CLASSES - 1)
    counts = np.bincount(labels[:N_CAL], minlength=NUM_CLASSES)
    if counts.min() < 1 / min(SET_ALPHAS):
        raise RuntimeError(f"a class has too few calibration samples for Mondrian sets: {counts.tolist()}")
    m = ML_CAL + ML_TEST
    ml_probs = rng.beta(rng.uniform(0.3, 1.5, NUM_LABELS), rng.uniform(0.8, 3.0, NUM_LABELS), size=(m, NUM_LABELS))
    truth = rng.random((m, NUM_LABELS)) < ml_probs
    while (empty := ~truth.any(1)).any():
        truth[empty] = rng.random((int(empty.sum()), NUM_LABELS)) < ml_probs[empty]
    levels = np.linspace(0.0, 1.0, NUM_LEVELS)
    return {
        "probs_cal": probs[:N_CAL], "labels_cal": labels[:N_CAL], "probs_test": probs[N_CAL:],
        "labels_test": labels[N_CAL:], "ml_probs_cal": ml_probs[:ML_CAL], "ml_truth_cal": truth[:ML_CAL],
        "ml_probs_test": ml_probs[ML_CAL:], "ml_truth_test": truth[ML_CAL:], "levels": levels,
    }  # fmt: skip


# --------------------------------------------------------------------------------------------- MAPIE side (child)
def ensure_mapie() -> Path:
    """Install ``mapie==1.6.0`` (no dependencies) into the cache folder once; never into the project's venv."""
    if (CACHE / f"mapie-{MAPIE_VERSION}.dist-info").is_dir():
        return CACHE
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=CACHE.parent, prefix=".mapie-"))  # same file system: os.replace is atomic
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(tmp),
             f"mapie=={MAPIE_VERSION}"],
            check=True,
        )  # fmt: skip
        os.replace(tmp, CACHE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return CACHE


def _mapie_sets(d: dict[str, np.ndarray], out: dict[str, Any]) -> None:
    """LAC / APS / RAPS marginal sets, LAC / APS Mondrian sets, and the randomized-APS quantile (MAPIE)."""
    import mapie
    from mapie.classification import SplitConformalClassifier
    from mapie.conformity_scores import RAPSConformityScore
    from sklearn.base import BaseEstimator, ClassifierMixin

    class FixedProbs(ClassifierMixin, BaseEstimator):
        """A prefit "classifier" whose probabilities are the first C columns of X (the last is the row index)."""

        def fit(self, x: Any, y: Any = None) -> FixedProbs:
            self.classes_ = np.arange(NUM_CLASSES)
            return self

        def predict_proba(self, x: Any) -> np.ndarray:
            return np.asarray(x)[:, :NUM_CLASSES]

        def predict(self, x: Any) -> np.ndarray:
            return self.predict_proba(x).argmax(1)

    class NoRandomization(np.random.RandomState):
        """``uniform()`` returns ``low``: MAPIE's APS/RAPS calibration score becomes the non-randomized one."""

        def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None) -> Any:
            return np.full(size, low, dtype=np.float64) if size is not None else float(low)

    out["mapie_file"], out["mapie_version"] = mapie.__file__, mapie.__version__
    xc = np.column_stack([d["probs_cal"], np.arange(N_CAL)])
    xt = np.column_stack([d["probs_test"], np.arange(N_TEST)])
    levels = [1 - a for a in SET_ALPHAS]

    def run(score: Any, x: np.ndarray, y: np.ndarray, random_state: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        clf = SplitConformalClassifier(FixedProbs().fit(None), confidence_level=levels, conformity_score=score,
                                       prefit=True, random_state=random_state)  # fmt: skip
        clf.conformalize(x, y)
        _, sets = clf.predict_set(xt, conformity_score_params={"include_last_label": False})
        return clf, np.asarray(sets, dtype=bool), np.asarray(clf._mapie_classifier.quantiles_, dtype=np.float64)

    yc = d["labels_cal"]
    for name in ("lac", "aps"):
        clf, out[f"{name}_sets"], out[f"{name}_q"] = run(name, xc, yc, NoRandomization(0))
        inner, scores = clf._mapie_classifier, clf._mapie_classifier.conformity_scores_
        sets_m, q_m = np.zeros((N_TEST, NUM_CLASSES, len(SET_ALPHAS)), bool), np.zeros((NUM_CLASSES, len(SET_ALPHAS)))
        for c in range(NUM_CLASSES):  # Mondrian: MAPIE's quantile and set code on the scores of class c only
            inner.conformity_scores_ = scores[yc == c]
            _, sets_c = clf.predict_set(xt, conformity_score_params={"include_last_label": False})
            sets_m[:, c], q_m[c] = np.asarray(sets_c, dtype=bool)[:, c], inner.quantiles_
        out[f"{name}_mondrian_sets"], out[f"{name}_mondrian_q"] = sets_m, q_m
    clf, out["raps_sets"], out["raps_q"] = run(RAPSConformityScore(), xc, yc, NoRandomization(0))
    score = clf._mapie_classifier.conformity_score_function_
    held_out = np.asarray(score.X_raps)[:, NUM_CLASSES].astype(np.int64)
    out["raps_kept"] = np.setdiff1d(np.arange(N_CAL), held_out)
    out["raps_k"] = np.atleast_1d(np.asarray(score.k_star, dtype=np.float64))
    out["raps_lambda"] = np.broadcast_to(np.asarray(score.lambda_star, dtype=np.float64), (len(SET_ALPHAS),)).copy()
    clf, _, out["aps_random_q"] = run("aps", xc, yc, 0)
    out["aps_random_scores"] = np.asarray(clf.conformity_scores, dtype=np.float64).ravel()


def _mapie_risk_control(d: dict[str, np.ndarray], out: dict[str, Any]) -> None:
    """Recall/CRC and precision/LTT with MAPIE's multi-label controller; HB p-values and fixed-sequence LTT."""
    from mapie.risk_control import MultiLabelClassificationController
    from mapie.risk_control._base_controller import ltt_procedure
    from mapie.risk_control.methods import compute_hoeffding_bentkus_p_value

    levels, xc, xt = d["levels"], d["ml_probs_cal"], d["ml_probs_test"]
    yc = d["ml_truth_cal"].astype(np.int64)
    t0 = time.perf_counter()
    crc = MultiLabelClassificationController(
        lambda x: x, risk="recall", method="crc", target_level=[1 - a for a in CRC_ALPHAS], predict_params=levels
    ).calibrate(xc, yc)
    out["crc_lambda"], out["crc_sets"] = np.asarray(crc.best_predict_param), np.asarray(crc.predict(xt), bool)
    out["crc_risks"], out["crc_r_hat"], out["crc_r_hat_plus"] = crc._risks, crc.r_hat, crc.r_hat_plus
    prec = MultiLabelClassificationController(
        lambda x: x, risk="precision", method="ltt", target_level=[1 - a for a in LTT_ALPHAS],
        confidence_level=1 - DELTA, predict_params=levels,
    ).calibrate(xc, yc)  # fmt: skip
    out["prec_risks"], out["prec_lambda_holm"] = prec._risks, np.asarray(prec.best_predict_param, np.float64)
    out["controller_seconds"] = time.perf_counter() - t0
    curve, n = d["fdr_upper_mean"], ML_CAL
    for i, alpha in enumerate(LTT_ALPHAS):
        out[f"fst_pvalues_{i}"] = compute_hoeffding_bentkus_p_value(curve, n, alpha)[:, 0]
        valid, _ = ltt_procedure(curve[None], np.array([[alpha]]), DELTA, np.full((1, len(curve)), float(n)),
                                 fwer_method="fixed_sequence")  # fmt: skip
        out[f"fst_index_{i}"] = np.array(min(valid[0]) if valid[0] else -1)
    out["fnr_pvalues"] = compute_hoeffding_bentkus_p_value(d["fnr_mean"], n, 0.1)[:, 0]


def mapie_child(in_path: str, out_path: str) -> None:
    """The MAPIE side: reads the inputs, writes every MAPIE result to ``out_path`` (``.npz``)."""
    import warnings

    warnings.filterwarnings("ignore")
    d = dict(np.load(in_path))
    out: dict[str, Any] = {}
    _mapie_sets(d, out)
    _mapie_risk_control(d, out)
    meta = {"mapie_file": out.pop("mapie_file"), "mapie_version": out.pop("mapie_version")}
    np.savez(out_path, meta=np.array(json.dumps(meta)), **{k: np.asarray(v) for k, v in out.items()})


def run_mapie(d: dict[str, np.ndarray], folder: Path) -> dict[str, Any]:
    """Run :func:`mapie_child` in a fresh process with ``PYTHONPATH`` = the MAPIE cache folder."""
    cache = ensure_mapie()
    np.savez(folder / "in.npz", **d)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(cache), *filter(None, [os.environ.get("PYTHONPATH")])]))
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--mapie-child", str(folder / "in.npz"), str(folder / "out.npz")],
        check=True, env=env, cwd=REPO,
    )  # fmt: skip
    with np.load(folder / "out.npz") as z:
        out: dict[str, Any] = {k: z[k] for k in z.files}
    out.update(json.loads(str(out.pop("meta"))), child_seconds=time.perf_counter() - t0)
    return out


# --------------------------------------------------------------------------------------------- softlabels side
def softlabels_curves(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-case FNR and FDR curves of the multi-label calibration samples (each sample a case, labels its voxels)."""
    import torch

    from softlabels.conformal import case_curves
    from softlabels.conformal.risk_curves import monotone_upper

    probs = torch.from_numpy(d["ml_probs_cal"])[:, None]
    truth = torch.from_numpy(d["ml_truth_cal"].astype(np.float64))[:, None]
    fnr = case_curves(probs, truth, loss="fnr", num_levels=NUM_LEVELS)
    fdr = case_curves(probs, truth, loss="fdr", num_levels=NUM_LEVELS)
    upper = monotone_upper(fdr["loss"], loss="fdr")
    return {
        "fnr": fnr["loss"][:, 0].numpy(), "fdr": fdr["loss"][:, 0].numpy(), "volume": fdr["volume"][:, 0].numpy(),
        "fnr_mean": fnr["loss"][:, 0].mean(0).numpy(), "fdr_upper_mean": upper[:, 0].mean(0).numpy(),
    }  # fmt: skip


def _set_row(name: str, alpha: float, ours: np.ndarray, theirs: np.ndarray, q_ours: Any, q_theirs: Any,
             scores: np.ndarray, top_rule: bool) -> dict[str, Any]:  # fmt: skip
    """One classification comparison (counts of identical sets under three rules, |Δq̂|, near ties).

    ``exact``: our sets (APS/RAPS: ∪ the most probable label, MAPIE's rule); ``judged``: the same with MAPIE's
    tolerance, ``score ≤ q̂ + 1e-8``, applied to our scores and q̂; ``raw``: our sets as they are.
    """
    q_o, q_t = np.atleast_1d(np.asarray(q_ours, np.float64)), np.atleast_1d(np.asarray(q_theirs, np.float64))
    q_cmp = q_o if q_o.size == 1 else q_o[None, :]
    exact, judged = ours.copy(), scores <= q_cmp + MAPIE_EPS
    if top_rule:
        top = scores.argmin(1)  # the label of smallest score is the most probable one
        exact[np.arange(len(ours)), top] = judged[np.arange(len(ours)), top] = True
    return {
        "case": name, "alpha": alpha, "samples": len(ours), "identical": int((judged == theirs).all(1).sum()),
        "identical_exact": int((exact == theirs).all(1).sum()), "identical_raw": int((ours == theirs).all(1).sum()),
        "our_empty_sets": int((~ours.any(1)).sum()), "max_abs_q_diff": float(np.abs(q_o - q_t).max()),
        "q_softlabels": q_o.tolist(), "near_ties": int((np.abs(scores - q_cmp) <= MAPIE_EPS).sum()),
        "set_size_sum": int(theirs.sum()), "top_label_rule": top_rule,
    }  # fmt: skip


def compare_sets(d: dict[str, np.ndarray], m: dict[str, Any]) -> list[dict[str, Any]]:
    """softlabels' prediction sets against MAPIE's, every case and α."""
    import torch

    from softlabels.conformal import class_scores, conformal_quantile, fit_prediction_sets

    pc, yc, pt = (torch.from_numpy(d[k]) for k in ("probs_cal", "labels_cal", "probs_test"))
    rows = []
    for i, alpha in enumerate(SET_ALPHAS):
        for method in ("lac", "aps"):
            for mondrian in (False, True):
                key = f"{method}_mondrian" if mondrian else method
                fit = fit_prediction_sets(pc, yc, method=method, alpha=alpha, mondrian=mondrian)
                scores = class_scores(pt, method=method).numpy()
                rows.append(_set_row(key, alpha, fit.predict(pt).numpy(), m[f"{key}_sets"][..., i], fit.quantiles,
                                     m[f"{key}_q"][..., i], scores, method != "lac"))  # fmt: skip
        k_reg, lam = int(m["raps_k"][i]), float(m["raps_lambda"][i])
        kept = torch.from_numpy(m["raps_kept"])
        fit = fit_prediction_sets(pc[kept], yc[kept], method="raps", alpha=alpha, k_reg=k_reg, lambda_reg=lam)
        scores = class_scores(pt, method="raps", k_reg=k_reg, lambda_reg=lam).numpy()
        row = _set_row("raps", alpha, fit.predict(pt).numpy(), m["raps_sets"][..., i], fit.quantiles,
                       m["raps_q"][i], scores, True)  # fmt: skip
        rows.append(row | {"k_reg": k_reg, "lambda_reg": lam, "n_calibration": int(kept.numel())})
        q_ours = conformal_quantile(torch.from_numpy(m["aps_random_scores"]), alpha)
        rows.append({
            "case": "aps_randomized_quantile", "alpha": alpha,
            "max_abs_q_diff": abs(q_ours - float(m["aps_random_q"][i])),
            "q_softlabels": [q_ours], "note": "conformal_quantile on MAPIE's own randomized APS calibration scores",
        })  # fmt: skip
    return rows


def _max_rel(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Largest relative difference (p-values may be tiny; exact zeros on both sides count as equal)."""
    return float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-300)))


def compare_risk_control(d: dict[str, np.ndarray], m: dict[str, Any], c: dict[str, np.ndarray]) -> dict[str, Any]:
    """CRC (recall / FNR) and LTT (precision / FDR) of softlabels against MAPIE on the multi-label data."""
    import torch

    from softlabels.conformal import SegmentationRiskControl, crc_index, hoeffding_bentkus_pvalue, ltt_index

    levels, n = d["levels"], ML_CAL
    pt = d["ml_probs_test"]
    on_grid = int(np.isin(np.concatenate([d["ml_probs_cal"], pt]), levels).sum())
    control = SegmentationRiskControl(1, loss="fnr", num_levels=NUM_LEVELS)
    control.update(torch.from_numpy(d["ml_probs_cal"])[:, None], torch.from_numpy(d["ml_truth_cal"] * 1.0)[:, None])
    risk = torch.from_numpy(c["fnr_mean"])[None]
    crc_rows = []
    for i, alpha in enumerate(CRC_ALPHAS):
        idx = int(crc_index(risk, n, alpha, loss="fnr")[0])
        t_stream = control.fit(alpha, procedure="crc").thresholds[0]
        ours = pt >= levels[idx]
        bound = m["crc_r_hat_plus"]
        crc_rows.append({
            "alpha": alpha, "threshold_softlabels": float(levels[idx]), "threshold_streaming": float(t_stream),
            "lambda_mapie": float(m["crc_lambda"][i]),
            "same_threshold": bool(levels[idx] == m["crc_lambda"][i] == t_stream),
            "identical_sets": float((ours == m["crc_sets"][..., i]).all(1).mean()),
            "min_abs_bound_minus_alpha": float(np.abs(bound - alpha).min()), "mean_set_size": float(ours.sum(1).mean()),
        })  # fmt: skip
    fdr_up = torch.from_numpy(c["fdr_upper_mean"])[None]
    ltt_rows = []
    for i, alpha in enumerate(LTT_ALPHAS):
        idx = int(ltt_index(fdr_up, n, alpha, DELTA, loss="fdr")[0])
        p_ours = hoeffding_bentkus_pvalue(fdr_up[0], n, alpha).numpy()
        p_mapie = m[f"fst_pvalues_{i}"]
        fst = int(m[f"fst_index_{i}"])
        ours = pt >= levels[idx]
        ltt_rows.append({
            "alpha": alpha, "delta": DELTA, "threshold_softlabels": float(levels[idx]),
            "lambda_mapie_fixed_sequence": float(levels[fst]) if fst >= 0 else None, "same_threshold": idx == fst,
            "identical_sets": float((ours == (pt > levels[fst])).all(1).mean()) if fst >= 0 else 0.0,
            "max_rel_pvalue_diff": _max_rel(p_ours, p_mapie),
            "lambda_mapie_controller_holm": None if np.isnan(holm := float(m["prec_lambda_holm"][i])) else holm,
            "mean_set_size": float(ours.sum(1).mean()),
            "mapie_min_mean_precision_risk": float(m["prec_risks"].mean(0).min()),
        })  # fmt: skip
    nonempty = c["volume"] > 0
    p_fnr = hoeffding_bentkus_pvalue(torch.from_numpy(c["fnr_mean"]), n, 0.1).numpy()
    return {
        "crc": crc_rows, "ltt": ltt_rows, "probabilities_on_grid": on_grid,
        "max_abs_fnr_loss_diff": float(np.abs(c["fnr"] - m["crc_risks"]).max()),
        "max_abs_mean_fnr_diff": float(np.abs(c["fnr_mean"] - m["crc_r_hat"]).max()),
        "max_abs_fdr_loss_diff_nonempty": float(np.abs(c["fdr"] - m["prec_risks"])[nonempty].max()),
        "empty_sets_mapie_1_softlabels_0": int(((~nonempty) & (m["prec_risks"] == 1) & (c["fdr"] == 0)).sum()),
        "empty_sets": int((~nonempty).sum()), "entries": int(nonempty.size),
        "max_rel_pvalue_diff_fnr": _max_rel(p_fnr, m["fnr_pvalues"]),
    }  # fmt: skip


# --------------------------------------------------------------------------------------------- judge and report
P_TOL = 1e-9  # relative p-value difference allowed (exp/log and binomial CDF in torch vs NumPy/SciPy)
LOSS_TOL = 1e-12
COUNTS = ("samples", "identical", "identical_exact", "identical_raw", "our_empty_sets", "near_ties", "set_size_sum")
RISK_MAX = ("max_abs_fnr_loss_diff", "max_abs_mean_fnr_diff", "max_abs_fdr_loss_diff_nonempty",
            "max_rel_pvalue_diff_fnr")  # fmt: skip


def pool_sets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sum the counts of every (case, α) over the seeds; keep the largest |Δq̂|."""
    pooled: dict[tuple[str, float], dict[str, Any]] = {}
    for r in rows:
        p = pooled.setdefault((r["case"], r["alpha"]), {"case": r["case"], "alpha": r["alpha"], "max_abs_q_diff": 0.0})
        p["max_abs_q_diff"] = max(p["max_abs_q_diff"], r["max_abs_q_diff"])
        for key in COUNTS:
            if key in r:
                p[key] = p.get(key, 0) + r[key]
    return list(pooled.values())


def judge(sets: list[dict[str, Any]], risks: list[dict[str, Any]]) -> list[str]:
    """Every judged agreement that was missed (empty list: all met)."""
    misses = []
    for r in sets:
        if r["max_abs_q_diff"] > Q_TOL:
            misses.append(f"{r['case']} α={r['alpha']}: |Δq̂| = {r['max_abs_q_diff']:.3e}")
        if "identical" in r and r["identical"] < r["samples"]:
            misses.append(f"{r['case']} α={r['alpha']}: {r['identical']} of {r['samples']} sets identical")
    for risk in risks:
        seed = risk["seed"]
        for r in risk["crc"] + risk["ltt"]:
            if not r["same_threshold"] or r["identical_sets"] < 1.0:
                misses.append(f"seed {seed} α={r['alpha']}: risk-control thresholds or test sets differ")
            if r.get("max_rel_pvalue_diff", 0.0) > P_TOL:
                misses.append(f"seed {seed} ltt α={r['alpha']}: p-values differ by {r['max_rel_pvalue_diff']:.3e}")
        for key in RISK_MAX:
            if risk[key] > (P_TOL if "pvalue" in key else LOSS_TOL):
                misses.append(f"seed {seed}: {key} = {risk[key]:.3e}")
    return misses


def _pct(count: int, total: int) -> str:
    return f"{100 * count / total:.2f} %"


def _sets_md(sets: list[dict[str, Any]], raw_rows: list[dict[str, Any]]) -> list[str]:
    rows = [
        [r["case"], r["alpha"], _pct(r["identical"], r["samples"]), _pct(r["identical_exact"], r["samples"]),
         _pct(r["identical_raw"], r["samples"]), r["our_empty_sets"], r["near_ties"], f"{r['max_abs_q_diff']:.2e}",
         f"{r['set_size_sum'] / r['samples']:.3f}"]
        for r in sets if "identical" in r
    ]  # fmt: skip
    raps = [f"seed {r['seed']}, α={r['alpha']}: k_reg={r['k_reg']}, λ={r['lambda_reg']}, n={r['n_calibration']}"
            for r in raw_rows if r["case"] == "raps"]  # fmt: skip
    rq = max(r["max_abs_q_diff"] for r in sets if r["case"] == "aps_randomized_quantile")
    header = ["case", "α", "identical (judged)", "exact rule", "raw", "our empty sets", "near ties", "max |Δq̂|",
              "mean size"]  # fmt: skip
    return [
        "Pooled over the seeds. **identical (judged)**: our scores and q̂ under MAPIE's set rule (`score ≤ q̂ + 1e-8`; "
        "APS/RAPS: ∪ the most probable label); **exact rule**: our sets ∪ the most probable label (APS/RAPS), "
        "without the tolerance; **raw**: our sets as they are; **near ties**: test scores within 1e-8 of q̂.", "",
        md_table(header, rows),
        f"RAPS parameters chosen by MAPIE (and given to softlabels): {'; '.join(raps)}.", "",
        f"Quantile convention on MAPIE's own randomized APS calibration scores: max |Δq̂| = {rq:.2e}.", "",
    ]  # fmt: skip


def _risk_md(risks: list[dict[str, Any]]) -> list[str]:
    crc = [[k["seed"], r["alpha"], f"{r['threshold_softlabels']:.2f}", f"{r['threshold_streaming']:.2f}",
            f"{r['lambda_mapie']:.2f}", f"{100 * r['identical_sets']:.2f} %", f"{r['min_abs_bound_minus_alpha']:.2e}",
            f"{r['mean_set_size']:.3f}"] for k in risks for r in k["crc"]]  # fmt: skip
    ltt = [[k["seed"], r["alpha"], f"{r['threshold_softlabels']:.2f}", fmt_level(r["lambda_mapie_fixed_sequence"]),
            f"{100 * r['identical_sets']:.2f} %", f"{r['max_rel_pvalue_diff']:.2e}",
            fmt_level(r["lambda_mapie_controller_holm"]), f"{r['mapie_min_mean_precision_risk']:.3f}",
            f"{r['mean_set_size']:.3f}"] for k in risks for r in k["ltt"]]  # fmt: skip
    worst = {key: max(k[key] for k in risks) for key in RISK_MAX}
    empty, entries = sum(k["empty_sets"] for k in risks), sum(k["entries"] for k in risks)
    return [
        "Recall / FNR with CRC. softlabels: `crc_index` on the mean of `case_curves(loss=\"fnr\")` and, as a check, "
        "the streaming `SegmentationRiskControl(1, num_levels=101)`; MAPIE: `MultiLabelClassificationController("
        "risk=\"recall\", method=\"crc\", predict_params=levels)`; test sets: ours `p ≥ t`, MAPIE's `predict`.", "",
        md_table(["seed", "α", "t softlabels", "t streaming", "λ MAPIE", "identical test sets", "min |bound − α|",
                  "mean size"], crc),
        f"Per-sample FNR vs MAPIE's recall risk, all (sample, λ): max |Δ| = {worst['max_abs_fnr_loss_diff']:.2e}; "
        f"mean over samples: {worst['max_abs_mean_fnr_diff']:.2e}; Hoeffding–Bentkus p-values of the FNR curve: "
        f"max relative Δ = {worst['max_rel_pvalue_diff_fnr']:.2e}. Probabilities exactly on a level: "
        f"{sum(k['probabilities_on_grid'] for k in risks)}.", "",
        f"Precision / FDR with Learn-then-Test, δ = {DELTA}. softlabels: `ltt_index` on the mean per-case monotone "
        "upper bound of the FDR; MAPIE: `ltt_procedure(fwer_method=\"fixed_sequence\")` with its Hoeffding–Bentkus "
        "p-values on the same curve, test sets by MAPIE's rule `p > λ`. The last three columns are MAPIE's own "
        "controller (`risk=\"precision\"`, Bonferroni–Holm, empty set = risk 1), for information.", "",
        md_table(["seed", "α", "t softlabels", "λ MAPIE fixed-sequence", "identical test sets",
                  "max rel. Δ p-value", "λ MAPIE controller", "its min mean risk", "mean size"], ltt),
        f"Per-sample FDR vs MAPIE's precision risk where the predicted set is not empty: max |Δ| = "
        f"{worst['max_abs_fdr_loss_diff_nonempty']:.2e}. Empty sets: {empty} of {entries} (sample, λ) pairs — MAPIE "
        f"counts risk 1 there, softlabels FDR 0.", "",
    ]  # fmt: skip


def fmt_level(x: float | None) -> str:
    return "—" if x is None or x != x else f"{x:.2f}"


def markdown(payload: dict[str, Any]) -> str:
    """The Markdown report."""
    cfg, ok = payload["config"], payload["passed"]
    text = "\n".join([
        "# Agreement with MAPIE", "",
        f"`python benchmarks/conformal_mapie.py` — MAPIE {payload['mapie']['version']} from "
        f"`{payload['mapie']['path']}` in a child process, softlabels in the parent, the same float64 inputs; "
        f"seeds {', '.join(map(str, cfg['seeds']))}.", "",
        f"## Classification sets (C = {NUM_CLASSES}; {N_CAL} calibration / {N_TEST} test samples per seed)", "",
        *_sets_md(payload["sets"], payload["set_rows"]),
        f"## Multi-label risk control ({NUM_LABELS} labels; {ML_CAL} calibration / {ML_TEST} test samples per "
        f"seed; {NUM_LEVELS} levels)", "",
        *_risk_md(payload["risk_control"]),
        "## Definitions that differ in MAPIE 1.6.0", "",
        *[f"- {text}" for text in DIFFERENCES], "",
        f"**Agreement: {'every judged row identical' if ok else 'MISSED — ' + '; '.join(payload['misses'])}.**", "",
        machine_md(payload["machine"]),
    ])  # fmt: skip
    return text


def run_seed(seed: int, folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Both sides on the data of one seed: set rows, risk-control comparison, MAPIE run info."""
    d = make_data(seed)
    curves = softlabels_curves(d)
    m = run_mapie(d | {"fnr_mean": curves["fnr_mean"], "fdr_upper_mean": curves["fdr_upper_mean"]}, folder)
    sets = [r | {"seed": seed} for r in compare_sets(d, m)]
    risk = compare_risk_control(d, m, curves) | {"seed": seed}
    info = {"version": m["mapie_version"], "path": str(Path(m["mapie_file"]).parent.parent.relative_to(REPO)),
            "child_seconds": m["child_seconds"], "controller_seconds": float(m["controller_seconds"])}  # fmt: skip
    return sets, risk, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mapie-child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mapie_child is not None:
        mapie_child(*args.mapie_child)
        return 0
    t0 = time.perf_counter()
    set_rows, risks, infos = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            sets, risk, info = run_seed(seed, Path(folder))
            set_rows += sets
            risks.append(risk)
            infos.append(info)
    pooled = pool_sets(set_rows)
    misses = judge(pooled, risks)
    payload = {
        "goal": "identical sets / thresholds on every judged row, |Δq̂| ≤ 1e-12", "passed": not misses,
        "misses": misses, "config": {"seeds": args.seeds, "num_classes": NUM_CLASSES, "n_cal": N_CAL,
        "n_test": N_TEST, "set_alphas": SET_ALPHAS, "num_labels": NUM_LABELS, "ml_cal": ML_CAL, "ml_test": ML_TEST,
        "crc_alphas": CRC_ALPHAS, "ltt_alphas": LTT_ALPHAS, "delta": DELTA, "num_levels": NUM_LEVELS,
        "mapie_eps": MAPIE_EPS, "q_tol": Q_TOL, "p_tol": P_TOL, "loss_tol": LOSS_TOL},
        "mapie": infos[0] | {"runs": infos}, "sets": pooled, "set_rows": set_rows, "risk_control": risks,
        "differences": DIFFERENCES, "seconds": time.perf_counter() - t0, "machine": machine_info(),
    }  # fmt: skip
    text = markdown(payload) + "\n"
    write_results("conformal_mapie", payload, text)
    print(text)
    return 0 if not misses else 1


if __name__ == "__main__":
    raise SystemExit(main())
