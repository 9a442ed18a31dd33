"""Checkpoint files written atomically and read with ``weights_only=True``, with a clear error for a bad file.

Lightning's default ``TorchCheckpointIO`` writes the checkpoint in place, so a process killed mid-write leaves a
truncated ``last.ckpt`` that the next ``--resume`` cannot read. Here the checkpoint goes to a temporary file in the
same folder, is flushed to disk and renamed over the target (``os.replace`` is atomic), so a checkpoint file is
always either the old one or the new one, whole.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "load_checkpoint"]


def load_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(..., weights_only=True)``; a missing, corrupt or truncated file raises.

    Args:
        path: the ``.ckpt`` file.
        map_location: where to put the tensors.

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable checkpoint (truncated, corrupt, or holding objects other than
            tensors and plain containers), naming the file.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     AtomicCheckpointIO().save_checkpoint({"epoch": 1}, os.path.join(d, "a.ckpt"))
        ...     load_checkpoint(os.path.join(d, "a.ckpt"))["epoch"]
        1
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise ValueError(
            f"checkpoint {str(path)!r} could not be read (truncated, corrupt, or not a weights-only checkpoint): {err}"
        ) from err
    if not isinstance(checkpoint, dict):
        raise ValueError(f"checkpoint {str(path)!r} must hold a dict; got {type(checkpoint).__name__}.")
    return checkpoint


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
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Read a checkpoint with ``weights_only=True`` (see :func:`load_checkpoint`)."""
        return load_checkpoint(path, map_location=map_location if map_location is not None else "cpu")
