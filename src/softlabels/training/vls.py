"""Variational label smoothing in a configured run: stage 1 (the generator), the soft-label cache, the data overlay.

``softlabels train`` with ``method.name: vls`` calls :func:`prepare_vls` before stage 2:

1. **generator**: ``method.options.generator_checkpoint`` if given, else ``<output_dir>/vls/generator-<hash>.ckpt``
   trained here with Lightning on the run's training split (the hash covers the data, the seed and the generator
   options, so a changed config trains a new one and an unchanged one is reused);
2. **soft labels** of every training case, ``(1 − α)·onehot(y) + α·mean_m softmax(v/τ)``, cached one file per case in
   ``<output_dir>/vls/soft_labels/<generator hash>-m<m>-tau<τ>-alpha<α>[-raters]/`` (``complete.json`` written last),
   keyed by the generator checkpoint's content and (m, τ, α): a second run reuses them;
3. the training split is overlaid with the key ``vls_soft_label`` that the ``vls`` method trains on (KL, optionally +
   soft-correct Dice).

Spatial training transforms (random crops) would misalign cached labels and are refused. Under DDP every process runs
stage 1 with the same seed and writes the same files atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from softlabels._io import atomic_write
from softlabels._method_targets import hard_labels
from softlabels.methods import VLS_KEY, Method
from softlabels.targets.vls import VLSGenerator, vls_loss, vls_soft_labels
from softlabels.training.checkpoint_io import load_checkpoint
from softlabels.training.config import RunConfig

__all__ = ["GENERATOR_DEFAULTS", "VLSGeneratorTask", "VLSOverlay", "load_generator", "prepare_vls"]

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
    """A dataset whose samples get ``vls_soft_label`` read from the per-case cache files (one case in memory).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     torch.save(torch.ones(2, 4, 4) / 2, f"{tmp}/000000.pt")
        ...     sample = VLSOverlay([{"label": torch.zeros(1, 4, 4)}], Path(tmp))[0]
        >>> sorted(sample), float(sample["vls_soft_label"].sum())
        (['label', 'vls_soft_label'], 16.0)
    """

    def __init__(self, base: Any, folder: Path) -> None:
        self.base, self.folder = base, Path(folder)
        self.info = dict(getattr(base, "info", {}))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        soft = torch.load(self.folder / f"{index:06d}.pt", weights_only=True)
        return {**self.base[index], VLS_KEY: soft}


def _digest(values: Any) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _save(path: Path, payload: Any) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def _train_generator(config: RunConfig, dm: Any, options: Mapping[str, Any], shape: tuple[int, int, int]) -> Path:
    """Train stage 1 on the training split (or reuse the checkpoint of the same data, seed and options)."""
    num_classes, dims, channels = shape
    key = _digest({"data": vars(config.data), "seed": config.seed, "generator": dict(options), "shape": shape})
    path = Path(config.output_dir) / "vls" / f"generator-{key}.ckpt"
    if path.is_file():
        return path
    L.seed_everything(config.seed, workers=True, verbose=False)
    build = {
        "channels": list(options["channels"]),
        "features": int(options["features"]),
        "latent_dim": int(options["latent_dim"]),
    }
    generator = VLSGenerator(channels, num_classes, spatial_dims=dims, **build)  # type: ignore[arg-type]
    task = VLSGeneratorTask(generator, lr=float(options["lr"]), weights=tuple(options["weights"]))
    trainer = L.Trainer(
        max_epochs=int(options["max_epochs"]), accelerator=config.trainer.accelerator, devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        deterministic=config.trainer.deterministic,
    )  # fmt: skip
    trainer.fit(task, train_dataloaders=dm.train_dataloader())
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(
        path,
        {
            "generator": generator.state_dict(),
            "build": {**build, "in_channels": channels, "num_classes": num_classes, "spatial_dims": dims},
        },
    )
    return path


def load_generator(path: str | Path) -> VLSGenerator:
    """A generator from a stage-1 checkpoint (read with ``weights_only=True``).

    Raises:
        ValueError: the file is not a VLS generator checkpoint (or is corrupt).

    Example:
        >>> load_generator.__name__
        'load_generator'
    """
    state = load_checkpoint(str(path))
    if not isinstance(state, dict) or "generator" not in state or "build" not in state:
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


def prepare_vls(config: RunConfig, dm: Any, method: Method, shape: tuple[int, int, int]) -> Path:
    """Stage 1 (or a given generator), the cached soft labels, the overlay of ``dm.train_set``; return the cache.

    Args:
        config: the run (``method.options`` holds m, tau, alpha, condition_on_raters, generator_checkpoint,
            generator).
        dm: the run's DataModule (its ``train_set`` is replaced by a :class:`VLSOverlay`).
        method: the run's ``vls`` method (marked ready).
        shape: ``(num_classes, spatial_dims, in_channels)`` of the data.

    Raises:
        ValueError: spatial training transforms, or a generator checkpoint of other data (class count).

    Example:
        >>> import tempfile
        >>> from softlabels.training.config import config_from_dict
        >>> from softlabels.training.run import build_run
        >>> tmp = tempfile.TemporaryDirectory()
        >>> config = config_from_dict({"output_dir": tmp.name, "method": {"name": "vls", "options": {"m": 2,
        ...     "generator": {"max_epochs": 1, "channels": [4, 8], "features": 4}}},
        ...     "data": {"options": {"shape": [16, 16], "num_cases": [4, 2, 2]}}})
        >>> dm, task = build_run(config)
        >>> folder = prepare_vls(config, dm, task.method, (2, 2, 1))
        >>> tuple(dm.train_set[0]["vls_soft_label"].shape), task.method.is_ready
        ((2, 16, 16), True)
        >>> tmp.cleanup()
    """
    if config.data.train_transforms:
        raise ValueError(
            "method 'vls' caches one soft label per training case; data.train_transforms would misalign them."
        )
    params = dict(method.params)
    options = {**GENERATOR_DEFAULTS, **dict(config.method.options.get("generator") or {})}
    unknown = sorted(set(options) - set(GENERATOR_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in method.options.generator of 'vls'; valid: {sorted(GENERATOR_DEFAULTS)}."
        )
    given = config.method.options.get("generator_checkpoint")
    checkpoint = Path(given) if given else _train_generator(config, dm, options, shape)
    generator = load_generator(checkpoint)
    if generator.num_classes != shape[0]:
        raise ValueError(f"generator {str(checkpoint)!r} has {generator.num_classes} classes; the data has {shape[0]}.")
    content = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:12]
    name = f"{content}-m{params['m']}-tau{params['tau']:g}-alpha{params['alpha']:g}"
    folder = (
        Path(config.output_dir) / "vls" / "soft_labels" / (name + ("-raters" if params["condition_on_raters"] else ""))
    )
    if not (folder / "complete.json").is_file():
        _write_cache(generator, dm, folder, params, config.seed)
    dm.train_set = VLSOverlay(dm.train_set, folder)
    method.prepare(soft_labels=str(folder))
    return folder
