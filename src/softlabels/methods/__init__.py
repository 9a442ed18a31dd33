"""The method registry: a name → target construction + loss + epoch hooks, with the defaults of docs/methods.md.

A :class:`Method` is what a training loop needs to train "with method X": :meth:`Method.make_target` turns a batch
(a dict, as MONAI's dictionary transforms and DataLoader collate it) into a :class:`TrainingTarget`, calling the
method gives the loss, and :meth:`Method.on_train_batch_end` / :meth:`Method.on_train_epoch_end` run the epoch hooks
(OLS). Two methods differ only in their registry entry, never in a training loop. In a configured run the method's
run hooks (:meth:`Method.setup_run`, :meth:`Method.prepare_run`, given a :class:`RunContext`) load or train what it
needs first: the ``tfkd_self`` teacher, the ``vls`` generator and its soft labels.

Batch keys (2D and 3D alike; ``N`` samples):

- ``"label"``: hard labels ``(N, *spatial)`` integer (``(N, 1, *spatial)`` as MONAI collates it, when ``"image"`` has
  the same number of axes); ``(N,)`` for classification;
- ``"raters"``: one hard map per rater stacked on axis 1, ``(N, R, *spatial)`` (``(N, R)`` for classification);
- ``"confidence"``: annotator confidence in ``[0, 1]``, ``(N, *spatial)`` (or ``(N, 1, *spatial)``);
- ``"soft_label"``: a given soft target ``(N, C, *spatial)`` (e.g. tissue probability maps);
- ``"image"``: the network input ``(N, C_in, *spatial)`` (needed by methods that run a teacher network).

Every entry's keyword defaults are those of ``docs/methods.md`` (a § number is a row of its Sources table);
:func:`create_method` overrides them by name and rejects unknown names and parameters with the valid ones listed.

Layout: ``base.py`` (:class:`Method`, :class:`RunContext`), ``registry.py`` (:func:`register_method`,
:func:`create_method`, ...), ``targets.py`` (:class:`TrainingTarget` and the shared batch adapters), and one module
per method family, each holding its ``@register_method`` entries and their target adapters. A new method is one
function in one of them (or a new module imported below).
"""

from __future__ import annotations

# the family modules register their entries when imported (vls below too); the order does not matter
from softlabels.methods import (  # noqa: F401
    confidence,
    distillation,
    dml,
    hard_label,
    raters,
    smoothing,
    soft_label,
    spatial,
)
from softlabels.methods.base import Method, RunContext
from softlabels.methods.registry import create_method, list_methods, method_defaults, register_method
from softlabels.methods.targets import TrainingTarget
from softlabels.methods.vls import VLS_KEY

__all__ = [
    "VLS_KEY",
    "Method",
    "RunContext",
    "TrainingTarget",
    "create_method",
    "list_methods",
    "method_defaults",
    "register_method",
]
