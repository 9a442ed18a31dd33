import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.targets import confidence_soft, confidence_threshold, confidence_weights

LABELS = torch.tensor([[[1, 1, 2], [0, 2, 0]]])
CONF = torch.tensor([[[0.9, 0.59, 0.6], [0.1, 0.3, 1.0]]])


def test_threshold_on_known_map():
    # τ = 0.6: kept where conf >= 0.6 -> (0,0) 0.9, (0,2) 0.6 (equality keeps), (1,2) 1.0
    got = confidence_threshold(LABELS, CONF, 3, tau=0.6)
    assert got.tolist() == [[[1, 0, 2], [0, 0, 0]]]
    ignored = confidence_threshold(LABELS, CONF, 3, tau=0.6, below="ignore", ignore_index=-1)
    assert ignored.tolist() == [[[1, -1, 2], [-1, -1, 0]]]
    assert confidence_threshold(LABELS, CONF, 3, tau=0.0).tolist() == LABELS.tolist()
    assert ignored.dtype == LABELS.dtype


def test_soft_known_map():
    got = confidence_soft(LABELS, CONF, 3)
    # (0,1): label 1 with conf 0.59 -> class 1 gets 0.59, background 0.41; (1,0): background stays one-hot
    torch.testing.assert_close(got[0, :, 0, 1], torch.tensor([0.41, 0.59, 0.0]))
    torch.testing.assert_close(got[0, :, 1, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(got[0, :, 1, 1], torch.tensor([0.7, 0.0, 0.3]))


def test_weights_are_a_copy():
    got = confidence_weights(CONF)
    torch.testing.assert_close(got, CONF)
    assert got.data_ptr() != CONF.data_ptr()


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.lists(st.integers(1, 5), min_size=3, max_size=4),
    num_classes=st.integers(1, 4),
)
def test_soft_is_a_distribution(seed, shape, num_classes):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, tuple(shape), generator=gen)
    conf = torch.rand(tuple(shape), generator=gen, dtype=torch.float64)
    got = confidence_soft(labels, conf, num_classes)
    assert bool((got >= 0).all())
    torch.testing.assert_close(got.sum(1), torch.ones_like(conf), atol=1e-6, rtol=0)
    # depth-1 3D agrees with 2D
    if len(shape) == 3:
        deep = confidence_soft(labels.unsqueeze(1), conf.unsqueeze(1), num_classes)[:, :, 0]
        torch.testing.assert_close(deep, got)
        thr = confidence_threshold(labels.unsqueeze(1), conf.unsqueeze(1), num_classes)[:, 0]
        assert torch.equal(thr, confidence_threshold(labels, conf, num_classes))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"`confidence` of confidence_threshold must lie in \[0, 1\]; got 1.5"):
        confidence_threshold(LABELS, CONF + 0.6, 3)
    with pytest.raises(ValueError, match=r"`confidence` of confidence_soft must have the shape of `labels`"):
        confidence_soft(LABELS, CONF[..., :2], 3)
    with pytest.raises(TypeError, match=r"`confidence` of confidence_weights must have a floating dtype"):
        confidence_weights(LABELS)
    with pytest.raises(ValueError, match=r"`tau` of confidence_threshold must be a float in \[0, 1\]; got 1.2"):
        confidence_threshold(LABELS, CONF, 3, tau=1.2)
    with pytest.raises(ValueError, match=r"`below` of confidence_threshold .*got 'ignored'"):
        confidence_threshold(LABELS, CONF, 3, below="ignored")
    with pytest.raises(ValueError, match=r"`ignore_index` of confidence_threshold must not be in \[0, 3\); got 2"):
        confidence_threshold(LABELS, CONF, 3, ignore_index=2)
    with pytest.raises(ValueError, match=r"`labels` of confidence_soft must hold class indices in \[0, 2\); got 2"):
        confidence_soft(LABELS, CONF, 2)
    with pytest.raises(ValueError, match=r"got nan"):
        confidence_weights(torch.tensor([float("nan")]))


def test_dictionary_transform_modes():
    from softlabels.targets import ConfidenceTargetd

    gen = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 3, (1, 4, 5), generator=gen)
    conf = torch.rand(1, 4, 5, generator=gen)
    data = {"label": labels, "confidence": conf}
    out = ConfidenceTargetd("label", 3, tau=0.5, below="ignore")(data)
    assert torch.equal(out["label"], confidence_threshold(labels, conf, 3, tau=0.5, below="ignore"))
    soft = ConfidenceTargetd("label", 3, mode="soft")(data)["label"]
    torch.testing.assert_close(soft, confidence_soft(labels, conf, 3)[0])
    weighted = ConfidenceTargetd("label", 3, mode="weighted", weight_key="w")(data)
    assert torch.equal(weighted["label"], labels) and torch.equal(weighted["w"], conf)
    with pytest.raises(ValueError, match=r"`mode` of ConfidenceTargetd .*got 'hard'"):
        ConfidenceTargetd("label", 3, mode="hard")
