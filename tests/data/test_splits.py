import json

import pytest

from softlabels.data.splits import SPLITS, read_splits, split_ids, write_splits


def test_split_is_deterministic_disjoint_complete_and_stable_under_additions():
    ids = [f"patient{i:03d}" for i in range(100)]
    a = split_ids(ids, seed=3)
    assert a == split_ids(list(reversed(ids)), seed=3)  # order of the input does not matter
    assert [len(a[s]) for s in SPLITS] == [70, 15, 15]
    members = [i for s in SPLITS for i in a[s]]
    assert sorted(members) == sorted(ids) and len(set(members)) == 100
    assert a != split_ids(ids, seed=4)
    # adding ids never moves an existing id from test to train or back: ranks are per-id hashes
    b = split_ids(ids + [f"new{i}" for i in range(5)], seed=3)
    rank_order = {i: s for s in SPLITS for i in b[s]}
    moved = [i for i in a["test"] if rank_order[i] == "train"]
    assert len(moved) <= 5


def test_fractions_and_duplicates_are_checked():
    with pytest.raises(ValueError, match=r"`fractions` of split_ids must be 3 non-negative numbers"):
        split_ids(["a", "b"], fractions=(0.5, 0.6, 0.1))
    with pytest.raises(ValueError, match=r"`ids` of split_ids must be unique; got 1 duplicate"):
        split_ids(["a", "a", "b"])
    assert split_ids(["a"], fractions=(1.0, 0.0, 0.0)) == {"train": ["a"], "val": [], "test": []}


def test_split_file_round_trip_and_errors(tmp_path):
    path = write_splits(tmp_path / "splits.json", {"train": ["a", "b"], "val": ["c"]})
    assert read_splits(path, ids=["a", "b", "c"]) == {"train": ["a", "b"], "val": ["c"], "test": []}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"split file '.*bad.json' could not be read as JSON"):
        read_splits(tmp_path / "bad.json")
    (tmp_path / "keys.json").write_text(json.dumps({"training": ["a"]}))
    with pytest.raises(ValueError, match=r"split file '.*keys.json' must map"):
        read_splits(tmp_path / "keys.json")
    (tmp_path / "twice.json").write_text(json.dumps({"train": ["a"], "test": ["a"]}))
    with pytest.raises(ValueError, match=r"id 'a' is in both 'train' and 'test'"):
        read_splits(tmp_path / "twice.json")
    with pytest.raises(ValueError, match=r"lists unknown id\(s\) \['z'\]"):
        read_splits(write_splits(tmp_path / "u.json", {"train": ["z"]}), ids=["a"])
