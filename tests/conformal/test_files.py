"""Conformal JSON files: round trip of both kinds, strict JSON, atomic write, one-line errors naming the file."""

from __future__ import annotations

import json
import math

import pytest
import torch

from softlabels.conformal import ConformalSets, fit_thresholds, read_conformal, write_conformal


def test_round_trip_of_thresholds_and_sets(tmp_path):
    thresholds = fit_thresholds(
        torch.tensor([[0.0, 0.02, 0.05, 0.3], [0.0, 0.0, 0.01, 0.02]], dtype=torch.float64),
        1000,
        alpha=0.1,
        procedure="ltt",
        delta=0.05,
        structures=("liver", "tumour"),
        reference="each",
    )
    sets = ConformalSets("aps", 0.1, (0.8, math.inf), True, True, 1, 0.0, 120, ("benign", "malignant"))
    for fitted, name in ((thresholds, "t.json"), (sets, "s.json")):
        path = write_conformal(tmp_path / name, fitted)
        assert path == tmp_path / name and read_conformal(path) == fitted
        text = path.read_text()
        data = json.loads(text)  # strict JSON (no Infinity), sorted keys, indent 1
        assert "Infinity" not in text and list(data) == sorted(data) and text.startswith('{\n "')
        assert data["kind"] == fitted.KIND
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "t.json"]  # no temporary left behind


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json"):
        read_conformal(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"kind": "calibration"}))
    with pytest.raises(ValueError, match=r"other\.json.*'calibration'"):
        read_conformal(other)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"kind": "classification_sets", "method": "aps"}))
    with pytest.raises(ValueError, match=r"broken\.json.*missing keys"):
        read_conformal(broken)
    with pytest.raises(ValueError, match=r"missing\.json"):
        read_conformal(tmp_path / "missing.json")
    with pytest.raises(TypeError, match="fitted"):
        write_conformal(tmp_path / "x.json", {"kind": "classification_sets"})


def test_provenance_is_kept_beside_the_fitted_object(tmp_path):
    from softlabels.conformal import read_provenance

    fitted = fit_thresholds(torch.tensor([[0.0, 0.02, 0.3]]), 99, alpha=0.1)
    path = write_conformal(tmp_path / "t.json", fitted, provenance={"checkpoint": "c.ckpt", "temperature": 1.5})
    assert read_conformal(path) == fitted
    assert read_provenance(path) == {"checkpoint": "c.ckpt", "temperature": 1.5}
    assert read_provenance(write_conformal(tmp_path / "u.json", fitted)) == {}
