"""The shared argument checks of targets, losses and methods: what passes, and one message per refusal."""

from __future__ import annotations

import math

import pytest
import torch

from softlabels.targets import label_checks
from softlabels.targets.label_checks import _check_fraction, _check_ignore_index, _check_labels, _check_num_classes


@pytest.mark.parametrize("value", [2, 3, 10])
def test_num_classes_passes_ints_at_or_above_the_minimum(value):
    assert _check_num_classes(value, "f", 2) == value


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (1, ValueError, "`num_classes` of f must be an int >= 2; got 1."),
        (True, TypeError, "`num_classes` of f must be an int; got bool True."),
        (2.0, TypeError, "`num_classes` of f must be an int; got float 2.0."),
        ("3", TypeError, "`num_classes` of f must be an int; got str '3'."),
    ],
)
def test_num_classes_refusals(value, error, message):
    with pytest.raises(error) as caught:
        _check_num_classes(value, "f", 2)
    assert str(caught.value) == message


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 1, 1.0])
def test_fraction_passes_the_closed_interval_as_a_float(value):
    checked = _check_fraction("epsilon", value, "f")
    assert isinstance(checked, float) and checked == float(value)


@pytest.mark.parametrize("value", [-0.1, 1.0001, math.nan, math.inf])
def test_fraction_refuses_values_outside_the_interval(value):
    with pytest.raises(ValueError, match=r"`epsilon` of f must be a float in \[0, 1\]; got"):
        _check_fraction("epsilon", value, "f")


def test_fraction_open_on_the_right_and_wrong_types():
    assert _check_fraction("alpha", 0.999, "f", closed_right=False) == 0.999
    with pytest.raises(ValueError, match=r"`alpha` of f must be a float in \[0, 1\); got 1"):
        _check_fraction("alpha", 1, "f", closed_right=False)
    for bad in (True, "0.1", None):
        with pytest.raises(TypeError, match=r"`alpha` of f must be a float; got"):
            _check_fraction("alpha", bad, "f")


def test_labels_pass_unchanged_in_range_or_ignored():
    labels = torch.tensor([[[0, 2], [1, 255]]])
    assert _check_labels(labels, 3, "f", ignore_index=255) is labels
    empty = torch.zeros(0, 4, 4, dtype=torch.long)
    assert _check_labels(empty, 3, "f") is empty
    assert _check_labels(torch.tensor([0, 1]), 2, "f", spatial=False).tolist() == [0, 1]


@pytest.mark.parametrize(
    ("labels", "kwargs", "error", "pattern"),
    [
        (torch.zeros(1, 4, 4), {}, TypeError, r"`labels` of f must have an integer dtype; got torch.float32"),
        (torch.zeros(1, 4, 4, dtype=torch.bool), {}, TypeError, r"integer dtype; got torch.bool"),
        ([[0, 1]], {}, TypeError, r"`labels` of f must be a torch.Tensor; got list"),
        (torch.zeros(4, 4, dtype=torch.long), {}, ValueError, r"must have shape \(N, H, W\) or \(N, D, H, W\)"),
        (torch.tensor(0), {"spatial": False}, ValueError, r"must have shape \(N, \*spatial\); got a 0-d tensor"),
        (torch.tensor([[[0, 3]]]), {}, ValueError, r"must hold class indices in \[0, 3\); got 3\."),
        (torch.tensor([[[-1, 0]]]), {"ignore_index": 255}, ValueError, r"\[0, 3\) or ignore_index=255; got -1\."),
        (torch.tensor([[[0, 9]]]), {"name": "raters"}, ValueError, r"^`raters` of f must hold class indices"),
    ],
)
def test_labels_refusals_name_the_tensor_and_quote_the_value(labels, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        _check_labels(labels, 3, "f", **kwargs)


def test_ignore_index_must_not_be_a_class():
    assert _check_ignore_index(None, 3, "f") is None and _check_ignore_index(-100, 3, "f") == -100
    with pytest.raises(ValueError, match=r"`ignore_index` of f must not be a class index in \[0, 3\); got 2\."):
        _check_ignore_index(2, 3, "f")
    with pytest.raises(TypeError, match=r"`ignore_index` of f must be an int or None; got float"):
        _check_ignore_index(255.0, 3, "f")


def test_the_checks_live_only_here():
    """No shim: the targets' smoothing module no longer defines or re-exports them."""
    from softlabels.targets import smoothing

    for name in ("_check_num_classes", "_check_fraction", "_check_labels", "_check_ignore_index"):
        assert getattr(label_checks, name).__module__ == "softlabels.targets.label_checks"
        assert getattr(smoothing, name).__module__ == "softlabels.targets.label_checks"  # imported, not defined
    assert label_checks.__all__ == []
