import pytest

from softlabels.bench.benchmark_run import RunSpec
from softlabels.bench.suites import BENCHMARKS, get_benchmark, plan_runs
from softlabels.methods import list_methods
from softlabels.training.config import config_from_dict

ISSUE_SEGMENTATION = {
    "hard", "hard_majority", "ls", "svls", "raters_mean", "raters_svls", "ct_0.5", "ct_0.6", "ct_0.8", "conf_soft",
    "conf_weighted", "focal", "mbls", "nacl", "dice_ce", "vls",
}  # fmt: skip
ISSUE_CLASSIFICATION = {"hard", "ls", "ols", "tfkd", "focal", "mbls", "raters_soft"}


def test_default_covers_every_method_and_data_set_of_the_issue_with_three_seeds():
    suites = {s.name: s for s in get_benchmark("default")}
    assert set(suites) == {
        "synthetic_segmentation",
        "mni152",
        "lidc_segmentation",
        "synthetic_classification",
        "lidc_malignancy",
    }
    assert {c.label for c in suites["synthetic_segmentation"].cells} == ISSUE_SEGMENTATION
    assert {c.label for c in suites["mni152"].cells} == {"soft", "hard", "ls", "svls", "vls"}
    for name in ("synthetic_classification", "lidc_malignancy"):
        assert {c.label for c in suites[name].cells} == ISSUE_CLASSIFICATION
    assert all(len(s.seeds) >= 3 for s in suites.values())


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_run_is_a_valid_config_of_a_registered_method(name):
    specs = plan_runs(get_benchmark(name))
    assert len({s.run_id for s in specs}) == len(specs) and len({s.hash for s in specs}) == len(specs)
    for spec in specs:
        config = config_from_dict({**spec.config, "seed": spec.seed})
        assert config.method.name in list_methods(config.task)
        assert spec.suite in spec.run_id and spec.label in spec.run_id


def test_the_hash_changes_with_the_config_the_seed_and_the_shifts_only():
    a, b = plan_runs(get_benchmark("quick"))[:2]
    assert a.hash != b.hash
    same = type(a)(a.suite, "renamed", a.seed, dict(a.config), shifts=a.shifts)
    assert same.hash == a.hash  # the label names the folder; the result depends on config and seed
    assert type(a)(a.suite, a.label, a.seed + 1, dict(a.config)).hash != a.hash


def test_unknown_benchmark_name_suggests():
    with pytest.raises(ValueError, match="default"):
        get_benchmark("defualt")


@pytest.mark.parametrize("name", ["quick", "default"])
def test_every_run_validates_after_every_epoch_for_its_learning_curve(name):
    for spec in plan_runs(get_benchmark(name)):
        config = config_from_dict({**spec.config, "seed": spec.seed})
        assert config.trainer.check_val_every_n_epoch == 1
        curve_metric = "dice" if config.task == "segmentation" else "top1"
        assert config.evaluation.metrics is None or {curve_metric, "nll"} <= set(config.evaluation.metrics)
        if config.task == "classification":  # the test split's compactness needs the embeddings of the val metrics
            assert config.evaluation.metrics is None


def test_the_default_schedules_leave_room_to_settle_and_quick_stays_a_two_epoch_smoke_run():
    for suite in get_benchmark("default"):
        epochs = suite.base["trainer"]["max_epochs"]
        # the convergence rule compares the last two fifths of the epochs (at least 2 each)
        assert epochs >= 4
        if suite.base.get("scheduler", {}).get("name") == "multistep":
            assert max(suite.base["scheduler"]["milestones"]) <= epochs // 2  # a step in the compared windows fails
    assert {s.base["trainer"]["max_epochs"] for s in get_benchmark("quick")} == {2}


def test_the_default_synthetic_segmentation_runs_of_seed_0_are_also_evaluated_under_shift():
    from softlabels.bench.suites import DEFAULT_SHIFTS
    from softlabels.data.shifts import parse_shifts

    specs = plan_runs(get_benchmark("default"))
    shifted = [s for s in specs if s.shifts]
    assert {s.suite for s in shifted} == {"synthetic_segmentation"} and {s.seed for s in shifted} == {0}
    assert len(shifted) == len([c for c in get_benchmark("default")[0].cells]) and shifted[0].shifts == DEFAULT_SHIFTS
    assert [s.name for s in parse_shifts(list(DEFAULT_SHIFTS))] == list(DEFAULT_SHIFTS)
    unshifted = next(s for s in specs if s.suite == "synthetic_segmentation" and s.seed == 1)
    assert unshifted.hash != RunSpec(unshifted.suite, unshifted.label, 1, unshifted.config, shifts=("noise_1",)).hash
