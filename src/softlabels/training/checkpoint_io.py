"""Checkpoint files written atomically and read with ``weights_only=True``, with a clear error for a bad file.

Lightning's default ``TorchCheckpointIO`` writes the checkpoint in place, so a process killed mid-write leaves a
truncated ``last.ckpt`` that the next ``--resume`` cannot read. Here the checkpoint goes to a temporary file in the
same folder, is flushed to disk and renamed over the target (``os.replace`` is atomic;
:func:`softlabels._io.atomic_write`), so a checkpoint file is always either the old one or the new one, whole, with
the user's normal file mode. A process killed mid-save leaves at most an orphan ``.<name>.<random>.tmp`` (removed
at the next start of the run) and, between the epoch file and ``last.ckpt``, an epoch file newer than
``last.ckpt``: :func:`newest_checkpoint` resumes from whichever complete checkpoint is newest.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from softlabels._io import atomic_write

__all__ = ["AtomicCheckpointIO", "load_checkpoint", "load_state_checked", "newest_checkpoint"]

_EPOCH_FILE = re.compile(r"^epoch=(\d+)\.ckpt$")


def load_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(..., weights_only=True)``; a missing, corrupt or truncated file raises.

    Args:
        path: the ``.ckpt`` file.
        map_location: where to put the tensors.

    Returns:
        The checkpoint dict.

    The zip archive's CRC-32 checksums are verified first (``torch.load`` does not), so a damaged byte anywhere
    in the weights is an error rather than a silently different model.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, or not a readable checkpoint (truncated, damaged, or holding objects other than
            tensors and plain containers), naming the file.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     AtomicCheckpointIO().save_checkpoint({"epoch": 1}, os.path.join(d, "a.ckpt"))
        ...     load_checkpoint(os.path.join(d, "a.ckpt"))["epoch"]
        1
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint {str(path)!r} is a folder; give a .ckpt file (e.g. {str(path / 'last.ckpt')!r}).")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist.")
    try:
        damaged = _damaged_member(path)
        if damaged is not None:
            raise ValueError(f"the CRC-32 of its member {damaged!r} does not match its content (a damaged file)")
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # any failure to unpickle the user's file (KeyError, struct.error, ...): a bad file
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        raise ValueError(
            f"checkpoint {str(path)!r} could not be read (truncated, corrupt, or not a weights-only checkpoint): "
            f"{reason[:300]}"
        ) from err
    if not isinstance(checkpoint, dict):
        raise ValueError(f"checkpoint {str(path)!r} must hold a dict; got {type(checkpoint).__name__}.")
    return checkpoint


def _damaged_member(path: Path) -> str | None:
    """The first member of the checkpoint's zip archive whose CRC-32 does not match, or ``None``.

    ``torch.load`` does not check the CRCs that ``torch.save`` writes, so one flipped byte in a weight tensor would
    load silently as a different model; reading the archive once through :mod:`zipfile` catches it.
    """
    if not zipfile.is_zipfile(path):
        return None  # the legacy (non-zip) format: torch.load judges it
    with zipfile.ZipFile(path) as archive:
        return archive.testzip()


def _few(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def load_state_checked(module: nn.Module, state_dict: Mapping[str, Any], *, source: str) -> None:
    """``module.load_state_dict(state_dict)`` (strict), with one clear error listing what does not fit.

    Args:
        module: the freshly built module.
        state_dict: the weights.
        source: where they come from, named in the error (e.g. ``"checkpoint 'run/last.ckpt'"``).

    Raises:
        ValueError: missing or unexpected keys, or tensors of other shapes (a few of each are named).

    Example:
        >>> try:
        ...     load_state_checked(nn.Linear(2, 3), {"weight": torch.zeros(4, 2), "bias": torch.zeros(4)}, source="w")
        ... except ValueError as err:
        ...     print(err)
        w does not fit the model: 2 tensor(s) of other shapes (weight: (4, 2) stored, (3, 2) in the model; bias: \
(4,) stored, (3,) in the model).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: {tuple(v.shape)} stored, {tuple(own[k].shape)} in the model"
        for k, v in state_dict.items()
        if k in own and isinstance(v, torch.Tensor) and isinstance(own[k], torch.Tensor) and v.shape != own[k].shape
    ]
    parts = []
    if shapes:
        more = "; ..." if len(shapes) > 2 else ""
        parts.append(f"{len(shapes)} tensor(s) of other shapes ({'; '.join(shapes[:2])}{more})")
    if missing:
        parts.append(f"{len(missing)} missing key(s) ({_few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) ({_few(unexpected)})")
    if parts:
        raise ValueError(f"{source} does not fit the model: {', '.join(parts)}.")
    module.load_state_dict(state_dict)


def _progress(checkpoint: Mapping[str, Any]) -> tuple[int, int]:
    return int(checkpoint.get("epoch", -1)), int(checkpoint.get("global_step", -1))


def newest_checkpoint(folder: Path | str) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete checkpoint of a run's ``checkpoints/`` folder (by epoch and step), and its content.

    ``last.ckpt`` is the candidate, unless an ``epoch=NNN.ckpt`` is further on: a run killed between writing its
    epoch file and ``last.ckpt`` (or before its first ``last.ckpt``) resumes from that epoch file. A file that
    cannot be read is passed over with a warning (writes are atomic, so only a damaged disk or a foreign file gives
    one). Orphan ``.tmp`` files are never candidates.

    Returns:
        ``(path, checkpoint)``, or ``None`` when the folder holds no readable checkpoint.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     io = AtomicCheckpointIO()
        ...     io.save_checkpoint({"epoch": 0, "global_step": 4}, os.path.join(d, "last.ckpt"))
        ...     io.save_checkpoint({"epoch": 1, "global_step": 8}, os.path.join(d, "epoch=001.ckpt"))
        ...     path, checkpoint = newest_checkpoint(d)
        ...     path.name, checkpoint["global_step"]
        ('epoch=001.ckpt', 8)
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    last = folder / "last.ckpt"
    epochs = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH_FILE.match(p.name)) and p.is_file()),
        reverse=True,
    )
    candidates: list[tuple[int | None, Path]] = [(None, last)] if last.is_file() else []
    candidates += epochs
    best: tuple[Path, dict[str, Any]] | None = None
    for number, path in candidates:
        if best is not None and number is not None and number <= _progress(best[1])[0]:
            break  # last.ckpt is at least as far on as every epoch file
        try:
            checkpoint = load_checkpoint(path)
        except ValueError as err:
            warnings.warn(f"skipping an unreadable checkpoint: {err}", RuntimeWarning, stacklevel=2)
            continue
        if best is None or _progress(checkpoint) > _progress(best[1]):
            best = (path, checkpoint)
        if number is not None:
            break  # the newest readable epoch file decides
    return best


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic writes (temporary file + ``os.replace``) and ``weights_only`` reads.

    Pass it as ``Trainer(plugins=[AtomicCheckpointIO()])``.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     io = AtomicCheckpointIO()
        ...     io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, os.path.join(d, "x.ckpt"))
        ...     io.load_checkpoint(os.path.join(d, "x.ckpt"))["state_dict"]["w"].tolist()
        [1.0, 1.0]
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """Write ``checkpoint`` to ``path`` through a temporary file in the same folder, then rename it."""
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no `storage_options`.")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda handle: torch.save(checkpoint, handle))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Read a checkpoint with ``weights_only=True`` (see :func:`load_checkpoint`)."""
        return load_checkpoint(path, map_location=map_location if map_location is not None else "cpu")
