"""Report figures: panel counts, ECE titles from the data, fixed colour ranges, PNG bytes and data URIs, bad input."""

from __future__ import annotations

import base64
import math
import re
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from numpy.random import default_rng

from softlabels.bench.figures import (
    PNG_SIGNATURE,
    diagram_ece,
    example_panels,
    figure_png,
    method_style,
    png_data_uri,
    reliability_grid,
    scatter_fractions,
    threshold_curves,
)
from softlabels.metrics.functional.calibration import calibration_error, reliability_diagram


def visible(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def assert_pixels(data: bytes, inches, dpi: int) -> None:
    """The PNG is inches × dpi pixels, to the pixel (the float product is cut to an int)."""
    size = png_size(data)
    assert all(abs(v * dpi - n) < 1 for n, v in zip(size, inches, strict=True)), (size, inches, dpi)


def bins(seed: int = 0, n_bins: int = 5, empty: tuple[int, ...] = ()):
    rng = default_rng(seed)
    counts = rng.integers(1, 40, n_bins)
    counts[list(empty)] = 0
    conf = [None if counts[m] == 0 else float(v) for m, v in enumerate(rng.uniform(0, 1, n_bins))]
    outcome = [math.nan if counts[m] == 0 else float(v) for m, v in enumerate(rng.uniform(0, 1, n_bins))]
    return {"edges": np.linspace(0, 1, n_bins + 1), "counts": counts.tolist(), "confidence": conf, "outcome": outcome}


def reference_ece(d) -> float:
    counts = np.asarray(d["counts"], dtype=np.float64)
    conf = np.array([np.nan if v is None else v for v in d["confidence"]], dtype=np.float64)
    outcome = np.array([np.nan if v is None else v for v in d["outcome"]], dtype=np.float64)
    full = counts > 0
    return float(np.sum(counts[full] * np.abs(conf[full] - outcome[full])) / counts[full].sum())


def title_ece(ax) -> str:
    match = re.search(r"ECE = (\S+)", ax.get_title())
    assert match, ax.get_title()
    return match.group(1)


# reliability_grid


def test_reliability_grid_one_visible_panel_per_method_with_the_same_limits():
    diagrams = {f"method {i}": bins(i, empty=(0,)) for i in range(5)}
    fig = reliability_grid(diagrams, title="reliability", ncols=4)
    assert isinstance(fig, Figure)
    panels = visible(fig)
    assert len(panels) == 5 and len(fig.axes) == 8  # 2 rows × 4, three hidden
    assert [ax.get_title().splitlines()[0] for ax in panels] == list(diagrams)
    assert {ax.get_xlim() for ax in panels} == {(0.0, 1.0)} and {ax.get_ylim() for ax in panels} == {(0.0, 1.0)}
    assert fig.get_suptitle() == "reliability"
    assert [ax.get_ylabel() for ax in panels] == ["outcome", "", "", "", "outcome"]
    assert [ax.get_xlabel() for ax in panels] == ["", *["confidence"] * 4]  # every column's lowest panel
    assert fig.get_size_inches().tolist() == pytest.approx([4 * 2.4, 2 * 2.4 + 0.7])


@pytest.mark.parametrize(("n", "ncols", "shape"), [(1, 4, (1, 1)), (4, 4, (1, 4)), (7, 3, (3, 3)), (3, 1, (3, 1))])
def test_reliability_grid_shape(n, ncols, shape):
    fig = reliability_grid({str(i): bins(i) for i in range(n)}, title="t", ncols=ncols)
    assert len(visible(fig)) == n and len(fig.axes) == shape[0] * shape[1]


def test_reliability_grid_title_ece_equals_the_hand_computation():
    crafted = {
        "edges": [0.0, 0.25, 0.5, 0.75, 1.0],
        "counts": [0, 3, 1, 4],
        "confidence": [None, 0.4, 0.6, 0.9],
        "outcome": [None, 0.3, 0.8, 0.85],
    }
    hand = (3 * 0.1 + 1 * 0.2 + 4 * 0.05) / 8
    assert reference_ece(crafted) == pytest.approx(hand)
    (ax,) = visible(reliability_grid({"crafted": crafted}, title="t"))
    assert ax.get_title() == f"crafted\nECE = {hand:.4f}"
    assert len(ax.patches) == 2 * 3  # outcome bar and gap outline per non-empty bin


def test_reliability_grid_nan_bins_and_empty_diagrams_render():
    empty = {"edges": [0, 0.5, 1], "counts": [0, 0], "confidence": [None, None], "outcome": [math.nan, math.nan]}
    fig = reliability_grid({"nan bins": bins(1, n_bins=10, empty=(0, 3, 9)), "no samples": empty}, title="t")
    assert title_ece(visible(fig)[1]) == "n/a"
    assert_pixels(figure_png(fig, dpi=30), (2 * 2.4, 2.4 + 0.7), 30)


def test_reliability_grid_wraps_long_labels_and_accepts_arrays():
    d = bins(2)
    d = {k: np.asarray(v, dtype=float) if k != "confidence" else v for k, v in d.items()}
    label = "soft labels with temperature scaling fitted on the validation split"
    (ax,) = visible(reliability_grid({label: d}, title="t"))
    assert ax.get_title().count("\n") >= 2 and "".join(ax.get_title().split()).startswith("".join(label.split()))


def test_diagram_ece_equals_calibration_error_of_the_same_data():
    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(200, 3, generator=g) * 2, 1)
    target = torch.randint(0, 3, (200,), generator=g)
    d = reliability_diagram(probs, target, n_bins=10)
    assert diagram_ece(d) == pytest.approx(float(calibration_error(probs, target, n_bins=10)), abs=1e-6)
    data = {
        "edges": d.bin_edges.tolist(),
        "counts": d.counts[0].tolist(),
        "confidence": d.confidence[0].tolist(),
        "outcome": d.outcome[0].tolist(),
    }
    (ax,) = visible(reliability_grid({"m": data}, title="t"))
    assert title_ece(ax) == f"{reference_ece(data):.4f}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("outcome"), "lacks the key 'outcome'"),
        (lambda d: d.update(counts=d["counts"][:-1]), r"\['counts'\].*must have 5 values"),
        (lambda d: d.update(confidence=[*d["confidence"], 0.5]), r"\['confidence'\].*must have 5 values"),
        (lambda d: d.update(edges=[0.0]), "edges"),
        (lambda d: d.update(edges=[0, 0.5, 0.4, 0.6, 0.8, 1]), "increasing"),
        (lambda d: d.update(counts=[1, -1, 2, 3, 4]), "integers >= 0"),
        (lambda d: d.update(counts=[1, 1.5, 2, 3, 4]), "integers >= 0"),
        (lambda d: d.update(outcome=[math.nan, 0.1, 0.2, 0.3, 0.4]), r"no confidence/outcome in the bins \[0\]"),
    ],
)
def test_reliability_grid_bad_diagram(change, message):
    d = bins(0)
    change(d)
    with pytest.raises(ValueError, match=message) as info:
        reliability_grid({"bad method": d}, title="t")
    assert "diagrams['bad method']" in str(info.value)


def test_reliability_grid_no_methods_or_bad_ncols():
    with pytest.raises(ValueError, match="no methods"):
        reliability_grid({}, title="t")
    with pytest.raises(ValueError, match="`ncols`"):
        reliability_grid({"m": bins()}, title="t", ncols=0)


@settings(max_examples=10, deadline=None)
@given(
    n_methods=st.integers(1, 5),
    n_bins=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    ncols=st.integers(1, 5),
)
def test_random_diagrams_always_render_with_the_right_ece(n_methods, n_bins, seed, ncols):
    rng = default_rng(seed)
    diagrams = {}
    for i in range(n_methods):
        empty = tuple(np.flatnonzero(rng.uniform(size=n_bins) < 0.4).tolist())
        diagrams[f"m{i}"] = bins(int(rng.integers(0, 2**31)), n_bins=n_bins, empty=empty)
    fig = reliability_grid(diagrams, title="t", ncols=ncols)
    panels = visible(fig)
    assert len(panels) == n_methods
    for ax, d in zip(panels, diagrams.values(), strict=True):
        expected = "n/a" if sum(d["counts"]) == 0 else f"{reference_ece(d):.4f}"
        assert title_ece(ax) == expected
    assert_pixels(figure_png(fig, dpi=10), fig.get_size_inches(), 10)


# threshold_curves


def curves(n: int, n_t: int = 9, band_every: int = 2):
    t = np.linspace(0.1, 0.9, n_t)
    out = {}
    for i in range(n):
        mean = 0.8 - (t - 0.5) ** 2 - 0.01 * i
        c = {"thresholds": t, "mean": mean}
        if i % band_every == 0:
            c |= {"low": mean - 0.05, "high": mean + 0.05}
        out[f"method {i}"] = c
    return out


def test_threshold_curves_one_line_and_legend_entry_per_method():
    data = curves(16)
    fig = threshold_curves(data, title="thresholded Dice", ylabel="Dice")
    (ax,) = visible(fig)
    assert len(ax.get_lines()) == 16 and len(ax.collections) == 8  # a band for every second method
    assert (ax.get_xlabel(), ax.get_ylabel(), fig.get_suptitle()) == ("threshold", "Dice", "thresholded Dice")
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == list(data)
    styles = {(line.get_color(), line.get_linestyle(), line.get_marker()) for line in ax.get_lines()}
    assert len(styles) == 16


def test_threshold_curves_nan_values_render():
    data = curves(3)
    data["method 1"]["mean"] = np.where(data["method 1"]["thresholds"] > 0.6, np.nan, data["method 1"]["mean"])
    data["method 0"]["low"] = [math.nan] * 9
    data["all nan"] = {"thresholds": [0.5], "mean": [math.nan]}
    fig = threshold_curves(data, title="t", ylabel="HD95 (mm)")
    assert visible(fig)[0].get_ylabel() == "HD95 (mm)"
    assert figure_png(fig, dpi=20)[:8] == PNG_SIGNATURE


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"thresholds": [0.1, 0.5], "mean": [0.5]}, r"\['mean'\].*must have 2 values"),
        ({"thresholds": [0.1, 0.5], "mean": [0.5, 0.6], "low": [0.4, 0.5]}, "both 'low' and 'high'"),
        ({"thresholds": [0.1], "mean": [0.5], "low": [0.4], "high": [0.6, 0.7]}, r"\['high'\].*must have 1 values"),
        ({"thresholds": [], "mean": []}, "empty"),
        ({"mean": [0.5]}, "lacks the key 'thresholds'"),
    ],
)
def test_threshold_curves_bad_input(value, message):
    with pytest.raises(ValueError, match=message) as info:
        threshold_curves({"bad": value}, title="t")
    assert "curves['bad']" in str(info.value)
    with pytest.raises(ValueError, match="no methods"):
        threshold_curves({}, title="t")


def test_method_styles_are_distinct_for_40_methods():
    styles = [tuple(method_style(i).values()) for i in range(40)]
    assert len(set(styles)) == 40
    assert len({s[0] for s in styles[:10]}) == 10
    with pytest.raises(ValueError, match="`index`"):
        method_style(-1)


# example_panels


def example(label: str, shape=(12, 10), disagreement: bool = False, **extra):
    rng = default_rng(len(label))
    p = rng.uniform(0.01, 0.99, shape)
    row = {
        "label": label,
        "image": rng.normal(size=shape),
        "reference": rng.uniform(size=shape),
        "prediction": p,
        "entropy": -(p * np.log(p) + (1 - p) * np.log(1 - p)),
        **extra,
    }
    if disagreement:
        row["disagreement"] = rng.uniform(0, 0.25, shape)
    return row


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images or ax.texts]


def test_example_panels_four_columns_without_raters():
    fig = example_panels([example("hard · case_0003"), example("soft · case_0003")], title="examples")
    assert len(image_axes(fig)) == 8
    assert len(visible(fig)) == 8 + 3  # shared colourbars: reference, prediction, entropy
    assert [ax.get_title() for ax in fig.axes[:4]] == [
        "image",
        "reference (p fg)",
        "prediction (p fg)",
        "entropy (nats)",
    ]
    assert [fig.axes[0].get_ylabel(), fig.axes[4].get_ylabel()] == ["hard · case_0003", "soft · case_0003"]
    assert fig.get_suptitle() == "examples"
    assert fig.get_size_inches()[1] == pytest.approx(2 * 1.8 + 1.0)
    reference, prediction, entropy = (fig.axes[j].images[0] for j in (1, 2, 3))
    assert reference.get_clim() == prediction.get_clim() == (0.0, 1.0)
    assert entropy.get_clim() == pytest.approx((0.0, math.log(2)))


def test_example_panels_disagreement_column_when_any_row_has_it():
    rows = [example("a", disagreement=True), example("b"), example("c", disagreement=True, max_disagreement=0.5)]
    fig = example_panels(rows, title="t")
    assert len(image_axes(fig)) == 15
    grid = fig.axes[:15]
    assert grid[4].get_title() == "rater disagreement"
    assert [t.get_text() for t in grid[9].texts] == ["no raters"] and not grid[9].images
    assert grid[4].images[0].get_clim() == (0.0, 0.25) and grid[14].images[0].get_clim() == (0.0, 0.5)
    # three shared colourbars, two per-row ones for the disagreement ranges that differ
    assert len(visible(fig)) == 15 + 3 + 2


def test_example_panels_entropy_range_per_row_and_label_maps():
    rows = [example("a", max_entropy=math.log(3)), example("b")]
    rows[0]["reference"] = default_rng(0).integers(0, 3, (12, 10))
    fig = example_panels(rows, title="t")
    assert fig.axes[3].images[0].get_clim() == pytest.approx((0, math.log(3)))
    assert fig.axes[7].images[0].get_clim() == pytest.approx((0, math.log(2)))
    assert fig.axes[1].images[0].get_cmap().name == "tab10" and fig.axes[5].images[0].get_cmap().name == "viridis"
    assert len(visible(fig)) == 8 + 1 + 2  # prediction shared; entropy one per row; reference none (a label map)


def test_example_panels_nan_pixels_and_different_shapes_across_rows():
    a = example("a", shape=(8, 8))
    a["prediction"][0, 0] = math.nan
    a["image"][:] = math.nan
    fig = example_panels([a, example("b", shape=(6, 9), disagreement=True)], title="t")
    assert_pixels(figure_png(fig, dpi=20), fig.get_size_inches(), 20)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(entropy=np.zeros((12, 11))), r"rows\[0\]\['entropy'\].*shape \(12, 11\).*'image' has"),
        (lambda r: r.update(disagreement=np.zeros((3, 3))), r"rows\[0\]\['disagreement'\].*shape \(3, 3\)"),
        (lambda r: r.update(prediction=np.zeros((1, 12, 10))), r"rows\[0\]\['prediction'\].*must be 2-D"),
        (lambda r: r.pop("reference"), r"rows\[0\].*lacks the keys \['reference'\]"),
        (lambda r: r.pop("label"), r"lacks the keys \['label'\]"),
        (lambda r: r.update(max_entropy=0.0), r"\['max_entropy'\].*> 0"),
    ],
)
def test_example_panels_bad_input(change, message):
    row = example("a")
    change(row)
    with pytest.raises(ValueError, match=message):
        example_panels([row], title="t")


def test_example_panels_no_rows():
    with pytest.raises(ValueError, match="no examples"):
        example_panels([], title="t")


# scatter_fractions


def test_scatter_fractions_one_series_per_method_and_the_identity_line():
    rng = default_rng(1)
    true = rng.uniform(0.05, 0.4, 20)
    points = {f"m{i}": (true, true + rng.normal(0, 0.02, 20)) for i in range(16)}
    points["m3"][1][0] = math.nan
    fig = scatter_fractions(points, title="fraction", xlabel="true fraction", ylabel="predicted fraction")
    (ax,) = visible(fig)
    assert len(ax.collections) == 16 and len(ax.get_lines()) == 1
    assert (ax.get_xlabel(), ax.get_ylabel(), fig.get_suptitle()) == ("true fraction", "predicted fraction", "fraction")
    assert ax.get_xlim() == ax.get_ylim()
    identity = ax.get_lines()[0]
    assert list(identity.get_xdata()) == list(identity.get_ydata())
    x, y = points["m0"]
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[0] == "identity" and texts[1] == f"m0 (MAE {np.mean(np.abs(y - x)):.4f})"
    assert len(texts) == 17


def test_scatter_fractions_nan_and_empty():
    fig = scatter_fractions({"nan": ([math.nan], [0.2]), "none": ([], [])}, title="t", xlabel="x", ylabel="y")
    assert visible(fig)[0].get_xlim() == pytest.approx((-0.05, 1.05))
    assert [t.get_text() for t in fig.legends[0].get_texts()][1:] == ["nan (no points)", "none (no points)"]
    assert figure_png(fig, dpi=20)[:8] == PNG_SIGNATURE


def test_scatter_fractions_bad_input():
    with pytest.raises(ValueError, match=r"points\['m'\].*3 x values but 2 y values"):
        scatter_fractions({"m": ([0.1, 0.2, 0.3], [0.1, 0.2])}, title="t", xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match=r"points\['m'\].*must be a pair"):
        scatter_fractions({"m": ([0.1], [0.1], [0.1])}, title="t", xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="no methods"):
        scatter_fractions({}, title="t", xlabel="x", ylabel="y")


# PNG bytes and data URIs


@pytest.mark.parametrize("dpi", [20, 73])
def test_figure_png_has_the_figure_size_times_dpi(dpi):
    fig = reliability_grid({str(i): bins(i) for i in range(3)}, title="t", ncols=2)
    data = figure_png(fig, dpi=dpi)
    assert_pixels(data, fig.get_size_inches(), dpi)
    assert png_size(figure_png(fig, dpi=dpi)) == png_size(data)  # still usable: nothing closed


def test_figure_png_default_dpi_and_bad_dpi():
    fig = scatter_fractions({"m": ([0.1], [0.2])}, title="t", xlabel="x", ylabel="y")
    assert_pixels(figure_png(fig), fig.get_size_inches(), 110)
    for dpi in (0, -3, 1.5):
        with pytest.raises(ValueError, match="`dpi`"):
            figure_png(fig, dpi=dpi)


def test_png_data_uri_round_trips():
    data = figure_png(threshold_curves(curves(2), title="t"), dpi=20)
    uri = png_data_uri(data)
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    assert base64.b64decode(uri[len(prefix) :], validate=True) == data
    with pytest.raises(ValueError, match="not a PNG"):
        png_data_uri(b"GIF89a")
