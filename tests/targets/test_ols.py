import io
import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.targets import OnlineLabelSmoother


def softmax_np(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_matrix_after_one_epoch_equals_a_hand_computation():
    # C = 3; two batches; class 2 is never predicted correctly (its samples are predicted as class 0)
    batches = [
        (torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [2.0, 0.0, 1.0]]), torch.tensor([0, 1, 2])),
        (torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 4.0], [1.0, 0.0, 0.0]]), torch.tensor([0, 1, 2])),
    ]
    ols = OnlineLabelSmoother(3)
    for logits, labels in batches:
        ols.accumulate(logits, labels)
        torch.testing.assert_close(ols.soft_labels, torch.full((3, 3), 1 / 3, dtype=torch.float64))  # fixed
    # by hand: class 0 correct twice ([3,1,0] and [1,0.5,0]); class 1 correct once ([0,2,1]); class 2 never
    p = softmax_np(np.array([[3.0, 1.0, 0.0], [1.0, 0.5, 0.0], [0.0, 2.0, 1.0]]))
    assert ols.counts.tolist() == [2, 1, 0]
    ols.update()
    np.testing.assert_allclose(ols.soft_labels[0].numpy(), (p[0] + p[1]) / 2, rtol=1e-6)
    np.testing.assert_allclose(ols.soft_labels[1].numpy(), p[2], rtol=1e-6)
    np.testing.assert_allclose(ols.soft_labels[2].numpy(), [1 / 3] * 3, rtol=1e-12)  # empty class → uniform
    torch.testing.assert_close(ols.soft_labels.sum(1), torch.ones(3, dtype=torch.float64))
    assert ols.counts.sum() == 0 and ols.sums.abs().sum() == 0  # accumulators cleared


def test_only_the_previous_epoch_counts_and_policies():
    ols = OnlineLabelSmoother(2, empty_class_policy="keep")
    ols.accumulate(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]))
    ols.update()
    first = ols.soft_labels.clone()
    ols.accumulate(torch.tensor([[5.0, 0.0]]), torch.tensor([0]))  # epoch 2: class 1 has no correct prediction
    ols.update()
    np.testing.assert_allclose(ols.soft_labels[0].numpy(), softmax_np(np.array([[5.0, 0.0]]))[0], rtol=1e-6)
    torch.testing.assert_close(ols.soft_labels[1], first[1])  # "keep"
    frozen = OnlineLabelSmoother(2, freeze_at=0.8)
    frozen.accumulate(torch.tensor([[3.0, 0.0]]), torch.tensor([0]))
    frozen.update()  # row 0 becomes [0.95, 0.05]: max ≥ 0.8 → frozen from now on
    row = frozen.soft_labels[0].clone()
    frozen.accumulate(torch.tensor([[0.5, 0.0]]), torch.tensor([0]))
    frozen.update()
    torch.testing.assert_close(frozen.soft_labels[0], row)
    zeros = OnlineLabelSmoother(3, init="zeros")
    assert zeros(torch.tensor([1])).sum() == 0  # CIFAR code: the soft term is 0 in epoch 1


def test_segmentation_voxels_ignore_index_and_targets():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=g)
    labels = torch.randint(0, 3, (2, 4, 5), generator=g)
    labels[0, 0] = 255
    ols = OnlineLabelSmoother(3, ignore_index=255)
    ols.accumulate(logits, labels)
    z = logits.double().movedim(1, -1).reshape(-1, 3).numpy()
    y = labels.reshape(-1).numpy()
    correct = (z.argmax(1) == y) & (y != 255)
    expected_counts = np.bincount(y[correct], minlength=3)
    assert ols.counts.tolist() == expected_counts.tolist()
    ols.update()
    for c in range(3):
        if expected_counts[c]:
            np.testing.assert_allclose(ols.soft_labels[c].numpy(), softmax_np(z[correct & (y == c)]).mean(0), 1e-6)
    target = ols(labels)
    assert target.shape == (2, 3, 4, 5)
    assert target[0, :, 0].abs().sum() == 0  # ignored voxels: zero rows
    torch.testing.assert_close(target[1, :, 1, 1], ols.soft_labels[labels[1, 1, 1]].float())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), num_classes=st.integers(2, 6), steps=st.integers(1, 4))
def test_rows_are_always_distributions(seed, num_classes, steps):
    g = torch.Generator().manual_seed(seed)
    ols = OnlineLabelSmoother(num_classes)
    for _ in range(steps):
        ols.accumulate(3 * torch.randn(7, num_classes, generator=g), torch.randint(0, num_classes, (7,), generator=g))
        ols.update()
        assert (ols.soft_labels >= 0).all()
        torch.testing.assert_close(ols.soft_labels.sum(1), torch.ones(num_classes, dtype=torch.float64))
    labels = torch.randint(0, num_classes, (3, 4), generator=g)
    target = ols(labels)
    torch.testing.assert_close(target.sum(1), torch.ones(3, 4))


def test_state_dict_round_trip_is_checkpointable():
    ols = OnlineLabelSmoother(3)
    ols.accumulate(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]))
    ols.update()
    ols.accumulate(torch.tensor([[0.0, 2.0, 0.0]]), torch.tensor([1]))  # mid-epoch accumulators are saved too
    buffer = io.BytesIO()
    torch.save(ols.state_dict(), buffer)
    buffer.seek(0)
    restored = OnlineLabelSmoother(3)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for name in ("soft_labels", "sums", "counts"):
        assert torch.equal(getattr(restored, name), getattr(ols, name))
    restored.update()
    ols.update()
    assert torch.equal(restored.soft_labels, ols.soft_labels)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"`empty_class_policy` of OnlineLabelSmoother .*got 'reset'"):
        OnlineLabelSmoother(3, empty_class_policy="reset")
    with pytest.raises(ValueError, match=r"`freeze_at` of OnlineLabelSmoother must be in \(0, 1\] or None; got 1.5"):
        OnlineLabelSmoother(3, freeze_at=1.5)
    ols = OnlineLabelSmoother(3)
    with pytest.raises(ValueError, match=r"must be \(N, C=3, \*spatial\); got \(2, 4\)"):
        ols.accumulate(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\); got 3"):
        ols.accumulate(torch.zeros(2, 3), torch.tensor([0, 3]))


# --- DDP: accumulators are summed over processes before the update ------------------------------------------------


def epoch_data():
    g = torch.Generator().manual_seed(7)
    return 2 * torch.randn(9, 4, generator=g), torch.randint(0, 4, (9,), generator=g)


class _WithSmoother(torch.nn.Module):
    def __init__(self, ols: OnlineLabelSmoother) -> None:
        super().__init__()
        self.net, self.ols = torch.nn.Linear(1, 1), ols

    def forward(self, x):
        return self.net(x)


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    logits, labels = epoch_data()
    part = slice(0, 5) if rank == 0 else slice(5, 9)  # uneven shards
    ols = OnlineLabelSmoother(4)
    # inside a DDP-wrapped model, as in training: DDP overwrites buffers with rank 0's at every forward pass
    ddp = torch.nn.parallel.DistributedDataParallel(_WithSmoother(ols))
    for step in range(2):  # two steps: the second forward would erase rank 1's first accumulation if it were a buffer
        ddp(torch.zeros(1, 1)).sum().backward()
        own = list(range(part.start, part.stop))[step::2]
        ols.accumulate(logits[own], labels[own])
    ols.update()
    torch.save(ols.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.distributed
def test_two_processes_give_the_single_process_matrix(tmp_path):
    logits, labels = epoch_data()
    single = OnlineLabelSmoother(4)
    single.accumulate(logits, labels)
    single.update()
    assert not torch.allclose(single.soft_labels, torch.full((4, 4), 0.25, dtype=torch.float64))  # data matter
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        state = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(state["soft_labels"], single.soft_labels, rtol=1e-6, atol=1e-9)
        assert state["_extra_state"]["counts"].sum() == 0 and not math.isnan(float(state["soft_labels"].sum()))


def test_accumulators_are_extra_state_not_buffers():
    ols = OnlineLabelSmoother(3)
    assert [name for name, _ in ols.named_buffers()] == ["soft_labels"]  # DDP broadcasts buffers only
    ols.accumulate(torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([0]))
    ols.half()
    assert ols.sums.dtype == torch.float64 and ols.counts.dtype == torch.int64 and ols.counts.tolist() == [1, 0, 0]
    assert set(ols.state_dict()) == {"soft_labels", "_extra_state"}
    with pytest.raises(ValueError, match=r"must hold `sums` \(3, 3\) and `counts` \(3,\)"):
        ols.load_state_dict({"soft_labels": torch.eye(3), "_extra_state": {"sums": torch.zeros(2, 2)}})
