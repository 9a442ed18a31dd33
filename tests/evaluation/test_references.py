import pytest
import torch

from softlabels.evaluation.references import References, batch_references, labels_of


def _batch():
    g = torch.Generator().manual_seed(0)
    return {
        "label": torch.randint(0, 3, (2, 1, 6, 6), generator=g),
        "raters": torch.randint(0, 3, (2, 4, 6, 6), generator=g),
        "true_probs": torch.softmax(torch.randn(2, 3, 6, 6, generator=g), 1),
    }


def test_the_observed_reference_is_the_rater_mean_never_the_true_probabilities():
    batch = _batch()
    refs = batch_references(batch, 3, 2)
    onehot = torch.nn.functional.one_hot(batch["raters"], 3).float().mean(1).movedim(-1, 1)
    assert torch.equal(refs.soft, onehot) and torch.equal(refs.hard, batch["label"][:, 0])
    without = {k: v for k, v in batch.items() if k != "true_probs"}
    assert torch.equal(batch_references(without, 3, 2).soft, refs.soft)
    no_raters = {k: v for k, v in batch.items() if k != "raters"}
    assert batch_references(no_raters, 3, 2).soft is None  # true_probs alone is not observed


def test_a_soft_label_wins_over_raters_and_true_probs_only_when_named():
    batch = {**_batch(), "soft_label": torch.full((2, 3, 6, 6), 1 / 3)}
    assert torch.equal(batch_references(batch, 3, 2).soft, batch["soft_label"])
    assert torch.equal(batch_references(batch, 3, 2, reference="true_probs").soft, batch["true_probs"])
    assert batch_references(batch, 3, 2, reference="label").soft is None
    with pytest.raises(ValueError, match="no 'true_probs'"):
        batch_references({"label": batch["label"]}, 3, 2, reference="true_probs")
    with pytest.raises(ValueError, match="`reference` of batch_references"):
        batch_references(batch, 3, 2, reference="auto")  # type: ignore[arg-type]


def test_soft_argmax_breaks_ties_to_the_lowest_class_and_one_channel_at_one_half():
    soft = torch.tensor([[[0.5]], [[0.5]]]).reshape(1, 2, 1, 1)
    assert labels_of(soft).tolist() == [[[0]]]
    assert labels_of(torch.tensor([[[0.51, 0.5]]])).tolist() == [[1, 0]]
    refs = References.from_target(torch.tensor([[[0.2, 0.9], [0.8, 0.1]]]))
    assert refs.hard.tolist() == [[1, 0]] and refs.soft_argmax.tolist() == [[1, 0]]
    hard = References.from_target(torch.tensor([[2, 0]]))
    assert hard.soft is None and hard.soft_or_hard is hard.hard


def test_a_batch_without_labels_takes_the_argmax_of_its_soft_reference():
    soft = torch.tensor([[[0.2, 0.7], [0.8, 0.3]]])  # (N=1, C=2, 2)
    refs = batch_references({"soft_label": soft}, 2, 1)
    assert refs.hard.tolist() == [[1, 0]] and torch.equal(refs.soft, soft)
    raters = torch.tensor([[[1, 0], [1, 0], [0, 0]]])  # (N, R=3, 2)
    assert batch_references({"raters": raters}, 2, 1).hard.tolist() == [[1, 0]]
    assert batch_references({"soft_label": soft}, 2, 1, reference="label").hard.tolist() == [[1, 0]]
    with pytest.raises(ValueError, match="no reference"):
        batch_references({"image": soft}, 2, 1)


def test_risk_reference_rules():
    from softlabels.evaluation.references import risk_reference

    raters = torch.tensor([[[0, 1, 1, 2], [0, 0, 1, 2], [1, 0, 1, 0]]])  # (N=1, R=3, 4 voxels), 3 classes
    refs = References(raters[:, 0], raters=raters)
    each = risk_reference(refs, 3, "each")
    assert each.shape == (1, 3, 3, 4) and torch.equal(each.argmax(2), raters)
    assert torch.equal(risk_reference(refs, 3), each)  # auto: each rater when there are raters
    assert risk_reference(refs, 3, "union")[0, 1].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert risk_reference(refs, 3, "majority")[0, 1].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert risk_reference(refs, 3, "soft")[0, 2].tolist() == pytest.approx([0.0, 0.0, 0.0, 2 / 3])
    assert risk_reference(refs, 3, "label")[0, 1].tolist() == [0.0, 1.0, 1.0, 0.0]
    binary = References(torch.tensor([[0, 1]]), soft=torch.tensor([[[0.2, 0.7]]]))  # one channel: the foreground
    assert risk_reference(binary, 1)[0, 0].tolist() == pytest.approx([0.2, 0.7])
    assert risk_reference(References(torch.tensor([[0, 1]])), 1).tolist() == [[[0.0, 1.0]]]
    with pytest.raises(ValueError, match="raters"):
        risk_reference(References(torch.tensor([[0, 1]])), 2, "each")
    with pytest.raises(ValueError, match="soft reference"):
        risk_reference(References(torch.tensor([[0, 1]])), 2, "union")
