"""Member names that could write outside the extraction directory (every format)."""

from __future__ import annotations

import re

_DRIVE = re.compile(r"[A-Za-z]:")


def unsafe_name(name: str) -> str | None:
    """Why a member name could write outside the extraction directory, or None."""
    if "\x00" in name:
        return "a NUL character"
    normal = name.replace("\\", "/")
    if normal.startswith("/"):
        return "an absolute path"
    if _DRIVE.match(normal):
        return "a drive letter"
    if ".." in normal.split("/"):
        return "a '..' component"
    return None
