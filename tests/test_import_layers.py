"""The import contracts of pyproject.toml ([tool.importlinter], docs/architecture.md) hold, and catch what they forbid.

Each breaking case copies ``src/softlabels`` into a temporary folder, adds one deliberate import to the copy and runs
``lint-imports`` there with ``PYTHONPATH`` on the copy, so the copy, not the editable install, is the package analysed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "softlabels"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def lint_imports(cwd: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on ``cwd/pyproject.toml`` with ``cwd`` first on the import path; colours removed."""
    script = Path(sys.executable).with_name("lint-imports")
    command = [str(script) if script.exists() else "lint-imports", "--no-cache"]
    command += ["--config", str(cwd / "pyproject.toml")]
    command += [arg for contract in contracts for arg in ("--contract", contract)]
    env = {**os.environ, "PYTHONPATH": str(cwd), "COLUMNS": "200"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    result.stdout = ANSI.sub("", result.stdout)
    return result


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(SRC, tmp_path / "softlabels", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n" + code + "\n")


def test_contracts_hold_on_the_source_tree():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_unmodified_copy_holds(package_copy):
    # the baseline of the breaking cases below: only the line each one adds breaks a contract
    result = lint_imports(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "code", "importer", "imported"),
    [
        ("metrics/__init__.py", "from softlabels.bench import suites", "softlabels.metrics", "softlabels.bench.suites"),
        ("_io.py", "import softlabels.data", "softlabels._io", "softlabels.data"),
        (
            "training/run.py",
            "def _hidden() -> None:\n    from softlabels.bench import grid_runner",
            "softlabels.training.run",
            "softlabels.bench.grid_runner",
        ),
        ("targets/__init__.py", "import softlabels.metrics", "softlabels.targets", "softlabels.metrics"),
    ],
    ids=["metrics->bench", "private->data", "function-level training->bench", "siblings targets->metrics"],
)
def test_upward_import_breaks_the_layers(package_copy, module, code, importer, imported):
    append(package_copy / "softlabels" / module, code + "  # deliberate upward import")
    result = lint_imports(package_copy, "layers")
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    assert f"{importer} -> {imported}" in result.stdout


def test_functional_metric_importing_a_metric_class_breaks_the_twins(package_copy):
    append(package_copy / "softlabels/metrics/functional/calibration.py", "from softlabels.metrics import calibration")
    result = lint_imports(package_copy, "metric-twins")
    assert result.returncode != 0, result.stdout
    assert "softlabels.metrics.functional.calibration -> softlabels.metrics.calibration" in result.stdout


def test_new_top_level_module_must_be_given_a_layer(package_copy):
    (package_copy / "softlabels" / "_new_helper.py").write_text('"""A module no layer lists."""\n')
    result = lint_imports(package_copy, "layers")
    assert result.returncode != 0, result.stdout
    assert "softlabels._new_helper" in result.stdout


def test_function_level_import_does_not_hide_a_cycle(package_copy):
    # data.folders imports data.splits at module level; the reverse, hidden in a function, closes a cycle
    hidden = "def _hidden() -> None:\n    from softlabels.data import folders"
    append(package_copy / "softlabels/data/splits.py", hidden)
    result = lint_imports(package_copy, "no-cycles")
    assert result.returncode != 0, result.stdout
    assert "softlabels.data" in result.stdout and ".splits -> .folders" in result.stdout
