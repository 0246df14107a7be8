"""The text catalogue and the language choice (gateway.web)."""

from __future__ import annotations

import re
import string
from importlib import resources

import pytest

from gateway.web import language
from gateway.web.catalogue import CATALOGUES, text
from gateway.web.language import Language


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_language_has_every_key_with_the_same_placeholders() -> None:
    german = CATALOGUES[Language.DE]
    for lang, texts in CATALOGUES.items():
        assert set(texts) == set(german), lang
        for key, template in texts.items():
            assert _fields(template) == _fields(german[key]), (lang, key)


def test_every_key_a_template_uses_exists() -> None:
    used: set[str] = set()
    for path in resources.files("admin_ui").joinpath("templates").iterdir():
        files = path.iterdir() if path.is_dir() else [path]
        for file in files:
            # Whole keys only: t("login." + info) builds one from a prefix.
            used |= set(re.findall(r"""\bt\(["']([a-z0-9_.]*[a-z0-9_])["']""",
                                   file.read_text("utf-8")))
    assert used
    assert used <= set(CATALOGUES[Language.DE])


def test_missing_key_shows_the_key() -> None:
    assert text(Language.EN)("no.such.key") == "no.such.key"
    assert text(Language.EN)("home.greeting", user="Ana") == "Hello, Ana."


@pytest.mark.parametrize(("cookie", "accept", "chosen"), [
    (None, None, "de"),
    (None, "en-GB,en;q=0.9,de;q=0.8", "en"),
    (None, "fr-FR, de;q=0.5, en;q=0.4", "de"),
    (None, "de;q=0.1, en;q=0.9", "en"),
    (None, "en;q=0, fr", "de"),
    ("en", "de", "en"),
    ("xx", "en", "en"),
    (None, "en;q=nonsense", "de"),
])
def test_language_choice(cookie: str | None, accept: str | None, chosen: str) -> None:
    assert language.choose(cookie, accept).value == chosen
