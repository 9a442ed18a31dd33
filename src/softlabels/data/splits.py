"""Train/validation/test splits by case or patient id: deterministic by seed, or read from a JSON file.

Splits are made over **group ids** (a patient, a scan, a volume), never over samples, so slices or crops of one
patient never fall on both sides. A split file is ``{"train": [...], "val": [...], "test": [...]}`` of ids.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = ["SPLITS", "read_splits", "split_ids", "write_splits"]

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The split names, in order.

Example:
    >>> SPLITS
    ('train', 'val', 'test')
"""


def _check_fractions(fractions: object, where: str) -> tuple[float, ...]:
    ok = isinstance(fractions, Sequence) and len(fractions) == 3
    values = tuple(float(f) for f in fractions) if ok else ()  # type: ignore[attr-defined]
    if not ok or not all(math.isfinite(v) and v >= 0 for v in values) or abs(sum(values) - 1.0) > 1e-9:
        raise ValueError(
            f"`fractions` of {where} must be 3 non-negative numbers (train, val, test) summing to 1; got {fractions!r}."
        )
    return values


def split_ids(
    ids: Iterable[str], *, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, list[str]]:
    """Split group ids into train/val/test, deterministically: the same ids and seed give the same split.

    Each id is ranked by a hash of ``(seed, id)`` (not by Python's salted ``hash``, not by position), so the split of
    an id does not change when other ids are added or removed, and it is reproducible on any machine. The first
    ``round(n·f_train)`` ranked ids go to train, the next ``round(n·f_val)`` to val, the rest to test.

    Args:
        ids: the group ids (unique strings).
        fractions: ``(train, val, test)``, non-negative, summing to 1.
        seed: changes the assignment.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted.

    Raises:
        ValueError: duplicate ids or bad fractions.

    Example:
        >>> split = split_ids([f"case{i}" for i in range(10)], fractions=(0.6, 0.2, 0.2), seed=1)
        >>> [len(split[s]) for s in SPLITS]
        [6, 2, 2]
    """
    where = "split_ids"
    values = _check_fractions(fractions, where)
    items = [str(i) for i in ids]
    if len(set(items)) != len(items):
        raise ValueError(f"`ids` of {where} must be unique; got {len(items) - len(set(items))} duplicate(s).")
    ranked = sorted(items, key=lambda i: hashlib.sha256(f"{seed}\0{i}".encode()).hexdigest())
    n_train = round(len(ranked) * values[0])
    n_val = min(round(len(ranked) * values[1]), len(ranked) - n_train)
    parts = (ranked[:n_train], ranked[n_train : n_train + n_val], ranked[n_train + n_val :])
    return {name: sorted(part) for name, part in zip(SPLITS, parts, strict=True)}


def read_splits(path: str | os.PathLike[str], ids: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Read a split file ``{"train": [...], "val": [...], "test": [...]}`` and check it.

    Args:
        path: the JSON file.
        ids: the known ids; every listed id must be one of them (``None``: not checked).

    Returns:
        The three lists (a missing key is an empty list).

    Raises:
        ValueError: unreadable JSON, an unknown key, an id in two splits, or an id that is not known, naming the file.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = write_splits(os.path.join(d, "s.json"), {"train": ["a"], "val": ["b"], "test": []})
        ...     read_splits(p, ids=["a", "b"])["val"]
        ['b']
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"split file {str(path)!r} could not be read as JSON: {err}") from err
    if not isinstance(raw, Mapping) or not set(raw) <= set(SPLITS):
        keys = sorted(raw) if isinstance(raw, Mapping) else type(raw).__name__
        raise ValueError(f"split file {str(path)!r} must map {list(SPLITS)} to lists of ids; got keys {keys}.")
    splits = {name: [str(i) for i in raw.get(name, [])] for name in SPLITS}
    seen: dict[str, str] = {}
    for name, members in splits.items():
        for item in members:
            if item in seen:
                raise ValueError(f"split file {str(path)!r}: id {item!r} is in both {seen[item]!r} and {name!r}.")
            seen[item] = name
    if ids is not None:
        unknown = sorted(set(seen) - {str(i) for i in ids})
        if unknown:
            raise ValueError(f"split file {str(path)!r} lists unknown id(s) {unknown[:5]} (of {len(unknown)}).")
    return splits


def write_splits(path: str | os.PathLike[str], splits: Mapping[str, Sequence[str]]) -> Path:
    """Write a split file atomically (a temporary file in the same folder, then a rename); return its path.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_splits(os.path.join(d, "s.json"), {"train": ["a"]}).name
        's.json'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({name: list(splits.get(name, [])) for name in SPLITS}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
