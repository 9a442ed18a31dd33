"""The fast tensor helpers agree with torch.argmax, ties included."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels._ops import argmax, is_first_max


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shape=st.sampled_from([(5, 3), (2, 4, 3, 5), (1, 3, 2, 2, 4)]),
    levels=st.integers(1, 4),
)
def test_argmax_and_first_max_equal_torch_argmax_with_ties(seed, shape, levels):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, levels, shape, generator=g).float()  # few levels: many ties
    expected = x.argmax(1)
    assert torch.equal(argmax(x, 1), expected)
    index = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=g)
    assert torch.equal(is_first_max(x, index), (expected.unsqueeze(1) == index))
