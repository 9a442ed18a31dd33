import json
import math
import re

import numpy as np
import pytest

from softlabels.bench.benchmark_report import write_benchmark_report
from softlabels.bench.benchmark_run import run_folder
from softlabels.bench.suites import plan_runs
from softlabels.evaluation.evaluator import summarize
from tests.bench import _browser


def test_report_files_exist_and_html_is_self_contained(tiny_bench):
    suites, root = tiny_bench
    html = (root / "report.html").read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    sources = re.findall(r"<img[^>]*src='([^']*)'", html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    markdown = (root / "report.md").read_text()
    for suite in suites:
        assert suite.title in markdown and suite.title in html
        assert "What this shows" in markdown
    linked = re.findall(r"!\[[^]]*\]\(([^)]*)\)", markdown)
    assert linked and all((root / path).is_file() for path in linked)
    assert len(linked) == len(sources)  # every figure of the Markdown report is embedded in the HTML one


def test_report_numbers_are_the_results_files_numbers(tiny_bench):
    """Every table value is the mean over seeds of what the runs' per-case arrays give (nothing typed)."""
    suites, root = tiny_bench
    report = json.loads((root / "report.json").read_text())
    for suite in suites:
        table = report["suites"][suite.name]["tables"]
        for cell in suite.cells:
            specs = [s for s in plan_runs([suite]) if s.label == cell.label]
            for evaluation in ("raw", "ts"):
                per_seed = []
                for spec in specs:
                    with np.load(run_folder(root, spec) / "cases.npz") as data:
                        arrays = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"{evaluation}/")}
                    per_seed.append(summarize(arrays))
                for key, (mean, _std) in table[evaluation][cell.label].items():
                    values = [p[key] for p in per_seed if key in p and math.isfinite(p[key])]
                    if values:
                        assert mean == pytest.approx(np.mean(values), rel=1e-9, abs=1e-12), (
                            suite.name,
                            cell.label,
                            key,
                        )


def test_findings_mention_the_claims_and_the_floor(tiny_bench):
    _suites, root = tiny_bench
    report = json.loads((root / "report.json").read_text())
    seg = report["suites"]["tiny_seg"]
    text = " ".join(seg["findings"])
    assert "SVLS" in text and any(v in text for v in ("reproduced", "not reproduced", "reversed"))
    floor_ece = seg["floor"]["ece"][0]  # p* against the observed rater mean: small, not 0
    assert "Floor" in text and 0 <= floor_ece < 0.1 and f"ECE {floor_ece:.4f}" in text


def test_html_report_opens_in_a_headless_browser_with_every_figure(tiny_bench):
    if _browser.find_chromium() is None:
        pytest.skip("chromium not found (scripts/install_chromium.sh installs Debian's chromium as root)")
    _suites, root = tiny_bench
    page = _browser.check_page(root / "report.html")
    assert page.console_errors == [] and page.exceptions == []
    expected = len(list((root / "figures").glob("*.png")))
    assert len(page.images) == expected > 0
    assert page.broken_images == []
    assert page.title == "softlabels benchmark"


def test_report_of_unfinished_runs_names_them(tmp_path):
    from tests.bench.conftest import tiny_suites

    with pytest.raises(ValueError, match="not finished"):
        write_benchmark_report(tiny_suites(), tmp_path)


def test_report_flags_the_runs_that_did_not_converge_and_draws_their_curves(tiny_bench):
    from softlabels.bench.benchmark_run import load_result
    from softlabels.bench.learning_curves import convergence_flags

    suites, root = tiny_bench
    report = json.loads((root / "report.json").read_text())
    markdown = (root / "report.md").read_text()
    assert markdown.count("### Runs that did not converge") == len(suites)
    for suite in suites:
        results = {
            c.label: [load_result(root, s) for s in plan_runs([suite]) if s.label == c.label] for c in suite.cells
        }
        assert report["suites"][suite.name]["convergence"] == convergence_flags(results)
        assert (root / "figures" / f"{suite.name}_learning_curves.png").is_file()
        for flag in report["suites"][suite.name]["convergence"]:
            assert f"| `{flag['method']}` | {flag['seed']} | 1 |" in markdown


def test_a_suite_whose_runs_converged_has_no_convergence_table(tiny_bench):
    from softlabels.bench.benchmark_report import provenance, render_html, render_markdown
    from softlabels.bench.suite_sections import suite_section

    suites, root = tiny_bench
    section = suite_section(suites[1], root, n_resamples=100)
    section.convergence = [{**f, "converged": True} for f in section.convergence]
    markdown = render_markdown([section], provenance(suites[1:], [section], None), {})
    page = render_html([section], provenance(suites[1:], [section], None), {})
    assert "Runs that did not converge" not in markdown and "Runs that did not converge" not in page
    assert "Runs that did not converge" in (root / "report.md").read_text()  # the same section before
