"""The JSON API under /api/v1: one router per area (keys, partners, consents), the shared
error answers (``errors``), request parts (``params``) and transactions (``transactions``).

Route functions call the library's data functions in one transaction each and turn their
errors into JSON answers; they query nothing themselves.
"""
