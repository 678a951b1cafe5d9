"""Keep freed memory in the process heap while training (glibc only).

Why: every coder step allocates temporaries of tokens × latents floats (75 MB at
2,048 tokens and 9,216 latents). glibc serves blocks that large with a fresh `mmap`
and hands them back with `munmap` when they are freed, so each step page-faults and
zeroes the same amount of memory again. On a 2-core VM (`python -m benchmarks
coder_flops`), that makes the step's element-wise work (`mul`, `clamp_min`, `fill_`,
`copy_`) 3-4x slower and holds coder training to 33-37% of the matmul rate; with
freed blocks kept in the heap, the next step reuses them and the benchmark reaches
51-57%. How much the faults cost depends on the machine and its load: other runs on
the same VM without this setting reached 49-51%. The price is that the process
keeps its peak memory until it exits, which training reaches on its first step anyway.

When it can go: once PyTorch's CPU allocator (or sparsify) caches large blocks
itself, or when a caching allocator such as jemalloc is preloaded instead.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt parameters from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and never shrink it, so large blocks
    freed by one training step are reused by the next. Process-wide; returns False
    (and changes nothing) where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
