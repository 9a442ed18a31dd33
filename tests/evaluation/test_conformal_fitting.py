"""Fitting thresholds from prediction folders: streamed, against each rater / their union / majority / the labels."""

from __future__ import annotations

import pytest
import torch

from softlabels.conformal import SegmentationRiskControl
from softlabels.data.prediction_files import CaseFiles, example_folder, list_cases, load_case
from softlabels.evaluation.conformal_fitting import fit_thresholds_from_folders, structure_names

ROOT = example_folder()


def _rater_maps():
    for files in list_cases(ROOT / "probs", ROOT / "raters", kind="raters"):
        cases = [load_case(CaseFiles(files.name, files.probs, (p,)), kind="labels") for p in files.reference]
        yield cases[0].probs, torch.stack([c.target for c in cases], 1)  # (1, C, ...), (1, R, ...)


def test_each_rater_is_the_mean_of_the_rater_losses_computed_by_hand():
    fitted = fit_thresholds_from_folders(ROOT / "probs", ROOT / "raters", kind="raters", alpha=0.25, num_levels=101)
    control = SegmentationRiskControl(3, num_levels=101)
    for probs, raters in _rater_maps():
        control.update(probs, torch.nn.functional.one_hot(raters, 3).movedim(-1, 2).float())
    assert fitted == control.fit(0.25, structures=("1", "2"), reference="each")


def test_the_union_of_the_raters_needs_lower_thresholds_than_their_majority():
    fits = {
        rule: fit_thresholds_from_folders(ROOT / "probs", ROOT / "raters", kind="raters", alpha=0.25, reference=rule)
        for rule in ("union", "majority", "soft")
    }
    for k in range(2):
        assert fits["union"].thresholds[k] <= fits["majority"].thresholds[k]
    assert {f.reference for f in fits.values()} == {"union", "majority", "soft"}


def test_labels_folders_use_the_label_map_and_refuse_rater_rules():
    fitted = fit_thresholds_from_folders(
        ROOT / "probs", ROOT / "labels", alpha=0.25, class_names=["background", "outer", "inner"]
    )
    assert fitted.reference == "label" and fitted.structures == ("outer", "inner")
    with pytest.raises(ValueError, match="raters"):
        fit_thresholds_from_folders(ROOT / "probs", ROOT / "labels", alpha=0.25, reference="each")
    with pytest.raises(ValueError, match="reference"):
        fit_thresholds_from_folders(ROOT / "probs", ROOT / "labels", alpha=0.25, reference="everyone")


def test_structure_names():
    assert structure_names(2, None) == ["1"] and structure_names(1, None) == ["1"]
    with pytest.raises(ValueError, match="class_names"):
        structure_names(3, ["a", "b"])
