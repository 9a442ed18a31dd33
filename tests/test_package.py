"""House rules that hold for the whole package (docs/CONTRIBUTING.md): layout, size, vocabulary, state, imports."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
from pathlib import Path

import pytest
import torch
from torchmetrics import Metric

import softlabels

SRC = Path(softlabels.__file__).parent
TESTS = Path(__file__).parent
BANNED_PARAMS = {"preds", "y_pred", "y_true", "classes", "n_classes", "inputs", "targets"}


# Modules that import an optional extra; checked only where it is installed (the nnU-Net environment runs them).
OPTIONAL_DEPENDENCIES = {"softlabels.integrations.nnunet.trainers": "nnunetv2"}


def modules():
    for info in pkgutil.walk_packages([str(SRC)], prefix="softlabels."):
        needs = OPTIONAL_DEPENDENCIES.get(info.name)
        if needs is not None and importlib.util.find_spec(needs) is None:
            continue
        yield importlib.import_module(info.name)


def py_files():
    return sorted(p for p in SRC.rglob("*.py"))


def test_torchvision_not_installed():
    # torchvision's compiled ops fail beside the CPU torch build and break lightning/torchmetrics imports
    assert importlib.util.find_spec("torchvision") is None


@pytest.mark.parametrize("path", py_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_small_files_shallow_tree_short_functions(path):
    rel = path.relative_to(SRC)
    assert len(rel.parts) <= 3, f"{rel} is more than 2 folders below softlabels/"
    text = path.read_text()
    assert len(text.splitlines()) <= 600, f"{rel} has more than 600 lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body[1:] if ast.get_docstring(node) else node.body
            if body:
                length = body[-1].end_lineno - body[0].lineno + 1
                assert length <= 50, f"{rel}:{node.name} body has {length} lines"
    assert "np.random." not in text and "torch.manual_seed" not in text, f"{rel} uses global random state"
    assert "raise AssertionError" not in text


def test_every_module_has_a_mirrored_test_file():
    missing = []
    for path in py_files():
        if path.name.startswith("_"):
            continue
        rel = path.relative_to(SRC)
        parts = [p for p in rel.parts[:-1] if p != "functional"]
        candidates = [
            TESTS.joinpath(*parts, f"test_{path.stem}.py"),
            TESTS.joinpath(*rel.parts[:-1], f"test_{path.stem}.py"),
        ]
        if not any(c.exists() for c in candidates):
            missing.append(str(rel))
    assert not missing, f"no test file for {missing}"


def public_objects():
    for mod in modules():
        for name in getattr(mod, "__all__", []):
            yield mod.__name__, name, getattr(mod, name)


def test_public_names_documented_with_examples_and_no_aliases():
    for mod in modules():
        names = getattr(mod, "__all__", None)
        if names is None:
            continue
        objs = [getattr(mod, n) for n in names if n != "__version__"]
        assert len({id(o) for o in objs}) == len(objs), f"{mod.__name__} exports one object under two names"
    for mod_name, name, obj in public_objects():
        if name == "__version__" or not callable(obj):
            continue  # data constants (e.g. FLSD53_BANDS) carry no docstring of their own
        doc = inspect.getdoc(obj) or ""
        assert ">>>" in doc, f"{mod_name}.{name} has no example"


def test_public_signatures_use_the_vocabulary():
    for mod_name, name, obj in public_objects():
        targets = [obj.__init__, obj.update] if inspect.isclass(obj) and issubclass(obj, Metric) else [obj]
        for fn in targets:
            if not callable(fn) or inspect.isclass(fn):
                continue
            try:
                params = set(inspect.signature(fn).parameters)
            except (TypeError, ValueError):
                continue
            assert not params & BANNED_PARAMS, f"{mod_name}.{name} uses {params & BANNED_PARAMS}"


def metric_classes():
    out = []
    for mod in modules():
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            public = cls.__module__ == mod.__name__ and not cls.__name__.startswith("_")
            if issubclass(cls, Metric) and public and not inspect.isabstract(cls):  # a base without update/compute
                out.append(cls)
    return out


def test_every_metric_state_is_summed_int64_or_float64():
    classes = metric_classes()
    assert len(classes) >= 4
    for cls in classes:
        params = inspect.signature(cls.__init__).parameters
        kwargs = {"num_features": 4} if "num_features" in params else {}
        if "task" in params:  # the evaluation layer's Evaluator: (task, num_classes)
            metric = cls("segmentation", 3, **kwargs)
        else:
            metric = cls(3, **kwargs) if "num_classes" in params else cls(**kwargs)
        for name, default in metric._defaults.items():
            if isinstance(default, list):
                assert metric._reductions[name].__name__ == "dim_zero_cat", (cls, name)
                continue
            assert metric._reductions[name].__name__ == "dim_zero_sum", (cls, name)
            assert default.dtype in (torch.int64, torch.float64), (cls, name, default.dtype)


def test_matplotlib_imported_lazily_only():
    # torchmetrics itself imports matplotlib when present, so check our own module-level imports
    for path in py_files():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "matplotlib" for n in names), f"{path} imports matplotlib at module level"
