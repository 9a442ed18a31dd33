"""Writing a scoring run's report: ``metrics.json``, ``report.md`` and ``reliability.png``, each atomically.

Every file is written to a temporary file in the destination folder and moved into place with :func:`os.replace`,
so a reader never sees a half-written report: after a failure the previous file (if any) is intact and no temporary
file is left behind. Numbers come from :mod:`softlabels.bench.score`; this module only formats and draws them
(matplotlib is imported inside :func:`draw_reliability`, with the Agg canvas; no pyplot state).

``metrics.json`` holds ``provenance`` (softlabels version, UTC timestamp, inputs, options, number of cases),
``summary`` (dataset values) and ``cases`` (one row per case); NaN (no data, e.g. the foreground ECE of an empty
case) is written as ``null``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from softlabels.bench.score import PER_CLASS, ScoreResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from softlabels.metrics.functional.calibration import ReliabilityDiagram

JSON_NAME, MARKDOWN_NAME, PNG_NAME = "metrics.json", "report.md", "reliability.png"
LABELS: dict[str, str] = {
    "ece_top_label": "ECE, top-label (pooled over all voxels)",
    "ece_top_label_case_mean": "ECE, top-label (mean of per-case values)",
    "ece_classwise": "ECE, classwise",
    "mce_top_label": "MCE, top-label (maximum bin gap)",
    "ece_foreground": "ECE, top-label, reference foreground voxels",
    "ece_boundary": "ECE, top-label, boundary band",
    "brier": "Brier score (voxel mean)",
    "nll": "NLL (voxel mean)",
}
CLASS_LABELS: dict[str, str] = {"dice": "Dice", "hd95": "HD95", "thresholded_dice": "thresholded Dice (QUBIQ)"}
SHORT: dict[str, str] = {
    "ece_top_label": "ECE",
    "ece_classwise": "cw-ECE",
    "mce_top_label": "MCE",
    "ece_foreground": "ECE fg",
    "ece_boundary": "ECE band",
    "brier": "Brier",
    "nll": "NLL",
}


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it to ``path`` in one step.

    Args:
        path: the destination; its folder must exist.
        write: writes the content into the binary file object it gets.

    Returns:
        ``path``.

    Raises:
        Whatever ``write`` raises; the temporary file is removed and ``path`` left as it was.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = atomic_write(Path(tmp) / "a.txt", lambda f: f.write(b"hello"))
        ...     out.read_text(), sorted(p.name for p in Path(tmp).iterdir())
        ('hello', ['a.txt'])
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _no_nan(x: Any) -> Any:
    """Replace NaN/inf floats by ``None`` recursively (strict JSON has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_no_nan(v) for v in x]
    return x


def report_document(result: ScoreResult, *, sources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The content of ``metrics.json``: provenance, dataset summary and per-case rows (NaN → ``None``).

    Args:
        result: from :func:`softlabels.bench.score.score_cases`.
        sources: where the data came from (e.g. ``{"probs": ..., "labels": ...}``), recorded as given.

    Returns:
        A JSON-serialisable dict with the keys ``provenance``, ``summary`` and ``cases``.

    Example:
        >>> result = ScoreResult({"ece_top_label": 0.1}, [{"case": "a", "ece_top_label": float("nan")}], {})
        >>> doc = report_document(result, sources={"probs": "p/"})
        >>> doc["provenance"]["n_cases"], doc["cases"][0]["ece_top_label"]
        (1, None)
    """
    from softlabels import __version__

    provenance = {
        "softlabels_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": dict(sources or {}),
        "n_cases": len(result.cases),
        **result.settings,
    }
    return _no_nan({"provenance": provenance, "summary": result.summary, "cases": result.cases})


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _per_case_table(doc: Mapping[str, Any], classes: list[str]) -> list[str]:
    cases = doc["cases"]
    per_class = [m for m in PER_CLASS if cases and m in cases[0]]
    header = ["case", *SHORT.values()] + [f"{CLASS_LABELS[m].split(' (')[0]} {c}" for m in per_class for c in classes]
    rows = [
        [str(r["case"]), *(_fmt(r.get(m)) for m in SHORT)] + [_fmt(r[m].get(c)) for m in per_class for c in classes]
        for r in cases
    ]
    return _table(header, rows)


def render_markdown(doc: Mapping[str, Any], *, image: str | None = PNG_NAME) -> str:
    """The Markdown report of a :func:`report_document`: settings, dataset metrics, per class, per case, the image.

    Example:
        >>> doc = {"provenance": {"n_cases": 1, "reference": "labels", "inputs": {}}, "summary": {"brier": 0.25},
        ...        "cases": [{"case": "a", "brier": 0.25}]}
        >>> print(render_markdown(doc, image=None).splitlines()[0])
        # softlabels score report
    """
    prov, summary = doc["provenance"], doc["summary"]
    classes = [str(c) for c in prov.get("classes", [])]
    inputs = ", ".join(f"{k} `{v}`" for k, v in prov.get("inputs", {}).items()) or "–"
    lines = [
        "# softlabels score report",
        "",
        f"{prov['n_cases']} case(s); reference: {prov.get('reference')}; inputs: {inputs}.  ",
        f"Classes: {prov.get('num_classes')}; bins: {prov.get('n_bins')}; boundary band: "
        f"{prov.get('boundary_width')} voxel(s); ignore_index: {prov.get('ignore_index')}; "
        f"softlabels {prov.get('softlabels_version')}, {prov.get('created')}.",
        "",
        "## Dataset",
        "",
        *_table(["metric", "value"], [[LABELS[k], _fmt(summary[k])] for k in LABELS if k in summary]),
    ]
    per_class = [m for m in PER_CLASS if m in summary]
    if per_class:
        rows = [[c, *(_fmt(summary[m].get(c)) for m in per_class)] for c in classes]
        header = ["class", *(CLASS_LABELS[m] for m in per_class)]
        lines += ["", "## Per class (mean over cases)", "", *_table(header, rows)]
    lines += ["", "## Per case", "", *_per_case_table(doc, classes)]
    if image is not None:
        lines += ["", "## Reliability diagrams", "", f"![reliability diagrams]({image})"]
    return "\n".join(lines) + "\n"


def draw_reliability(diagrams: Mapping[str, ReliabilityDiagram]) -> Figure:
    """Draw the top-label diagram and one classwise diagram per class side by side (a new Agg figure).

    Example:
        >>> import torch
        >>> from softlabels.metrics.functional.calibration import reliability_diagram
        >>> probs, target = torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 1])
        >>> figure = draw_reliability({"top_label": reliability_diagram(probs, target, n_bins=5)})
        >>> len(figure.axes) >= 1
        True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from softlabels.metrics.plot import plot_reliability_diagram

    panels = [(d, row) for d in diagrams.values() for row in range(d.counts.shape[0])]
    figure = Figure(figsize=(4.2 * len(panels), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (diagram, row) in zip(axes, panels, strict=True):
        plot_reliability_diagram(diagram, ax=ax, row=row)
    return figure


def write_report(
    result: ScoreResult, output: Path | str, *, sources: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md`` and ``reliability.png`` into ``output`` (created if needed), atomically.

    Args:
        result: from :func:`softlabels.bench.score.score_cases`.
        output: the folder.
        sources: provenance of the data, recorded in the JSON and the Markdown.

    Returns:
        ``{"json": path, "markdown": path, "png": path}``.

    Raises:
        FileNotFoundError: ``output`` exists and is not a folder.

    Example:
        >>> import tempfile
        >>> from softlabels.data.prediction_files import example_folder
        >>> from softlabels.bench.score import score_folders
        >>> result = score_folders(example_folder() / "probs", example_folder() / "labels", kind="labels")
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     paths = write_report(result, tmp)
        ...     sorted(p.name for p in Path(tmp).iterdir())
        ['metrics.json', 'reliability.png', 'report.md']
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise FileNotFoundError(f"the output {str(output)!r} exists and is not a folder.")
    output.mkdir(parents=True, exist_ok=True)
    doc = report_document(result, sources=sources)
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    markdown = render_markdown(doc, image=PNG_NAME)
    figure = draw_reliability(result.diagrams)
    paths = {
        "png": atomic_write(output / PNG_NAME, lambda f: figure.savefig(f, format="png", dpi=100)),
        "json": atomic_write(output / JSON_NAME, lambda f: f.write(text.encode())),
        "markdown": atomic_write(output / MARKDOWN_NAME, lambda f: f.write(markdown.encode())),
    }
    return paths


__all__ = ["atomic_write", "draw_reliability", "render_markdown", "report_document", "write_report"]
