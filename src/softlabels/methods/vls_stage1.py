"""Variational label smoothing, stage 1: the generator trained with Lightning, the soft-label cache, the data overlay.

The ``vls`` method's :meth:`~softlabels.methods.vls.VLSMethod.prepare_run` hook calls :func:`cache_soft_labels`
before stage 2:

1. **generator**: the method's ``generator_checkpoint`` if given, else ``<output_dir>/vls/generator-<hash>.ckpt``
   trained here with Lightning on the run's training split (the hash covers the data, the seed and the generator
   options, so a changed config trains a new one and an unchanged one is reused);
2. **soft labels** of every training case, ``(1 − α)·onehot(y) + α·mean_m softmax(v/τ)``, cached one file per case in
   ``<output_dir>/vls/soft_labels/<generator hash>-m<m>-tau<τ>-alpha<α>[-raters]/`` (``complete.json`` written last),
   keyed by the generator checkpoint's content and (m, τ, α): a second run reuses them;
3. the training split is overlaid with the key (``vls_soft_label``) that the ``vls`` method trains on (KL, optionally
   + soft-correct Dice).

Spatial training transforms (random crops) would misalign cached labels and are refused. Under DDP every process runs
stage 1 with the same seed and writes the same files atomically. Checkpoints are read with the run's reader
(``RunContext.load_checkpoint``: weights only, CRC-checked).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from softlabels._io import atomic_write
from softlabels.methods.base import RunContext
from softlabels.methods.targets import hard_labels
from softlabels.targets.vls import VLSGenerator, vls_loss, vls_soft_labels

__all__ = ["GENERATOR_DEFAULTS", "VLSGeneratorTask", "VLSOverlay", "cache_soft_labels", "load_generator"]

GENERATOR_DEFAULTS: dict[str, Any] = {
    "channels": [16, 32, 64], "features": 16, "latent_dim": 3, "max_epochs": 20, "lr": 1e-3,
    "weights": [1.0, 1.0, 1.0],
}  # fmt: skip
"""Stage-1 options (``method.options.generator`` overrides them): widths, latent size, epochs, Adam's lr, loss weights.

Example:
    >>> GENERATOR_DEFAULTS["latent_dim"], GENERATOR_DEFAULTS["weights"]
    (3, [1.0, 1.0, 1.0])
"""


class VLSGeneratorTask(L.LightningModule):
    """Stage 1 as a Lightning module: :func:`~softlabels.targets.vls.vls_loss` on (image, label) batches, Adam.

    Example:
        >>> task = VLSGeneratorTask(VLSGenerator(1, 2, channels=(4, 8), features=4), lr=1e-3)
        >>> batch = {"image": torch.randn(2, 1, 8, 8), "label": torch.randint(0, 2, (2, 1, 8, 8))}
        >>> bool(task.training_step(batch, 0) > 0)
        True
    """

    def __init__(
        self, generator: VLSGenerator, *, lr: float = 1e-3, weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    ) -> None:
        super().__init__()
        self.generator, self.lr, self.weights = generator, lr, tuple(float(w) for w in weights)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """The stage-1 loss of one batch (CE + MSE + KL)."""
        image, label = batch["image"], hard_labels(batch)
        parts = vls_loss(self.generator(image, label), image, label, weights=self.weights)  # type: ignore[arg-type]
        if self._trainer is not None:
            self.log("vls/loss", parts["loss"].detach(), on_step=False, on_epoch=True, batch_size=len(image))
        return parts["loss"]

    def configure_optimizers(self) -> Any:
        """Adam with the configured learning rate."""
        return torch.optim.Adam(self.generator.parameters(), lr=self.lr)


class VLSOverlay(Dataset):
    """A dataset whose samples get ``key`` read from the per-case cache files (one case in memory).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     torch.save(torch.ones(2, 4, 4) / 2, f"{tmp}/000000.pt")
        ...     sample = VLSOverlay([{"label": torch.zeros(1, 4, 4)}], Path(tmp), "vls_soft_label")[0]
        >>> sorted(sample), float(sample["vls_soft_label"].sum())
        (['label', 'vls_soft_label'], 16.0)
    """

    def __init__(self, base: Any, folder: Path, key: str) -> None:
        self.base, self.folder, self.key = base, Path(folder), key
        self.info = dict(getattr(base, "info", {}))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        soft = torch.load(self.folder / f"{index:06d}.pt", weights_only=True)
        return {**self.base[index], self.key: soft}


def _digest(values: Any) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _save(path: Path, payload: Any) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def _train_generator(context: RunContext, options: Mapping[str, Any]) -> Path:
    """Train stage 1 on the training split (or reuse the checkpoint of the same data, seed and options)."""
    shape = context.shape
    num_classes, dims, channels = shape
    key = _digest({"data": dict(context.data), "seed": context.seed, "generator": dict(options), "shape": shape})
    path = Path(context.output_dir) / "vls" / f"generator-{key}.ckpt"
    if path.is_file():
        return path
    L.seed_everything(context.seed, workers=True, verbose=False)
    build = {
        "channels": list(options["channels"]),
        "features": int(options["features"]),
        "latent_dim": int(options["latent_dim"]),
    }
    generator = VLSGenerator(channels, num_classes, spatial_dims=dims, **build)  # type: ignore[arg-type]
    task = VLSGeneratorTask(generator, lr=float(options["lr"]), weights=tuple(options["weights"]))
    trainer = L.Trainer(
        max_epochs=int(options["max_epochs"]), accelerator=context.trainer.get("accelerator", "auto"), devices=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        deterministic=context.trainer.get("deterministic", False),
    )  # fmt: skip
    trainer.fit(task, train_dataloaders=context.datamodule.train_dataloader())
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(
        path,
        {
            "generator": generator.state_dict(),
            "build": {**build, "in_channels": channels, "num_classes": num_classes, "spatial_dims": dims},
        },
    )
    return path


def load_generator(path: str | Path, read: Callable[[str], Mapping[str, Any]]) -> VLSGenerator:
    """A generator from a stage-1 checkpoint, read with ``read`` (the run's ``load_checkpoint``).

    Raises:
        ValueError: the file is not a VLS generator checkpoint (or ``read`` refuses it).

    Example:
        >>> load_generator("x.ckpt", lambda path: {"x": 1})
        Traceback (most recent call last):
            ...
        ValueError: 'x.ckpt' is not a VLS generator checkpoint (no 'generator'/'build' entries).
    """
    state = read(str(path))
    if not isinstance(state, Mapping) or "generator" not in state or "build" not in state:
        raise ValueError(f"{str(path)!r} is not a VLS generator checkpoint (no 'generator'/'build' entries).")
    build = dict(state["build"])
    generator = VLSGenerator(build.pop("in_channels"), build.pop("num_classes"), **build)
    generator.load_state_dict(state["generator"])
    return generator.eval()


def _write_cache(generator: VLSGenerator, dm: Any, folder: Path, params: Mapping[str, Any], seed: int) -> None:
    """Soft labels of every training case, one file each, then ``complete.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    L.seed_everything(seed, verbose=False)  # the posterior samples are reproducible
    loader = DataLoader(dm.train_set, batch_size=dm.eval_batch_size, shuffle=False, num_workers=0)
    index = 0
    for batch in loader:
        raters = batch.get("raters") if params["condition_on_raters"] else None
        soft = vls_soft_labels(
            generator, batch["image"], hard_labels(batch), m=int(params["m"]), tau=float(params["tau"]),
            alpha=float(params["alpha"]), raters=raters,
        )  # fmt: skip
        for case in soft:
            _save(folder / f"{index:06d}.pt", case.clone())
            index += 1
    text = json.dumps({"cases": index, **{k: params[k] for k in ("m", "tau", "alpha", "condition_on_raters")}})
    atomic_write(folder / "complete.json", lambda handle: handle.write(text.encode()))


def _generator_options(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """:data:`GENERATOR_DEFAULTS` updated by the method's ``generator`` options; an unknown key is refused."""
    options = {**GENERATOR_DEFAULTS, **dict(given or {})}
    unknown = sorted(set(options) - set(GENERATOR_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in method.options.generator of 'vls'; valid: {sorted(GENERATOR_DEFAULTS)}."
        )
    return options


def cache_soft_labels(
    context: RunContext,
    params: Mapping[str, Any],
    *,
    key: str,
    generator: Mapping[str, Any] | None = None,
    generator_checkpoint: str | None = None,
) -> Path:
    """Stage 1 (or a given generator), the cached soft labels, the overlay of the training split; return the cache.

    Args:
        context: the run (its datamodule's ``train_set`` is replaced by a :class:`VLSOverlay`).
        params: ``m``, ``tau``, ``alpha`` and ``condition_on_raters`` of the method.
        key: the batch key the overlay adds.
        generator: stage-1 options overriding :data:`GENERATOR_DEFAULTS`.
        generator_checkpoint: a stage-1 checkpoint to use instead of training one.

    Raises:
        ValueError: spatial training transforms, an unknown generator option, or a generator checkpoint of other
            data (class count).

    Example:
        >>> import tempfile
        >>> from types import SimpleNamespace
        >>> image, label = torch.zeros(1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long)
        >>> label[:, 2:6, 2:6] = 1
        >>> cases = [{"image": image + label, "label": label}] * 2
        >>> dm = SimpleNamespace(train_set=cases, eval_batch_size=2,
        ...                      train_dataloader=lambda: DataLoader(cases, batch_size=2))
        >>> tmp = tempfile.TemporaryDirectory()
        >>> context = RunContext(dm, num_classes=2, spatial_dims=2, in_channels=1, seed=0, output_dir=Path(tmp.name),
        ...     load_checkpoint=lambda path: torch.load(path, weights_only=True), load_network=None,
        ...     trainer={"accelerator": "cpu"})
        >>> params = {"m": 2, "tau": 1.0, "alpha": 0.3, "condition_on_raters": False}
        >>> folder = cache_soft_labels(context, params, key="soft", generator={"max_epochs": 1, "channels": [4, 8],
        ...     "features": 4})
        >>> folder.parent.name, tuple(dm.train_set[0]["soft"].shape)
        ('soft_labels', (2, 8, 8))
        >>> tmp.cleanup()
    """
    if context.data.get("train_transforms"):
        raise ValueError(
            "method 'vls' caches one soft label per training case; data.train_transforms would misalign them."
        )
    options = _generator_options(generator)
    checkpoint = Path(generator_checkpoint) if generator_checkpoint else _train_generator(context, options)
    model = load_generator(checkpoint, context.load_checkpoint)
    if model.num_classes != context.num_classes:
        raise ValueError(
            f"generator {str(checkpoint)!r} has {model.num_classes} classes; the data has {context.num_classes}."
        )
    content = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:12]
    name = f"{content}-m{params['m']}-tau{params['tau']:g}-alpha{params['alpha']:g}"
    folder = (
        Path(context.output_dir) / "vls" / "soft_labels" / (name + ("-raters" if params["condition_on_raters"] else ""))
    )
    if not (folder / "complete.json").is_file():
        _write_cache(model, context.datamodule, folder, params, context.seed)
    context.datamodule.train_set = VLSOverlay(context.datamodule.train_set, folder, key)
    return folder
