import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.targets import LabelSmoothingd, boundary_label_smoothing, label_smoothing


def random_labels(seed, shape, num_classes):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_classes, shape, generator=gen)


def boundary_reference(labels, num_classes, epsilon, width):
    """float64 NumPy: a voxel is on a boundary if its (2w+1)^d window (clipped at the border) holds another class."""
    y = labels.numpy()
    eye = np.eye(num_classes)
    out = np.zeros((*y.shape[:1], num_classes, *y.shape[1:]))
    for idx in np.ndindex(*y.shape):
        window = tuple(slice(max(i - width, 0), i + width + 1) for i in idx[1:])
        neighbourhood = y[(idx[0], *window)]
        row = eye[y[idx]]
        if (neighbourhood != y[idx]).any():
            row = (1 - epsilon) * row + epsilon / num_classes
        out[(idx[0], slice(None), *idx[1:])] = row
    return out


def test_uniform_rows_match_formula():
    labels = torch.tensor([0, 1, 2, 3])
    eps, num_classes = 0.2, 4
    expected = (1 - eps) * np.eye(num_classes)[labels.numpy()] + eps / num_classes
    got = label_smoothing(labels, num_classes, epsilon=eps)
    np.testing.assert_allclose(got.double().numpy(), expected, atol=1e-7)
    # hand value: true class 1 - 0.2 + 0.2/4 = 0.85, others 0.05
    assert got[1, 1].item() == pytest.approx(0.85)
    assert got[1, 0].item() == pytest.approx(0.05)


def test_others_rows_match_formula():
    labels = torch.tensor([[[2, 0]]])
    eps, num_classes = 0.3, 4
    got = label_smoothing(labels, num_classes, epsilon=eps, convention="others")
    # hand value: true class 1 - 0.3 = 0.7, each of the 3 others 0.3 / 3 = 0.1
    assert got.shape == (1, 4, 1, 2)
    np.testing.assert_allclose(got[0, :, 0, 0].numpy(), [0.1, 0.1, 0.7, 0.1], atol=1e-7)
    np.testing.assert_allclose(got[0, :, 0, 1].numpy(), [0.7, 0.1, 0.1, 0.1], atol=1e-7)


def test_ignore_index_gives_zero_rows():
    labels = torch.tensor([[[0, 255, 1]]])
    got = label_smoothing(labels, 2, epsilon=0.1, ignore_index=255)
    assert got[0, :, 0, 1].abs().sum().item() == 0
    np.testing.assert_allclose(got[0, :, 0, 0].sum().item(), 1.0, atol=1e-6)


def test_boundary_interior_stays_one_hot_and_boundary_is_smoothed():
    labels = torch.zeros(1, 6, 6, dtype=torch.long)
    labels[0, 2:4, 2:4] = 1
    got = boundary_label_smoothing(labels, 2, epsilon=0.5)
    np.testing.assert_allclose(got.double().numpy(), boundary_reference(labels, 2, 0.5, 1), atol=1e-7)
    # corner pixel (0, 0) is 2 pixels from the square: interior, one-hot
    assert got[0, :, 0, 0].tolist() == [1.0, 0.0]
    # pixel (2, 2) of the square touches background: 0.5 * onehot + 0.5 / 2 = (0.25, 0.75)
    assert got[0, :, 2, 2].tolist() == [0.25, 0.75]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.lists(st.integers(1, 5), min_size=3, max_size=4),
    num_classes=st.integers(2, 4),
    width=st.integers(1, 2),
    epsilon=st.floats(0, 1),
)
def test_boundary_matches_reference(seed, shape, num_classes, width, epsilon):
    labels = random_labels(seed, tuple(shape), num_classes)
    got = boundary_label_smoothing(labels, num_classes, epsilon=epsilon, width=width)
    np.testing.assert_allclose(got.double().numpy(), boundary_reference(labels, num_classes, epsilon, width), atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.lists(st.integers(1, 5), min_size=3, max_size=4),
    num_classes=st.integers(2, 5),
    epsilon=st.floats(0, 1),
    convention=st.sampled_from(["uniform", "others"]),
)
def test_every_target_is_a_distribution(seed, shape, num_classes, epsilon, convention):
    labels = random_labels(seed, tuple(shape), num_classes)
    for target in (
        label_smoothing(labels, num_classes, epsilon=epsilon, convention=convention),
        boundary_label_smoothing(labels, num_classes, epsilon=epsilon),
    ):
        assert target.shape == (shape[0], num_classes, *shape[1:])
        assert bool((target >= 0).all())
        torch.testing.assert_close(target.sum(1), torch.ones(shape[0], *shape[1:]), atol=1e-6, rtol=0)


def test_depth_one_volume_agrees_with_2d():
    labels = random_labels(0, (2, 5, 6), 3)
    for fn in (label_smoothing, boundary_label_smoothing):
        flat = fn(labels, 3, epsilon=0.3)
        deep = fn(labels.unsqueeze(1), 3, epsilon=0.3)
        torch.testing.assert_close(deep[:, :, 0], flat)


def test_bad_inputs_raise():
    labels = torch.tensor([[[0, 1]]])
    with pytest.raises(ValueError, match=r"`labels` of label_smoothing .*got 3"):
        label_smoothing(torch.tensor([[[0, 3]]]), 3)
    with pytest.raises(TypeError, match="integer dtype"):
        label_smoothing(labels.float(), 2)
    with pytest.raises(ValueError, match=r"`epsilon` of label_smoothing .*got 1.5"):
        label_smoothing(labels, 2, epsilon=1.5)
    with pytest.raises(ValueError, match=r"did you mean 'uniform'"):
        label_smoothing(labels, 2, convention="unifrom")
    with pytest.raises(ValueError, match=r"`num_classes` of label_smoothing must be an int >= 2; got 1"):
        label_smoothing(torch.tensor([0]), 1, convention="others")
    with pytest.raises(ValueError, match=r"`ignore_index` .*got 1"):
        label_smoothing(labels, 2, ignore_index=1)
    with pytest.raises(ValueError, match=r"`width` of boundary_label_smoothing .*got 0"):
        boundary_label_smoothing(labels, 2, width=0)
    with pytest.raises(ValueError, match=r"shape \(N, H, W\)"):
        boundary_label_smoothing(torch.tensor([0, 1]), 2)


def test_dictionary_transform_channel_first_and_plain():
    label = random_labels(1, (4, 5), 3)
    expected = label_smoothing(label.unsqueeze(0), 3, epsilon=0.2)[0]
    out = LabelSmoothingd("label", 3, epsilon=0.2)({"label": label.unsqueeze(0), "image": 7})
    torch.testing.assert_close(out["label"], expected)
    assert out["image"] == 7
    plain = LabelSmoothingd("label", 3, epsilon=0.2, has_channel=False)({"label": label})
    torch.testing.assert_close(plain["label"], expected)
    with pytest.raises(ValueError, match=r"channel-first"):
        LabelSmoothingd("label", 3)({"label": label})


def test_boundary_dictionary_transform_2d_and_3d():
    from softlabels.targets import BoundaryLabelSmoothingd

    gen = torch.Generator().manual_seed(3)
    for spatial in ((5, 6), (3, 4, 5)):
        labels = torch.randint(0, 3, spatial, generator=gen)
        expected = boundary_label_smoothing(labels.unsqueeze(0), 3, epsilon=0.4)[0]
        out = BoundaryLabelSmoothingd("label", 3, epsilon=0.4)({"label": labels.unsqueeze(0)})
        torch.testing.assert_close(out["label"], expected)
        plain = BoundaryLabelSmoothingd("label", 3, epsilon=0.4, has_channel=False)({"label": labels})
        torch.testing.assert_close(plain["label"], expected)
