"""Ids in page URLs: digits only, and small enough for every database's integer. Anything
else is a page that does not exist (404), like an id the user may not reach."""

from __future__ import annotations

from starlette.exceptions import HTTPException

MAX_DIGITS = 15


def parse_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > MAX_DIGITS:
        raise HTTPException(404)
    return int(text)
