import json

import numpy as np
import pytest

from softlabels.bench.benchmark_run import RunSpec, execute_run, load_result, run_folder
from softlabels.bench.suites import plan_runs


def test_a_finished_run_holds_its_result_arrays_and_only_the_last_checkpoint(tiny_bench):
    suites, root = tiny_bench
    for spec in plan_runs(suites):
        folder = run_folder(root, spec)
        result = load_result(root, spec)
        assert result is not None and result["hash"] == spec.hash and result["temperature"] > 0
        assert sorted(p.name for p in (folder / "train" / "checkpoints").iterdir()) == ["last.ckpt"]
        with np.load(folder / "cases.npz") as data:
            groups = {k.split("/")[0] for k in data.files}
            assert {"raw", "ts"} <= groups
            assert len(data["raw/nll"]) == result["n_cases"]
        assert ("oracle" in groups) == ("oracle" in result["evaluations"])
        assert not list(folder.glob("*.tmp"))


def test_temperature_scaling_changes_calibration_but_not_the_argmax(tiny_bench):
    suites, root = tiny_bench
    for spec in plan_runs(suites):
        evaluations = load_result(root, spec)["evaluations"]
        for key in ("dice", "hd95", "top1", "top5"):
            if key in evaluations["raw"] and evaluations["raw"][key] is not None:
                assert evaluations["ts"][key] == pytest.approx(evaluations["raw"][key])


def test_a_result_of_another_hash_is_an_error(tmp_path):
    spec = RunSpec("s", "hard", 0, {"task": "classification"})
    folder = run_folder(tmp_path, spec)
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"hash": "000000000000"}))
    with pytest.raises(ValueError, match="belongs to hash"):
        execute_run(spec, tmp_path)
    (folder / "result.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        load_result(tmp_path, spec)
