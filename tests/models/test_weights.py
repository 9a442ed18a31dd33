"""Loading local weights: raw and Lightning checkpoints, ignore_head, strict errors naming keys and file, bad files."""

from __future__ import annotations

import re
import warnings

import pytest
import torch

from softlabels.models import create_model, load_weights, read_state_dict


def small_cnn(num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("small_cnn", in_channels=1, num_classes=num_classes).eval()


def randomise_batchnorm(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for name, buffer in model.named_buffers():
        if "running" in name:
            buffer.copy_(torch.rand(buffer.shape, generator=g) + 0.5)


X = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))


def test_a_saved_state_dict_loads_into_a_fresh_model_with_equal_outputs(tmp_path):
    source = small_cnn(seed=0)
    randomise_batchnorm(source)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    fresh = small_cnn(seed=1)
    assert not torch.allclose(fresh(X), source(X))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = create_model("small_cnn", in_channels=1, num_classes=3, weights=tmp_path / "w.pt").eval()
    torch.testing.assert_close(loaded(X), source(X), rtol=0, atol=0)
    assert load_weights(fresh, str(tmp_path / "w.pt")) is fresh
    torch.testing.assert_close(fresh(X), source(X), rtol=0, atol=0)


def test_torch_load_is_called_on_the_cpu_weights_only(tmp_path, monkeypatch):
    torch.save(small_cnn().state_dict(), tmp_path / "w.pt")
    seen = []
    real = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_weights(small_cnn(), tmp_path / "w.pt")
    assert seen == [{"map_location": "cpu", "weights_only": True}]


def test_a_lightning_checkpoint_loads_the_model_entries_without_the_prefix(tmp_path):
    source = small_cnn(seed=0)
    state = {f"model.{k}": v for k, v in source.state_dict().items()}
    state["method.loss.soft_labels"] = torch.eye(3)  # the method's state in the LightningModule: left out
    torch.save({"epoch": 3, "global_step": 30, "state_dict": state}, tmp_path / "last.ckpt")
    loaded = create_model("small_cnn", in_channels=1, num_classes=3, weights=tmp_path / "last.ckpt").eval()
    torch.testing.assert_close(loaded(X), source(X), rtol=0, atol=0)


@pytest.mark.parametrize("wrapped", [False, True])
def test_model_prefix_of_the_network_itself_is_kept_when_it_fits(tmp_path, wrapped):
    # MONAI UNet's own keys start with "model."; a Lightning module holding it as self.model gives "model.model."
    torch.manual_seed(0)
    source = create_model("small_unet", in_channels=1, num_classes=2).eval()
    state = source.state_dict()
    assert all(k.startswith("model.") for k in state)
    torch.save({"state_dict": state} if wrapped else state, tmp_path / "a.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "b.ckpt")
    x = torch.randn(1, 1, 8, 8)
    for file in ("a.pt", "b.ckpt"):
        torch.manual_seed(1)
        loaded = create_model("small_unet", in_channels=1, num_classes=2, weights=tmp_path / file).eval()
        torch.testing.assert_close(loaded(x), source(x), rtol=0, atol=0)


def test_read_state_dict_without_model_keys_strips_only_lightning_checkpoints(tmp_path):
    torch.save({"model.w": torch.ones(1)}, tmp_path / "raw.pt")
    torch.save({"state_dict": {"model.w": torch.ones(1)}}, tmp_path / "lightning.ckpt")
    assert list(read_state_dict(tmp_path / "raw.pt")) == ["model.w"]
    assert list(read_state_dict(tmp_path / "lightning.ckpt")) == ["w"]


def test_ignore_head_drops_the_classifier_of_another_num_classes_with_a_warning(tmp_path):
    source = small_cnn(num_classes=10, seed=0)
    torch.save(source.state_dict(), tmp_path / "w10.pt")
    with pytest.raises(ValueError, match=r"head\.weight: \(10, 16\) vs \(3, 16\).*pass ignore_head=True") as err:
        create_model("small_cnn", in_channels=1, num_classes=3, weights=tmp_path / "w10.pt")
    assert "w10.pt" in str(err.value)
    with pytest.warns(UserWarning, match=r"ignore_head: not loading \['head\.bias', 'head\.weight'\] from .*w10\.pt"):
        model = create_model("small_cnn", in_channels=1, num_classes=3, weights=tmp_path / "w10.pt", ignore_head=True)
    for key, value in model.state_dict().items():
        if not key.startswith("head."):
            torch.testing.assert_close(value, source.state_dict()[key], rtol=0, atol=0)
    assert model.head.weight.shape == (3, 16)
    assert not torch.equal(model.head.weight, source.head.weight[:3])  # the fresh head, not a slice of the old


def test_ignore_head_keeps_a_head_of_the_same_shape_and_never_drops_other_mismatches(tmp_path):
    source = small_cnn(num_classes=3)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = create_model("small_cnn", in_channels=1, num_classes=3, weights=tmp_path / "w.pt", ignore_head=True)
    torch.testing.assert_close(model.head.weight, source.head.weight, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"features\.0\.weight: \(8, 1, 3, 3\) vs \(8, 2, 3, 3\)"):
        create_model("small_cnn", in_channels=2, num_classes=3, weights=tmp_path / "w.pt", ignore_head=True)


def test_ignore_head_works_for_a_segmentation_head(tmp_path):
    torch.save(create_model("small_unet", in_channels=1, num_classes=4).state_dict(), tmp_path / "w.pt")
    with pytest.warns(UserWarning, match=r"\['model\.2\.conv\.bias', 'model\.2\.conv\.weight'\]"):
        model = create_model("small_unet", in_channels=1, num_classes=2, weights=tmp_path / "w.pt", ignore_head=True)
    assert model(torch.zeros(1, 1, 4, 4)).shape == (1, 2, 4, 4)


def test_strict_errors_list_the_missing_and_unexpected_keys_and_the_file(tmp_path):
    state = small_cnn().state_dict()
    missing = dict(state)
    del missing["features.1.running_mean"]
    missing["extra.weight"] = torch.zeros(1)
    torch.save(missing, tmp_path / "partial.pt")
    pattern = (
        r"the checkpoint '.*partial\.pt' does not fit SmallCNN: missing keys \['features\.1\.running_mean'\]; "
        r"unexpected keys \['extra\.weight'\] \(strict=True"
    )
    with pytest.raises(ValueError, match=pattern):
        create_model("small_cnn", in_channels=1, num_classes=3, weights=tmp_path / "partial.pt")
    model = small_cnn(seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError):
        load_weights(model, tmp_path / "partial.pt")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing copied on failure
    with pytest.warns(UserWarning, match=r"missing keys \['features\.1\.running_mean'\].*strict=False"):
        load_weights(model, tmp_path / "partial.pt", strict=False)
    torch.testing.assert_close(model.features[0].weight, state["features.0.weight"], rtol=0, atol=0)


def test_at_most_ten_keys_are_listed(tmp_path):
    torch.save({f"k{i:02d}": torch.zeros(1) for i in range(25)}, tmp_path / "other.pt")
    with pytest.raises(ValueError) as err:
        load_weights(small_cnn(), tmp_path / "other.pt")
    message = str(err.value)
    assert "(and 15 more)" in message and "'k09'" in message and "'k10'" not in message
    assert "(and 4 more)" in message  # the model's 14 keys are all missing
    assert len(re.findall(r"'k\d\d'", message)) == 10


def test_a_corrupt_or_truncated_file_gives_an_error_naming_the_file(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"this is not a checkpoint" * 10)
    torch.save(small_cnn().state_dict(), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    for name in ("garbage.pt", "truncated.pt", "empty.pt"):
        with pytest.raises(ValueError, match=rf"cannot read '.*{name}' as a PyTorch checkpoint \(corrupt or trunc"):
            create_model("small_cnn", in_channels=1, num_classes=3, weights=tmp_path / name)


class Custom:
    pass


def test_files_that_are_no_state_dict_are_refused(tmp_path):
    torch.save({"epoch": 1, "lr": 0.1}, tmp_path / "numbers.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    torch.save({"state_dict": Custom()}, tmp_path / "pickled.pt")
    for name in ("numbers.pt", "tensor.pt"):
        with pytest.raises(ValueError, match=rf"'.*{name}' holds no state dict"):
            load_weights(small_cnn(), tmp_path / name)
    with pytest.raises(ValueError, match=r"cannot read '.*pickled\.pt'.*objects other than tensors"):
        load_weights(small_cnn(), tmp_path / "pickled.pt")


@pytest.mark.parametrize("url", ["https://example.org/w.pt", "http://example.org/w.pt", "HTTPS://X/w", "s3://b/w.pt"])
def test_urls_are_refused(url):
    with pytest.raises(ValueError, match=r"must be a local file path; nothing is downloaded.*got '"):
        create_model("small_cnn", in_channels=1, num_classes=3, weights=url)


def test_a_missing_file_or_a_wrong_type(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file '.*nothere\.pt'"):
        create_model("small_cnn", in_channels=1, num_classes=3, weights=tmp_path / "nothere.pt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_weights(small_cnn(), tmp_path)  # a folder
    with pytest.raises(TypeError, match="`weights` of create_model must be a local file path; got int 3"):
        create_model("small_cnn", in_channels=1, num_classes=3, weights=3)
