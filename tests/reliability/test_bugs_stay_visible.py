"""A user error is one line; a bug keeps its traceback: not every ValueError is reported as "bad input".

softlabels' own validation (``raise ValueError("`n_bins` of ... must be ...; got 0.")``) is a user error. The same
exception types escaping from inside torch or numpy, or from a failed call in our code, are bugs: ``main`` lets them
propagate (so the traceback is printed and the exit status is 1), instead of printing them as if the user were wrong.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from softlabels._errors import is_user_error
from softlabels.cli import main
from softlabels.data.prediction_files import example_folder
from softlabels.metrics.functional.calibration import calibration_error
from tests.reliability._corpus import run_subprocess, user_error


def caught(call):
    try:
        call()
    except Exception as err:
        return err
    raise AssertionError("no exception")


def test_softlabels_validation_is_a_user_error():
    probs = torch.full((2, 2), 0.5)
    err = caught(lambda: calibration_error(probs, torch.tensor([0, 1]), n_bins=0))
    assert isinstance(err, ValueError) and is_user_error(err)


@pytest.mark.parametrize(
    "call",
    [
        lambda: np.zeros(3).reshape(2, 2),  # numpy's ValueError
        lambda: torch.zeros(3).view(2, 2),  # torch's RuntimeError
        lambda: int("seven"),  # Python's ValueError
        lambda: calibration_error(torch.full((2, 2), 0.5), torch.tensor([0, 1]), bins=3),  # a failed call
        lambda: {}["missing"],  # KeyError
    ],
)
def test_errors_from_inside_libraries_or_failed_calls_are_bugs(call):
    assert not is_user_error(caught(call))


def test_path_errors_are_user_errors():
    assert is_user_error(PermissionError(13, "Permission denied", "/x"))
    assert is_user_error(FileNotFoundError(2, "No such file", "/x"))
    assert not is_user_error(OSError(28, "No space left on device"))


def test_a_bug_inside_a_command_is_not_reported_as_bad_input(tmp_path, monkeypatch):
    import softlabels.evaluation.scoring as score

    def broken(*args, **kwargs):  # an internal failure: numpy raising inside our code path
        return np.zeros(3).reshape(2, 2)

    monkeypatch.setattr(score, "score_folders", broken)
    with pytest.raises(ValueError, match="cannot reshape"):
        main(["score", "--example", "--output", str(tmp_path / "out"), "--no-progress"])


def test_a_user_error_is_one_line_in_a_real_process(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    user_error(["score", "--example", "--output", str(blocker)], capsys, str(blocker))
    probs, labels = tmp_path / "probs", tmp_path / "labels"
    probs.mkdir()
    labels.mkdir()
    (probs / "case_000.npz").write_bytes(b"")  # an empty file: the reader names it, one line
    shutil.copy(example_folder() / "labels" / "case_000.nii.gz", labels)
    done = run_subprocess(["score", "--probs", str(probs), "--labels", str(labels), "--output", str(tmp_path / "o")])
    assert done.code == 2 and "Traceback" not in done.err and "case_000.npz" in done.err, done.err
    assert len(done.err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
