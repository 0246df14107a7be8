"""CSRF protection by synchronizer token: each login session has its own random token (kept
in the session row), every form carries it in a hidden field and every script sends it as
``X-CSRF-Token``; an unsafe request without the right one is refused (403) before it does
anything. Before a login there is no session: the login form uses a double-submit cookie
instead (``LOGIN_COOKIE``, compared with the form's field).
"""

from __future__ import annotations

import hmac
import secrets

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
LOGIN_COOKIE = "xgate_login_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_token() -> str:
    return secrets.token_urlsafe(32)


def matches(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"),
                               given.encode("utf-8", "surrogatepass"))
