"""The audit trail: the hash chain that records and verifies (``chain``, whose names are
re-exported here, so ``audit.record(...)`` reads as before) and the queries that show it
(``view``)."""

from gateway.audit.actions import AuditAction
from gateway.audit.chain import (
    GENESIS_HASH,
    Event,
    VerifyResult,
    canonical,
    entry_hash,
    record,
    record_many,
    verify,
)

__all__ = ["GENESIS_HASH", "AuditAction", "Event", "VerifyResult", "canonical", "entry_hash",
           "record", "record_many", "verify"]
