import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.targets import FuseRatersd, fuse_raters


def random_raters(seed, shape, num_classes):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_classes, shape, generator=gen)


def one_hot_np(labels, num_classes):
    """(R, N, *S) -> (R, N, C, *S) float64."""
    return np.moveaxis(np.eye(num_classes)[labels], -1, 2)


def majority_reference(raters, num_classes):
    counts = one_hot_np(raters.numpy(), num_classes).sum(0)
    winner = counts >= raters.shape[0] // 2 + 1
    winner[:, 0] |= ~winner.any(axis=1)
    return winner.astype(np.float64)


@pytest.mark.parametrize("method", ["mean", "weighted", "majority"])
def test_identical_raters_give_their_one_hot(method):
    labels = random_raters(0, (2, 4, 5), 3)
    raters = labels.unsqueeze(0).expand(4, -1, -1, -1)
    expected = torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).float()
    torch.testing.assert_close(fuse_raters(raters, 3, method=method), expected)


def test_mean_weighted_majority_match_reference():
    raters = random_raters(1, (5, 2, 3, 4, 5), 4)
    onehots = one_hot_np(raters.numpy(), 4)
    np.testing.assert_allclose(fuse_raters(raters, 4).double().numpy(), onehots.mean(0), atol=1e-6)
    w = np.array([1.0, 2.0, 0.0, 0.5, 3.0])
    expected = (w[:, None, None, None, None, None] * onehots).sum(0) / w.sum()
    got = fuse_raters(raters, 4, method="weighted", weights=w.tolist())
    np.testing.assert_allclose(got.double().numpy(), expected, atol=1e-6)
    got_t = fuse_raters(raters, 4, method="weighted", weights=torch.tensor(w))
    np.testing.assert_allclose(got_t.double().numpy(), expected, atol=1e-6)
    got_m = fuse_raters(raters, 4, method="majority")
    np.testing.assert_allclose(got_m.double().numpy(), majority_reference(raters, 4), atol=0)


def test_majority_tie_goes_to_background():
    raters = torch.tensor([[[[0, 1, 2]]], [[[1, 1, 1]]]])  # R=2: a strict majority needs 2 votes
    got = fuse_raters(raters, 3, method="majority")
    assert got[0, :, 0].argmax(0).tolist() == [0, 1, 0]


def test_dice_weights_hand_computed():
    raters = torch.tensor([[[[1, 1, 0, 0]]], [[[1, 1, 0, 0]]], [[[0, 0, 1, 1]]]])
    # majority [1, 1, 0, 0]; Dice of the raters: 1, 1, 0 -> weights (1, 1, 0) / 2 -> q_fg = [1, 1, 0, 0]
    got = fuse_raters(raters, 2, method="weighted")
    np.testing.assert_allclose(got[0, 1, 0].numpy(), [1, 1, 0, 0], atol=1e-7)
    # reference quirk: Dice 0 -> weight 1, so all three weigh 1 -> q_fg = [2/3, 2/3, 1/3, 1/3]
    quirk = fuse_raters(raters, 2, method="weighted", reference_quirk=True)
    np.testing.assert_allclose(quirk[0, 1, 0].numpy(), [2 / 3, 2 / 3, 1 / 3, 1 / 3], atol=1e-6)


def test_dice_weights_all_zero_fall_back_to_mean():
    raters = torch.tensor([[[[1, 0]]], [[[0, 1]]]])
    # no majority anywhere -> majority is all background; both raters have Dice 0 -> plain mean [0.5, 0.5]
    got = fuse_raters(raters, 2, method="weighted")
    np.testing.assert_allclose(got[0, 1, 0].numpy(), [0.5, 0.5], atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.lists(st.integers(1, 5), min_size=4, max_size=5),
    num_classes=st.integers(1, 4),
    method=st.sampled_from(["mean", "weighted", "majority"]),
    quirk=st.booleans(),
)
def test_every_target_is_a_distribution(seed, shape, num_classes, method, quirk):
    raters = random_raters(seed, tuple(shape), num_classes)
    kwargs = {"reference_quirk": quirk} if method == "weighted" else {}
    got = fuse_raters(raters, num_classes, method=method, **kwargs)
    assert got.shape == (shape[1], num_classes, *shape[2:])
    assert bool((got >= 0).all())
    torch.testing.assert_close(got.sum(1), torch.ones(shape[1], *shape[2:]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["mean", "weighted", "majority"])
def test_list_input_and_depth_one_agree(method):
    raters = random_raters(2, (3, 2, 4, 5), 3)
    flat = fuse_raters(raters, 3, method=method)
    torch.testing.assert_close(fuse_raters(list(raters), 3, method=method), flat)
    torch.testing.assert_close(fuse_raters(raters.unsqueeze(2), 3, method=method)[:, :, 0], flat)


def test_bad_inputs_raise():
    raters = random_raters(3, (2, 1, 3, 3), 2)
    with pytest.raises(ValueError, match=r"`raters` of fuse_raters must all have the same shape"):
        fuse_raters([raters[0], raters[1, :, :2]], 2)
    with pytest.raises(ValueError, match=r"`raters` of fuse_raters must hold class indices in \[0, 2\); got 2"):
        fuse_raters(raters + 1, 2)
    with pytest.raises(TypeError, match=r"`raters` of fuse_raters must have an integer dtype"):
        fuse_raters(raters.float(), 2)
    with pytest.raises(ValueError, match=r"`method` of fuse_raters .*got 'mena' \(did you mean 'mean'\?\)"):
        fuse_raters(raters, 2, method="mena")
    with pytest.raises(ValueError, match=r"`weights` of fuse_raters is only used with method='weighted'"):
        fuse_raters(raters, 2, weights=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"one weight per rater \(R=2\); got \[1.0\]"):
        fuse_raters(raters, 2, method="weighted", weights=[1.0])
    with pytest.raises(ValueError, match=r"must be finite, >= 0 and not all 0; got \[-1.0, 2.0\]"):
        fuse_raters(raters, 2, method="weighted", weights=[-1.0, 2.0])
    with pytest.raises(ValueError, match=r"shape \(R, N, H, W\)"):
        fuse_raters(raters[0], 2)


def test_dictionary_transform():
    stack = random_raters(4, (3, 4, 5), 3)  # one sample: R=3 raters on the channel axis
    expected = fuse_raters(stack.unsqueeze(1), 3, method="majority")[0]
    out = FuseRatersd("label", 3, method="majority")({"label": stack})
    torch.testing.assert_close(out["label"], expected)
    assert out["label"].shape == (3, 4, 5)
