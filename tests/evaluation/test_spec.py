from pathlib import Path

import pytest

from softlabels.evaluation.spec import CLASSIFICATION_SPEC, SEGMENTATION_SPEC, metric_spec, spec_for, spec_table

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_docs_hold_the_one_table_of_names():
    assert spec_table() in DOCS.read_text()


def test_every_name_is_unique_and_known():
    names = [m.name for m in SEGMENTATION_SPEC] + [m.name for m in CLASSIFICATION_SPEC]
    assert len(set(names)) == len({*names})
    assert "ece_top_label" not in names and "mce_top_label" not in names  # one name per quantity: `ece`, `mce`
    assert metric_spec("dice").reference == "soft_argmax" and metric_spec("nll").reference == "soft"
    with pytest.raises(ValueError, match="unknown metric 'ece_top_label'"):
        metric_spec("ece_top_label")
    with pytest.raises(ValueError, match="task must be"):
        spec_for("detection")
