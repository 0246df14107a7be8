"""Giving freed memory back to the operating system after a large message.

glibc's malloc keeps freed heap memory for reuse instead of returning it, and it raises its
threshold for serving a block from its own mapping (returned at once when freed) up to
32 MiB as large blocks come and go. So after a message of a few MiB, a process keeps
several times the message resident although Python freed every copy. ``malloc_trim(0)``
returns the free pages. Measured with a 10 MB attachment (13.7 MiB message): the SMTP
process 212 -> 185 MiB, a worker 185 -> 114 MiB; above 32 MiB the copies were mappings of
their own already, and trimming changes little.

That trim does not reach everything, though. A worker runs the pipeline in a thread, and a
thread's allocations come from an arena of its own, whose free top ``malloc_trim`` leaves in
place; glibc gives such a top back only above its trim threshold, which rises with the
mmap threshold to 64 MiB. So after a few 10 MB messages a worker held about 27 MiB more
than when idle (twice such a message), moving from message to message, for good. Each
part therefore fixes the mmap threshold at 4 MiB when it starts
(``fix_allocation_thresholds``): a block of 4 MiB or more is a mapping of its own, unmapped
when freed, and the trim threshold stays at its default. Measured with ``xgate serve`` and
seven 10 MB messages in a row (base64, quoted-printable, zip): the worker's private memory
went back to 2-4 MiB above idle after each, where before it stayed 4-27 MiB above. The
cost, fresh pages for each large block where the heap would have reused them: 1 MB
messages the same (their blocks stay below 4 MiB), 10 MB about 18 ms more CPU per message
(7 % of xgate's own, 2 % with clamd's).

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
# Blocks from this size on are mappings of their own (see the module docstring).
MMAP_THRESHOLD_BYTES = 4 << 20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None)  # the C library this process runs on
    except OSError:
        return None


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    function = getattr(libc, "malloc_trim", None)
    if function is None:
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


def fix_allocation_thresholds() -> bool:
    """Make blocks of ``MMAP_THRESHOLD_BYTES`` and more mappings of their own for the rest
    of the process's life; False where the C library has no ``mallopt``."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
