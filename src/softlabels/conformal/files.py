"""Reading and writing fitted conformal decisions as JSON files (thresholds for segmentation, sets for classes).

The file is the fitted object's ``to_dict()`` (with its ``"kind"``) and, optionally, a ``"provenance"`` mapping (where
the calibration cases came from: checkpoint, split, the temperature of the probabilities, folders), written
atomically with sorted keys and an indent of 1; :func:`read_conformal` dispatches on ``"kind"`` and
:func:`read_provenance` returns the provenance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from softlabels._io import atomic_write
from softlabels.conformal.prediction_sets import ConformalSets
from softlabels.conformal.risk_control import ConformalThresholds

__all__ = ["read_conformal", "read_provenance", "write_conformal"]

_KINDS: dict[str, type[ConformalThresholds] | type[ConformalSets]] = {
    ConformalThresholds.KIND: ConformalThresholds,
    ConformalSets.KIND: ConformalSets,
}


def write_conformal(
    path: Path | str, fitted: ConformalThresholds | ConformalSets, *, provenance: Mapping[str, Any] | None = None
) -> Path:
    """Write fitted thresholds or sets to ``path`` as strict JSON (atomic; sorted keys, indent 1).

    Args:
        path: the destination file; its folder must exist.
        fitted: a :class:`ConformalThresholds` or :class:`ConformalSets`.
        provenance: JSON-able facts about the calibration cases, stored under ``"provenance"``.

    Returns:
        ``path``.

    Raises:
        TypeError: ``fitted`` is neither.

    Example:
        >>> import tempfile
        >>> from softlabels.conformal.prediction_sets import ConformalSets
        >>> sets = ConformalSets("lac", 0.1, (0.8,), False, False, 1, 0.0, 100, None)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = write_conformal(Path(tmp) / "sets.json", sets)
        ...     read_conformal(out) == sets
        True
    """
    if not isinstance(fitted, ConformalThresholds | ConformalSets):
        raise TypeError(
            f"`fitted` of write_conformal must be ConformalThresholds or ConformalSets; got {type(fitted).__name__}."
        )
    content = fitted.to_dict() | ({} if provenance is None else {"provenance": dict(provenance)})
    text = json.dumps(content, sort_keys=True, indent=1, allow_nan=False) + "\n"
    return atomic_write(Path(path), lambda f: f.write(text.encode()))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read conformal file {str(path)!r}: {err}") from err


def read_provenance(path: Path | str) -> dict[str, Any]:
    """The ``"provenance"`` of a file written by :func:`write_conformal` (``{}`` when it has none).

    Example:
        >>> import tempfile
        >>> from softlabels.conformal.prediction_sets import ConformalSets
        >>> sets = ConformalSets("lac", 0.1, (0.8,), False, False, 1, 0.0, 100, None)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = write_conformal(Path(tmp) / "sets.json", sets, provenance={"split": "val"})
        ...     read_provenance(out), read_conformal(out) == sets
        ({'split': 'val'}, True)
    """
    data = _read_json(Path(path))
    provenance = data.get("provenance") if isinstance(data, dict) else None
    return dict(provenance) if isinstance(provenance, dict) else {}


def read_conformal(path: Path | str) -> ConformalThresholds | ConformalSets:
    """Read a file written by :func:`write_conformal`: thresholds or sets, by its ``"kind"``.

    Raises:
        ValueError: the file is unreadable, not JSON, or of an unknown kind (the message names the file).

    Example:
        >>> import tempfile
        >>> from softlabels.conformal.risk_control import fit_thresholds
        >>> import torch
        >>> fitted = fit_thresholds(torch.tensor([[0.0, 0.02, 0.3]]), 99, alpha=0.1)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     back = read_conformal(write_conformal(Path(tmp) / "t.json", fitted))
        >>> back.thresholds, back.procedure
        ((0.5,), 'crc')
    """
    path = Path(path)
    data = _read_json(path)
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in _KINDS:
        raise ValueError(f"conformal file {str(path)!r} must have a kind of {sorted(_KINDS)}; got {kind!r}.")
    try:
        return _KINDS[kind].from_dict({k: v for k, v in data.items() if k != "provenance"})
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"conformal file {str(path)!r} is not valid: {err}") from err
