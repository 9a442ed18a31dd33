"""Figures of the benchmark report: reliability small multiples, threshold curves, example panels, fraction scatter.

Every function takes plain data (lists or NumPy arrays, ``None``/NaN where missing) and returns a new constrained-layout
:class:`~matplotlib.figure.Figure` on the Agg canvas (matplotlib imported inside the functions; no pyplot state).
:func:`figure_png` renders it to PNG bytes and :func:`png_data_uri` embeds them in a self-contained HTML report.
"""

from __future__ import annotations

import base64
import io
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from softlabels.metrics.functional.calibration import ReliabilityDiagram

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PANEL_INCHES = 2.4  # side of one reliability panel
EXAMPLE_INCHES = 1.8  # side of one example image
# distinct colours (Tableau 10), cycled with line styles and markers so that ~16 methods stay apart
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LEGEND: dict[str, Any] = {"fontsize": 7, "frameon": False}


def method_style(index: int) -> dict[str, Any]:
    """The colour, line style and marker of the ``index``-th method: 10 colours × 4 line styles, 7 markers.

    Args:
        index: position of the method (``>= 0``).

    Returns:
        ``{"color": ..., "linestyle": ..., "marker": ...}``, keyword arguments for ``Axes.plot``.

    Example:
        >>> method_style(0)
        {'color': '#1f77b4', 'linestyle': '-', 'marker': 'o'}
        >>> method_style(11)["linestyle"], method_style(11)["color"] == method_style(1)["color"]
        ('--', True)
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"`index` of method_style must be an int >= 0; got {index!r}.")
    line_style = LINE_STYLES[(index // len(COLOURS)) % len(LINE_STYLES)]
    return {"color": COLOURS[index % len(COLOURS)], "linestyle": line_style, "marker": MARKERS[index % len(MARKERS)]}


def _new_figure(width: float, height: float) -> Figure:
    """A new constrained-layout figure of ``width × height`` inches on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _floats(values: Any, name: str, where: str) -> np.ndarray:
    """``values`` as a 1-D float64 array, ``None`` becoming NaN."""
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise TypeError(f"`{name}` of {where} must be a sequence of numbers; got {type(values).__name__}.")
    try:
        out = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"`{name}` of {where} must hold numbers (or None); got {list(values)!r}.") from error
    if out.ndim != 1:
        raise ValueError(f"`{name}` of {where} must be one-dimensional; got shape {out.shape}.")
    return out


def _require_methods(data: Mapping[str, Any], name: str, where: str) -> None:
    """Raise unless ``data`` is a non-empty mapping."""
    if not isinstance(data, Mapping):
        raise TypeError(f"`{name}` of {where} must be a mapping of method label to data; got {type(data).__name__}.")
    if not data:
        raise ValueError(f"`{name}` of {where} has no methods; give at least one.")


def _take(data: Mapping[str, Any], key: str, name: str, where: str) -> np.ndarray:
    """``data[key]`` as floats, with an error naming the missing key."""
    if not isinstance(data, Mapping) or key not in data:
        got = sorted(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"`{name}` of {where} lacks the key {key!r}; got {got}.")
    return _floats(data[key], f"{name}[{key!r}]", where)


def _diagram(label: str, data: Mapping[str, Sequence[Any]]) -> ReliabilityDiagram:
    """Check one method's bins and pack them as a one-row top-label :class:`ReliabilityDiagram`."""
    name, where = f"diagrams[{label!r}]", "reliability_grid"
    edges, counts = _take(data, "edges", name, where), _take(data, "counts", name, where)
    conf, outcome = _take(data, "confidence", name, where), _take(data, "outcome", name, where)
    n_bins = edges.size - 1
    if n_bins < 1 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ValueError(f"`{name}['edges']` of {where} must be >= 2 finite increasing values; got {edges.tolist()}.")
    for key, values in (("counts", counts), ("confidence", conf), ("outcome", outcome)):
        if values.size != n_bins:
            raise ValueError(
                f"`{name}[{key!r}]` of {where} must have {n_bins} values (one per bin, edges has {edges.size}); "
                f"got {values.size}."
            )
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise ValueError(f"`{name}['counts']` of {where} must be integers >= 0; got {counts.tolist()}.")
    full = counts > 0
    if not (np.all(np.isfinite(conf[full])) and np.all(np.isfinite(outcome[full]))):
        bad = np.flatnonzero(full & ~(np.isfinite(conf) & np.isfinite(outcome))).tolist()
        raise ValueError(f"`{name}` of {where} has samples but no confidence/outcome in the bins {bad}.")
    return ReliabilityDiagram(
        bin_edges=torch.from_numpy(edges),
        counts=torch.from_numpy(counts.astype(np.int64))[None],
        confidence=torch.from_numpy(np.where(full, conf, np.nan))[None],
        outcome=torch.from_numpy(np.where(full, outcome, np.nan))[None],
        mode="top_label",
        classes=(),
    )


def diagram_ece(diagram: ReliabilityDiagram, *, row: int = 0) -> float:
    """Expected calibration error of one row of a diagram: ``Σ_m n_m |conf_m − outcome_m| / Σ_m n_m``.

    Empty bins (``n_m = 0``) do not count; a row without samples gives NaN.

    Args:
        diagram: the bins, e.g. from :func:`softlabels.metrics.functional.calibration.reliability_diagram`.
        row: which row (0 for top-label).

    Returns:
        The ECE (L1, count-weighted), a float in ``[0, 1]`` or NaN.

    Example:
        >>> d = ReliabilityDiagram(
        ...     torch.tensor([0.0, 0.5, 1.0]), torch.tensor([[1, 3]]), torch.tensor([[0.25, 0.75]]),
        ...     torch.tensor([[0.5, 0.5]]), "top_label", ())
        >>> diagram_ece(d)  # (1 · 0.25 + 3 · 0.25) / 4
        0.25
    """
    counts = diagram.counts[row].detach().cpu().double().numpy()
    conf = diagram.confidence[row].detach().cpu().double().numpy()
    outcome = diagram.outcome[row].detach().cpu().double().numpy()
    full = counts > 0
    total = counts[full].sum()
    if total <= 0:
        return math.nan
    return float((counts[full] * np.abs(conf[full] - outcome[full])).sum() / total)


def _panel_title(label: str, ece: float) -> str:
    """Wrapped method label over ``ECE = x.xxxx`` (``n/a`` without samples)."""
    value = "n/a (no samples)" if math.isnan(ece) else f"{ece:.4f}"
    return f"{_wrap(str(label), width=34)}\nECE = {value}"


def reliability_grid(diagrams: Mapping[str, Mapping[str, Sequence[Any]]], *, title: str, ncols: int = 4) -> Figure:
    """Draw one reliability diagram per method as small multiples with the same axes, titled with the method's ECE.

    Each panel (drawn by :func:`softlabels.metrics.plot.plot_reliability_diagram`) shows the mean outcome of each
    non-empty bin as a bar, the gap to the bin's mean confidence hatched, and the diagonal; its title is the method
    label and ``ECE = Σ_m n_m |conf_m − outcome_m| / Σ_m n_m`` over the non-empty bins (:func:`diagram_ece`).

    Args:
        diagrams: method label → ``{"edges": (n_bins + 1), "counts": (n_bins) ints, "confidence": (n_bins),
            "outcome": (n_bins)}``; confidence and outcome are the bin means, ``None``/NaN where the bin is empty.
            Panels follow the mapping's order; each method may have its own bins.
        title: the figure title.
        ncols: panels per row; unused cells of the last row are hidden.

    Returns:
        The figure, ``PANEL_INCHES`` (2.4 in) per panel plus room for the title and a legend.

    Raises:
        ValueError: no methods, a missing key, lengths that do not match the edges, negative or fractional counts,
            a non-empty bin without confidence/outcome, or ``ncols < 1``.

    Example:
        >>> bins = {"edges": [0.0, 0.5, 1.0], "counts": [2, 6], "confidence": [0.4, 0.8], "outcome": [0.5, 0.7]}
        >>> fig = reliability_grid({"hard": bins, "soft": bins}, title="top-label reliability")
        >>> [ax.get_title().splitlines() for ax in fig.axes if ax.get_visible()]
        [['hard', 'ECE = 0.1000'], ['soft', 'ECE = 0.1000']]
    """
    from matplotlib.lines import Line2D

    from softlabels.metrics.plot import plot_reliability_diagram

    _require_methods(diagrams, "diagrams", "reliability_grid")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"`ncols` of reliability_grid must be an int >= 1; got {ncols!r}.")
    packed = {label: _diagram(label, data) for label, data in diagrams.items()}
    cols = min(ncols, len(packed))
    nrows = math.ceil(len(packed) / cols)
    edges = np.concatenate([d.bin_edges.numpy() for d in packed.values()])
    limits = (min(0.0, float(edges.min())), max(1.0, float(edges.max())))
    figure = _new_figure(PANEL_INCHES * cols, PANEL_INCHES * nrows + 0.7)
    axes = figure.subplots(nrows, cols, squeeze=False).ravel()
    for i, (ax, (label, diagram)) in enumerate(zip(axes, packed.items(), strict=False)):
        plot_reliability_diagram(diagram, ax=ax, title=_panel_title(label, diagram_ece(diagram)), show_counts=False)
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
        below_empty = i + cols >= len(packed)
        ax.set(xlim=limits, ylim=limits, xlabel="confidence" if below_empty else "")
        ax.set_ylabel("outcome" if i % cols == 0 else "")
        ax.set_aspect("equal", adjustable="box")
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
            text.set_fontsize(8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(packed) :]:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="gray", linestyle="--", linewidth=1))
    names.append("perfect calibration")
    figure.legend(handles, names, loc="outside lower center", ncols=3, **LEGEND)
    figure.suptitle(title, fontsize=10)
    return figure


def _curve(label: str, data: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    """Check one method's threshold curve: thresholds, mean and optionally low and high of the same length."""
    name, where = f"curves[{label!r}]", "threshold_curves"
    out = {"thresholds": _take(data, "thresholds", name, where), "mean": _take(data, "mean", name, where)}
    if ("low" in data) != ("high" in data):
        raise ValueError(f"`{name}` of {where} needs both 'low' and 'high' for a band, or neither; got one.")
    if "low" in data:
        out |= {"low": _take(data, "low", name, where), "high": _take(data, "high", name, where)}
    n = out["thresholds"].size
    if n < 1:
        raise ValueError(f"`{name}['thresholds']` of {where} is empty; give at least one threshold.")
    for key, values in out.items():
        if values.size != n:
            raise ValueError(f"`{name}[{key!r}]` of {where} must have {n} values like 'thresholds'; got {values.size}.")
    return out


def _wrap(text: str, suffix: str = "", width: int = 32) -> str:
    """``text`` wrapped at ``width`` characters (keeping its line breaks), ``suffix`` appended unbroken."""
    lines = [part for line in text.splitlines() for part in textwrap.wrap(line, width)] or [""]
    if suffix:
        lines[-1:] = [f"{lines[-1]} {suffix}"] if len(lines[-1]) + len(suffix) < width else [lines[-1], suffix]
    return "\n".join(lines)


def _legend_figure(labels: Sequence[str], width: float, plot_height: float) -> tuple[Figure, list[str], int]:
    """A figure ``width`` wide with room for a legend below the plot; the wrapped labels and the legend columns."""
    wrapped = [_wrap(str(label)) for label in labels]
    longest = max(len(line) for label in wrapped for line in label.splitlines())
    ncols = max(1, min(4, len(wrapped), int(width // (0.047 * longest + 0.5))))
    rows = math.ceil(sum(label.count("\n") + 1 for label in wrapped) / ncols) + 2
    return _new_figure(width, plot_height + 0.17 * rows), wrapped, ncols


def threshold_curves(
    curves: Mapping[str, Mapping[str, Sequence[float]]], *, title: str, ylabel: str = "Dice"
) -> Figure:
    """Draw one line per method of a score against the binarisation threshold, with an optional shaded band.

    Each method gets its own colour, line style and marker (:func:`method_style`); the legend sits below the axes
    in up to four columns (labels wrapped), so ~16 methods stay readable. NaN values leave gaps in lines and bands.

    Args:
        curves: method label → ``{"thresholds": (T), "mean": (T)}`` with optional ``"low"`` and ``"high"`` (T)
            bounding a shaded band (e.g. a confidence interval or quartiles), both or neither.
        title: the figure title.
        ylabel: the y-axis label (the score, with its unit if any).

    Returns:
        The figure, 6.4 in wide.

    Raises:
        ValueError: no methods, a missing key, lengths that differ from ``"thresholds"``, no thresholds, or only
            one of ``"low"``/``"high"``.

    Example:
        >>> t = [0.1, 0.3, 0.5, 0.7, 0.9]
        >>> fig = threshold_curves(
        ...     {"hard": {"thresholds": t, "mean": [0.6, 0.7, 0.8, 0.7, 0.5]},
        ...      "soft": {"thresholds": t, "mean": [0.7, 0.8, 0.8, 0.8, 0.7], "low": [0.6] * 5, "high": [0.9] * 5}},
        ...     title="thresholded Dice")
        >>> ax = fig.axes[0]
        >>> len(ax.get_lines()), ax.get_xlabel(), ax.get_ylabel()
        (2, 'threshold', 'Dice')
    """
    _require_methods(curves, "curves", "threshold_curves")
    checked = {label: _curve(label, data) for label, data in curves.items()}
    figure, labels, legend_cols = _legend_figure(list(checked), 6.4, 3.4)
    ax = figure.subplots()
    for i, (label, curve) in enumerate(zip(labels, checked.values(), strict=True)):
        style = method_style(i)
        t = curve["thresholds"]
        ax.plot(t, curve["mean"], label=label, linewidth=1.3, markersize=3.5, **style)
        if "low" in curve:
            low, high = curve["low"], curve["high"]
            ok = np.isfinite(t) & np.isfinite(low) & np.isfinite(high)
            ax.fill_between(t, low, high, where=ok, color=style["color"], alpha=0.12, linewidth=0)
    ax.set_xlabel("threshold", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, linewidth=0.4, alpha=0.5)
    figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=legend_cols, **LEGEND)
    figure.suptitle(title, fontsize=10)
    return figure


COLUMNS = ("image", "reference", "prediction", "entropy", "disagreement")
HEADINGS = ("image", "reference (p fg)", "prediction (p fg)", "entropy (nats)", "rater disagreement")


def _positive(row: Mapping[str, Any], key: str, default: float, name: str) -> float:
    """``row[key]`` (or ``default``) as a finite float > 0."""
    value = row.get(key, default)
    try:
        out = float(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"`{name}[{key!r}]` of example_panels must be a number; got {value!r}.") from error
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"`{name}[{key!r}]` of example_panels must be finite and > 0; got {value!r}.")
    return out


def _example_row(i: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """Check one example row: the label, H×W arrays of one shape, and the entropy/disagreement ranges."""
    name = f"rows[{i}]"
    if not isinstance(row, Mapping):
        raise TypeError(f"`{name}` of example_panels must be a mapping; got {type(row).__name__}.")
    keys = [k for k in COLUMNS if k != "disagreement" or row.get(k) is not None]
    missing = [k for k in ["label", *keys] if k not in row]
    if missing:
        raise ValueError(f"`{name}` of example_panels lacks the keys {missing}; got keys {sorted(row)}.")
    out: dict[str, Any] = {"label": str(row["label"])}
    for key in keys:
        array = np.asarray(row[key], dtype=np.float64)
        if array.ndim != 2:
            raise ValueError(f"`{name}[{key!r}]` of example_panels must be 2-D (H, W); got shape {array.shape}.")
        if array.shape != out.get("image", array).shape:
            raise ValueError(
                f"`{name}[{key!r}]` of example_panels has shape {array.shape}, but 'image' has {out['image'].shape}."
            )
        out[key] = array
    out["max_entropy"] = _positive(row, "max_entropy", math.log(2), name)
    out["max_disagreement"] = _positive(row, "max_disagreement", 0.25, name)
    return out


def _is_probability(array: np.ndarray) -> bool:
    """Whether the finite values of ``array`` all lie in ``[0, 1]`` (else it is a label map)."""
    finite = array[np.isfinite(array)]
    return bool(finite.size == 0 or (finite.min() >= 0 and finite.max() <= 1))


def _intensity_range(image: np.ndarray) -> tuple[float, float]:
    """The 1st and 99th percentile of the finite values (a robust grey window)."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, [1, 99]))
    return (low, high) if high > low else (low, low + 1.0)


def _show(ax: Axes, row: dict[str, Any], key: str) -> tuple[Any, tuple[float, float] | None]:
    """Draw ``row[key]`` into ``ax`` with its fixed colour range; the image and the range its colourbar shows."""
    array = row[key]
    spec: dict[str, Any]
    if key == "image":
        low, high = _intensity_range(array)
        spec, shown = {"cmap": "gray", "vmin": low, "vmax": high}, None
    elif key == "reference" and not _is_probability(array):
        spec, shown = {"cmap": "tab10", "vmin": -0.5, "vmax": 9.5}, None  # label map: one colour per label 0..9
    elif key in ("reference", "prediction"):
        spec, shown = {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}, (0.0, 1.0)
    else:
        top = row["max_entropy" if key == "entropy" else "max_disagreement"]
        spec, shown = {"cmap": "magma", "vmin": 0.0, "vmax": top}, (0.0, top)
    return ax.imshow(array, interpolation="nearest", **spec), shown


def _colourbars(figure: Figure, column: Sequence[Axes], images: Sequence[Any], ranges: Sequence[Any]) -> None:
    """One colourbar under the column if all rows share a colour range, else one beside each image (if any range).

    Columns without a shared colourbar get a hidden one, so that all columns keep the same height.
    """
    bar = figure.colorbar(images[0], ax=column, location="bottom", shrink=0.85, aspect=18, pad=0.02)
    bar.ax.tick_params(labelsize=6)
    shared = all(r is not None and r == ranges[0] for r in ranges)
    bar.ax.set_visible(shared)
    if shared or any(r is None for r in ranges):
        return
    for image in images:
        figure.colorbar(image, ax=image.axes, location="right", shrink=0.8, pad=0.02).ax.tick_params(labelsize=6)


def example_panels(rows: Sequence[Mapping[str, Any]], *, title: str) -> Figure:
    """Draw one row per example case: image, reference, prediction, predictive entropy and rater disagreement.

    Colour ranges are fixed: probabilities ``0..1`` (viridis), entropy ``0..max_entropy`` and disagreement
    ``0..max_disagreement`` (magma), the image a grey window from its 1st to 99th percentile. A reference with
    values outside ``[0, 1]`` is shown as a label map (one colour per label 0..9). Each column with a fixed range
    gets one colourbar below it (one per image if the rows' ranges differ). The disagreement column is drawn when
    any row has ``"disagreement"``; rows without it show an empty cell. NaN pixels are left blank.

    Args:
        rows: one mapping per example with ``"label"`` (row title, e.g. ``"hard · case_0003"``) and the (H, W) maps
            ``"image"``, ``"reference"`` (soft reference foreground probability or label map), ``"prediction"``
            (foreground probability), ``"entropy"`` (predictive entropy in nats), optionally ``"disagreement"``
            (e.g. per-pixel variance of the raters' votes), ``"max_entropy"`` (default ``log 2``; ``log C`` for C
            classes) and ``"max_disagreement"`` (default 0.25, the largest variance of binary votes; ``log 2`` for
            a binary rater entropy). The maps of one row share one shape; rows may differ.
        title: the figure title.

    Returns:
        The figure, ``EXAMPLE_INCHES`` (1.8 in) per image plus room for titles and colourbars.

    Raises:
        ValueError: no rows, a missing key, a map that is not 2-D or whose shape differs from the row's image, or
            a range that is not a positive number.

    Example:
        >>> p = np.linspace(0.01, 0.99, 16).reshape(4, 4)
        >>> h = -(p * np.log(p) + (1 - p) * np.log(1 - p))
        >>> row = {"label": "hard · case_0003", "image": p, "reference": p > 0.5, "prediction": p, "entropy": h}
        >>> fig = example_panels([row, {**row, "label": "soft · case_0003"}], title="examples")
        >>> [ax.get_title() for ax in fig.axes[:4]]
        ['image', 'reference (p fg)', 'prediction (p fg)', 'entropy (nats)']
    """
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise TypeError(f"`rows` of example_panels must be a sequence of mappings; got {type(rows).__name__}.")
    if not rows:
        raise ValueError("`rows` of example_panels has no examples; give at least one row.")
    checked = [_example_row(i, row) for i, row in enumerate(rows)]
    columns = [
        (k, t) for k, t in zip(COLUMNS, HEADINGS, strict=True) if k != "disagreement" or any(k in r for r in checked)
    ]
    figure = _new_figure(EXAMPLE_INCHES * len(columns) + 0.4, EXAMPLE_INCHES * len(checked) + 1.0)
    axes = figure.subplots(len(checked), len(columns), squeeze=False)
    for j, (key, heading) in enumerate(columns):
        images, ranges = [], []
        for i, row in enumerate(checked):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(heading, fontsize=8)
            if j == 0:
                ax.set_ylabel(textwrap.fill(row["label"], 24), fontsize=7)
            if key not in row:
                ax.set_box_aspect(row["image"].shape[0] / max(row["image"].shape[1], 1))
                ax.text(0.5, 0.5, "no raters", ha="center", va="center", fontsize=7, color="gray")
                continue
            image, shown = _show(ax, row, key)
            images.append(image)
            ranges.append(shown)
        _colourbars(figure, list(axes[:, j]), images, ranges)
    figure.suptitle(title, fontsize=10)
    return figure


def _pair(label: str, value: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check one method's ``(x, y)`` pair: two sequences of equal length."""
    name, where = f"points[{label!r}]", "scatter_fractions"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"`{name}` of {where} must be a pair (x values, y values); got {value!r}.")
    x, y = _floats(value[0], f"{name}[0]", where), _floats(value[1], f"{name}[1]", where)
    if x.size != y.size:
        raise ValueError(f"`{name}` of {where} has {x.size} x values but {y.size} y values; they must match.")
    return x, y


def _mae(x: np.ndarray, y: np.ndarray) -> float:
    """Mean ``|y − x|`` over the points where both are finite (NaN if none)."""
    ok = np.isfinite(x) & np.isfinite(y)
    return float(np.abs(y[ok] - x[ok]).mean()) if ok.any() else math.nan


def scatter_fractions(
    points: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str, xlabel: str, ylabel: str
) -> Figure:
    """Scatter one value pair per case, one colour and marker per method, against the identity line ``y = x``.

    Meant for the downstream check: true structure fraction (x) against the fraction from the prediction (y). The
    axes are square with the same limits on both, spanning all finite points (``0..1`` if there are none); points
    with a NaN coordinate are left out. The legend (below the axes) gives each method's mean ``|y − x|``.

    Args:
        points: method label → ``(x values, y values)`` of equal length, one value per case.
        title: the figure title.
        xlabel: the x-axis label (e.g. ``"true fraction"``).
        ylabel: the y-axis label (e.g. ``"predicted fraction"``).

    Returns:
        The figure, 5.6 in wide.

    Raises:
        ValueError: no methods, a value that is not a pair, or pairs of different lengths.

    Example:
        >>> fig = scatter_fractions(
        ...     {"hard": ([0.1, 0.2, 0.3], [0.1, 0.25, 0.2]), "soft": ([0.1, 0.2, 0.3], [0.12, 0.2, 0.31])},
        ...     title="structure fraction", xlabel="true fraction", ylabel="predicted fraction")
        >>> [t.get_text() for t in fig.legends[0].get_texts()]
        ['identity', 'hard (MAE 0.0500)', 'soft (MAE 0.0100)']
    """
    _require_methods(points, "points", "scatter_fractions")
    pairs = {label: _pair(label, value) for label, value in points.items()}
    both = [np.concatenate([x, y])[np.tile(np.isfinite(x) & np.isfinite(y), 2)] for x, y in pairs.values()]
    values = np.concatenate(both)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = 0.05 * (high - low) if high > low else 0.05
    limits = (low - pad, high + pad)
    maes = [_mae(x, y) for x, y in pairs.values()]
    texts = [
        _wrap(str(k), f"(MAE {m:.4f})" if math.isfinite(m) else "(no points)") for k, m in zip(pairs, maes, strict=True)
    ]
    figure, labels, legend_cols = _legend_figure(["identity", *texts], 5.6, 4.4)
    ax = figure.subplots()
    ax.plot(limits, limits, color="gray", linestyle="--", linewidth=1, label=labels[0])
    for i, ((x, y), text) in enumerate(zip(pairs.values(), labels[1:], strict=True)):
        style = method_style(i)
        ax.scatter(x, y, s=16, c=style["color"], marker=style["marker"], alpha=0.8, linewidths=0, label=text)
    ax.set(xlim=limits, ylim=limits)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, linewidth=0.4, alpha=0.5)
    figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=legend_cols, **LEGEND)
    figure.suptitle(title, fontsize=10)
    return figure


def figure_png(fig: Figure, *, dpi: int = 110) -> bytes:
    """Render a figure to PNG bytes (Agg), ``int(width × dpi)`` by ``int(height × dpi)`` pixels; the figure stays open.

    Args:
        fig: the figure.
        dpi: dots per inch (an int >= 1).

    Returns:
        The PNG file content.

    Raises:
        ValueError: ``dpi < 1``.

    Example:
        >>> fig = scatter_fractions({"m": ([0.1], [0.2])}, title="t", xlabel="x", ylabel="y")
        >>> data = figure_png(fig, dpi=50)
        >>> data[:8] == PNG_SIGNATURE
        True
    """
    if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < 1:
        raise ValueError(f"`dpi` of figure_png must be an int >= 1; got {dpi!r}.")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def png_data_uri(data: bytes) -> str:
    """Wrap PNG bytes as a ``data:image/png;base64,...`` URI for an ``<img src=...>`` in a self-contained HTML file.

    Args:
        data: PNG file content, e.g. from :func:`figure_png`.

    Returns:
        The data URI.

    Raises:
        ValueError: ``data`` does not start with the PNG signature.

    Example:
        >>> png_data_uri(PNG_SIGNATURE)
        'data:image/png;base64,iVBORw0KGgo='
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"`data` of png_data_uri must be bytes; got {type(data).__name__}.")
    if bytes(data[:8]) != PNG_SIGNATURE:
        raise ValueError(f"`data` of png_data_uri is not a PNG (no PNG signature); starts with {bytes(data[:8])!r}.")
    return "data:image/png;base64," + base64.b64encode(bytes(data)).decode("ascii")


__all__ = [
    "diagram_ece",
    "example_panels",
    "figure_png",
    "method_style",
    "png_data_uri",
    "reliability_grid",
    "scatter_fractions",
    "threshold_curves",
]
