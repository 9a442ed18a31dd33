"""The benchmark's suites: which methods run on which embedded data, at which size, with which seeds.

A *benchmark* (``quick``, ``default``, ``full``) is a list of :class:`Suite`; a suite is one data set and task with a
base run config and its methods (cells); every cell runs at every seed of the suite. ``quick`` is a smoke run of the
code paths (≤ 5 minutes here); ``default`` compares every method on the embedded data at CPU scale (≤ 30 minutes on
2 cores); ``full`` uses the seed papers' scales (the configs of ``configs/full``; for users with GPUs and their data).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from softlabels._options import look_up_option
from softlabels.bench.benchmark_run import RunSpec

__all__ = ["BENCHMARKS", "DEFAULT_SHIFTS", "Cell", "Suite", "full_config_dir", "get_benchmark", "plan_runs"]


@dataclass(frozen=True)
class Cell:
    """One method of a suite: a report ``label``, the registry ``method`` name and its options.

    Example:
        >>> Cell("ct_0.6", "confidence_threshold", {"tau": 0.6}).method
        'confidence_threshold'
    """

    label: str
    method: str
    options: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Suite:
    """A data set and task, a base config, the cells, the seeds and the baseline cell for the comparisons.

    Example:
        >>> suite = get_benchmark("quick")[0]
        >>> suite.baseline in [c.label for c in suite.cells]
        True
    """

    name: str
    title: str
    task: str
    base: Mapping[str, Any]
    cells: Sequence[Cell]
    seeds: Sequence[int] = (0, 1, 2)
    baseline: str = "hard"
    description: str = ""
    claims: Sequence[Mapping[str, Any]] = ()
    shifts: Sequence[str] = ()  # test-time shifts ("noise_3", ...; softlabels.data.shifts) evaluated at shift_seeds
    shift_seeds: Sequence[int] = (0,)
    failure_below: float | None = None  # a failing case's quality (None: bench.decision_report.FAILURE_BELOW)


_UNET = {"name": "unet", "options": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}}
_MOBILENET = {"name": "mobilenet_v2", "options": {"width_mult": 0.25}}
_ADAMW = {"name": "adamw", "lr": 0.003, "weight_decay": 0.0001}  # SGD 0.05 did not learn at this size (top-1 0.21)
# Segmentation: AdamW 0.01 with a cosine schedule reaches the validation-NLL plateau in half the epochs of a constant
# 0.003 (synthetic: 15 epochs instead of ~35; MNI152: 36 instead of > 40). Validation after every epoch gives the
# learning curves (bench.learning_curves); it computes only the curves' Dice and NLL (the bench scores the test split
# with every metric). The measured curves behind each choice are in docs/bench.md.
_SEGMENTATION_TRAINING = {
    "optimizer": {"name": "adamw", "lr": 0.01}, "scheduler": {"name": "cosine"},
    "evaluation": {"metrics": ["dice", "nll"]},
}  # fmt: skip


def _trainer(epochs: int, log_every: int) -> dict[str, Any]:
    return {
        "max_epochs": epochs, "accelerator": "cpu", "deterministic": True, "log_every_n_steps": log_every,
        "check_val_every_n_epoch": 1,
    }  # fmt: skip


VLS_GENERATOR: dict[str, Any] = {"max_epochs": 30, "channels": [8, 16, 32], "features": 8, "lr": 0.003}
SEGMENTATION_CELLS: tuple[Cell, ...] = (
    Cell("hard", "hard", note="one rater's mask"),
    Cell("hard_majority", "raters_majority", note="majority vote of the raters"),
    Cell("ls", "ls"),
    Cell("svls", "svls"),
    Cell("raters_mean", "raters_mean"),
    Cell("raters_svls", "raters_svls"),
    Cell("ct_0.5", "confidence_threshold", {"tau": 0.5}),
    Cell("ct_0.6", "confidence_threshold", {"tau": 0.6}),
    Cell("ct_0.8", "confidence_threshold", {"tau": 0.8}),
    Cell("conf_soft", "confidence_soft"),
    Cell("conf_weighted", "confidence_weighted"),
    Cell("focal", "focal"),
    Cell("mbls", "mbls"),
    Cell("nacl", "nacl"),
    Cell("dice_ce", "dml", {"source": "raters_mean"}, note="soft-correct Dice (DML) + CE on the rater mean"),
    Cell("vls", "vls", {"generator": VLS_GENERATOR}, note="CALSeg: cVAE soft labels (stage 1 trained per run)"),
)
CLASSIFICATION_CELLS: tuple[Cell, ...] = (
    Cell("hard", "hard"),
    Cell("ls", "ls"),
    Cell("ols", "ols"),
    Cell("tfkd", "tfkd"),
    Cell("focal", "focal"),
    Cell("mbls", "mbls"),
    Cell("raters_soft", "raters_mean", note="soft label: the raters' class distribution"),
)
DEFAULT_SHIFTS: tuple[str, ...] = tuple(
    f"{kind}_{severity}"
    for kind in ("intensity", "contrast", "bias_field", "noise", "resolution")
    for severity in (1, 3, 5)
)
"""The test-time shifts of the default synthetic-segmentation suite (seed 0 of every method; softlabels.data.shifts).

Example:
    >>> len(DEFAULT_SHIFTS), DEFAULT_SHIFTS[0]
    (15, 'intensity_1')
"""
_SYNTHETIC_SEG: dict[str, Any] = {"source": "synthetic_segmentation", "batch_size": 8}
_SYNTHETIC_SEG["options"] = {"shape": [48, 48], "num_cases": [96, 32, 100]}
_MNI = {
    "source": "mni152",
    "options": {"downsample": 2, "size_multiple": 16, "num_slabs": 6, "gap": 1},
    "batch_size": 4,  # 42 training slices: 11 steps per epoch
}
_SYNTHETIC_CLS: dict[str, Any] = {"source": "synthetic_classification", "batch_size": 64}
_SYNTHETIC_CLS["options"] = {"num_items": [1000, 250, 250], "size": 32}
_LIDC_SEG = {"build": {}, "spatial_dims": 2, "size": [32, 32], "num_raters": 3, "min_raters": 3}
CLAIMS: dict[str, list[dict[str, Any]]] = {
    "segmentation": [
        {"method": "svls", "metric": "ece", "better": "lower", "source": "SVLS (Islam & Glocker, IPMI 2021)"},
        {"method": "raters_mean", "metric": "ece", "better": "lower", "source": "multi-rater soft labels (QUBIQ)"},
        {"method": "ct_0.6", "metric": "dice", "better": "higher", "versus": "ct_0.5",
         "source": "ultrasound confidence labels (τ = 0.6 beats the naive 0.5)"},
        {"method": "nacl", "metric": "ece", "better": "lower", "source": "NACL (Murugesan et al., MICCAI 2023)"},
        {"method": "vls", "metric": "ece", "better": "lower", "versus": "svls",
         "source": "CALSeg (Guo et al., ICASSP 2024): VLS calibrates better than SVLS"},
        {"method": "vls", "metric": "ece_boundary", "better": "lower", "versus": "svls",
         "source": "CALSeg: VLS vs SVLS at the boundaries"},
        {"method": "vls", "metric": "dice", "better": "higher", "source": "CALSeg: better segmentation accuracy"},
    ],
    "classification": [
        {"method": "ols", "metric": "top1", "better": "higher", "source": "OLS (Zhang et al., TIP 2021)"},
        {"method": "tfkd", "metric": "top1", "better": "higher", "source": "Tf-KD (Yuan et al., CVPR 2020)"},
        {"method": "ls", "metric": "ece", "better": "lower", "source": "label smoothing (Müller et al., NeurIPS 2019)"},
        {"method": "focal", "metric": "ece", "better": "lower", "source": "focal loss (Mukhoti et al., NeurIPS 2020)"},
    ],
}  # fmt: skip


def _segmentation(name: str, title: str, data: dict[str, Any], cells: Sequence[Cell], epochs: int, **kw: Any) -> Suite:
    base = {
        "task": "segmentation",
        "data": data,
        "model": _UNET,
        **_SEGMENTATION_TRAINING,
        "trainer": _trainer(epochs, 10),
    }
    return Suite(name, title, "segmentation", base, tuple(cells), claims=CLAIMS["segmentation"], **kw)


def _classification(name: str, title: str, data: dict[str, Any], epochs: int, milestone: int, **kw: Any) -> Suite:
    """Step decay (÷10) at ``milestone``: at least half the epochs after it, so the curve settles before the end."""
    cells = kw.pop("cells", CLASSIFICATION_CELLS)
    base = {
        "task": "classification", "data": data, "model": _MOBILENET, "optimizer": kw.pop("optimizer", _ADAMW),
        "scheduler": {"name": "multistep", "milestones": [milestone], "gamma": 0.1},
        "trainer": _trainer(epochs, 10),
    }  # fmt: skip
    return Suite(name, title, "classification", base, tuple(cells), claims=CLAIMS["classification"], **kw)


def _pick(cells: Sequence[Cell], labels: Sequence[str]) -> tuple[Cell, ...]:
    return tuple(c for c in cells if c.label in labels)


def _default() -> list[Suite]:
    mni_cells: tuple[Cell, ...] = (Cell("soft", "soft_label", note="tissue probability maps"), Cell("hard", "hard"))
    mni_cells += _pick(SEGMENTATION_CELLS, ("ls", "svls", "vls"))
    lidc_cells = _pick(SEGMENTATION_CELLS, ("hard", "hard_majority", "ls", "svls", "raters_mean", "raters_svls"))
    return [
        _segmentation(
            "synthetic_segmentation", "Segmentation, synthetic 2D multi-rater data (known p*)",
            _SYNTHETIC_SEG, SEGMENTATION_CELLS, 15,
            description="5 simulated raters; the true label distribution p* is known, so the floor is known.",
            shifts=DEFAULT_SHIFTS, failure_below=0.95,  # Dice ≥ 0.94 in 95 % of the cases: see FAILURE_BELOW
        ),
        _segmentation(
            "mni152", "Segmentation, MNI152 2D slices (real tissue probability maps)",
            _MNI, mni_cells, 36, baseline="hard",
            description="One population template: T1 slices with grey/white-matter probability maps as soft targets.",
        ),
        _segmentation(
            "lidc_segmentation", "Segmentation, LIDC-IDRI radiologist masks (semi-synthetic images)",
            {"source": "lidc", "options": _LIDC_SEG, "batch_size": 16}, lidc_cells, 10, failure_below=0.9,
            description="Real masks of 3 radiologists per nodule; the images are rendered from the masks (not CT).",
        ),
        _classification(
            "synthetic_classification", "Classification, synthetic confusable classes (known p*)",
            _SYNTHETIC_CLS, 16, 8, optimizer={**_ADAMW, "lr": 0.006},
            description="8 classes in 4 confusable pairs; p* known.",
        ),
        _classification(
            "lidc_malignancy", "Classification, LIDC-IDRI malignancy ratings (real multi-rater soft labels)",
            {"source": "lidc", "options": {"build": {}}, "batch_size": 64}, 8, 4,
            description="Malignancy 1–5 of up to 4 radiologists; input: the consensus mask (not an image).",
        ),
    ]  # fmt: skip


def _quick() -> list[Suite]:
    """One seed, a few cells, tiny sizes: every code path of ``default`` in a few minutes."""
    out = []
    for suite in _default():
        data = copy.deepcopy(dict(suite.base["data"]))
        options = data["options"]
        if suite.name == "synthetic_segmentation":
            options["num_cases"] = [16, 8, 20]  # halves of 10: CRC at α = 0.1 needs ≥ 9 calibration cases
        if suite.name == "synthetic_classification":
            options["num_items"] = [128, 64, 64]
        if "build" in options:
            options["build"] = {"first": 60}
        quick = ("hard", "soft", "svls", "raters_mean", "raters_soft", "ls", "vls")
        cells = tuple(c for c in suite.cells if c.label in quick and (c.label != "vls" or suite.name == "mni152"))
        trainer = {**suite.base["trainer"], "max_epochs": 2}  # too short to converge: the report flags its runs
        base = {**suite.base, "data": data, "trainer": trainer}
        if suite.task == "classification":
            base["scheduler"] = {"name": "none"}
        shifts = ("noise_3",) if suite.shifts else ()
        out.append(
            Suite(
                suite.name, suite.title, suite.task, base, cells, (0,), suite.baseline, suite.description, suite.claims,
                shifts, failure_below=suite.failure_below,
            )
        )
    return out


def full_config_dir() -> Path:
    """Where the full-scale configs are: ``$SOFTLABELS_CONFIGS`` or the repository's ``configs/full``.

    Example:
        >>> full_config_dir().name
        'full'
    """
    given = os.environ.get("SOFTLABELS_CONFIGS")
    return Path(given) if given else Path(__file__).resolve().parents[3] / "configs" / "full"


def _full() -> list[Suite]:
    """The seed papers' setups at their scales: ``configs/full/*.yaml`` grouped by setup, with a hard-label cell.

    Files ``<setup>_<method>.yaml`` of one setup become the cells of one suite (``radimagenet_resnet50_{hard,ls,ols,
    tfkd}``, ``ultrasound_confidence_tau{0.5,...}``); a setup with one file gets a ``hard`` cell beside it. The data
    sections point at the users' folders (``/data/...``): edit them, or copy the configs and set
    ``$SOFTLABELS_CONFIGS``.
    """
    import yaml

    folder = full_config_dir()
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ValueError(
            f"the full benchmark reads configs/full/*.yaml; none in {str(folder)!r} (set SOFTLABELS_CONFIGS)."
        )
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for path in files:
        setup, _, variant = path.stem.rpartition("_")
        if not setup or path.stem.startswith(("brats", "qubiq")):
            setup, variant = path.stem, ""
        config = yaml.safe_load(path.read_text())
        label = f"ct_{variant[3:]}" if variant.startswith("tau") else (variant or config["method"]["name"])
        groups.setdefault(setup, []).append((label, config))
    suites = []
    for setup, members in groups.items():
        base = {k: v for k, v in members[0][1].items() if k not in ("method", "seed", "output_dir")}
        cells = [Cell(label, c["method"]["name"], dict(c["method"].get("options", {}))) for label, c in members]
        if not any(c.method == "hard" for c in cells):
            cells.insert(0, Cell("hard", "hard"))
        if len(members) == 1:
            cells.insert(1, Cell("ls", "ls"))  # the common soft-label baseline beside a single-method setup
        task = str(base["task"])
        suites.append(Suite(setup, f"Full scale: {setup}", task, base, tuple(cells), claims=CLAIMS[task],
                            description=f"configs/full/{setup}*.yaml (the seed paper's setup; your data)"))  # fmt: skip
    return suites


BENCHMARKS: dict[str, Any] = {"quick": _quick, "default": _default, "full": _full}
"""Benchmark name → factory of its suites.

Example:
    >>> sorted(BENCHMARKS)
    ['default', 'full', 'quick']
"""


def get_benchmark(name: str) -> list[Suite]:
    """The suites of a benchmark by name (``quick``, ``default``, ``full``).

    Raises:
        ValueError: an unknown name, with the valid ones.

    Example:
        >>> [s.name for s in get_benchmark("default")][:2]
        ['synthetic_segmentation', 'mni152']
    """
    key = look_up_option("benchmark", name, BENCHMARKS, where="softlabels bench")
    return list(BENCHMARKS[key]())


def plan_runs(suites: Sequence[Suite], *, only: Sequence[str] | None = None) -> list[RunSpec]:
    """Every run of the suites (cell × seed), seeds outermost so a partial grid has whole seeds first.

    Args:
        suites: from :func:`get_benchmark`.
        only: keep these suite names.

    Example:
        >>> runs = plan_runs(get_benchmark("default"))
        >>> len(runs), len({r.run_id for r in runs}) == len(runs)
        (123, True)
    """
    specs = []
    chosen = [s for s in suites if only is None or s.name in only]
    for seed in sorted({seed for s in chosen for seed in s.seeds}):
        for suite in chosen:
            if seed not in suite.seeds:
                continue
            for cell in suite.cells:
                config = copy.deepcopy(dict(suite.base))
                config["method"] = {"name": cell.method, "options": dict(cell.options)}
                shifts = tuple(suite.shifts) if seed in suite.shift_seeds else ()
                specs.append(RunSpec(suite.name, cell.label, seed, config, shifts=shifts))
    return specs
