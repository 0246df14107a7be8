"""Giving freed memory back to the operating system after a large message.

glibc's malloc keeps freed heap memory for reuse instead of returning it, and it raises its
threshold for serving a block from its own mapping (returned at once when freed) up to
32 MiB as large blocks come and go. So after a message of a few MiB, a process keeps
several times the message resident although Python freed every copy. ``malloc_trim(0)``
returns the free pages. Measured with a 10 MB attachment (13.7 MiB message): the SMTP
process 212 -> 185 MiB, a worker 185 -> 114 MiB; above 32 MiB the copies were mappings of
their own already, and trimming changes little.

Not glibc (musl, another system): nothing to call, nothing done.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable
from typing import cast

# Messages from this size on are followed by a trim; below it the heap's own reuse is
# enough, and the trim (a walk over the heap) would cost more than it returns.
RELEASE_AFTER_BYTES = 1 << 20


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None).malloc_trim  # the C library this process runs on
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return cast(Callable[[int], int], function)


def release_freed_memory() -> bool:
    """Return free heap pages to the system; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
