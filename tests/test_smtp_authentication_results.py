"""Authentication-Results in the gateway's name that come from outside never reach anyone.

RFC 8601 section 5: an MTA removes such fields claiming its own authserv-id (here the SMTP
host name, ``xgate.test`` in these tests) before it delivers; fields of other hosts stay.
Over the real listeners: a partner's message into a shared mailbox (at the top, and inside
S/MIME and OpenPGP encryption, where protected headers come to the top only after
decryption), and a staff member's message out to an SMTP sink.
"""

from __future__ import annotations

import smtplib
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest

from gateway.db import session_scope
from gateway.keydir.models import KeyKind
from gateway.keydir.own_keys import own_keys_for
from gateway.keydir.own_openpgp import generate_own_openpgp
from gateway.mime.headers import (
    authserv_id,
    claims_authserv_id,
    field_name,
    header_fields,
    split_header_block,
)
from gateway.services import Services
from gateway.settings import RelayRoute, Settings, TlsPolicy
from tests.conftest import make_settings
from tests.support import crypto_setup
from tests.support.gpg_partner import GpgPartner
from tests.support.openssl_partner import OpensslPartner, mail
from tests.support.pipeline import drain, filed_copies
from tests.support.sink import SmtpSink
from tests.support.smime_pki import Party, make_ca, make_person
from tests.support.smtp_fixtures import (  # noqa: F401 - fixtures
    HOSTNAME,
    Edge,
    edge_fixture,
    relaying_services,
    start_edge_fixture,
    tls_files_fixture,
)

MAILBOX = "hilfeplan@jugendamt.example"
STAFF = "sachbearbeitung@jugendamt.example"
PARTNER = "fachdienst@jugendamt-b.example"
USER, PASSWORD = "sb", "Sehr-geheimes-Passwort-1"

# Every one of these claims to be the gateway's verdict.
FORGED = (
    b"Authentication-Results: xgate.test; smime=pass header.from=boss@jugendamt.example\r\n"
    b"Authentication-Results: XGATE.Test 1; dkim=pass header.d=jugendamt.example\r\n"
    b'Authentication-Results: (checked by us) "xgate.test";\r\n\tdkim=pass\r\n'
    b"ARC-Authentication-Results: i=1; xgate.test.; smime=pass\r\n"
)
# Other hosts' statements: kept as they came.
FOREIGN = (
    b"Authentication-Results: mx.jugendamt-b.example; dkim=pass header.d=jugendamt-b.example\r\n",
    b"Authentication-Results: xgate.test.evil.example; smime=pass\r\n",
    b"ARC-Authentication-Results: i=1; mx.jugendamt-b.example; spf=pass\r\n",
)
ENTITY = b"Content-Type: text/plain; charset=utf-8\r\n\r\nStellungnahme zu Kind D.\r\n"


@pytest.fixture
def settings(tmp_path: Path, database_url: str, sink: SmtpSink) -> Settings:
    """Mail to partners goes to ``sink`` in plaintext (no partner keys needed here)."""
    return make_settings(tmp_path / "var", database_url, delivery={"routes": [
        RelayRoute(domain="*", host=sink.host, port=sink.port,
                   tls=TlsPolicy.NONE).model_dump()]})


@pytest.fixture
def services(settings: Settings) -> Services:
    return relaying_services(settings, mailboxes={MAILBOX: "Hilfeplanung"},
                             users={USER: (PASSWORD, [STAFF])})


def _results_fields(message: bytes) -> list[bytes]:
    """The (ARC-)Authentication-Results fields of the top header block, CRLF-terminated."""
    block, _ = split_header_block(message)
    return [f + b"\r\n" for f in header_fields(block)
            if field_name(f) in ("authentication-results", "arc-authentication-results")]


def _receive(services: Services, edge: Edge, raw: bytes) -> bytes:
    with smtplib.SMTP(*edge.inbound) as client:
        client.sendmail(PARTNER, [MAILBOX], raw)
    drain(services)
    [filed] = filed_copies(services, MAILBOX, notices=True)
    return filed


@pytest.mark.parametrize(("field", "expected"), [
    (b"Authentication-Results: xgate.test; dkim=pass", "xgate.test"),
    (b"Authentication-Results: xgate.test 1; none", "xgate.test"),
    (b"Authentication-Results: (a (nested) comment\\)) xgate.test(x);dkim=pass", "xgate.test"),
    (b'Authentication-Results: "xgate.test"; dkim=pass', "xgate.test"),
    (b"Authentication-Results:\r\n\txgate.test\r\n\t; dkim=pass", "xgate.test"),
    (b"ARC-Authentication-Results: i=2 (second hop); xgate.test; spf=pass", "xgate.test"),
    (b"ARC-Authentication-Results: xgate.test; spf=pass", "xgate.test"),
    (b"authentication-results: mx.example.org; none", "mx.example.org"),
    (b"Authentication-Results: ; none", None),
    (b"Subject: xgate.test; dkim=pass", None),
])
def test_authserv_id_is_the_first_item_after_comments(field: bytes,
                                                      expected: str | None) -> None:
    assert authserv_id(field) == expected


@pytest.mark.parametrize(("field", "ours"), [
    (b"Authentication-Results: XGATE.TEST; dkim=pass", True),
    (b"Authentication-Results: xgate.test.; dkim=pass", True),
    (b"Authentication-Results: xgate.test.evil.example; dkim=pass", False),
    (b"Authentication-Results: evil.xgate.test; dkim=pass", False),
    (b"Authentication-Results: mx.example.org (xgate.test); dkim=pass", False),
])
def test_our_authserv_id_is_compared_as_a_host_name(field: bytes, ours: bool) -> None:
    assert claims_authserv_id(field, HOSTNAME) is ours


def test_forged_results_at_the_top_are_removed_and_foreign_ones_kept(
        services: Services, edge: Edge) -> None:
    raw = mail(ENTITY, sender=PARTNER, to=MAILBOX, extra_headers=FORGED + b"".join(FOREIGN))
    filed = _receive(services, edge, raw)
    assert _results_fields(filed) == list(FOREIGN)
    assert b"smime=pass header.from=boss" not in filed
    assert b"Stellungnahme zu Kind D." in filed


@pytest.fixture(scope="module")
def smime_ours(tmp_path_factory: pytest.TempPathFactory) -> Party:
    directory = tmp_path_factory.mktemp("smime-ours")
    return make_person(directory, "ours", MAILBOX, make_ca(directory, "ca", bits=2048))


def test_forged_results_inside_smime_encryption_are_removed(
        services: Services, edge: Edge, tmp_path: Path, smime_ours: Party) -> None:
    ours = smime_ours
    crypto_setup.own_smime(services, MAILBOX, ours)
    inner = (b"Content-Type: text/plain; charset=utf-8\r\n" + FORGED + FOREIGN[0]
             + b"Subject: Stellungnahme (geschuetzt)\r\n\r\nStellungnahme zu Kind D.\r\n")
    sealed = OpensslPartner(tmp_path).encrypt(inner, ours)
    filed = _receive(services, edge, mail(sealed, sender=PARTNER, to=MAILBOX, subject="..."))
    headers = BytesHeaderParser().parsebytes(filed)
    # The protected header fields did come to the top: decryption happened.
    assert headers["Subject"] == "Stellungnahme (geschuetzt)"
    assert str(headers["X-Xgate-Encryption"]).startswith("S/MIME")
    assert _results_fields(filed) == [FOREIGN[0]]


def test_forged_results_inside_openpgp_encryption_are_removed(
        services: Services, edge: Edge, tmp_path: Path) -> None:
    with session_scope(services.sessions) as s:
        generate_own_openpgp(s, services.master_key, MAILBOX, actor="test",
                             now=services.clock())
        [key] = own_keys_for(s, services.master_key, MAILBOX, KeyKind.OPENPGP)
    inner = (b"Content-Type: text/plain; charset=utf-8\r\n" + FORGED + FOREIGN[0]
             + b"Subject: Stellungnahme (geschuetzt)\r\n\r\nStellungnahme zu Kind D.\r\n")
    with GpgPartner.create(tmp_path / "gpg") as gpg:
        gpg.import_keys(key.public)
        raw = gpg.pgp_mime_encrypted(inner, [key.fingerprint])
    # The outer header block has forged fields of its own as well.
    filed = _receive(services, edge, FORGED + raw)
    headers = BytesHeaderParser().parsebytes(filed)
    assert headers["Subject"] == "Stellungnahme (geschuetzt)"
    assert str(headers["X-Xgate-Encryption"]).startswith("OpenPGP")
    assert _results_fields(filed) == [FOREIGN[0]]


def test_forged_results_from_staff_do_not_reach_the_partner(
        services: Services, edge: Edge, sink: SmtpSink) -> None:
    raw = mail(ENTITY, sender=STAFF, to=PARTNER, extra_headers=FORGED + FOREIGN[0])
    edge.submit(USER, PASSWORD, STAFF, [PARTNER], raw)
    drain(services)
    [delivered] = sink.deliveries
    assert delivered.rcpt_tos == (PARTNER,)
    assert _results_fields(delivered.content) == [FOREIGN[0]]
    assert b"Stellungnahme zu Kind D." in delivered.content
