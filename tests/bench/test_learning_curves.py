import csv
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.bench.learning_curves import (
    TOLERANCE,
    CurveRecorder,
    check_convergence,
    convergence_flags,
    curve_data,
    plot_learning_curves,
)
from softlabels.training.config import config_from_dict
from softlabels.training.run import train

losses = st.lists(st.floats(0.01, 10.0, allow_nan=False), min_size=4, max_size=60)


def reference_drop(values):
    """The rule written out independently: windows of a fifth (at least 2), relative drop of their means."""
    x = np.asarray(values, dtype=np.float64)
    w = max(2, int(np.ceil(len(x) / 5)))
    previous, last = x[-2 * w : -w].mean(), x[-w:].mean()
    return w, (previous - last) / previous


@settings(max_examples=200, deadline=None)
@given(losses)
def test_the_verdict_is_the_relative_drop_of_the_window_means_against_the_tolerance(values):
    check = check_convergence(values)
    w, drop = reference_drop(values)
    assert check.window == w
    assert check.relative_drop == pytest.approx(drop, rel=1e-9, abs=1e-12)
    assert check.converged == (drop <= TOLERANCE)


@settings(max_examples=100, deadline=None)
@given(losses, st.floats(0.01, 100.0))
def test_the_verdict_does_not_depend_on_the_scale_of_the_loss(values, scale):
    a, b = check_convergence(values), check_convergence([v * scale for v in values])
    assert a.relative_drop == pytest.approx(b.relative_drop, rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=4, max_size=40), st.floats(0.01, 5.0))
def test_a_curve_that_never_falls_converges(steps, start):
    rising = list(start + np.cumsum(steps))
    assert check_convergence(rising).converged
    assert check_convergence([start] * len(steps)).converged


@settings(max_examples=100, deadline=None)
@given(st.integers(10, 60), st.floats(0.5, 0.97))
def test_an_exponential_decay_to_zero_is_flagged_when_its_windows_differ_by_more_than_the_tolerance(n, q):
    values = [q**t for t in range(n)]
    w = max(2, math.ceil(n / 5))
    expected_drop = 1 - q**w  # the ratio of the window means of a geometric sequence
    check = check_convergence(values)
    assert check.relative_drop == pytest.approx(expected_drop, rel=1e-6)
    assert not check.converged


def test_a_short_or_broken_curve_is_not_converged_and_says_why():
    assert "4 needed" in check_convergence([0.5, 0.4, 0.4]).reason
    assert not check_convergence([]).converged
    assert "not finite" in check_convergence([0.5, 0.4, math.nan, 0.4, 0.4]).reason
    assert not check_convergence([0.5, 0.4, math.inf, 0.4, 0.4]).converged


def test_epochs_without_validation_are_skipped():
    values = [None, 0.5, None, 0.4, None, 0.4, None, 0.4]
    assert check_convergence(values) == check_convergence([0.5, 0.4, 0.4, 0.4])


@pytest.mark.parametrize("tolerance", [-0.1, "0.1", True, math.nan])
def test_a_bad_tolerance_is_refused(tolerance):
    with pytest.raises(ValueError, match="tolerance"):
        check_convergence([1, 1, 1, 1], tolerance=tolerance)


def test_a_negative_loss_is_refused():
    with pytest.raises(ValueError, match=r"values.*-0\.5"):
        check_convergence([1, 0.5, -0.5, 0.1])


def _config(tmp_path, epochs, every=1):
    return config_from_dict({
        "task": "classification", "output_dir": str(tmp_path), "model": {"name": "small_cnn"}, "seed": 3,
        "data": {"source": "synthetic_classification", "options": {"num_items": [24, 8, 8]}, "batch_size": 8},
        "trainer": {"max_epochs": epochs, "enable_progress_bar": False, "check_val_every_n_epoch": every,
                    "log_every_n_steps": 1},
    })  # fmt: skip


def _logged(folder):
    """Per epoch, the values Lightning's CSV logger wrote (every version of the run)."""
    rows = {}
    for path in sorted(folder.glob("logs/version_*/metrics.csv")):
        for row in csv.DictReader(path.open()):
            if row.get("epoch"):
                rows.setdefault(int(row["epoch"]) + 1, {}).update({k: float(v) for k, v in row.items() if v})
    return rows


def test_the_recorder_keeps_what_the_task_logged_every_epoch(tmp_path):
    recorder = CurveRecorder("top1")
    train(_config(tmp_path, 3), callbacks=[recorder])
    curve, logged = recorder.curve(), _logged(tmp_path)
    assert curve["epoch"] == [1, 2, 3]
    for i, epoch in enumerate(curve["epoch"]):
        assert curve["train_loss"][i] == pytest.approx(logged[epoch]["train/loss_epoch"], rel=1e-5)
        assert curve["val_loss"][i] == pytest.approx(logged[epoch]["val/loss"], rel=1e-5)
        assert curve["val_nll"][i] == pytest.approx(logged[epoch]["val/nll"], rel=1e-5)
        assert curve["val_metric"][i] == pytest.approx(logged[epoch]["val/top1"], rel=1e-5)


def test_epochs_without_validation_have_no_validation_values(tmp_path):
    recorder = CurveRecorder("top1")
    train(_config(tmp_path, 4, every=2), callbacks=[recorder])
    curve = recorder.curve()
    assert curve["val_nll"][0] is None and curve["val_nll"][2] is None
    assert curve["val_nll"][1] is not None and curve["val_nll"][3] is not None
    assert all(v is not None for v in curve["train_loss"])


def test_a_resumed_run_keeps_the_curve_of_its_first_epochs(tmp_path):
    first = CurveRecorder("top1")
    train(_config(tmp_path, 2), callbacks=[first])
    resumed = CurveRecorder("top1")
    train(_config(tmp_path, 4), resume=True, callbacks=[resumed])
    assert resumed.curve()["epoch"] == [1, 2, 3, 4]
    assert resumed.rows[:2] == first.rows


def _result(seed, values, epochs=None):
    epochs = epochs or list(range(1, len(values) + 1))
    return {"seed": seed, "learning_curve": {"epoch": epochs, "val_nll": values, "val_metric": values}}


def test_flags_name_every_run_and_its_verdict():
    falling = [1.0 / (t + 1) for t in range(10)]
    flat = [1.0, 0.5, 0.4] + [0.3] * 7
    flags = convergence_flags({"hard": [_result(0, flat), _result(1, falling)], "ls": [{"seed": 0}]})
    assert [(f["method"], f["seed"], f["converged"]) for f in flags] == [
        ("hard", 0, True), ("hard", 1, False), ("ls", 0, False),
    ]  # fmt: skip
    assert flags[0]["epochs"] == 10 and flags[1]["relative_drop"] == pytest.approx(reference_drop(falling)[1])


def test_curve_data_is_the_mean_and_range_over_seeds_per_epoch():
    a, b = [0.9, 0.6, 0.5], [0.7, 0.4, 0.3]
    data = curve_data({"hard": [_result(0, a), _result(1, b)], "none": [{"seed": 0}]})
    assert list(data) == ["hard"]
    np.testing.assert_allclose(data["hard"]["mean"], (np.array(a) + np.array(b)) / 2)
    np.testing.assert_allclose(data["hard"]["low"], np.minimum(a, b))
    np.testing.assert_allclose(data["hard"]["high"], np.maximum(a, b))
    assert data["hard"]["epochs"].tolist() == [1, 2, 3]


def test_the_figure_has_a_panel_per_curve_and_a_line_per_method():
    data = curve_data({"hard": [_result(0, [0.9, 0.5])], "ls": [_result(0, [1.0, 0.6])], "svls": [_result(0, [1, 1])]})
    figure = plot_learning_curves({"NLL": data, "Dice": data}, title="t", log_scale=("NLL",))
    assert [len(ax.get_lines()) for ax in figure.axes] == [3, 3]
    assert figure.axes[0].get_yscale() == "log" and figure.axes[1].get_yscale() == "linear"
    assert len(figure.legends[0].get_texts()) == 3
    with pytest.raises(ValueError, match="panels"):
        plot_learning_curves({"NLL": {}}, title="t")
