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
