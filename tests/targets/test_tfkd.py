import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.targets import VirtualTeacherd, self_teacher, virtual_teacher


def np_teacher(label, num_classes, a, temperature):
    """The spec's formula: p_d[c*] = a, others (1 − a)/(C − 1); t = softmax(p_d / T)."""
    p_d = np.full(num_classes, (1 - a) / (num_classes - 1))
    p_d[label] = a
    e = np.exp(p_d / temperature)
    return e / e.sum()


@pytest.mark.parametrize(("num_classes", "temperature", "a"), [(100, 40.0, 0.99), (165, 6.0, 0.99), (4, 1.0, 0.7)])
def test_teacher_equals_the_formula(num_classes, temperature, a):
    labels = torch.tensor([0, num_classes - 1, 1])
    got = virtual_teacher(labels, num_classes, correct_probability=a, temperature=temperature)
    expected = np.stack([np_teacher(y, num_classes, a, temperature) for y in labels.tolist()])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_spec_table_values():
    # a = 0.99 (Tf-KD, docs/methods.md §2.2): C = 100, T = 40 → 0.01025; C = 165, T = 6 → 0.0071 (uniform: 0.01, 0.0061)
    assert virtual_teacher(torch.tensor([3]), 100, temperature=40.0)[0, 3].item() == pytest.approx(0.01025, abs=5e-6)
    assert virtual_teacher(torch.tensor([3]), 165, temperature=6.0)[0, 3].item() == pytest.approx(0.0071, abs=5e-5)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shape=st.sampled_from([(5,), (2, 4, 5), (1, 3, 4, 2)]),
    num_classes=st.integers(2, 6),
    temperature=st.floats(0.1, 50.0),
    a=st.floats(0.0, 1.0),
)
def test_every_teacher_is_a_distribution(seed, shape, num_classes, temperature, a):
    labels = torch.randint(0, num_classes, shape, generator=torch.Generator().manual_seed(seed))
    t = virtual_teacher(labels, num_classes, correct_probability=a, temperature=temperature)
    assert t.shape == (shape[0], num_classes, *shape[1:])
    assert (t >= 0).all() and torch.allclose(t.sum(1), torch.ones(()), atol=1e-6)
    if a > 1 / num_classes:
        assert torch.equal(t.argmax(1), labels)


def test_ignored_voxels_and_depth_one():
    labels = torch.tensor([[[0, 255], [1, 2]]])
    t = virtual_teacher(labels, 3, ignore_index=255)
    assert t[0, :, 0, 1].sum() == 0 and t[0, :, 1, 1].sum() == pytest.approx(1)
    torch.testing.assert_close(virtual_teacher(labels.unsqueeze(1), 3, ignore_index=255), t.unsqueeze(2))


def test_self_teacher_is_the_softened_softmax():
    z = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    t = self_teacher(z, temperature=4.0)
    torch.testing.assert_close(t, torch.softmax(z.detach() / 4.0, 1))
    assert not t.requires_grad


def test_dictionary_transform():
    out = VirtualTeacherd("label", num_classes=3, temperature=2.0)({"label": torch.tensor([[[0, 2]]])})
    torch.testing.assert_close(out["label"], virtual_teacher(torch.tensor([[[0, 2]]]), 3, temperature=2.0)[0])
    one = VirtualTeacherd("y", num_classes=3, temperature=2.0)({"y": torch.tensor(1)})["y"]
    assert one.shape == (3,) and one.sum().item() == pytest.approx(1.0)


def test_bad_inputs_raise():
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"`temperature` of virtual_teacher must be a finite float > 0; got -1"):
        virtual_teacher(labels, 3, temperature=-1)
    with pytest.raises(ValueError, match=r"`correct_probability` of virtual_teacher must be a float in \[0, 1\]"):
        virtual_teacher(labels, 3, correct_probability=1.5)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\); got 3"):
        virtual_teacher(torch.tensor([3]), 3)
    with pytest.raises(ValueError, match=r"`num_classes` of virtual_teacher must be an int >= 2; got 1"):
        virtual_teacher(labels, 1)
    with pytest.raises(ValueError, match=r"`teacher_logits` of self_teacher must be finite"):
        self_teacher(torch.tensor([[math.nan, 0.0]]))
    with pytest.raises(ValueError, match=r"C >= 2"):
        self_teacher(torch.zeros(2, 1))
