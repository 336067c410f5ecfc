"""Process-level memory-allocator setting for fast CPU inference and training."""

import ctypes
import ctypes.util
import sys

__all__ = ["malloc_environment", "tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied = None


def tune_malloc(threshold=1 << 30):
    """Let glibc's ``malloc`` reuse freed large buffers instead of returning them to the OS.

    PyTorch's CPU tensors come from ``malloc``. By default glibc serves blocks above 32 MiB
    (a batch of eight 256² activation maps with 32 channels is already 32 MiB in bf16) with a
    fresh ``mmap`` and unmaps them when freed, so every forward pass pays for zero-filling page
    faults again: on this project's CPU half the time of an FCRN forward pass is spent in the
    kernel. With the two thresholds raised, freed blocks stay in the heap and are reused. See
    ``benchmarks/RESULTS.md`` for the measured effect (about 1.5× for kwtl's bf16 scoring and
    2× for a plain fp32 loop).

    The setting is process-wide and cannot be undone; the process keeps its peak memory
    instead of handing it back between passes (peak RSS itself does not grow). Only
    applications set it: ``kwtl run`` calls it (and passes :func:`malloc_environment` to its
    worker processes); scripts may call it once at start-up. The library never does.
    It does nothing, and returns False, where the C library is not glibc (macOS, Windows,
    musl).

    Parameters
    ----------
    threshold : int, default=2**30
        Blocks up to this many bytes are served from (and returned to) the heap; the heap is
        not trimmed until this much is free at its top.

    Returns
    -------
    applied : bool
        Whether glibc accepted the setting.

    Examples
    --------
    >>> from kwtl.utils._allocator import tune_malloc
    >>> isinstance(tune_malloc(), bool)
    True
    """
    global _applied
    threshold = int(threshold)
    if not 0 < threshold < 2**31:
        raise ValueError(
            f"threshold must be a positive number of bytes below 2**31, got {threshold}"
        )
    if _applied == threshold:
        return True
    libc = _glibc()
    if libc is None:
        return False
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(threshold))) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(threshold))
    )
    _applied = threshold if ok else None
    return ok


def malloc_environment(threshold=1 << 30):
    """The glibc environment variables that apply :func:`tune_malloc` to a new process.

    Examples
    --------
    >>> sorted(malloc_environment())
    ['MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_']
    """
    return {
        "MALLOC_MMAP_THRESHOLD_": str(int(threshold)),
        "MALLOC_TRIM_THRESHOLD_": str(int(threshold)),
    }


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        version = libc.gnu_get_libc_version  # only glibc has it
    except (OSError, AttributeError):
        return None
    version.restype = ctypes.c_char_p
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc
