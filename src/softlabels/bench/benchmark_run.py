"""One benchmark run: train a configured method, fit temperature scaling, keep the test set's per-case arrays.

A run is identified by the hash of everything that determines its result (the run config with its seed, and the
benchmark's evaluation settings). Its folder ``<root>/runs/<suite>/<label>/seed<S>-<hash>`` receives:

* ``train/`` — the training run (``config.yaml``, ``checkpoints/last.ckpt``, CSV logs; epoch checkpoints are removed
  once the run is finished);
* ``cases.npz`` — per-case arrays (:class:`softlabels.evaluation.evaluator.Evaluator`) of the evaluations ``raw``
  (the trained model), ``ts`` (after temperature scaling fitted on the validation split against the observed
  reference) and, where the data knows the true label distribution, ``oracle`` (the true probabilities p* scored
  as a prediction, against the same observed reference: the floor), plus example maps;
* ``result.json`` — written last and atomically, so its presence marks a finished run: the spec, the hash, the
  temperature, the dataset values of every evaluation, the run time and the learning curve (per epoch: training
  loss, validation loss, NLL and Dice or top-1; :mod:`softlabels.bench.learning_curves`).

A killed run leaves no ``result.json``; running it again resumes training from ``last.ckpt`` when there is one.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from softlabels._io import atomic_write, json_safe
from softlabels._memory import bounded_heap, release_freed_memory
from softlabels.bench.decisions import decision_arrays
from softlabels.bench.downstream import structure_features
from softlabels.bench.learning_curves import CurveRecorder
from softlabels.calibration import TemperatureScaler
from softlabels.data.shifts import Shift, parse_shifts
from softlabels.evaluation.evaluator import Evaluator, summarize
from softlabels.evaluation.fitting import fit_scaler
from softlabels.evaluation.references import References, batch_references

__all__ = ["EVALUATION_VERSION", "SHIFT_METRICS", "RunSpec", "execute_run", "load_result", "run_folder"]

EVALUATION_VERSION = 4
"""Bumped when the per-run evaluation changes, so cached results of an older evaluation are not reused.

Example:
    >>> EVALUATION_VERSION >= 1
    True
"""
N_EXAMPLES = 3


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid at one seed: ``config`` is a run config (``softlabels train`` YAML) without output dir.

    Example:
        >>> spec = RunSpec("synthetic_segmentation", "hard", 0, {"task": "segmentation", "method": {"name": "hard"}})
        >>> len(spec.hash), spec.run_id.startswith("synthetic_segmentation/hard/seed0-")
        (12, True)
    """

    suite: str
    label: str
    seed: int
    config: Mapping[str, Any] = field(hash=False)
    n_bins: int = 15
    boundary_width: float = 2.0
    shifts: tuple[str, ...] = ()  # test-time shifts also evaluated ("noise_3", ...: softlabels.data.shifts)

    @property
    def hash(self) -> str:
        """12 hex digits of the SHA-256 of the config, the seed and the evaluation settings."""
        content = {
            "config": {**self.config, "seed": self.seed}, "n_bins": self.n_bins,
            "boundary_width": self.boundary_width, "evaluation": EVALUATION_VERSION, "shifts": list(self.shifts),
        }  # fmt: skip
        return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:12]

    @property
    def run_id(self) -> str:
        """``<suite>/<label>/seed<S>-<hash>``: the run's folder below ``<root>/runs``."""
        return f"{self.suite}/{self.label}/seed{self.seed}-{self.hash}"


def run_folder(root: str | Path, spec: RunSpec) -> Path:
    """The folder of ``spec`` below the benchmark's output ``root``.

    Example:
        >>> spec = RunSpec("s", "hard", 1, {"task": "segmentation"})
        >>> run_folder("out", spec).parts[:4]
        ('out', 'runs', 's', 'hard')
    """
    return Path(root) / "runs" / spec.run_id


def load_result(root: str | Path, spec: RunSpec) -> dict[str, Any] | None:
    """The finished result of ``spec`` (``result.json``), or ``None`` if the run has not finished.

    Raises:
        ValueError: ``result.json`` exists but is not valid JSON or belongs to another hash.

    Example:
        >>> load_result("/nonexistent", RunSpec("s", "hard", 0, {})) is None
        True
    """
    path = run_folder(root, spec) / "result.json"
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"benchmark result {str(path)!r} is unreadable ({err}); delete it to re-run the run.") from err
    if result.get("hash") != spec.hash:
        raise ValueError(f"benchmark result {str(path)!r} belongs to hash {result.get('hash')!r}, not {spec.hash!r}.")
    return dict(result)


class _EpochProgress(L.Callback):
    """Prints ``<prefix> epoch e/E`` after every training epoch (the current run's progress)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        print(f"{self.prefix} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}", file=sys.stderr, flush=True)


def _train(spec: RunSpec, folder: Path, prefix: str) -> tuple[Path, dict[str, Any]]:
    """Train (or resume) the run into ``folder/train``; return its ``last.ckpt`` and its learning curve."""
    from softlabels.training.config import config_from_dict
    from softlabels.training.run import train

    values = dict(spec.config)
    trainer = {**dict(values.get("trainer", {})), "enable_progress_bar": False}
    config = config_from_dict({**values, "seed": spec.seed, "output_dir": str(folder / "train"), "trainer": trainer})
    last = folder / "train" / "checkpoints" / "last.ckpt"
    recorder = CurveRecorder("dice" if config.task == "segmentation" else "top1")
    train(config, resume=last.is_file(), overwrite=not last.is_file(), callbacks=[_EpochProgress(prefix), recorder])
    return last, recorder.curve()


def _batches(task: Any, loader: Any) -> Iterator[tuple[Tensor, Tensor | None, Mapping[str, Any]]]:
    """``(logits, features or None, batch)`` over a loader, without gradients."""
    for batch in loader:
        with torch.no_grad():  # per batch: grad mode must not stay off in the consumer while it is suspended
            if task.spatial_dims == 0:
                features, logits = task.features_and_logits(batch["image"])
            else:
                features, logits = None, task.predict_logits(batch["image"])
        yield logits.float(), features, batch


def _fit_temperature(task: Any, dm: Any) -> float:
    """Temperature fitted on the validation split against the observed reference (never ``true_probs``)."""
    from softlabels.training.inference import validation_logits

    return float(fit_scaler(TemperatureScaler(), validation_logits(task, dm)).temperature_)


def _entropy(p: Tensor) -> Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(0)


def _examples(batch: Mapping[str, Any], refs: References, probs: Tensor, count: int) -> dict[str, np.ndarray]:
    """Maps of the first ``count`` cases: image, reference and predicted foreground, entropy, rater disagreement."""
    c = probs.shape[1]
    ref = refs.soft if refs.soft is not None else torch.nn.functional.one_hot(refs.hard, c).movedim(-1, 1).float()
    out = {
        "image": batch["image"][:count, 0].float().numpy(),
        "reference": (1.0 - ref[:count, 0]).float().numpy(),
        "prediction": (1.0 - probs[:count, 0]).float().numpy(),
        "entropy": torch.stack([_entropy(p) for p in probs[:count]]).float().numpy(),
    }
    if refs.raters is not None:
        votes = torch.nn.functional.one_hot(refs.raters[:count].long(), c).float().mean(1).movedim(-1, 1)
        out["disagreement"] = torch.stack([_entropy(v) for v in votes]).numpy()
    return out


def evaluate_split(
    task: Any, loader: Any, temperature: float, *, n_bins: int = 15, boundary_width: float = 2.0
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray], dict[str, float]]:
    """Per-case arrays of ``raw``, ``ts`` (and ``oracle``) on a split, in one streaming pass; example maps.

    Each batch is run through the network once; its raw and temperature-scaled probabilities (and the data's p*,
    when it has one) go through three :class:`~softlabels.evaluation.evaluator.Evaluator` against the batch's
    observed reference, and only their per-case arrays (a few numbers and histograms per case) are kept, so peak
    memory does not grow with the number of cases (``benchmarks/evaluation_memory.py``). On segmentation, every
    evaluation also keeps the downstream features of its maps (:func:`softlabels.bench.downstream.structure_features`:
    ``area_fraction`` per class and level, ``soft_fraction``), so ``oracle`` holds the true fractions of p*.

    Returns:
        ``(arrays, examples, pooled)``: per evaluation the concatenated per-case arrays, the example maps of the
        first batch, and values kept only pooled (``compactness`` of the raw embeddings).
    """
    segmentation = task.spatial_dims > 0
    features_size = None if segmentation else getattr(task.model, "num_features", None)
    options: dict[str, Any] = {"spatial_dims": task.spatial_dims, "n_bins": n_bins, "boundary_width": boundary_width}
    sizes = {"raw": features_size, "ts": None, "oracle": None}
    evaluators = {
        name: Evaluator(task.task, task.num_classes, curves=segmentation, num_features=size, **options)
        for name, size in sizes.items()
    }
    parts: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in evaluators}
    examples: dict[str, np.ndarray] = {}
    with bounded_heap():  # else glibc's heap grows with the number of cases (softlabels._memory)
        for logits, features, batch in _batches(task, loader):
            refs = batch_references(batch, task.num_classes, task.spatial_dims)
            predictions = {"raw": torch.softmax(logits, 1), "ts": torch.softmax(logits / temperature, 1)}
            if isinstance(batch.get("true_probs"), Tensor):
                predictions["oracle"] = batch["true_probs"].float()
            for name, probs in predictions.items():
                case_arrays = evaluators[name].step(probs, refs, features=features if name == "raw" else None)
                case_arrays |= decision_arrays(probs, refs, segmentation=segmentation)  # softlabels.bench.decisions
                if segmentation:  # the downstream stage's features (softlabels.bench.downstream)
                    case_arrays = {**case_arrays, **structure_features(probs)}
                for key, value in case_arrays.items():
                    parts[name].setdefault(key, []).append(value)
            if segmentation and not examples:
                examples = _examples(batch, refs, predictions["raw"], N_EXAMPLES)
            del logits, features, batch, predictions
            release_freed_memory()  # the case's temporaries: without this glibc's heap grows with the number of cases
    if not parts["raw"]:
        raise ValueError("the split to evaluate is empty.")
    arrays = {name: {k: np.concatenate(v, axis=0) for k, v in p.items()} for name, p in parts.items() if p}
    pooled = {k: v for k, v in evaluators["raw"].compute().items() if k == "compactness"}
    return arrays, examples, pooled


SHIFT_METRICS = ("ece", "ece_boundary", "nll", "brier", "dice", "soft_dice")
"""The metrics of the evaluations under shift (no HD95: its distance transforms would dominate the bench's time).

Example:
    >>> "ece" in SHIFT_METRICS
    True
"""


def _evaluate_shifted(
    task: Any, loader: Any, temperature: float, shift: Shift, *, n_bins: int = 15, boundary_width: float = 2.0
) -> dict[str, np.ndarray]:
    """Per-case arrays of the temperature-scaled model on a split whose images are shifted (``ts@<shift>``).

    Case ``i`` of the split is shifted with seed ``i`` (:func:`softlabels.data.shifts.shift_images`), so every
    method sees the same shifted images; only :data:`SHIFT_METRICS` and the decision arrays are computed.
    """
    evaluator = Evaluator(
        task.task, task.num_classes, spatial_dims=task.spatial_dims, n_bins=n_bins, boundary_width=boundary_width,
        metrics=SHIFT_METRICS,
    )  # fmt: skip
    parts: dict[str, list[np.ndarray]] = {}
    offset = 0
    with bounded_heap():
        for batch in loader:
            images = shift(batch["image"], seed=0, first_case=offset)
            offset += len(images)
            with torch.no_grad():
                probs = torch.softmax(task.predict_logits(images).float() / temperature, 1)
            refs = batch_references(batch, task.num_classes, task.spatial_dims)
            arrays = evaluator.step(probs, refs) | decision_arrays(probs, refs, segmentation=True)
            for key, value in arrays.items():
                parts.setdefault(key, []).append(value)
            del batch, images, probs
            release_freed_memory()
    return {key: np.concatenate(value, axis=0) for key, value in parts.items()}


def _npz_bytes(arrays: Mapping[str, Mapping[str, np.ndarray]], examples: Mapping[str, np.ndarray]) -> bytes:
    flat = {f"{name}/{key}": value for name, values in arrays.items() for key, value in values.items()}
    flat |= {f"examples/{key}": value for key, value in examples.items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **flat)  # type: ignore[arg-type]
    return buffer.getvalue()


def _versions() -> dict[str, str]:
    import lightning
    import monai

    from softlabels import __version__

    return {
        "softlabels": __version__,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "lightning": lightning.__version__,
    }


def execute_run(spec: RunSpec, root: str | Path, *, prefix: str = "") -> dict[str, Any]:
    """Run ``spec`` (unless finished): train, fit T on validation, evaluate the test split; return ``result.json``.

    Args:
        spec: the run.
        root: the benchmark's output folder.
        prefix: text in front of the per-epoch progress lines (e.g. ``[bench 3/40] synthetic/svls seed 1``).

    Returns:
        The result document (also in ``run_folder(root, spec) / "result.json"``).

    Example:
        >>> import tempfile
        >>> config = {"task": "classification", "model": {"name": "small_cnn"}, "trainer": {"max_epochs": 1},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [16, 8, 8]}}}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     result = execute_run(RunSpec("demo", "hard", 0, config), tmp)
        ...     again = execute_run(RunSpec("demo", "hard", 0, config), tmp)  # cached: nothing is trained
        >>> sorted(result["evaluations"]), 0 <= result["evaluations"]["raw"]["top1"] <= 1, again == result
        (['oracle', 'raw', 'ts'], True, True)
    """
    cached = load_result(root, spec)
    if cached is not None:
        return cached
    from softlabels.training.run import load_run

    folder = run_folder(root, spec)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    last, curve = _train(spec, folder, prefix or spec.run_id)
    trained = time.perf_counter()
    _, dm, task = load_run(last)
    temperature = _fit_temperature(task, dm)
    arrays, examples, pooled = evaluate_split(
        task, dm.test_dataloader(), temperature, n_bins=spec.n_bins, boundary_width=spec.boundary_width
    )
    for shift in parse_shifts(list(spec.shifts)):
        arrays[f"ts@{shift.name}"] = _evaluate_shifted(
            task, dm.test_dataloader(), temperature, shift, n_bins=spec.n_bins, boundary_width=spec.boundary_width
        )
    atomic_write(folder / "cases.npz", lambda handle: handle.write(_npz_bytes(arrays, examples)))
    evaluations = {name: summarize(values) for name, values in arrays.items()}
    for name in ("raw", "ts"):  # the embeddings do not depend on the temperature
        evaluations[name] |= pooled
    result = {
        "run_id": spec.run_id, "hash": spec.hash, "suite": spec.suite, "label": spec.label, "seed": spec.seed,
        "config": dict(spec.config), "n_bins": spec.n_bins, "boundary_width": spec.boundary_width,
        "temperature": temperature, "evaluations": evaluations, "n_cases": len(arrays["raw"]["nll"]),
        "train_seconds": trained - start, "total_seconds": time.perf_counter() - start, "versions": _versions(),
        "learning_curve": curve,
    }  # fmt: skip
    text = json.dumps(json_safe(result), indent=1, sort_keys=True, default=str) + "\n"
    atomic_write(folder / "result.json", lambda handle: handle.write(text.encode()))
    for stale in (folder / "train" / "checkpoints").glob("epoch=*.ckpt"):
        stale.unlink()
    shutil.rmtree(folder / "train" / "lightning_logs", ignore_errors=True)
    return json.loads(text)
