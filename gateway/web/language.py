"""Which language a page is shown in: the user's choice (a cookie), else the browser's
Accept-Language, else German."""

from __future__ import annotations

from enum import StrEnum


class Language(StrEnum):
    DE = "de"
    EN = "en"


DEFAULT = Language.DE
COOKIE = "xgate_lang"
# Each language named in itself, as a language switch shows them.
NAMES = {Language.DE: "Deutsch", Language.EN: "English"}


def choose(cookie: str | None, accept_language: str | None) -> Language:
    if cookie in {lang.value for lang in Language}:
        return Language(cookie)
    for tag, _quality in _ranked(accept_language or ""):
        primary = tag.split("-", 1)[0]
        if primary in {lang.value for lang in Language}:
            return Language(primary)
    return DEFAULT


def _ranked(header: str) -> list[tuple[str, float]]:
    """Accept-Language's tags by quality (RFC 9110 12.5.4), best first; junk ignored."""
    tags: list[tuple[str, float]] = []
    for part in header.split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        if tag and quality > 0:
            tags.append((tag.strip().lower(), quality))
    return sorted(tags, key=lambda item: -item[1])
