"""Writing a scoring run's report: ``metrics.json``, ``report.md`` and ``reliability.png``, each atomically.

Every file is written to a temporary file in the destination folder and moved into place with :func:`os.replace`,
so a reader never sees a half-written report: after a failure the previous file (if any) is intact and no temporary
file is left behind. Numbers come from :mod:`softlabels.evaluation.scoring`; this module only formats and draws them
(matplotlib is imported inside :func:`draw_reliability`, with the Agg canvas; no pyplot state).

``metrics.json`` holds ``provenance`` (softlabels version, UTC timestamp, inputs, options, number of cases),
``summary`` (dataset values, names as in docs/metrics.md), ``per_class`` (per-class metrics per foreground class)
and ``cases`` (one row per case); NaN (no data, e.g. the foreground ECE of an empty
case) is written as ``null``.

The output folder must be new, empty, or hold an earlier report only (:func:`check_report_folder`, which commands
call before any work): a ``metrics.json`` that is a softlabels report (``provenance.softlabels_version``,
``summary``, ``cases``), beside it ``report.md`` and ``reliability.png`` (recognised by their first bytes), and
temporary files of these three that a killed run left (removed when writing). Anything else is refused, so an
unrelated ``metrics.json`` is never overwritten.

The figure shows the top-label diagram and at most :data:`MAX_CLASS_PANELS` classwise panels: every class when
there are that few, else those with the most reference voxels (:func:`softlabels.metrics.plot.frequent_rows`),
named in the figure's title and in ``report.md``; at most 5 panels per row, so the image stays under
2100 × 900 pixels whatever the number of classes.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from softlabels._io import TMP_SUFFIX, atomic_write, check_output_folder, json_safe
from softlabels.evaluation.scoring import ScoreResult
from softlabels.evaluation.spec import metric_spec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from softlabels.metrics.functional.calibration import ReliabilityDiagram

JSON_NAME, MARKDOWN_NAME, PNG_NAME = "metrics.json", "report.md", "reliability.png"
MAX_CLASS_PANELS, PANELS_PER_ROW, PANEL_INCHES = 8, 5, 4.2
_OWN_NAMES: tuple[str, ...] = (JSON_NAME, MARKDOWN_NAME, PNG_NAME)
_MAGIC: dict[str, bytes] = {MARKDOWN_NAME: b"# softlabels score report", PNG_NAME: b"\x89PNG\r\n\x1a\n"}
SHORT: dict[str, str] = {
    "ece": "ECE",
    "ece_classwise": "cw-ECE",
    "mce": "MCE",
    "ece_foreground": "ECE fg",
    "ece_boundary": "ECE band",
    "brier": "Brier",
    "nll": "NLL",
    "top1": "Top-1",
    "top5": "Top-5",
}
"""Per-case table columns (the other scalar metrics appear in the dataset table only)."""
CLASS_SHORT: dict[str, str] = {
    "dice": "Dice argmax",
    "soft_dice": "soft Dice",
    "hd95": "HD95",
    "thresholded_dice": "thr. Dice",
}
"""Per-case table column prefix of each per-class metric (``"<prefix> <class>"``)."""
_FORMS = {
    "soft": "`dice` compares the argmax prediction with the argmax of the soft reference; `soft_dice` the "
    "probabilities with the soft reference.",
    "hard": "The reference is a label map: `dice` compares the argmax prediction with it, `soft_dice` the "
    "probabilities with its one-hot map.",
    "mixed": "Some cases have a soft reference, some a label map: `dice` compares the argmax prediction with the "
    "argmax of the reference; `soft_dice` the probabilities with the soft reference (a label map: its one-hot map).",
}


def report_document(result: ScoreResult, *, sources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The content of ``metrics.json``: provenance, dataset summary and per-case rows (NaN → ``None``).

    Args:
        result: from :func:`softlabels.evaluation.scoring.score_cases`.
        sources: where the data came from (e.g. ``{"probs": ..., "labels": ...}``), recorded as given.

    Returns:
        A JSON-serialisable dict with the keys ``provenance``, ``summary``, ``per_class`` and ``cases``.

    Example:
        >>> result = ScoreResult({"ece": 0.1}, [{"case": "a", "ece": float("nan")}], {})
        >>> doc = report_document(result, sources={"probs": "p/"})
        >>> doc["provenance"]["n_cases"], doc["cases"][0]["ece"]
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
    document = {"provenance": provenance, "summary": result.summary, "per_class": result.per_class}
    return json_safe({**document, "cases": result.cases})


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _per_case_table(doc: Mapping[str, Any], classes: list[str]) -> list[str]:
    cases = doc["cases"]
    scalar = [m for m in SHORT if cases and m in cases[0]]
    per_class = list(cases[0].get("per_class", {})) if cases else []
    header = ["case", *(SHORT[m] for m in scalar)]
    header += [f"{CLASS_SHORT.get(m, metric_spec(m).title.split(' (')[0])} {c}" for m in per_class for c in classes]
    rows = [
        [str(r["case"]), *(_fmt(r.get(m)) for m in scalar)]
        + [_fmt(r["per_class"].get(m, {}).get(c)) for m in per_class for c in classes]
        for r in cases
    ]
    return _table(header, rows)


def render_markdown(doc: Mapping[str, Any], *, image: str | None = PNG_NAME, caption: str | None = None) -> str:
    """The Markdown report of a :func:`report_document`: settings, dataset metrics, per class, per case, the image.

    Args:
        doc: from :func:`report_document`.
        image: the figure's file name (``None``: no figure).
        caption: a line under the figure (e.g. :func:`figure_caption`: which classes it shows).

    Example:
        >>> doc = {"provenance": {"n_cases": 1, "reference": "labels", "inputs": {}}, "summary": {"brier": 0.25},
        ...        "cases": [{"case": "a", "brier": 0.25}]}
        >>> print(render_markdown(doc, image=None).splitlines()[0])
        # softlabels score report
    """
    prov, summary = doc["provenance"], doc["summary"]
    classes = [str(c) for c in prov.get("classes", [])]
    inputs = ", ".join(f"{k} `{v}`" for k, v in prov.get("inputs", {}).items()) or "–"
    names = f" ({', '.join(map(str, prov['class_names']))})" if prov.get("class_names") else ""
    lines = [
        "# softlabels score report",
        "",
        f"{prov['n_cases']} case(s); reference: {prov.get('reference')}; inputs: {inputs}.  ",
        f"Classes: {prov.get('num_classes')}{names}; bins: {prov.get('n_bins')}; boundary band: "
        f"{prov.get('boundary_width')} voxel(s); ignore_index: {prov.get('ignore_index')}; "
        f"softlabels {prov.get('softlabels_version')}, {prov.get('created')}.",
        "",
        "## Dataset",
        "",
        *_table(["metric", "name", "value"], [[metric_spec(k).title, f"`{k}`", _fmt(v)] for k, v in summary.items()]),
    ]
    if "dice" in summary or "soft_dice" in summary:
        lines += ["", _FORMS.get(str(prov.get("reference_form")), _FORMS["mixed"])]
    per_class = doc.get("per_class") or {}
    if per_class:
        rows = [[c, *(_fmt(per_class[m].get(c)) for m in per_class)] for c in classes]
        header = ["class", *(metric_spec(m).title for m in per_class)]
        lines += ["", "## Per class (mean over cases)", "", *_table(header, rows)]
    lines += ["", "## Per case", "", *_per_case_table(doc, classes)]
    if image is not None:
        lines += ["", "## Reliability diagrams", "", f"![reliability diagrams]({image})"]
        lines += ["", caption] if caption else []
    return "\n".join(lines) + "\n"


def _panels(diagrams: Mapping[str, ReliabilityDiagram], max_classes: int) -> list[tuple[ReliabilityDiagram, int]]:
    """``(diagram, row)`` of every panel: each one-row diagram, and up to ``max_classes`` rows of the others."""
    from softlabels.metrics.plot import frequent_rows

    return [(d, row) for d in diagrams.values() for row in frequent_rows(d, limit=max_classes)]


def figure_caption(diagrams: Mapping[str, ReliabilityDiagram], *, max_classes: int = MAX_CLASS_PANELS) -> str:
    """Which diagrams and classes :func:`draw_reliability` shows, as a sentence.

    Example:
        >>> import torch
        >>> from softlabels.metrics.functional.calibration import reliability_diagram
        >>> probs, target = torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 1])
        >>> figure_caption({"classwise": reliability_diagram(probs, target, n_bins=5, mode="classwise")})
        'Classwise diagrams of all 2 classes.'
    """
    shown = _panels(diagrams, max_classes)
    parts = []
    for diagram in diagrams.values():
        total, rows = diagram.counts.shape[0], [row for d, row in shown if d is diagram]
        mode = diagram.mode.replace("_", "-")
        if total == 1:
            parts.append(f"{mode} diagram")
        elif len(rows) == total:
            parts.append(f"{mode} diagrams of all {total} classes")
        else:
            names = ", ".join(str(diagram.classes[r] if diagram.classes else r) for r in rows)
            parts.append(
                f"{mode} diagrams of {len(rows)} of {total} classes, those with the most reference voxels "
                f"(ties: the lower class): {names}"
            )
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def draw_reliability(diagrams: Mapping[str, ReliabilityDiagram], *, max_classes: int = MAX_CLASS_PANELS) -> Figure:
    """Draw the top-label diagram and up to ``max_classes`` classwise diagrams in a grid (a new Agg figure).

    With more classes, those with the most reference voxels are drawn (:func:`figure_caption` names them, and so
    does the figure's title); at most :data:`PANELS_PER_ROW` panels per row, so the size is bounded.

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

    panels = _panels(diagrams, max_classes)
    columns = min(len(panels), PANELS_PER_ROW)
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(PANEL_INCHES * columns, PANEL_INCHES * rows), layout="constrained")
    FigureCanvasAgg(figure)
    for i, (diagram, row) in enumerate(panels):
        plot_reliability_diagram(diagram, ax=figure.add_subplot(rows, columns, i + 1), row=row)
    if len(panels) < sum(d.counts.shape[0] for d in diagrams.values()):
        figure.suptitle(figure_caption(diagrams, max_classes=max_classes), wrap=True)
    return figure


def _is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary file of :func:`atomic_write` for one of the report's files."""
    return any(path.name.startswith(f".{own}.") and path.name.endswith(TMP_SUFFIX) for own in _OWN_NAMES)


def _own_file(path: Path, earlier_report: bool) -> bool:
    """Whether ``path`` is a file of an earlier report (its ``metrics.json`` is one: ``earlier_report``)."""
    if path.is_symlink() or not path.is_file():
        return False
    if _is_temporary(path):
        return True
    if not earlier_report or path.name not in _OWN_NAMES:
        return False
    if path.name == JSON_NAME:
        return True
    with path.open("rb") as file:
        return file.read(len(_MAGIC[path.name])) == _MAGIC[path.name]


def _is_report(path: Path) -> bool:
    """Whether ``path`` is a ``metrics.json`` written by :func:`write_report`."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    prov = doc.get("provenance") if isinstance(doc, dict) else None
    return (
        isinstance(prov, dict)
        and "softlabels_version" in prov
        and isinstance(doc.get("summary"), dict)
        and isinstance(doc.get("cases"), list)
    )


def check_report_folder(output: Path | str, *, what: str = "--output") -> Path:
    """Check that a report may be written into ``output``, before any work; nothing is created or changed.

    ``output`` must be a folder that can be created, or an existing writable folder that is empty or holds an
    earlier report only (see the module's notes); anything else is refused, naming the folder and one foreign file.

    Args:
        output: the report folder.
        what: how the command names it in messages.

    Returns:
        ``output`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``output`` is a file, cannot be created or written, cannot be listed, or holds other files.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "metrics.json").write_text('{"accuracy": 0.9}')
        ...     try:
        ...         check_report_folder(tmp)
        ...     except ValueError as err:
        ...         "holds 'metrics.json'" in str(err)
        True
    """
    output = check_output_folder(output, what=what)
    if not output.is_dir():
        return output
    try:
        entries: Sequence[Path] = sorted(output.iterdir())
    except OSError as err:
        raise ValueError(f"{what} {str(output)!r} cannot be listed: {err.strerror or err}.") from err
    earlier = _is_report(output / JSON_NAME)
    for path in entries:
        if not _own_file(path, earlier):
            raise ValueError(
                f"{what} {str(output)!r} holds {path.name!r}, which is not part of an earlier softlabels report "
                f"(a report is written only into a new or empty folder, or over its own {', '.join(_OWN_NAMES)}); "
                "choose another folder or move the file away."
            )
    return output


def write_report(
    result: ScoreResult, output: Path | str, *, sources: Mapping[str, Any] | None = None, what: str = "--output"
) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md`` and ``reliability.png`` into ``output`` (created if needed), atomically.

    All three are rendered before any is written, and the folder is checked first (:func:`check_report_folder`),
    so a refused folder or a failure leaves every file as it was.

    Args:
        result: from :func:`softlabels.evaluation.scoring.score_cases`.
        output: the folder: new, empty, or holding an earlier report only.
        sources: provenance of the data, recorded in the JSON and the Markdown.
        what: how the command names ``output`` in messages.

    Returns:
        ``{"json": path, "markdown": path, "png": path}``.

    Raises:
        ValueError: ``output`` is refused by :func:`check_report_folder`.

    Example:
        >>> import tempfile
        >>> from softlabels.data.prediction_files import example_folder
        >>> from softlabels.evaluation.scoring import score_folders
        >>> result = score_folders(example_folder() / "probs", example_folder() / "labels", kind="labels")
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     paths = write_report(result, tmp)
        ...     sorted(p.name for p in Path(tmp).iterdir())
        ['metrics.json', 'reliability.png', 'report.md']
    """
    output = check_report_folder(output, what=what)
    doc = report_document(result, sources=sources)
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    markdown = render_markdown(doc, image=PNG_NAME, caption=figure_caption(result.diagrams))
    png = io.BytesIO()
    draw_reliability(result.diagrams).savefig(png, format="png", dpi=100)
    output.mkdir(parents=True, exist_ok=True)
    for path in output.iterdir():  # temporary files a killed run left
        if _is_temporary(path) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
    return {
        "json": atomic_write(output / JSON_NAME, lambda f: f.write(text.encode())),
        "markdown": atomic_write(output / MARKDOWN_NAME, lambda f: f.write(markdown.encode())),
        "png": atomic_write(output / PNG_NAME, lambda f: f.write(png.getvalue())),
    }


__all__ = [
    "atomic_write",
    "check_report_folder",
    "draw_reliability",
    "figure_caption",
    "render_markdown",
    "report_document",
    "write_report",
]
