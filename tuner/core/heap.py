"""Handing the memory a finished phase freed back to the operating system.

glibc keeps freed memory in its arenas (one per thread that allocates, up to 8 per core) for
reuse, and the driver's threads change from phase to phase (Ray's gRPC threads during tuning,
the main thread's cutting and collation), so what one phase freed is often not what the next
one reuses: the driver's RSS stayed 5-9 MB above what it used after cutting, re-scoring and
collation at 10,000 studies (bench/bench_driver_phases.py --trim). ``malloc_trim`` returns it;
Dask's workers do the same for their "unmanaged memory".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None on a C library without it (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Return the heap's free pages to the OS; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
