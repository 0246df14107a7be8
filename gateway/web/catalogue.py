"""All user-interface text goes through here: ``text(language)`` is the ``t`` that templates
and pages call, ``t("login.title")`` or ``t("home.greeting", user=name)``.

A key missing from the chosen language falls back to German, and a key missing there too is
shown as the key itself (and logged): a page with one odd label beats an error page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gateway.web.language import DEFAULT, Language
from gateway.web.texts import de, en

log = logging.getLogger(__name__)

CATALOGUES: dict[Language, dict[str, str]] = {Language.DE: de.TEXTS, Language.EN: en.TEXTS}

Translate = Callable[..., str]


def text(language: Language) -> Translate:
    texts = CATALOGUES[language]

    def t(key: str, **values: Any) -> str:
        template = texts.get(key) or CATALOGUES[DEFAULT].get(key)
        if template is None:
            log.error("no UI text for key %s", key)
            return key
        return template.format(**values) if values else template

    return t
