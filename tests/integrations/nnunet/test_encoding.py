"""Soft labels in nnU-Net label maps (rater bits, confidence levels): exactness, regions, downsampling, errors."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.integrations.nnunet.encoding import (
    LabelEncoding,
    decode_foreground,
    decode_raters,
    decode_regions,
    downsample_soft,
    encode_confidence,
    encode_raters,
)

FAST = settings(max_examples=40, deadline=None)


def _all_labels(labels: dict) -> list[int]:
    """nnU-Net's LabelManager.all_labels, re-derived: every value named in ``labels`` (regions flattened), sorted."""
    values = set()
    for value in labels.values():
        values |= set(value) if isinstance(value, list | tuple) else {value}
    return sorted(values)


# ---------------------------------------------------------------------------------------------------- raters
def _popcount(codes: np.ndarray) -> np.ndarray:
    """Bits set per code, counted independently of the encoding (bit by bit over the uint8 range)."""
    return sum((codes.astype(np.int64) >> b) & 1 for b in range(8))


@FAST
@given(
    num_raters=st.integers(1, 8),
    spatial=st.sampled_from([(3, 4), (2, 3, 4), (1, 5), (1, 2, 3)]),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_decode_raters_inverts_encode_raters(num_raters, spatial, batch, seed):
    rng = np.random.default_rng(seed)
    raters = rng.integers(0, 2, size=(batch, num_raters, *spatial))
    codes = np.stack([encode_raters(r) for r in raters])
    assert codes.dtype == np.uint8 and codes.shape == (batch, *spatial)
    assert int(codes.max()) <= 2**num_raters - 1
    weights = 2 ** np.arange(num_raters).reshape(1, -1, *([1] * len(spatial)))
    np.testing.assert_array_equal(codes, (raters * weights).sum(1))  # v = sum_r 2^r y_r
    expected = torch.from_numpy(raters)
    with_channel = decode_raters(torch.from_numpy(codes)[:, None], num_raters)  # nnU-Net's (N, 1, *spatial)
    assert with_channel.dtype == torch.int64 and torch.equal(with_channel, expected)
    if spatial[0] > 1:  # (N, *spatial) is read as such unless axis 1 has size 1 (then it is the channel axis)
        assert torch.equal(decode_raters(torch.from_numpy(codes), num_raters), expected)
    for dtype in (torch.uint8, torch.int32):
        assert torch.equal(decode_raters(torch.from_numpy(codes).to(dtype)[:, None], num_raters), expected)


@FAST
@given(
    num_raters=st.integers(1, 8),
    shape=st.sampled_from([(3, 4), (2, 3, 4)]),
    seed=st.integers(0, 2**31 - 1),
)
def test_popcount_of_the_codes_over_raters_is_the_rater_mean(num_raters, shape, seed):
    raters = np.random.default_rng(seed).integers(0, 2, size=(num_raters, *shape))
    encoded = encode_raters(raters)
    np.testing.assert_array_equal(_popcount(encoded), raters.sum(0))
    mean = raters.astype(np.float64).mean(0)  # the soft foreground: the rater mean
    np.testing.assert_array_equal(_popcount(encoded) / num_raters, mean)
    decoded = decode_raters(torch.from_numpy(encoded)[None, None], num_raters)
    assert torch.equal(decoded.sum(1)[0].double() / num_raters, torch.from_numpy(mean))
    soft = decode_foreground(torch.from_numpy(_popcount(encoded))[None], num_raters)  # the count as a level
    assert torch.equal(soft[0, 1], torch.from_numpy(mean.astype(np.float32)))
    assert torch.allclose(soft.sum(1), torch.ones(1, *shape), atol=1e-6)


@pytest.mark.parametrize(
    ("code_map", "raters", "error", "message"),
    [
        (torch.tensor([[[0, 8]]]), 3, ValueError, r"`code_map` of decode_raters must hold values in \[0, 7\]; got .*8"),
        (torch.tensor([[[0, 255]]], dtype=torch.uint8), 7, ValueError, r"\[0, 127\]; got values in \[0, 255\]"),
        (torch.tensor([[[0, -1]]]), 2, ValueError, r"got values in \[-1, 0\]"),
        (torch.zeros(1, 2, 2), 2, TypeError, "integer torch.Tensor; got Tensor of dtype torch.float32"),
        (torch.zeros(1, 1, 2, 2, dtype=torch.float64), 2, TypeError, "got Tensor of dtype torch.float64"),
        (np.zeros((1, 2, 2), np.int64), 2, TypeError, "integer torch.Tensor; got ndarray"),
        (torch.zeros(1, 2, 2, dtype=torch.int64), 0, ValueError, r"`raters` of decode_raters.*\[1, 8\]; got 0"),
        (torch.zeros(1, 2, 2, dtype=torch.int64), 9, ValueError, r"\[1, 8\]; got 9"),
        (torch.zeros(1, 2, 2, dtype=torch.int64), True, ValueError, "got True"),
        (torch.zeros(1, 2, 2, dtype=torch.int64), 2.0, ValueError, "got 2.0"),
        (torch.tensor([0, 1]), 2, ValueError, "2 or 3 spatial axes"),
    ],
)
def test_decode_raters_errors_are_one_line(code_map, raters, error, message):
    with pytest.raises(error, match=message) as info:
        decode_raters(code_map, raters)
    assert "\n" not in str(info.value)


def test_decode_foreground_accepts_maps_with_and_without_channel_axis():
    v = torch.tensor([[[0, 1], [2, 4]]])
    assert torch.equal(decode_foreground(v, 4), decode_foreground(v[:, None], 4))
    volume = torch.randint(0, 5, (2, 3, 4, 5))
    assert decode_foreground(volume, 4).shape == (2, 2, 3, 4, 5)
    assert torch.equal(decode_foreground(volume, 4), decode_foreground(volume[:, None], 4))


def test_encode_raters_bool_maps_and_errors():
    assert encode_raters(np.array([[True, False], [True, True]])).tolist() == [3, 2]  # rater 0 is bit 0
    with pytest.raises(ValueError, match=r"binary.*got value 2.*multi-class"):
        encode_raters(np.array([[0, 2], [1, 1]]))
    with pytest.raises(ValueError, match="got value -1"):
        encode_raters(np.array([[0, -1], [1, 1]]))
    with pytest.raises(TypeError, match="integer NumPy array; got ndarray of dtype float64"):
        encode_raters(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="got Tensor"):
        encode_raters(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"shape \(0, 3\)"):
        encode_raters(np.zeros((0, 3), np.int64))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        encode_raters(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"1 <= R <= 8 \(one bit per rater in a uint8 map\); got shape \(9, 2\)"):
        encode_raters(np.zeros((9, 2), np.uint8))
    assert encode_raters(np.ones((8, 2), np.uint8)).tolist() == [255, 255]  # 8 raters fill the uint8 range


# ---------------------------------------------------------------------------------------------------- confidence
@FAST
@given(levels=st.integers(1, 255), seed=st.integers(0, 2**31 - 1))
def test_encode_confidence_quantises_the_soft_foreground_within_half_a_level(levels, seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, size=(5, 6))
    confidence = rng.random((5, 6))
    confidence[0, :2] = (0.0, 1.0)
    v = encode_confidence(label, confidence, levels)
    q = np.where(label == 1, confidence, 1 - confidence)
    assert v.dtype == np.uint8 and v.min() >= 0 and v.max() <= levels
    assert np.all(np.abs(v / levels - q) <= 1 / (2 * levels) + 1e-12)


def test_encode_confidence_and_the_decoding_rule_for_the_confidence_recipes():
    label = np.array([1, 1, 0, 0, 1])
    confidence = np.array([0.8, 0.3, 0.9, 0.2, 0.5], np.float32)
    v = encode_confidence(label, confidence, 10)
    assert v.tolist() == [8, 3, 1, 8, 5]
    q = decode_foreground(torch.from_numpy(v.astype(np.int64))[None, None], 10)[0, 1, 0]
    decoded_label = q > 0.5
    decoded_conf = torch.where(decoded_label, q, 1 - q)
    # kept where c > 0.5 (label 1) or c >= 0.5 (label 0); otherwise the other label with confidence 1 - c (same q)
    assert decoded_label.tolist() == [True, False, False, True, False]
    assert torch.allclose(decoded_conf.double(), torch.tensor([0.8, 0.7, 0.9, 0.8, 0.5], dtype=torch.float64))


def test_encode_confidence_errors():
    label, conf = np.array([0, 1]), np.array([0.5, 0.5])
    with pytest.raises(ValueError, match=r"`levels` of encode_confidence.*got 0"):
        encode_confidence(label, conf, 0)
    with pytest.raises(ValueError, match="got 256"):
        encode_confidence(label, conf, 256)
    with pytest.raises(TypeError, match="`label` of encode_confidence"):
        encode_confidence(conf, conf, 10)
    with pytest.raises(TypeError, match="`confidence` of encode_confidence"):
        encode_confidence(label, label, 10)
    with pytest.raises(ValueError, match="shape of `label`"):
        encode_confidence(label, np.array([0.5]), 10)
    with pytest.raises(ValueError, match="binary"):
        encode_confidence(np.array([0, 2]), conf, 10)
    with pytest.raises(ValueError, match=r"\[0, 1\]; got 1.5"):
        encode_confidence(label, np.array([0.5, 1.5]), 10)
    with pytest.raises(ValueError, match="got nan"):
        encode_confidence(label, np.array([np.nan, 0.5]), 10)


# ---------------------------------------------------------------------------------------------------- regions
@FAST
@given(
    levels=st.integers(1, 12),
    shape=st.sampled_from([(2, 3, 4), (1, 2, 3, 4)]),
    seed=st.integers(0, 2**31 - 1),
)
def test_mean_of_region_maps_equals_the_decoded_level_map(levels, shape, seed):
    v = torch.from_numpy(np.random.default_rng(seed).integers(0, levels + 1, size=shape))
    regions = torch.stack([(v >= k) for k in range(1, levels + 1)], dim=1)  # nnU-Net: region k = labels {k..L}
    for dtype in (torch.bool, torch.uint8, torch.float32):
        assert torch.equal(decode_regions(regions.to(dtype)), decode_foreground(v, levels))


def test_dataset_labels_regions_are_the_at_least_k_sets():
    labels, order = LabelEncoding("foreground_levels", 4, "confidence").dataset_labels()
    assert order == [1, 2, 3, 4]
    assert next(iter(labels)) == "background" and labels["background"] == 0
    regions = [value for key, value in labels.items() if key != "background"]
    assert regions == [[1, 2, 3, 4], [2, 3, 4], [3, 4], 4]
    assert _all_labels(labels) == list(range(5))  # nnU-Net: consecutive integers from 0
    v = torch.arange(5)[None, None]
    as_regions = torch.stack([torch.isin(v, torch.tensor(r)) for r in regions], dim=1)
    assert torch.equal(decode_regions(as_regions), decode_foreground(v, 4))
    # nnU-Net's inference: each region above 0.5 writes its class in regions_class_order, later ones overwrite
    written = torch.zeros(5, dtype=torch.int64)
    for region, value in zip(as_regions[0, :, 0], order, strict=True):
        written[region] = value
    assert torch.equal(written, v[0, 0])


def _regions(labels: dict) -> list[list[int]]:
    """The regions of nnU-Net's ``labels`` (all keys but background, in order), each as a list."""
    return [value if isinstance(value, list) else [value] for key, value in labels.items() if key != "background"]


@pytest.mark.parametrize("num_raters", range(2, 9))
def test_dataset_labels_of_rater_bits_are_the_codes_with_at_least_k_bits(num_raters):
    labels, order = LabelEncoding("rater_bits", num_raters, "raters").dataset_labels()
    codes = np.arange(2**num_raters)
    bits = _popcount(codes)
    assert next(iter(labels)) == "background" and labels["background"] == 0
    assert [key for key in labels if key != "background"] == [f"at_least_{k}_of_{num_raters}" for k in
                                                               range(1, num_raters + 1)]  # fmt: skip
    regions = _regions(labels)
    assert len(regions) == num_raters and isinstance(labels[f"at_least_{num_raters}_of_{num_raters}"], int)
    for k, region in enumerate(regions, start=1):
        assert region == sorted(region) and len(set(region)) == len(region)
        assert set(region) == set(codes[bits >= k].tolist())  # exactly the codes with at least k bits
    for outer, inner in itertools.pairwise(regions):
        assert set(inner) < set(outer)  # nested, strictly
    assert regions[0] == list(range(1, 2**num_raters))  # every nonzero code is in region 1
    assert _all_labels(labels) == list(range(2**num_raters))  # nnU-Net: consecutive integers from 0
    assert order == [2**k - 1 for k in range(1, num_raters + 1)]
    for k, code in enumerate(order, start=1):
        assert [code in region for region in regions] == [j <= k for j in range(1, num_raters + 1)]


@pytest.mark.parametrize("num_raters", [2, 3, 5, 8])
def test_rater_bit_regions_decode_to_the_rater_mean_and_inference_keeps_the_count(num_raters):
    labels, order = LabelEncoding("rater_bits", num_raters, "raters").dataset_labels()
    v = torch.arange(2**num_raters)[None, None]  # every code once
    as_regions = torch.stack([torch.isin(v, torch.tensor(r)) for r in _regions(labels)], dim=1)
    count = torch.from_numpy(_popcount(v.numpy()))
    assert torch.equal(decode_regions(as_regions), decode_foreground(count, num_raters))  # mean of regions = q
    assert torch.equal(decode_raters(v, num_raters).sum(1), count)
    # nnU-Net's inference: each region above 0.5 writes its class in regions_class_order, later ones overwrite
    written = torch.zeros(2**num_raters, dtype=torch.int64)
    for region, value in zip(as_regions[0, :, 0], order, strict=True):
        written[region] = value
    assert torch.equal(written, 2 ** count[0, 0] - 1)  # the code 2^k - 1 of the same rater count k
    assert torch.equal(decode_raters(written[None, None], num_raters).sum(1)[0, 0], count[0, 0])


def test_one_rater_has_no_regions():
    assert LabelEncoding("rater_bits", 1, "raters").dataset_labels() == ({"background": 0, "foreground": 1}, None)
    assert torch.equal(decode_raters(torch.tensor([[[0, 1]]]), 1), torch.tensor([[[[0, 1]]]]))


def test_decode_regions_errors():
    with pytest.raises(ValueError, match="0/1 values; got 2"):
        decode_regions(torch.tensor([[[[0, 2]]]]))
    with pytest.raises(ValueError, match=r"\(N, L, \*spatial\)"):
        decode_regions(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="got ndarray"):
        decode_regions(np.zeros((1, 1, 2, 2)))


def test_decode_foreground_errors():
    with pytest.raises(TypeError, match=r"integer torch.Tensor; got Tensor of dtype torch.float32"):
        decode_foreground(torch.zeros(1, 2, 2), 3)
    with pytest.raises(ValueError, match=r"`levels_map` of decode_foreground.*\[0, 3\]; got values in \[0, 4\]"):
        decode_foreground(torch.tensor([[[0, 4]]]), 3)
    with pytest.raises(ValueError, match="`levels` of decode_foreground"):
        decode_foreground(torch.tensor([[[0, 1]]]), 0)
    with pytest.raises(ValueError, match="2 or 3 spatial axes"):
        decode_foreground(torch.tensor([0, 1]), 3)


# ---------------------------------------------------------------------------------------------------- downsampling
@FAST
@given(
    factors=st.sampled_from([(1, 2), (2, 2), (4, 1), (2, 2, 2), (1, 2, 4)]),
    num_classes=st.integers(2, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_downsample_soft_is_the_block_mean_and_keeps_sums(factors, num_classes, seed):
    rng = np.random.default_rng(seed)
    out_shape = tuple(int(n) for n in rng.integers(1, 4, size=len(factors)))
    shape = tuple(f * n for f, n in zip(factors, out_shape, strict=True))
    logits = torch.from_numpy(rng.normal(size=(2, num_classes, *shape)))
    soft = torch.softmax(logits, dim=1).float()
    small = downsample_soft(soft, out_shape)
    assert small.shape == (2, num_classes, *out_shape) and small.dtype == torch.float32
    assert torch.allclose(small.sum(1), torch.ones(2, *out_shape), atol=1e-6)
    split = [v for n, f in zip(out_shape, factors, strict=True) for v in (n, f)]  # axis n*f -> (n, f)
    blocks = soft.double().numpy().reshape(2, num_classes, *split)
    brute = blocks.mean(axis=tuple(range(3, 2 + 2 * len(factors), 2)))  # brute-force mean over each block
    np.testing.assert_allclose(small.double().numpy(), brute, atol=1e-6)


def test_downsample_soft_non_integer_factor_keeps_sums_and_identity():
    soft = decode_foreground(torch.randint(0, 4, (1, 7, 5), generator=torch.Generator().manual_seed(0)), 3)
    small = downsample_soft(soft, (4, 3))
    assert small.shape == (1, 2, 4, 3)
    assert torch.allclose(small.sum(1), torch.ones(1, 4, 3), atol=1e-6)
    assert downsample_soft(soft, (7, 5)) is soft


def test_downsample_soft_errors():
    soft = torch.full((1, 2, 4, 4), 0.5)
    with pytest.raises(ValueError, match=r"2 sizes in \[1, \[4, 4\]\]; got \(8, 4\)"):
        downsample_soft(soft, (8, 4))
    with pytest.raises(ValueError, match=r"got \(2,\)"):
        downsample_soft(soft, (2,))
    with pytest.raises(TypeError, match=r"floating torch.Tensor"):
        downsample_soft(torch.zeros(1, 2, 4, 4, dtype=torch.int64), (2, 2))
    with pytest.raises(ValueError, match="1-3 spatial axes"):
        downsample_soft(torch.zeros(2, 4), (2,))


# ---------------------------------------------------------------------------------------------------- LabelEncoding
@FAST
@given(kind=st.sampled_from(["rater_bits", "foreground_levels", "labels"]), data=st.data())
def test_label_encoding_json_round_trip(kind, data):
    levels = data.draw(st.integers(1, 8 if kind == "rater_bits" else 255), label="levels")
    enc = {
        "rater_bits": lambda: LabelEncoding(kind, levels, "raters"),
        "foreground_levels": lambda: LabelEncoding(kind, levels, "confidence"),
        "labels": lambda: LabelEncoding(kind, levels, "labels", levels + 1),
    }[kind]()
    back = LabelEncoding.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert back == enc
    labels, order = enc.dataset_labels()
    top = 2**levels - 1 if kind == "rater_bits" else levels  # the largest value a label map can hold
    assert _all_labels(labels) == list(range(top + 1))
    assert (order is None) == (kind == "labels" or levels == 1)
    if order is not None:
        assert len(order) == levels and order[-1] == top


def test_label_encoding_hard_labels_and_names():
    enc = LabelEncoding("labels", 2, "labels", 3, ("background", "liver", "tumour"))
    assert enc.dataset_labels() == ({"background": 0, "liver": 1, "tumour": 2}, None)
    assert LabelEncoding("foreground_levels", 1, "confidence").dataset_labels() == (
        {"background": 0, "foreground": 1},
        None,
    )
    assert LabelEncoding("foreground_levels", 3, "confidence").class_names == ("background", "foreground")
    assert LabelEncoding("rater_bits", 8, "raters").class_names == ("background", "foreground")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "soft", "levels": 2, "source": "raters"}, "`kind` of LabelEncoding"),
        ({"kind": "labels", "levels": 2, "source": "raters", "num_classes": 3}, "`source`"),
        ({"kind": "foreground_levels", "levels": 3, "source": "raters"}, r"'foreground_levels'.*\['confidence'\]"),
        ({"kind": "rater_bits", "levels": 3, "source": "confidence"}, r"'rater_bits'.*\['raters'\]; got 'confidence'"),
        ({"kind": "foreground_levels", "levels": 0, "source": "confidence"}, "`levels`.*got 0"),
        ({"kind": "foreground_levels", "levels": 256, "source": "confidence"}, "`levels`.*got 256"),
        ({"kind": "foreground_levels", "levels": True, "source": "confidence"}, "`levels`.*got True"),
        ({"kind": "foreground_levels", "levels": 2, "source": "confidence", "num_classes": 3}, "binary"),
        ({"kind": "rater_bits", "levels": 9, "source": "raters"}, r"'rater_bits' \(the raters\) .* 8; got 9"),
        ({"kind": "rater_bits", "levels": 255, "source": "raters"}, "at most 8; got 255"),
        ({"kind": "rater_bits", "levels": 0, "source": "raters"}, "`levels`.*got 0"),
        ({"kind": "rater_bits", "levels": 3, "source": "raters", "num_classes": 3}, "num_classes=2; got 3"),
        ({"kind": "labels", "levels": 2, "source": "labels", "num_classes": 4}, "levels = num_classes - 1"),
        (
            {"kind": "labels", "levels": 1, "source": "labels", "num_classes": 2, "class_names": ("a", "b")},
            "background",
        ),
        ({"kind": "labels", "levels": 1, "source": "labels", "class_names": ("background", "background")}, "distinct"),
    ],
)
def test_label_encoding_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        LabelEncoding(**kwargs)
    assert "\n" not in str(info.value)


def test_label_encoding_from_dict_errors_are_one_line_naming_the_source():
    good = LabelEncoding("foreground_levels", 3, "confidence").to_dict()
    with pytest.raises(ValueError, match=r"stored label encoding: unknown key\(s\) \['extra'\]"):
        LabelEncoding.from_dict({**good, "extra": 1})
    with pytest.raises(ValueError, match=r"missing key\(s\) \['levels'\]"):
        LabelEncoding.from_dict({k: v for k, v in good.items() if k != "levels"})
    with pytest.raises(ValueError, match=r"dataset.json: `levels`"):
        LabelEncoding.from_dict({**good, "levels": "3"}, where="dataset.json")
    with pytest.raises(ValueError, match="`class_names` must be a list"):
        LabelEncoding.from_dict({**good, "class_names": "background"})
    with pytest.raises(ValueError, match="JSON object; got list"):
        LabelEncoding.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dataset.json: `levels` of LabelEncoding 'rater_bits'.*at most 8; got 9"):
        LabelEncoding.from_dict({"kind": "rater_bits", "levels": 9, "source": "raters"}, where="dataset.json")
    with pytest.raises(ValueError, match=r"`source` of LabelEncoding 'foreground_levels'.*got 'raters'"):
        LabelEncoding.from_dict({**good, "source": "raters"})  # a dataset of the former rater-count encoding
    with pytest.raises(ValueError) as info:
        LabelEncoding.from_dict({**good, "kind": "x"})
    assert "\n" not in str(info.value)
