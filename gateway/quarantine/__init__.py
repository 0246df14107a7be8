"""Quarantined messages: their records and the admins' decisions (``records``), the tables
(``models``) and the re-scan that a release needs (``rescan``)."""
