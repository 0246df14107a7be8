"""The root of the gateway's domain errors.

Every error an operator or a user can cause or fix (bad configuration, an unknown queue id, a
missing consent ...) derives from ``GatewayError``, so an edge (the CLI) catches them in one
place and shows the message, which is the whole story. Each error keeps its own name and
module. The leaf packages ``crypto`` and ``scanning`` import nothing of ours and keep their own
roots (``CryptoError``, ``ScanningError``); the edges name those two beside this one.
"""

from __future__ import annotations


class GatewayError(Exception):
    """An expected failure whose message is meant for the person who caused it."""
