"""Keeping a streaming loop's resident memory flat on glibc: a fixed mmap threshold and trims between cases.

A streaming evaluation allocates and frees volume-sized temporaries for every case. glibc's allocator raises its
mmap threshold after such frees (up to 32 MiB), so later temporaries of a few MiB come from the heap, where freed
space between live blocks stays mapped: the resident set then grows with the number of cases although nothing is
kept (measured: +190 MiB between 8 and 32 cases of 4×64³, ``benchmarks/evaluation_memory.py``).
Inside :func:`bounded_heap` the threshold is fixed at 4 MiB (blocks at least that large are mapped and unmapped on
their own, so they cannot fragment the heap), and :func:`release_freed_memory` returns freed heap pages to the OS
(``malloc_trim``) between cases. On leaving, the threshold is set to glibc's dynamic maximum (32 MiB), where a
process that allocated large tensors ends up anyway, so training that follows in the same process (the benchmark's
next run) allocates as before. Process-wide; no-ops where glibc is not the allocator (macOS, Windows, musl).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
from collections.abc import Iterator
from typing import Any

__all__ = ["MMAP_THRESHOLD", "bounded_heap", "release_freed_memory"]

MMAP_THRESHOLD = 4 * 2**20
"""Bytes from which glibc maps a block on its own inside :func:`bounded_heap`.

Example:
    >>> MMAP_THRESHOLD // 2**20
    4
"""
_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
_DYNAMIC_MAX = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


@contextlib.contextmanager
def bounded_heap() -> Iterator[bool]:
    """Within the block glibc maps blocks of :data:`MMAP_THRESHOLD` bytes or more on their own (yields if it could).

    Example:
        >>> with bounded_heap() as active:
        ...     isinstance(active, bool)
        True
    """
    libc = _libc()
    active = bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)
    try:
        yield active
    finally:
        if active:
            libc.mallopt(_M_MMAP_THRESHOLD, _DYNAMIC_MAX)
            libc.malloc_trim(0)


def release_freed_memory() -> bool:
    """Return freed heap memory to the OS (glibc ``malloc_trim(0)``); ``False`` where that is not available.

    Example:
        >>> isinstance(release_freed_memory(), bool)
        True
    """
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
