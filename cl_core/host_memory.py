"""Keep freed host memory for reuse instead of handing it back to the kernel after every step.

A CPU population's step makes temporaries of (M, P) floats (32 members of the digits MLP: 2.25
MB each; Adam's denominator, EWC's θ − θ*, the activations' gradients). glibc's ``malloc``
serves blocks that large from fresh ``mmap`` pages or from the top of its heap, and gives the
top back to the kernel as soon as more than twice the last such block lies free there
(``M_TRIM_THRESHOLD``, dynamic by default). The next step's temporaries then fault in zeroed
pages again: 0.7-0.8 s of system time in a 6-7 s process that trains an EWC population of 32
twice on this project's CPU, against 0.4 s when freed memory stays (docs/population.md, "When it
pays").

``keep_freed_memory`` fixes the two thresholds at the caps of glibc's own dynamic rule (blocks
up to 32 MiB from the heap; the heap's top handed back once 64 MiB of it lie free), so a run's
temporaries reuse the same pages step after step. A process setting: the arithmetic, and so
every number, is unchanged. Elsewhere than on glibc (macOS, musl), or when the process was
started with glibc's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` variables (the
user's choice), it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

MMAP_THRESHOLD = 32 * 1024**2  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # glibc's dynamic rule: twice the mmap threshold
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_applied: bool | None = None  # None: not tried yet in this process


def keep_freed_memory() -> bool:
    """Set the thresholds once per process; True when they are in effect."""
    global _applied
    if _applied is None:
        _applied = _set_thresholds()
    return _applied


def _set_thresholds() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _USER_VARIABLES):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
