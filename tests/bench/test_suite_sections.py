from softlabels.bench.suite_sections import suite_section


def test_section_numbers_and_sentences(tiny_bench):
    suites, root = tiny_bench
    for suite in suites:
        section = suite_section(suite, root, n_resamples=200)
        assert set(section.tables) == {"raw", "ts"}
        assert section.findings and all(isinstance(s, str) and s for s in section.findings)
        assert any("Temperature scaling" in s for s in section.findings)
        assert set(section.temperatures) == {c.label for c in suite.cells}
        assert section.floor is not None  # both tiny suites are synthetic: p* is known
        if suite.task == "segmentation":
            assert set(section.downstream) == {c.label for c in suite.cells}
            assert all(d["mae"] >= 0 for d in section.downstream.values())
        for ranks in section.ranks.values():
            assert 1 <= min(ranks.values()) and max(ranks.values()) <= len(suite.cells)
            assert sum(ranks.values()) == sum(range(1, len(ranks) + 1))  # ties share the mean of their ranks


def test_section_has_every_runs_curve_and_convergence_verdict(tiny_bench):
    suites, root = tiny_bench
    for suite in suites:
        section = suite_section(suite, root, n_resamples=100)
        assert set(section.learning_curves) == {"val_nll", "val_metric"}
        assert set(section.learning_curves["val_nll"]) == {c.label for c in suite.cells}
        runs = {(f["method"], f["seed"]) for f in section.convergence}
        assert runs == {(c.label, s) for c in suite.cells for s in suite.seeds}
        # one epoch cannot show a plateau: every run is flagged, and the first sentence says so
        assert not any(f["converged"] for f in section.convergence)
        n = len(suite.cells) * len(suite.seeds)
        assert section.findings[0].startswith(f"**Convergence: {n} of {n} runs did not converge**")
        assert f"baseline `{suite.baseline}`: {len(suite.seeds)} of {len(suite.seeds)}" in section.findings[0]
