"""Ports for servers a test starts in another process (``xgate serve``, PostgreSQL, uvicorn).

Such a server is told its port before it binds, so the test picks one that is free *now*.
Asking the OS for one (bind to port 0, close, hand the number on) races: the number comes
from the ephemeral range, where every outgoing connection of every test on the machine also
takes its local port, and the next bind to port 0 (this test's or another xdist worker's) may
draw it again. CI saw ``xgate serve`` refuse a port taken that way.

So the ports come from below the ephemeral range, which the OS never hands out by itself, in
a slice of their own for each xdist worker, each number given out once per session: only a
process that ignores all this could take one between the pick and the bind.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from pathlib import Path

# Ports each xdist worker may hand out; ample for one session (about 300 are used).
SLICE = 1000
# From a random place in the slice: two sessions run side by side by hand (not xdist) then
# rarely walk the same numbers.
_given = itertools.count(random.randrange(SLICE))


def _ephemeral_low() -> int:
    """The lowest port the OS gives to bind(0) and connect()."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _worker_index() -> int:
    """0 without xdist, N for its worker "gwN"."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


def free_port() -> int:
    """A loopback TCP port that nothing listens on, not handed out before in this session and
    outside the range the OS draws from."""
    top = _ephemeral_low() - _worker_index() * SLICE
    first = top - SLICE
    if first < 1024:
        raise RuntimeError(f"no port slice for xdist worker {_worker_index()} below {top}")
    for _ in range(SLICE):
        port = first + next(_given) % SLICE
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (by a server still running, or a closing connection)
        return port
    raise RuntimeError(f"no free port in {first}..{top - 1}")
