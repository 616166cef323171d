"""Giving the memory a burst of requests used back to the operating system.

CPython returns large blocks to the C allocator when they are freed, but glibc's allocator
keeps freed heap memory for reuse instead of returning it, so a node that held megabytes for
abusive requests would keep that much resident long after it freed them. ``malloc_trim`` asks
glibc to return what it keeps free; elsewhere (musl, macOS) there is nothing to ask and nothing
is done.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def give_back_memory() -> bool:
    """Ask the C allocator to return the free memory it keeps; False when it has no way to."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    log.debug("free memory given back to the system")
    return True
