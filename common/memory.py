"""Keep the memory a process frees for its next allocations (glibc malloc), instead of page-faulting it in again.

PyTorch's CPU allocator asks ``malloc`` for every tensor and frees it when the tensor dies.  glibc serves a block
above its mmap threshold (128 KiB at start, raised as mmapped blocks are freed, at most 32 MiB) with fresh pages
from the kernel, and returns the top of the heap to the kernel whenever more than 128 KiB (M_TRIM_THRESHOLD) is
free there.  A training step allocates and frees the same activations (hundreds of KiB to tens of MiB each) at
every step, so the kernel zero-fills them anew each time: measured on the 2-core reference machine, 56,000 minor
page faults and 107 ms of kernel time per 387 ms V-ADE step at the 1x32x32 cpu preset.  With the mmap threshold
fixed at its maximum (32 MiB) and a trim threshold of 1 GiB the same step took 147 faults and 325 ms
(benchmarks/README.md).  Numerics do not change; the price is that the process keeps up to 1 GiB of freed heap
instead of returning it (its peak memory is unchanged).

This is process-wide and applied once, by the protocol driver (CLI and Python API) and the benchmarks.  It does
nothing where the user chose an allocator or glibc's malloc tunables (``LD_PRELOAD`` of jemalloc/tcmalloc,
``MALLOC_*_`` variables, ``GLIBC_TUNABLES``), or where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Optional

M_TRIM_THRESHOLD = -1               # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20           # glibc's largest allowed mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 1 << 30            # keep up to 1 GiB of freed heap
#: what marks an explicit choice of allocator or malloc settings: then nothing is changed
USER_CHOICES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX",
                "GLIBC_TUNABLES")
_applied: Optional[bool] = None


def _glibc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version          # glibc only (musl has no such symbol)
        return libc
    except (OSError, AttributeError):
        return None


def user_chose_allocator(environ=os.environ) -> bool:
    """True when the environment sets glibc malloc tunables or preloads another allocator."""
    preload = environ.get("LD_PRELOAD", "")
    return any(k in environ for k in USER_CHOICES) or any(a in preload for a in ("jemalloc", "tcmalloc", "mimalloc"))


def keep_freed_memory() -> bool:
    """Apply the setting above once per process; True if it is in effect (applied now or earlier)."""
    global _applied
    if _applied is None:
        libc = None if user_chose_allocator() else _glibc()
        _applied = bool(libc is not None
                        and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                        and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    return _applied
