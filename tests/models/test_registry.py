"""The model registry: a contract test over every registered name (timm-style), the errors, timm, no downloads."""

from __future__ import annotations

import importlib.util
import sys
import types
import urllib.request

import pytest
import torch

from softlabels.models import ModelInfo, create_model, list_models, model_info, register_model
from softlabels.models import registry as registry_module

REQUIRED = {
    "segmentation": {"unet", "basic_unet", "dynunet", "small_unet"},
    "classification": {"resnet50", "mobilenet_v2", "vgg19", "vgg19_bn", "small_cnn"},
}
CASES = [(name, dims) for name in list_models() for dims in model_info(name).spatial_dims]
# divisible by every network's total stride (16 for BasicUNet, 32 for the classifiers; VGG pools adaptively), and
# not a cube, so that the instance norm at BasicUNet's 1-voxel-thick bottom still sees more than one voxel
SHAPE = {2: (32, 48), 3: (16, 16, 32)}


def test_required_names_are_registered_under_their_task():
    assert list_models() == sorted(list_models())
    for task, names in REQUIRED.items():
        assert set(list_models(task)) == names
        assert all(model_info(n).task == task for n in names)
    assert set(list_models()) == REQUIRED["segmentation"] | REQUIRED["classification"]
    assert {n for n in list_models() if 3 in model_info(n).spatial_dims} == set(list_models()) - {
        "mobilenet_v2", "vgg19", "vgg19_bn"
    }  # fmt: skip


@pytest.mark.parametrize(("name", "spatial_dims"), CASES, ids=[f"{n}-{d}d" for n, d in CASES])
def test_every_model_runs_forward_and_backward_with_the_right_shapes(name, spatial_dims):
    torch.manual_seed(0)
    model = create_model(name, in_channels=2, num_classes=3, spatial_dims=spatial_dims)
    x = torch.randn(2, 2, *SHAPE[spatial_dims])
    logits = model(x)
    classification = model_info(name).task == "classification"
    assert logits.shape == ((2, 3) if classification else (2, 3, *x.shape[2:]))
    logits.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(bool(g.abs().sum() > 0) for g in grads if g is not None)
    if classification:
        model.eval()  # dropout off: forward_head ∘ forward_features must be forward exactly
        with torch.no_grad():
            features = model.forward_features(x)
            assert features.shape == (2, model.num_features)
            torch.testing.assert_close(model.forward_head(features), model(x))


@pytest.mark.parametrize("name", list_models())
def test_every_head_prefix_holds_exactly_the_keys_that_depend_on_num_classes(name):
    info = model_info(name)
    with torch.device("meta"):
        a = create_model(name, in_channels=1, num_classes=3).state_dict()
        b = create_model(name, in_channels=1, num_classes=5).state_dict()
    assert a.keys() == b.keys()
    changed = {k for k in a if a[k].shape != b[k].shape}
    assert changed, name
    assert all(any(k == p or k.startswith(p + ".") for p in info.head) for k in changed), (name, changed)
    assert all(any(k.startswith(p + ".") for k in changed) for p in info.head), (name, info.head)


@pytest.mark.parametrize("name", list_models())
def test_every_entry_has_a_summary_and_its_defaults_build_the_default_model(name):
    info = model_info(name)
    assert isinstance(info, ModelInfo) and info.summary and info.builder is not None
    assert not {"in_channels", "num_classes", "spatial_dims"} & set(info.defaults)
    with torch.device("meta"):
        default = create_model(name, in_channels=1, num_classes=2)
        explicit = create_model(name, in_channels=1, num_classes=2, **info.defaults)
    assert {k: v.shape for k, v in default.state_dict().items()} == {
        k: v.shape for k, v in explicit.state_dict().items()
    }


def test_nothing_is_downloaded(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    with torch.device("meta"):
        for name, spatial_dims in CASES:
            create_model(name, in_channels=1, num_classes=2, spatial_dims=spatial_dims)


def test_unknown_name_lists_the_names_and_suggests_the_closest():
    with pytest.raises(ValueError, match=r"did you mean 'unet'\?") as err:
        create_model("unte", in_channels=1, num_classes=2)
    assert "'basic_unet'" in str(err.value) and "'vgg19_bn'" in str(err.value) and "'unte'" in str(err.value)
    with pytest.raises(ValueError, match="did you mean 'mobilenet_v2'"):
        create_model("mobilenetv2", in_channels=3, num_classes=2)
    with pytest.raises(TypeError, match="`name` of create_model must be a str"):
        create_model(None, in_channels=1, num_classes=2)


def test_unknown_keyword_names_the_model_and_its_valid_keywords():
    with pytest.raises(ValueError, match=r"unknown keyword\(s\) \['chanels'\] of model 'unet'") as err:
        create_model("unet", in_channels=1, num_classes=2, chanels=(8, 16))
    assert "'channels'" in str(err.value) and "'num_res_units'" in str(err.value)
    with pytest.raises(ValueError, match=r"\['width_mult'\] of model 'vgg19'.*valid: \['dropout'\]"):
        create_model("vgg19", in_channels=3, num_classes=2, width_mult=0.5)


@pytest.mark.parametrize("name", ["mobilenet_v2", "vgg19", "vgg19_bn"])
def test_2d_only_models_refuse_3d(name):
    with pytest.raises(ValueError, match=rf"`spatial_dims` of create_model for model '{name}' must be 2; got 3"):
        create_model(name, in_channels=3, num_classes=2, spatial_dims=3)


@pytest.mark.parametrize("spatial_dims", [1, 4, True, "2"])
def test_unsupported_spatial_dims(spatial_dims):
    with pytest.raises(ValueError, match="must be 2 or 3; got"):
        create_model("small_cnn", in_channels=1, num_classes=2, spatial_dims=spatial_dims)


@pytest.mark.parametrize("arg", ["in_channels", "num_classes"])
def test_sizes_must_be_positive_ints(arg):
    sizes = {"in_channels": 1, "num_classes": 2}
    with pytest.raises(ValueError, match=rf"`{arg}` of create_model must be an int >= 1; got 0\."):
        create_model("small_cnn", **{**sizes, arg: 0})
    with pytest.raises(ValueError, match=rf"`{arg}` .* got -3\."):
        create_model("small_cnn", **{**sizes, arg: -3})
    for bad in (2.0, True, "3"):
        with pytest.raises(TypeError, match=rf"`{arg}` of create_model must be an int >= 1; got"):
            create_model("small_cnn", **{**sizes, arg: bad})


def test_list_models_rejects_an_unknown_task():
    with pytest.raises(ValueError, match="did you mean 'segmentation'"):
        list_models("segmentaton")


def test_register_model_adds_a_builder_and_checks_it(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    @register_model("toy", task="classification", spatial_dims=(2,), head=("",))
    def _toy(*, in_channels: int, num_classes: int, spatial_dims: int, bias: bool = True) -> torch.nn.Module:
        """A linear toy."""
        return torch.nn.Linear(in_channels, num_classes, bias=bias)

    assert "toy" in list_models("classification") and "toy" not in list_models("segmentation")
    assert model_info("toy").defaults == {"bias": True} and model_info("toy").summary == "A linear toy."
    assert create_model("toy", in_channels=4, num_classes=2, bias=False).bias is None
    with pytest.raises(ValueError, match="must be new"):
        register_model("toy", task="classification")
    with pytest.raises(ValueError, match="must be new and not start with 'timm:'"):
        register_model("timm:resnet18", task="classification")
    with pytest.raises(ValueError, match="did you mean 'classification'"):
        register_model("other", task="clasification")
    with pytest.raises(ValueError, match=r"lacks the argument\(s\) \['spatial_dims'\]"):
        register_model("bad", task="segmentation")(lambda *, in_channels, num_classes: None)


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed")
def test_timm_names_without_timm_say_how_to_install_it():
    with pytest.raises(ImportError, match="pip install timm") as err:
        create_model("timm:resnet18", in_channels=3, num_classes=2)
    assert "'timm:resnet18'" in str(err.value) and "torchvision" in str(err.value) and "small_cnn" in str(err.value)


def test_timm_names_pass_through_to_timm_create_model(monkeypatch):
    calls = []

    def fake_create_model(name, **kwargs):
        calls.append((name, kwargs))
        model = torch.nn.Linear(kwargs["in_chans"], kwargs["num_classes"])
        model.pretrained_cfg = {"classifier": ""}
        return model

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=fake_create_model))
    model = create_model("timm:convnext_atto", in_channels=1, num_classes=4, drop_rate=0.1)
    assert calls == [("convnext_atto", {"pretrained": False, "in_chans": 1, "num_classes": 4, "drop_rate": 0.1})]
    assert model.weight.shape == (4, 1)
    with pytest.raises(ValueError, match="`pretrained` of create_model for timm model 'timm:x' is not allowed"):
        create_model("timm:x", in_channels=1, num_classes=4, pretrained=True)
    with pytest.raises(ValueError, match="for timm model 'timm:x' must be 2; got 3"):
        create_model("timm:x", in_channels=1, num_classes=4, spatial_dims=3)
