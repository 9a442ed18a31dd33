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
