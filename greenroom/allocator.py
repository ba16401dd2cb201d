"""The C allocator's one setting that a server of long messages needs.

glibc serves an allocation above its mmap threshold (128 KiB at start) with a mapping of its
own, which goes back to the system when it is freed. But the threshold moves: each time such
a block is freed, glibc raises the threshold to its size, so that from then on blocks of that
size come from the heap, whose free space is rarely given back. A flood of long messages (24
queued texts of 250,000 characters, their encodings and frames) then left the server's RSS
about twice what it was, for good. Setting the threshold explicitly turns the moving off: a
long message's memory is returned when it is freed, and RSS comes back to within a percent of
where it was (bench/flood.py, see bench/README.md). Blocks this large are few (long messages,
big frames), so the system calls they now cost are few too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger("greenroom.allocator")

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
MMAP_THRESHOLD = 128 << 10


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; False where there is no glibc (the
    setting is then left to the platform's allocator)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc: musl, macOS
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, threshold) != 1:
        logger.warning("could not set the allocator's mmap threshold")
        return False
    return True
