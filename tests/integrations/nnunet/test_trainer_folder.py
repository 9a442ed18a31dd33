"""The folder nnU-Net's ``nnUNet_extTrainer`` names, the install hint without nnunetv2, and ``softlabels nnunet``."""

from __future__ import annotations

import ast
import importlib.util

import pytest

from softlabels.cli import main
from softlabels.integrations.nnunet.trainer_folder import INSTALL_HINT, trainers_folder

HAS_NNUNET = importlib.util.find_spec("nnunetv2") is not None
needs_no_nnunet = pytest.mark.skipif(HAS_NNUNET, reason="nnunetv2 is installed here")
needs_nnunet = pytest.mark.skipif(not HAS_NNUNET, reason="nnunetv2 is not installed here")
PIP = "pip install 'softlabels[nnunet]'"


def test_the_folder_holds_only_the_trainers_module():
    folder = trainers_folder(require_nnunet=False)
    assert folder.is_absolute() and folder.is_dir()
    files = sorted(p.name for p in folder.iterdir() if p.name != "__pycache__")
    assert files == ["softlabels_nnunet_trainers.py"]
    tree = ast.parse((folder / "softlabels_nnunet_trainers.py").read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"softlabels.integrations.nnunet.trainers"}  # re-exports the trainers, nothing else


def test_the_install_hint_names_the_extra():
    assert PIP in INSTALL_HINT and "\n" not in INSTALL_HINT


@needs_no_nnunet
def test_trainers_folder_without_nnunet_says_how_to_install():
    with pytest.raises(ValueError, match="nnunetv2") as info:
        trainers_folder()
    assert PIP in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="nnunetv2"):
        trainers_folder(require_nnunet=True)


@needs_no_nnunet
@pytest.mark.parametrize("extra", [[], ["--list"]])
def test_cli_trainers_path_without_nnunet_is_one_error_line(extra, capsys):
    code = main(["nnunet", "trainers-path", *extra])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and PIP in lines[0] and lines[0].startswith("softlabels nnunet: error:")
    assert "Traceback" not in captured.err


@needs_nnunet
def test_trainers_folder_with_nnunet(capsys):
    folder = trainers_folder()
    assert folder == trainers_folder(require_nnunet=False)
    assert main(["nnunet", "trainers-path"]) == 0
    assert capsys.readouterr().out.strip() == str(folder)
