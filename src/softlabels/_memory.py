"""Keeping a streaming loop's resident memory flat on glibc: a fixed mmap threshold and trims between cases.

A streaming evaluation allocates and frees volume-sized temporaries for every case. glibc's allocator raises its
mmap threshold after such frees (up to 32 MiB), so later temporaries of a few MiB come from the heap, where freed
space between live blocks stays mapped: the resident set then grows with the number of cases although nothing is
kept (measured: +190 MiB between 8 and 32 cases of 4×64³, ``benchmarks/evaluation_memory.py``).
:func:`bound_heap_growth` fixes the threshold at 4 MiB (blocks at least that large are mapped and unmapped on their
own, so they cannot fragment the heap; the dynamic raise is switched off), and :func:`release_freed_memory` returns
freed heap pages to the OS (``malloc_trim``) between cases. Both are process-wide and no-ops where glibc is not the
allocator (macOS, Windows, musl). The cost is a page fault per 4 KiB of each block of 4 MiB or more.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

__all__ = ["MMAP_THRESHOLD", "bound_heap_growth", "release_freed_memory"]

MMAP_THRESHOLD = 4 * 2**20
"""Bytes from which glibc maps a block on its own once :func:`bound_heap_growth` ran.

Example:
    >>> MMAP_THRESHOLD // 2**20
    4
"""
_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>


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


@functools.cache
def bound_heap_growth() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` (once per process); ``False`` where not available.

    Example:
        >>> isinstance(bound_heap_growth(), bool)
        True
    """
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)


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
