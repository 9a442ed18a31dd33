import argparse

import pytest
import torch

from softlabels.training.checkpoint_io import AtomicCheckpointIO, load_checkpoint


def test_atomic_save_round_trip_and_no_temporary_left(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "sub" / "a.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(3.0)}, "epoch": 2}, path)
    io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 3}, path)  # overwrite in one rename
    loaded = io.load_checkpoint(path)
    assert loaded["epoch"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.zeros(3))
    assert [p.name for p in path.parent.iterdir()] == ["a.ckpt"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "a.ckpt"
    io.save_checkpoint({"epoch": 1}, path)

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1 and len(list(tmp_path.iterdir())) == 1


def test_corrupt_truncated_missing_and_unsafe_checkpoints_give_clear_errors(tmp_path):
    good = tmp_path / "good.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}}, good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:200])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    unsafe = tmp_path / "unsafe.ckpt"
    with open(unsafe, "wb") as handle:
        torch.save({"obj": argparse.Namespace(a=1)}, handle)  # an arbitrary class: refused by weights_only
    for path in (truncated, garbage, unsafe):
        with pytest.raises(ValueError, match=rf"checkpoint '.*{path.name}' could not be read"):
            load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match=r"checkpoint '.*missing.ckpt' does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
