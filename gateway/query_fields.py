"""Reading a search form's optional fields (the console's transfer search and audit viewer):
text within a length, ISO dates, plain numbers; anything else is refused with a key and
values that the page turns into a sentence in the reader's language."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any


class QueryRefused(ValueError):
    """A field the form cannot take: ``key`` names why, ``values`` fill the page's text."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


@dataclass(frozen=True)
class QueryFields:
    max_text: int
    max_digits: int
    # Raised for a refused field: each search has its own subclass of QueryRefused.
    refused: type[QueryRefused]
    # Runs of white space inside a value become one space (else only the ends are cut).
    collapse_spaces: bool = False

    def text(self, raw: Mapping[str, str], name: str) -> str | None:
        given = raw.get(name) or ""
        value = " ".join(given.split()) if self.collapse_spaces else given.strip()
        if len(value) > self.max_text:
            raise self.refused("too_long", field=name, limit=self.max_text)
        return value or None

    def date(self, raw: Mapping[str, str], name: str) -> date | None:
        value = self.text(raw, name)
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise self.refused("bad_date", field=name, value=value) from None

    def number(self, raw: Mapping[str, str], name: str) -> int | None:
        value = self.text(raw, name)
        if value is None:
            return None
        if not value.isascii() or not value.isdigit() or len(value) > self.max_digits:
            raise self.refused("bad_number", field=name, value=value)
        return int(value)
