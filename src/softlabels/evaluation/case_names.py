"""Unique names of the samples of a stream of batches, for report rows and output files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["CaseNames"]


class CaseNames:
    """Unique per-sample names in loader order, for report rows and output files.

    A sample is named by its batch's ``"case"`` entry (``case_<index>`` without one). ``"case"`` is the grouping
    unit of a source (the patient of LIDC, the slab of MNI152), so it can repeat within a split: the second and later
    samples of a name get ``_1``, ``_2``, … appended (skipping names already used), so no output overwrites another.

    Example:
        >>> names = CaseNames()
        >>> names({"case": ["p1", "p1"]}, 2) + names({"case": ["p1", "p2"]}, 2) + names({}, 1)
        ['p1', 'p1_1', 'p1_2', 'p2', 'case_00004']
    """

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._index = 0

    def __call__(self, batch: Mapping[str, Any], count: int) -> list[str]:
        """The names of the ``count`` samples of ``batch``."""
        given = batch.get("case")
        names = []
        for i in range(count):
            base = str(given[i]) if isinstance(given, list | tuple) else f"case_{self._index:05d}"
            self._index += 1
            name, k = base, 0
            while name in self._used:
                k += 1
                name = f"{base}_{k}"
            self._used.add(name)
            names.append(name)
        return names
