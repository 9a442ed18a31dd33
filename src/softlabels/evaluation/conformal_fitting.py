"""Fitting conformal thresholds from prediction folders, one case at a time (``softlabels conformal --probs``).

The folders are those of ``softlabels score`` (:mod:`softlabels.data.prediction_files`): probability maps (NIfTI
``(x, y, z, C)`` or nnU-Net ``.npz``) matched by file name stem with label maps, one sub-folder per rater, or soft
probability maps. Each case is read, its per-level risk curve added to the fixed-size state of a
:class:`~softlabels.conformal.SegmentationRiskControl` and dropped, so memory does not grow with the number or the
size of the cases (``benchmarks/conformal_memory.py``). The truth of a structure follows
:func:`~softlabels.evaluation.references.risk_reference` (each rater, their union or majority, the soft reference,
the label); docs/conformal.md defines the guarantee.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from softlabels._options import look_up_option
from softlabels.conformal import ConformalThresholds, SegmentationRiskControl
from softlabels.data.prediction_files import CaseFiles, ReferenceKind, list_cases, load_case
from softlabels.evaluation.references import RISK_REFERENCES, References, resolve_risk_reference, risk_reference

__all__ = ["fit_thresholds_from_folders", "structure_names"]


def structure_names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """The names of the structures (foreground classes) of ``num_classes`` channels: given names or ``"1"``, ....

    Example:
        >>> structure_names(3, None), structure_names(1, ["background", "tumour"])
        (['1', '2'], ['tumour'])
    """
    count = max(num_classes, 2)
    names = list(class_names) if class_names is not None else [str(c) for c in range(count)]
    if len(names) != count:
        raise ValueError(f"`class_names` must be {count} names (0: background); got {len(names)}: {names!r}.")
    return names[1:]


def _case_references(files: CaseFiles, kind: ReferenceKind, rule: str, num_classes: int | None) -> tuple:
    """``(probs, References)`` of one case; the raters' own maps are read when the rule needs them (``each``)."""
    if kind == "raters" and rule in ("each", "auto"):
        maps = []
        probs = None
        for path in files.reference:
            case = load_case(CaseFiles(files.name, files.probs, (path,)), kind="labels", num_classes=num_classes)
            probs = case.probs if probs is None else probs
            maps.append(case.target)
        raters = torch.stack(maps, 1)  # (1, R, *spatial)
        return probs, References(raters[:, 0], raters=raters)
    case = load_case(files, kind=kind, num_classes=num_classes)
    return case.probs, References.from_target(case.target)


def fit_thresholds_from_folders(
    probs_dir: str | Path,
    reference_dir: str | Path,
    *,
    kind: ReferenceKind = "labels",
    alpha: float = 0.1,
    loss: str = "fnr",
    procedure: str = "crc",
    delta: float = 0.1,
    reference: str = "auto",
    num_levels: int = 1001,
    class_names: Sequence[str] | None = None,
) -> ConformalThresholds:
    """Per-structure thresholds controlling the FNR (or FDR) at ``alpha`` from a folder of calibration cases.

    Args:
        probs_dir: the probability maps, as ``softlabels score`` takes them.
        reference_dir: the references (label maps, one sub-folder per rater, or soft maps).
        kind: ``"labels"``, ``"raters"`` or ``"ref_probs"``.
        alpha: the risk level.
        loss: ``"fnr"`` or ``"fdr"``.
        procedure: ``"crc"`` (E[risk] ≤ α) or ``"ltt"`` (P(risk ≤ α) ≥ 1 − ``delta``).
        delta: LTT's tolerance.
        reference: :data:`~softlabels.evaluation.references.RISK_REFERENCES` (``auto``: each rater for ``raters``
            folders, the soft map for ``ref_probs``, the label map for ``labels``).
        num_levels: threshold levels in [0, 1] (exact on this grid).
        class_names: one name per class (0: background), for the JSON.

    Raises:
        ValueError: unreadable or mismatched files (named), an unknown option, too few cases for ``alpha``.

    Example:
        >>> from softlabels.data.prediction_files import example_folder
        >>> root = example_folder()
        >>> fitted = fit_thresholds_from_folders(root / "probs", root / "raters", kind="raters", alpha=0.25)
        >>> fitted.structures, fitted.reference, fitted.n_calibration
        (('1', '2'), 'each', 4)
    """
    rule = look_up_option("reference", reference, RISK_REFERENCES, where="softlabels conformal")
    cases = list_cases(probs_dir, reference_dir, kind=kind)
    control: SegmentationRiskControl | None = None
    used = rule
    for files in cases:
        probs, refs = _case_references(files, kind, rule, None if control is None else control.num_classes)
        used = resolve_risk_reference(refs, rule)
        if control is None:
            control = SegmentationRiskControl(probs.shape[1], loss=loss, num_levels=num_levels)
        control.update(probs, risk_reference(refs, probs.shape[1], used))
    if control is None:
        raise ValueError(f"no calibration cases in {str(probs_dir)!r}.")
    names = structure_names(control.num_classes, class_names)
    return control.fit(alpha, procedure=procedure, delta=delta, structures=names, reference=used)
