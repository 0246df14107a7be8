"""A key directory refusal as the console shows it: in the user's language from the text
catalogue when the refusal has a key (gateway.keydir.errors.KeyDirError), else in the
library's own words, which the CLI and the API show too."""

from __future__ import annotations

from starlette.requests import Request

from admin_ui.pages.render import language_of
from gateway.keydir.errors import KeyDirError
from gateway.web.catalogue import text


def refusal_text(request: Request, refusal: KeyDirError) -> str:
    if not refusal.key:
        return str(refusal)
    return text(language_of(request))(f"keydir.refusal.{refusal.key}", **refusal.values)
