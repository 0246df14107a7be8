"""Splitting a message into outer headers and MIME entity, and joining them again."""

from __future__ import annotations

from gateway.mime.entity import header_value, join_entity, split_entity

MSG = (b"Received: from a by b\r\nFrom: a@partner.example\r\nSubject: Hallo\r\n"
       b" gefaltet\r\nMIME-Version: 1.0\r\nContent-Type: text/plain;\r\n charset=utf-8\r\n"
       b"Content-Transfer-Encoding: 8bit\r\n\r\nInhalt\r\n")


def test_split_keeps_folding_and_separates_content_headers() -> None:
    outer, entity = split_entity(MSG)
    assert outer == [b"Received: from a by b", b"From: a@partner.example",
                     b"Subject: Hallo\r\n gefaltet"]
    assert entity == (b"Content-Type: text/plain;\r\n charset=utf-8\r\n"
                      b"Content-Transfer-Encoding: 8bit\r\n\r\nInhalt\r\n")


def test_round_trip_is_the_same_message() -> None:
    outer, entity = split_entity(MSG)
    joined = join_entity(outer, entity)
    assert sorted(joined.split(b"\r\n")) == sorted(MSG.split(b"\r\n"))
    assert joined.endswith(b"\r\n\r\nInhalt\r\n")


def test_message_without_content_type_gets_the_default() -> None:
    _, entity = split_entity(b"From: a@b.example\r\n\r\nText\r\n")
    assert entity == b"Content-Type: text/plain; charset=us-ascii\r\n\r\nText\r\n"


def test_protected_headers_replace_outer_placeholders() -> None:
    outer = [b"From: a@partner.example", b"Subject: ...", b"Date: Mon, 1 Jan 2026 10:00 +0100"]
    inner = (b"Content-Type: text/plain; charset=utf-8\r\nSubject: Hilfeplan Kind A\r\n\r\n"
             b"Inhalt\r\n")
    joined = join_entity(outer, inner)
    assert header_value(joined, "subject") == "Hilfeplan Kind A"
    assert joined.count(b"Subject:") == 1
    assert header_value(joined, "from") == "a@partner.example"
    assert header_value(joined, "date") == "Mon, 1 Jan 2026 10:00 +0100"
