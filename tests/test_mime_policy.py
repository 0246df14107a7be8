"""MIME_POLICY parses header fields exactly as ``policy.default`` does, with one header class
per field name instead of a new class for every field parsed."""

from __future__ import annotations

from email import policy
from email.headerregistry import ContentTypeHeader, UnstructuredHeader

import pytest

from crypto.mime_policy import MIME_POLICY

FIELDS = [
    ("Content-Type", 'Multipart/Mixed (a comment); boundary="outer"'),
    ("Content-Type", "application/octet-stream;\r\n name*=utf-8''b%C3%A9richt.exe"),
    ("Content-Disposition", 'ATTACHMENT; FILENAME*0="a"; filename*1=".js"'),
    ("Subject", "=?utf-8?b?SMO2bGxl?= und mehr"),
    ("From", "=?utf-8?q?M=C3=BCller?= <a@partner.example>"),
    ("Content-Type", "text / html ; charset = \"\udcff\udcfe\""),
    ("X-Feld", "wert\r\n gefaltet"),
    ("Content-Type", ""),
]


@pytest.mark.parametrize(("name", "value"), FIELDS)
def test_the_same_header_as_policy_default(name: str, value: str) -> None:
    ours = MIME_POLICY.header_fetch_parse(name, value)
    theirs = policy.default.header_fetch_parse(name, value)
    assert str(ours) == str(theirs)
    assert type(ours).__mro__[1:] == type(theirs).__mro__[1:]
    assert [type(d) for d in ours.defects] == [type(d) for d in theirs.defects]
    if isinstance(theirs, ContentTypeHeader):
        assert isinstance(ours, ContentTypeHeader)
        assert (ours.content_type, dict(ours.params)) == (theirs.content_type,
                                                           dict(theirs.params))


def test_one_class_per_field_name() -> None:
    first = MIME_POLICY.header_fetch_parse("Content-Type", "text/plain")
    second = MIME_POLICY.header_fetch_parse("content-type", "application/pdf")
    assert type(first) is type(second)
    other = MIME_POLICY.header_fetch_parse("X-Anything", "x")
    assert isinstance(other, UnstructuredHeader) and type(other) is not type(first)
    # policy.default makes a new class each time (what this saves).
    assert type(policy.default.header_fetch_parse("Content-Type", "text/plain")) is not \
        type(policy.default.header_fetch_parse("Content-Type", "text/plain"))
