"""The email package's ``policy.default``, with each header class made once.

Under ``policy.default`` the header registry builds a new class (``type(...)``) for every
header field it parses: 7 µs of a Content-Type's 41 µs, about twenty times per message in
the pipeline's hot path. The classes it builds for a name are all alike, so one per name
is kept; the parse is otherwise ``policy.default``'s own.
"""

from __future__ import annotations

from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry


class _ClassPerName(HeaderRegistry):
    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._classes.get(key)
        if made is None:
            made = self._classes[key] = super().__getitem__(name)
        return made

    def map_to_type(self, name: str, cls: type[BaseHeader]) -> None:
        self._classes.pop(name.lower(), None)
        super().map_to_type(name, cls)


MIME_POLICY = policy.default.clone(header_factory=_ClassPerName())
