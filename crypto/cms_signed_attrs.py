"""The signed attributes of a CMS SignerInfo (RFC 5652 5.3), read from their encoding.

A verifier needs three of them: content-type, message-digest and signing-time. asn1crypto's
``.native`` of the attribute set also converts every other attribute (a sender's S/MIME
capabilities alone are a dozen algorithm identifiers), which cost more than the signature
check itself. Here each attribute's framing is read with asn1crypto's low-level parser and
only the three values that are used are decoded.
"""

from __future__ import annotations

import datetime

# asn1crypto ships no type information; its values are Any to mypy.
from asn1crypto import core, parser  # type: ignore[import-untyped]

_UNIVERSAL = 0
_SEQUENCE = 16
_SET = 17
_OID = 6
_OCTET_STRING = 4
_UTC_TIME = 23
_GENERALIZED_TIME = 24

# The DER contents of the attribute types (RFC 5652 11.1-11.3).
CONTENT_TYPE = core.ObjectIdentifier("1.2.840.113549.1.9.3").contents
MESSAGE_DIGEST = core.ObjectIdentifier("1.2.840.113549.1.9.4").contents
SIGNING_TIME = core.ObjectIdentifier("1.2.840.113549.1.9.5").contents
_NAMES = {CONTENT_TYPE: "content_type", MESSAGE_DIGEST: "message_digest",
          SIGNING_TIME: "signing_time"}


def _elements(contents: bytes) -> list[tuple[int, int, int, bytes, bytes]]:
    """The TLVs one after another in ``contents``: (class, constructed, tag, whole
    encoding, contents). Raises ValueError on truncation or garbage."""
    found: list[tuple[int, int, int, bytes, bytes]] = []
    pos = 0
    while pos < len(contents):
        class_, method, tag, header, inner, trailer = parser.parse(contents[pos:])
        size = len(header) + len(inner) + len(trailer)
        found.append((class_, method, tag, contents[pos : pos + size], inner))
        pos += size
    return found


def read_signed_attributes(contents: bytes) -> dict[str, object] | None:
    """``contents`` of the SignedAttributes SET: {"content_type": dotted OID str,
    "message_digest": bytes, "signing_time": datetime} as present, other attributes by
    their dotted type with None. None when the set is malformed, an attribute is repeated
    or an attribute has not exactly one value (RFC 5652 11: content-type, message-digest
    and signing-time MUST be single-valued; a repeated one is ambiguous either way)."""
    found: dict[str, object] = {}
    try:
        for class_, method, tag, _, attribute in _elements(contents):
            if (class_, method, tag) != (_UNIVERSAL, 1, _SEQUENCE):
                return None
            pieces = _elements(attribute)
            if len(pieces) != 2 or pieces[0][:3] != (_UNIVERSAL, 0, _OID):
                return None
            if pieces[1][:3] != (_UNIVERSAL, 1, _SET):
                return None
            kind = pieces[0][4]
            name = _NAMES.get(kind) or core.ObjectIdentifier.load(pieces[0][3]).dotted
            values = _elements(pieces[1][4])
            if name in found or len(values) != 1:
                return None
            found[name] = _value(name, values[0])
    except (ValueError, TypeError, OverflowError):
        return None
    return found


def _value(name: str, element: tuple[int, int, int, bytes, bytes]) -> object:
    class_, method, tag, encoded, _ = element
    if name == "content_type":
        if (class_, method, tag) != (_UNIVERSAL, 0, _OID):
            raise ValueError("content-type is not an object identifier")
        return core.ObjectIdentifier.load(encoded).dotted
    if name == "message_digest":
        if (class_, tag) != (_UNIVERSAL, _OCTET_STRING):
            raise ValueError("message-digest is not an octet string")
        return core.OctetString.load(encoded).native
    if name == "signing_time":
        return _time(class_, tag, encoded)
    return None


def _time(class_: int, tag: int, encoded: bytes) -> datetime.datetime:
    # RFC 5652 11.3: UTCTime through 2049, GeneralizedTime after.
    if (class_, tag) == (_UNIVERSAL, _UTC_TIME):
        value = core.UTCTime.load(encoded).native
    elif (class_, tag) == (_UNIVERSAL, _GENERALIZED_TIME):
        value = core.GeneralizedTime.load(encoded).native
    else:
        raise ValueError("signing-time is not a time")
    if not isinstance(value, datetime.datetime):
        raise ValueError("signing-time is not a time")
    return value
