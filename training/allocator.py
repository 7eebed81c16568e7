"""glibc's malloc for the training command: keep freed memory in the process between training steps.

By default glibc serves large blocks (above a threshold that adapts up to 32 MiB) with mmap and hands them back
to the kernel on free, and trims the heap top above 128 KiB. A training step frees and reallocates the same
(B, L, V) outputs, gradients and optimiser temporaries every step, so they are page-faulted in again each time;
benchmarks/bench_train.py measured this as a large and erratic part of the CPU step. The retain setting
raises both thresholds to 1 GiB (glibc's MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_), so freed blocks
are reused; the price is that the process keeps its peak heap until it exits.

It is applied with mallopt(3) when the command starts, before the model and the data exist (the environment
variables would need a re-exec of the interpreter; mallopt has the same effect on every later allocation).
Opt out with CTMC_MALLOC=default, or set either MALLOC_* variable yourself (then nothing is changed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

OPT_OUT_VARIABLE = "CTMC_MALLOC"  # "default": leave glibc's malloc as it is
RETAIN_BYTES = 1 << 30  # 1 GiB: both thresholds
GLIBC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, glibc's malloc.h


def retain_freed_memory() -> str:
    """Set glibc's mmap and trim thresholds to RETAIN_BYTES with mallopt, unless opted out.

    Returns what was done, one of "retain" (applied), "default" (CTMC_MALLOC=default), "environment" (a
    MALLOC_* variable is set: glibc already read it) or "unavailable" (not glibc, e.g. macOS or musl).
    """
    choice = os.environ.get(OPT_OUT_VARIABLE, "retain")
    if choice not in ("retain", "default"):
        raise ValueError(f"{OPT_OUT_VARIABLE} must be 'retain' or 'default', got {choice!r}")
    if choice == "default":
        return "default"
    if any(name in os.environ for name in GLIBC_VARIABLES):
        return "environment"
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return "unavailable"
    if not (mallopt(M_MMAP_THRESHOLD, RETAIN_BYTES) and mallopt(M_TRIM_THRESHOLD, RETAIN_BYTES)):
        return "unavailable"
    return "retain"
