"""Loading local weights into a model: a state dict or a Lightning checkpoint, checked key by key, never downloaded.

A checkpoint is read with ``torch.load(path, map_location="cpu", weights_only=True)`` (tensors and plain containers
only, no pickled code). It is either a state dict, or a dict holding one under ``"state_dict"`` (a Lightning
checkpoint). When the keys carry a ``"model."`` prefix (a LightningModule that holds the network as ``self.model``)
and the prefix-stripped keys fit the model better, the ``"model.*"`` entries are taken without the prefix and the
other entries (the method's or the loss's state) are left out.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["load_weights", "read_state_dict"]

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
PREFIX = "model."
SHOWN = 10  # keys listed in an error or warning


def read_state_dict(
    path: str | os.PathLike[str], *, model_keys: Iterable[str] | None = None, where: str = "read_state_dict"
) -> dict[str, Tensor]:
    """Read the state dict of a local checkpoint file (a raw state dict or a ``{"state_dict": ...}`` checkpoint).

    Args:
        path: a local file; URLs (``http://``, ``https://``, any ``scheme://``) are refused.
        model_keys: the state-dict keys of the model it is meant for, to decide whether to strip ``"model."``
            (without them, the prefix is stripped from a ``{"state_dict": ...}`` checkpoint only).
        where: the public function named in errors.

    Returns:
        ``{key: tensor}``.

    Raises:
        ValueError: a URL, a file that is not a readable PyTorch checkpoint (corrupt, truncated, or holding
            objects other than tensors and containers), or one that holds no state dict.
        FileNotFoundError: no such file.
        TypeError: ``path`` is not a str or path.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     torch.save({"state_dict": {"model.weight": torch.ones(2)}}, f"{tmp}/last.ckpt")
        ...     read_state_dict(f"{tmp}/last.ckpt", model_keys=["weight"])
        {'weight': tensor([1., 1.])}
    """
    file = _local_file(path, where)
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt file fails anywhere in the unpickler (IndexError, KeyError, ...)
        raise ValueError(
            f"`weights` of {where}: cannot read {str(file)!r} as a PyTorch checkpoint (corrupt or truncated file, "
            f"or objects other than tensors): {type(err).__name__}: {err}"
        ) from err
    state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else loaded
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"`weights` of {where}: {str(file)!r} holds no state dict (a dict of tensors, or one under "
            f"'state_dict'); got {type(state).__name__}."
        )
    keys = None if model_keys is None else set(model_keys)
    return _strip_prefix({str(k): v for k, v in state.items()}, keys, wrapped=state is not loaded)


def load_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    strict: bool = True,
    ignore_head: bool = False,
    head: Iterable[str] = (),
) -> nn.Module:
    """Load a local checkpoint into ``model``, checking every key and shape before anything is copied.

    Args:
        model: the model to load into (changed in place).
        path: a local checkpoint file (see :func:`read_state_dict`).
        strict: raise when keys are missing from or unexpected in the checkpoint; else warn and load the rest.
        ignore_head: drop the checkpoint entries under the ``head`` prefixes whose shapes differ from the model's
            (a head for another ``num_classes``), with a warning naming them; the model keeps its own head.
        head: the state-dict prefixes of the head (``create_model`` passes the registry's).

    Returns:
        ``model``.

    Raises:
        ValueError: missing/unexpected keys with ``strict``, or shapes that differ (the keys, at most 10, and the
            file are named), besides the errors of :func:`read_state_dict`.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     torch.save(nn.Linear(2, 3).state_dict(), f"{tmp}/w.pt")
        ...     model = load_weights(nn.Linear(2, 3), f"{tmp}/w.pt")
        ...     load_weights(nn.Linear(2, 5), f"{tmp}/w.pt", ignore_head=True, head=[""]).weight.shape
        torch.Size([5, 2])
    """
    own = model.state_dict()
    state = read_state_dict(path, model_keys=own, where="load_weights")
    file = str(path)
    mismatched = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
    prefixes = tuple(head)
    dropped = [k for k in mismatched if ignore_head and _under(k, prefixes)] if prefixes else []
    if dropped:
        warnings.warn(f"ignore_head: not loading {_few(dropped)} from {file!r} (other shapes).", stacklevel=2)
    _check_shapes([k for k in mismatched if k not in dropped], own, state, file, _under_any(mismatched, prefixes))
    missing = sorted(own.keys() - state.keys() - set(dropped))
    unexpected = sorted(state.keys() - own.keys())
    if missing or unexpected:
        message = (
            f"the checkpoint {file!r} does not fit {type(model).__name__}: missing keys {_few(missing)}; "
            f"unexpected keys {_few(unexpected)}"
        )
        if strict:
            raise ValueError(f"{message} (strict=True; pass strict=False to load the matching keys only).")
        warnings.warn(f"{message}; loading the matching keys only (strict=False).", stacklevel=2)
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in dropped}, strict=False)
    return model


def _local_file(path: object, where: str) -> Path:
    """``path`` as an existing local file; URLs refused."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`weights` of {where} must be a local file path; got {type(path).__name__} {path!r}.")
    text = os.fspath(path)
    if isinstance(text, bytes) or URL.match(text):
        raise ValueError(
            f"`weights` of {where} must be a local file path; nothing is downloaded (fetch the file yourself and "
            f"pass its path); got {text!r}."
        )
    file = Path(text).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"`weights` of {where}: no such file {text!r}.")
    return file


def _strip_prefix(state: dict[str, Tensor], model_keys: set[str] | None, *, wrapped: bool) -> dict[str, Tensor]:
    """The ``"model.*"`` entries without the prefix, when they fit ``model_keys`` better than the keys as stored.

    Without ``model_keys``, the prefix is stripped from a ``{"state_dict": ...}`` checkpoint only.
    """
    stripped = {k[len(PREFIX) :]: v for k, v in state.items() if k.startswith(PREFIX)}
    if not stripped:
        return state
    if model_keys is None:
        return stripped if wrapped else state
    return stripped if len(stripped.keys() & model_keys) > len(state.keys() & model_keys) else state


def _check_shapes(
    keys: list[str], own: Mapping[str, Tensor], state: Mapping[str, Tensor], file: str, in_head: bool
) -> None:
    """Raise naming the keys (at most 10) whose shapes differ."""
    if not keys:
        return
    shown = ", ".join(f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in keys[:SHOWN])
    more = f" (and {len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    hint = " (a head for another num_classes? pass ignore_head=True to drop it)" if in_head else ""
    raise ValueError(
        f"the checkpoint {file!r} has {len(keys)} tensor(s) of other shapes than the model (file vs model): "
        f"{shown}{more}{hint}."
    )


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``key`` lies under one of the module ``prefixes`` (``""`` is the whole model)."""
    return any(p == "" or key == p or key.startswith(p + ".") for p in prefixes)


def _under_any(keys: Iterable[str], prefixes: tuple[str, ...]) -> bool:
    """Whether any of ``keys`` lies under ``prefixes``."""
    return bool(prefixes) and any(_under(k, prefixes) for k in keys)


def _few(keys: list[str]) -> str:
    """At most 10 keys, and how many more."""
    if not keys:
        return "none"
    more = f" (and {len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return f"{keys[:SHOWN]}{more}"
