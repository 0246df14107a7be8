"""The scanner's own settings (scanning.config) and how the gateway builds them from [scanning]."""

from __future__ import annotations

import pytest

from gateway.services import scanner_config
from gateway.settings import Settings
from scanning.archives import ArchiveLimits
from scanning.config import BLOCKABLE_TYPES, ScannerConfig
from scanning.parts import MimeLimits


def test_the_gateway_passes_every_scanning_limit() -> None:
    scanning = Settings().scanning.model_copy(update={
        "blocked_types": ["script"], "max_concurrent_scans": 3,
        "max_uncompressed_bytes": 1234, "max_compression_ratio": 7, "max_archive_members": 9,
        "max_archive_depth": 2, "max_mime_parts": 11, "max_mime_depth": 4})
    assert scanner_config(scanning) == ScannerConfig(
        blocked_types=frozenset({"script"}), max_concurrent_scans=3,
        archive=ArchiveLimits(max_uncompressed_bytes=1234, max_compression_ratio=7,
                              max_members=9, max_depth=2),
        mime=MimeLimits(max_parts=11, max_depth=4))


def test_the_defaults_agree_with_the_gateway_defaults() -> None:
    assert scanner_config(Settings().scanning) == ScannerConfig()
    assert frozenset(BLOCKABLE_TYPES) == ScannerConfig().blocked_types


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown blocked types: macro"):
        ScannerConfig(blocked_types=frozenset({"macro"}))
    with pytest.raises(ValueError, match="max_concurrent_scans"):
        ScannerConfig(max_concurrent_scans=0)
