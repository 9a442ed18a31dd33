import numpy as np
import pytest

from softlabels.bench.results import METRICS, CellRuns, compare_to_baseline, load_suite, metric_table, reliability_data


def test_identical_methods_are_not_significantly_different(tiny_bench):
    suites, root = tiny_bench
    for suite in suites:
        cells = load_suite(suite, root)
        base = cells[suite.baseline]
        twin = CellRuns("twin", base.seeds, base.results, base.arrays)
        for metric in METRICS[suite.task]:
            result = compare_to_baseline({suite.baseline: base, "twin": twin}, suite.baseline, "raw", metric)
            for comparison in result.values():
                assert comparison.difference == 0.0 and not comparison.significant


def test_tables_have_every_cell_and_metric(tiny_bench):
    suites, root = tiny_bench
    for suite in suites:
        cells = load_suite(suite, root)
        table = metric_table(cells, "raw", METRICS[suite.task])
        assert list(table) == [c.label for c in suite.cells]
        ece = [row["ece"][0] for row in table.values()]
        assert all(0.0 <= v <= 1.0 for v in ece)


def test_reliability_data_sums_the_seeds_histograms(tiny_bench):
    suites, root = tiny_bench
    cells = load_suite(suites[0], root)
    cell = cells[suites[0].baseline]
    data = reliability_data(cell, "raw")
    total = sum(a["raw"]["hist_ece"][..., 0].sum() for a in cell.arrays)
    assert sum(data["counts"]) == pytest.approx(total) and len(data["edges"]) == len(data["counts"]) + 1


def test_a_shifted_method_is_significantly_worse():
    rng = np.random.default_rng(0)
    base = {"raw": {"nll": rng.random(30)}}
    worse = {"raw": {"nll": base["raw"]["nll"] + 0.1}}
    cells = {"a": CellRuns("a", [0], [{}], [base]), "b": CellRuns("b", [0], [{}], [worse])}
    result = compare_to_baseline(cells, "a", "raw", METRICS["classification"][5])
    assert result["b"].significant and result["b"].difference == pytest.approx(0.1)
    with pytest.raises(ValueError, match="baseline"):
        compare_to_baseline(cells, "zz", "raw", METRICS["classification"][5])
