import torch

from softlabels.methods import create_method
from softlabels.training.callbacks import MethodHooks


class Holder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.method = create_method("ols", 3)


def test_hooks_feed_the_method_and_update_it_at_epoch_end():
    module = Holder()
    hooks = MethodHooks()
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    target = module.method.make_target({"label": torch.tensor([0, 1])})
    hooks.on_train_batch_end(None, module, {"loss": torch.tensor(1.0), "logits": logits, "target": target}, None, 0)
    assert module.method.loss.smoother.counts.tolist() == [1, 1, 0]
    hooks.on_train_batch_end(None, module, torch.tensor(1.0), None, 1)  # outputs without logits: ignored
    hooks.on_train_epoch_end(None, module)
    rows = module.method.loss.smoother.soft_labels
    assert rows[0].argmax() == 0 and rows[1].argmax() == 1 and module.method.loss.smoother.counts.sum() == 0
