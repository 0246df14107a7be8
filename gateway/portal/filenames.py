"""A citizen's file name made safe to show and to put into a MIME header: the last path
part only, no control or bidirectional-override characters (a name like
"rechnung\u202Efdp.exe" shows as "rechnungexe.pdf"), no leading dots, bounded in length."""

from __future__ import annotations

import unicodedata

MAX_NAME_CHARS = 120
FALLBACK = "datei"

# Explicit direction marks, embeddings, overrides and isolates (Unicode's Bidi_Control).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                           "\u2066\u2067\u2068\u2069")


def clean_filename(raw: str | None) -> str:
    name = unicodedata.normalize("NFC", raw or "")
    # Browsers send the base name, old ones and scripts may send a path (either separator).
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch not in _BIDI_CONTROLS
                   and unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"))
    name = " ".join(name.split()).lstrip(". ")
    if len(name) > MAX_NAME_CHARS:
        _stem, dot, ext = name.rpartition(".")
        keep = ext if dot and 0 < len(ext) <= 10 else ""
        name = (name[:MAX_NAME_CHARS - len(keep) - 1] + "." + keep) if keep \
            else name[:MAX_NAME_CHARS]
    return name or FALLBACK
