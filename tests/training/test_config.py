import pytest

from softlabels.training.config import RunConfig, config_from_dict, config_parser, config_to_dict


def test_yaml_config_with_command_line_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "task: classification\nseed: 4\nmethod: {name: ls, options: {epsilon: 0.2}}\ntrainer: {max_epochs: 5}\n"
    )
    parser = config_parser("softlabels train", "test")
    namespace = parser.parse_args(["--config", str(path), "--trainer.max_epochs", "2", "--model.name", "small_cnn"])
    config = config_from_dict(namespace.as_dict())
    assert config.task == "classification" and config.seed == 4
    assert config.trainer.max_epochs == 2 and config.method.options == {"epsilon": 0.2}
    assert config.model.name == "small_cnn" and config.data.source == "synthetic_segmentation"


def test_round_trip_through_plain_data():
    config = RunConfig()
    assert config_from_dict(config_to_dict(config)) == config


def test_bad_values_and_keys_are_named():
    parser = config_parser("softlabels train", "test")
    with pytest.raises(Exception, match=r"trainer.max_epochs"):
        parser.parse_args(["--trainer.max_epochs", "many"])
    with pytest.raises(Exception, match=r"task"):
        parser.parse_args(["--task", "detection"])
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['epochs'\] in config.trainer"):
        config_from_dict({"trainer": {"epochs": 3}})


def test_options_of_the_docs_example_parse():
    parser = config_parser("softlabels train", "test")
    namespace = parser.parse_args(["--data.options", "{shape: [64, 64]}", "--trainer.deterministic", "warn"])
    config = config_from_dict(namespace.as_dict())
    assert config.data.options == {"shape": [64, 64]} and config.trainer.deterministic == "warn"
    with pytest.raises(Exception, match=r"trainer.deterministic"):
        parser.parse_args(["--trainer.deterministic", "sometimes"])


def test_the_config_table_of_the_docs_lists_every_key():
    import dataclasses
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "training.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `?([a-z ]+?)`? \| (.+) \|$", text, re.MULTILINE)}
    for item in dataclasses.fields(RunConfig):
        value = getattr(RunConfig(), item.name)
        if dataclasses.is_dataclass(value):
            documented = set(re.findall(r"`([a-z_]+)`(?: \(|,|$)", rows[item.name]))
            assert documented >= {f.name for f in dataclasses.fields(value)}, item.name
        else:
            assert item.name in rows or f"`{item.name}`" in rows["top level"], item.name
